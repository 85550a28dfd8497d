"""Helpers the tests share: paths to ../shared, small cached tasks, the CLI run on them, flat train().

Imported as ``from helpers import ...`` (tests/ is on pytest's pythonpath). ../shared lies beside the
checkout; a user's clone has none, so tests that need it skip there, and CI (XPROMPT_REQUIRE_SHARED=1,
set by .ci/run) fails instead.
"""
import dataclasses
import os
import pathlib
import sys

import numpy as np
import pytest

from xprompt_jax.data.cache import write_cached_split

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("XPROMPT_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> pathlib.Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"{path} not found: the ../shared folder beside the checkout holds the fixtures"
        if os.environ.get("XPROMPT_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path



def write_label_task(path, vocab_path, n=48, seed=0, inputs_length=12, task="test_yes_no",
                     labels=("yes", "no"), varied_lengths=False):
    """A two-label task whose label is decided by the first input token, tokenised with ``vocab_path``.

    ``varied_lengths``: inputs of 3 to ``inputs_length // 2`` tokens (row 0 full length), 0-padded to
    ``inputs_length``, and targets padded to 16, as real tasks are, so length buckets cut both."""
    from xprompt_jax.vocabulary import load_vocabulary
    vocab = load_vocabulary(str(vocab_path))  # a SentencePiece model, or 'byte' (ByT5)
    rng = np.random.RandomState(seed)
    label_ids = vocab.encode_padded(list(labels))
    inputs = rng.randint(3, 300, (n, inputs_length)).astype(np.int32)
    if varied_lengths:
        lengths = rng.randint(3, inputs_length // 2 + 1, n)
        lengths[0] = inputs_length
        inputs = inputs * (np.arange(inputs_length) < lengths[:, None])
        inputs[np.arange(n), lengths - 1] = 1
        label_ids = np.pad(label_ids, ((0, 0), (0, 16 - label_ids.shape[1])))
    else:
        inputs[:, -1] = 1
    classes = (inputs[:, 0] % 2).astype(int)
    targets = label_ids[classes].astype(np.int32)
    examples = [{"inputs_pretokenized": " ".join(map(str, row[row > 0])), "targets_pretokenized": labels[c],
                 "idx": i} for i, (row, c) in enumerate(zip(inputs, classes))]
    features = {"encoder_input_tokens": inputs.astype(np.int32), "decoder_target_tokens": targets,
                "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
                "decoder_loss_weights": (targets > 0).astype(np.int32)}
    meta = {"task": task, "split": "train", "label_names": list(labels),
            "sequence_length": {"inputs": inputs_length, "targets": int(targets.shape[1])},
            "vocabulary": {"path": str(vocab_path), "extra_ids": 100}}
    return write_cached_split(str(path), meta=meta, features=features, examples=examples)


def train_command(model_dir, data, steps, checkpoint_period, eval_period):
    """``xprompt-jax train`` on the T5X fixture and ``data``'s caches (keys checkpoint, train, eval):
    a 4-token prompt, batch 8, as tests launch it in a subprocess."""
    return [sys.executable, "-m", "xprompt_jax.cli", "train",
            "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=prompts/sampled_vocabulary.gin",
            "--gin_file=runs/prompt_tune.gin",
            f"--gin.MODEL_DIR='{model_dir}'", f"--gin.CHECKPOINT='{data['checkpoint']}'",
            f"--gin.xprompt_jax.DataConfig.train_cache='{data['train']}'",
            f"--gin.xprompt_jax.DataConfig.eval_cache='{data['eval']}'",
            "--gin.BATCH_SIZE=8", f"--gin.TRAIN_STEPS={steps}", f"--gin.CHECKPOINT_PERIOD={checkpoint_period}",
            f"--gin.EVAL_PERIOD={eval_period}", "--gin.PROMPT_LENGTH=4", "--gin.xprompt_jax.PromptSpec.pieces=2"]


def settings_from_flat(**flat):
    """``train()``'s keyword arguments from one flat set of fields (``batch_size=8, train_steps=6, ...``).

    Each name goes to the settings object that has that field (DataConfig, ScheduleConfig, EvalConfig,
    FrozenModel, MeshConfig); ``eval_metric``/``eval_mode``/``eval_batch_size``, ``checkpoint``,
    ``model_config``, ``frozen_dtype`` and ``mesh_data`` are the usual short names. The rest pass through.
    """
    from xprompt_jax.run import config
    renames = {"eval_metric": "metric", "eval_mode": "mode", "eval_batch_size": "batch_size",
               "model_config": "config", "frozen_dtype": "dtype", "mesh_data": "data", "mesh_model": "model",
               "data_cache_dir": "cache_dir"}
    groups = {"data": (config.DataConfig, ("task", "train_split", "eval_split", "train_cache", "eval_cache",
                                           "data_cache_dir", "vocabulary_path", "input_length", "target_length",
                                           "batch_size", "seed", "length_buckets", "group_by_length")),
              "schedule": (config.ScheduleConfig, [f.name for f in dataclasses.fields(config.ScheduleConfig)]),
              "evaluation": (config.EvalConfig, ("eval_metric", "eval_mode", "eval_batch_size")),
              "model": (config.FrozenModel, ("checkpoint", "model_config", "frozen_dtype")),
              "mesh": (config.MeshConfig, ("mesh_data", "mesh_model"))}
    out = {}
    for arg, (cls, names) in groups.items():
        fields = {renames.get(n, n): flat.pop(n) for n in list(names) if n in flat}
        if fields:
            out[arg] = cls(**fields)
    return {**out, **flat}


def train(**flat):
    """``run.loop.train`` with flat keyword arguments (see ``settings_from_flat``). With ``frozen_model``,
    ``initial_trainable`` or ``initial_masks``, ``run.loop.run_training`` with that ``Start`` (as XPrompt's
    stages call it)."""
    from xprompt_jax.run.config import RunSettings
    from xprompt_jax.run.loop import run_training
    from xprompt_jax.run.loop import train as run_train
    from xprompt_jax.run.session import Start
    start = Start(flat.pop("frozen_model", None), flat.pop("initial_trainable", None), flat.pop("initial_masks", None))
    if start == Start():
        return run_train(**settings_from_flat(**flat))
    model_dir, export_peft = flat.pop("model_dir"), flat.pop("export_peft", True)
    return run_training(model_dir, RunSettings(**settings_from_flat(**flat)), start, export_peft)


def random_batch(n=8, seed=0, vocab=200):
    """A model batch of random tokens: some inputs padded, every target ending in EOS."""
    rng = np.random.RandomState(seed)
    inputs = rng.randint(3, vocab, (n, 10)).astype(np.int32)
    inputs[:, -1] = 1
    inputs[::3, 6:] = 0
    targets = rng.randint(3, vocab, (n, 3)).astype(np.int32)
    targets[:, -1] = 1
    weights = (targets > 0).astype(np.int32)
    return {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
            "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1], "decoder_loss_weights": weights}
