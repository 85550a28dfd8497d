"""The prompt-tuning run: frozen T5 + prompt, trained, evaluated and checkpointed under ``MODEL_DIR``.

``train()`` is the gin entry point (``train.model_dir = %MODEL_DIR`` ...). It reads its data from numpy
caches of seqio task splits (``xprompt_jax.data.cache``), so nothing here imports TensorFlow; a missing
cache is written first by the data side, which does. Layout of ``MODEL_DIR``:

    run_config.json      model, prompt and data settings; a restart with different ones is refused
    checkpoints/<step>/  resumable state (orbax), every ``checkpoint_period`` steps and at the end
    best/<step>/         trainable params and masks of the best evaluation by ``eval_metric``
    eval_metrics.jsonl   one line per evaluation
    train/, eval/        TensorBoard summaries
    export/              prompt.npy and peft_adapter/ of the best prompt

A restarted run restores the latest checkpoint, including the data position, and continues as if it
had never stopped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, Optional

import gin
import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax import export, partitioning, train_step
from xprompt_jax.errors import ConfigError
from xprompt_jax.logs import is_main_process
from xprompt_jax.models.config import T5Config, t5_config
from xprompt_jax.models.t5 import init_params, logical_axes
from xprompt_jax.optimizers import learning_rate_schedule, make_optimizer
from xprompt_jax.progress import Progress
from xprompt_jax.prompted import T5_WEIGHTS, PromptedT5, build_prompted_t5
from xprompt_jax.prompts.kinds import PromptSpecBase, make_spec
from xprompt_jax.run import evaluation
from xprompt_jax.run.checkpoints import BestCheckpoint, RunCheckpoints
from xprompt_jax.data.task_cache import DEFAULT_DATA_CACHE, open_split, split_vocabulary  # noqa: F401

logger = logging.getLogger(__name__)

# TEMPORARY bridge until xprompt_jax/gin_configurables.py registers make_spec as xprompt_jax.PromptSpec:
# gin's PromptSpec.<field> bindings reach the runs that build their spec with PromptSpec() here.
PromptSpec = gin.external_configurable(make_spec, "PromptSpec", module="xprompt_jax")

RUN_CONFIG = "run_config.json"
STOPPED_EARLY = "stopped_early.json"
# Fields of run_config.json that must match for a restart to continue the same run.
STRUCTURAL = ("model", "prompt", "trainable")


# ------------------------------------------------------------------------------------------------
# Frozen model
# ------------------------------------------------------------------------------------------------
def load_frozen(checkpoint: Optional[str], config: Optional[T5Config], frozen_dtype: Optional[str] = None,
                seed: int = 0):
    """(config, params) from a T5X / Hugging Face checkpoint, or random weights when ``checkpoint`` is None."""
    if checkpoint:
        from xprompt_jax.t5_import import load_t5_checkpoint
        config, params = load_t5_checkpoint(checkpoint, config, param_dtype=frozen_dtype)
    else:
        if config is None:
            raise ConfigError("train.checkpoint is unset and no model config is given: set train.checkpoint "
                              "(a T5X or Hugging Face T5 checkpoint) or a gin size file")
        logger.info("[train] no checkpoint given: the model starts from random weights (pre-training, tests, benchmarks)")
        params = jax.tree.map(np.asarray, init_params(config, jax.random.PRNGKey(seed)))
        if frozen_dtype:
            params = jax.tree.map(lambda x: x.astype(frozen_dtype), params)
    return config, params


def require_string(macro: str, value, binding: str):
    """gin passes an unset ``%gin.REQUIRED`` macro through as a sentinel object: name the macro instead."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{macro} is not set: pass --gin.{macro}=\"'/path'\" (or bind {binding})")


def default_model_config(checkpoint: Optional[str]) -> Optional[T5Config]:
    """The gin-bound config (models/ + sizes/ files), except for Hugging Face folders, which carry their own."""
    if checkpoint:
        from xprompt_jax.t5_import import resolve_checkpoint
        if resolve_checkpoint(checkpoint)[1] == "huggingface":
            return None
    return t5_config()


def eval_batches_with_validity(split, batch_size: int, mesh=None):
    """(batch, valid) pairs over the whole split in order; the last batch padded (valid=False rows).

    With ``mesh`` (and a batch that the data axis and the processes divide), each batch is one global
    array sharded over ``data``: every process puts in only its slice, and the predictions are gathered
    back on every process (``distributed.to_host``). Without, every process scores whole batches.
    """
    sharded = (mesh is not None and batch_size % mesh.shape[partitioning.DATA] == 0
               and batch_size % jax.process_count() == 0)
    per_process = batch_size // jax.process_count()
    first = jax.process_index() * per_process
    for batch in split.eval_batches(batch_size):
        valid = batch.pop("mask")
        batch.pop("example_index")
        if sharded:
            local = {k: batch[k][first:first + per_process] for k in train_step.BATCH_KEYS}
            yield partitioning.global_batch(local, mesh), valid
        else:
            yield {k: jnp.asarray(batch[k]) for k in train_step.BATCH_KEYS}, valid


# ------------------------------------------------------------------------------------------------
# Evaluation against the task's metrics
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Evaluator:
    """Scores a prompt on one cached split by rank classification or greedy decoding."""
    model: PromptedT5
    split: Any
    vocabulary: Any
    batch_size: int
    mode: str = "auto"
    max_decode_length: Optional[int] = None
    mesh: Any = None  # the run's mesh: evaluation batches sharded over its data axis (multi-host too)

    def __post_init__(self):
        from xprompt_jax.run import task_info
        self.info = task_info.for_split(self.split)
        if self.mode == "auto":
            self.mode = "rank" if self.info.label_names else "decode"
        if self.mode == "rank" and not self.info.label_names:
            raise ConfigError(f"rank classification needs label names; task {self.info.name!r} has none "
                              "(use train.eval_mode='decode')")
        if self.mode not in ("rank", "decode"):
            raise ConfigError(f"unknown eval mode {self.mode!r}: 'rank', 'decode' or 'auto'")
        if self.mode == "rank":
            self.label_ids = self.vocabulary.encode_padded(self.info.label_names)
        self.max_decode_length = self.max_decode_length or self.split.features["decoder_target_tokens"].shape[1]

    def predictions_text(self, trainable, frozen, masks) -> list:
        trainable, masks = self.model.for_evaluation(trainable, masks)  # EPT & co.: score the materialised prompt
        batches = eval_batches_with_validity(self.split, self.batch_size, self.mesh)
        if self.mode == "rank":
            best = evaluation.predict_labels(self.model, trainable, frozen, masks, batches, self.label_ids)
            return [self.info.label_names[i] for i in best]
        tokens = evaluation.predict_tokens(self.model, trainable, frozen, masks, batches, self.max_decode_length)
        return [self.vocabulary.decode(t) for t in tokens]

    def __call__(self, trainable, frozen, masks) -> Dict[str, float]:
        texts = self.predictions_text(trainable, frozen, masks)
        return self.info.score(texts, self.split.examples)


# ------------------------------------------------------------------------------------------------
# Run folder bookkeeping
# ------------------------------------------------------------------------------------------------
def check_run_config(model_dir: str, run_config: Dict[str, Any]):
    """Write ``run_config.json``, or refuse to continue a run written by a different config."""
    path = os.path.join(model_dir, RUN_CONFIG)
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        for section in STRUCTURAL:
            old, new = previous.get(section), json.loads(json.dumps(run_config.get(section)))
            if old != new:
                diffs = [k for k in sorted(set(old or {}) | set(new or {}))
                         if (old or {}).get(k) != (new or {}).get(k)] if isinstance(old, dict) else []
                detail = ", ".join(f"{section}.{k}: {(old or {}).get(k)!r} -> {(new or {}).get(k)!r}" for k in diffs)
                raise ConfigError(f"MODEL_DIR {model_dir} holds a run with a different config ({detail or section}); "
                                  "use a new MODEL_DIR, or restore the original settings to resume it")
    elif is_main_process():
        export.save_json(path, run_config)


class Summaries:
    """TensorBoard scalars (tensorboardX: no TensorFlow), written by process 0 only."""

    def __init__(self, model_dir: str, enabled: bool = True):
        self.writers = {}
        if enabled and is_main_process():
            from tensorboardX import SummaryWriter
            self.writers = {name: SummaryWriter(os.path.join(model_dir, name)) for name in ("train", "eval")}

    def scalars(self, kind: str, step: int, values: Dict[str, float]):
        writer = self.writers.get(kind)
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(k, float(v), step)
            writer.flush()

    def close(self):
        for writer in self.writers.values():
            writer.close()


def label_token_ids(vocabulary, split) -> Optional[list]:
    from xprompt_jax.run import task_info
    names = task_info.for_split(split).label_names
    return [vocabulary.encode(n, add_eos=False) for n in names] if names else None


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
@gin.configurable(module="xprompt_jax", denylist=["model_config", "prompt_spec", "optimizer", "initial_trainable",
                                                  "initial_masks", "frozen_model"])
def train(model_dir: str = gin.REQUIRED,
          checkpoint: Optional[str] = None,
          task: Optional[str] = None,
          train_split: str = "train",
          eval_split: Optional[str] = "validation",
          train_cache: Optional[str] = None,
          eval_cache: Optional[str] = None,
          data_cache_dir: Optional[str] = None,
          vocabulary_path: Optional[str] = None,
          input_length: int = 512,
          target_length: int = 16,
          batch_size: int = 32,
          train_steps: int = 30000,
          eval_period: int = 1000,
          checkpoint_period: int = 1000,
          keep_checkpoints: int = 3,
          accumulation_steps: int = 1,
          seed: int = 0,
          eval_metric: str = "accuracy",
          eval_mode: str = "auto",
          eval_batch_size: Optional[int] = None,
          early_stopping_patience: Optional[int] = None,
          mesh_data: int = -1,
          mesh_model: int = 1,
          frozen_dtype: Optional[str] = None,
          dropout: bool = False,
          z_loss: float = 1e-4,
          log_period: int = 100,
          export_peft: bool = True,
          trainable: str = "prompt",
          model_config: Optional[T5Config] = None,
          prompt_spec: Optional[PromptSpecBase] = None,
          optimizer=None,
          initial_trainable=None,
          initial_masks=None,
          frozen_model=None) -> Dict[str, Any]:
    """Train a prompt on a frozen T5; returns the final and best metrics. Defaults are Lester et al.'s.

    Every argument is a gin binding (``train.batch_size = 32``); the run files in ``gin/runs/`` set them
    from macros (``MODEL_DIR``, ``TASK``, ``BATCH_SIZE`` ...). ``checkpoint`` is a T5X checkpoint (with a
    size gin file) or a Hugging Face T5 folder. ``frozen_dtype='bfloat16'`` halves the frozen weights'
    memory; the prompt stays float32. ``trainable``: 'prompt' (prompt tuning), 'model' (full
    fine-tuning, no prompt: every T5 weight trains, optimiser state sharded like the weights; also
    how the demo's model is pre-trained) or 'prompt+model'.
    """
    if trainable not in ("prompt", "model", "prompt+model"):
        raise ConfigError(f"train.trainable must be 'prompt', 'model' or 'prompt+model', got {trainable!r}")
    started = time.time()
    require_string("MODEL_DIR", model_dir, "train.model_dir")
    if "://" in model_dir:  # run_config, metrics, summaries and exports are plain files: a mounted bucket
        raise ConfigError(f"MODEL_DIR {model_dir} is a URL; the run writes plain files there too: mount the bucket "
                          "(gcsfuse BUCKET /tmp/gcs/BUCKET, as launch/tpu_pod.sh --model_dir=gs://... does) "
                          "and pass the mounted path")
    if accumulation_steps < 1 or batch_size % accumulation_steps:
        raise ConfigError(f"train.accumulation_steps={accumulation_steps} must divide train.batch_size={batch_size}")
    model_config = model_config if model_config is not None else default_model_config(checkpoint)
    prompt_spec = prompt_spec or PromptSpec()

    # Data first: a bad task or cache fails before anything is loaded or compiled.
    train_data = open_split(task, train_split, train_cache, data_cache_dir, input_length, target_length)
    eval_data = (open_split(task, eval_split, eval_cache, data_cache_dir, input_length, target_length)
                 if (eval_split or eval_cache) else None)
    vocabulary = split_vocabulary(train_data, vocabulary_path)

    # XPrompt's stages call train() repeatedly: they pass the frozen model once loaded (config, params),
    # and the rewound prompt and its fixed masks as the starting state.
    config, frozen = frozen_model if frozen_model is not None else load_frozen(checkpoint, model_config,
                                                                               frozen_dtype, seed)
    _check_vocabulary(config, vocabulary, checkpoint)
    cached_length = train_data.features["encoder_input_tokens"].shape[1]
    if trainable == "model":
        model = PromptedT5(config, None)
    else:
        model = build_prompted_t5(config, prompt_spec, frozen, label_token_ids(vocabulary, train_data),
                                  input_length=cached_length)
    optimizer = optimizer or make_optimizer()
    lr_fn = learning_rate_schedule()

    run_config = {"model": dataclasses.asdict(config),
                  "prompt": prompt_spec.to_dict() if trainable != "model" else None, "trainable": trainable,
                  "data": {"task": task, "train": train_data.path, "eval": eval_data.path if eval_data else None,
                           "batch_size": batch_size, "seed": seed}, "checkpoint": checkpoint}
    check_run_config(model_dir, run_config)

    mesh = partitioning.make_mesh(mesh_data, mesh_model)
    partitioning.check_divisible(batch_size, mesh)
    initial = None
    if trainable != "prompt":  # the T5 weights move from the frozen tree to the trainable one
        initial = {**model.init(jax.random.split(jax.random.PRNGKey(seed))[0])[0], T5_WEIGHTS: frozen}
        frozen = {}
    if initial_trainable is not None:
        initial = initial_trainable if initial is None else {**initial, **initial_trainable}
    state = train_step.create_state(model, optimizer, jax.random.PRNGKey(seed), trainable=initial,
                                  masks=initial_masks)
    shardings = train_step.make_shardings(model, optimizer, jax.eval_shape(lambda: state), mesh, logical_axes(config))
    frozen = jax.device_put(frozen, shardings.frozen)

    checkpoints = RunCheckpoints(model_dir, keep_checkpoints)
    best = BestCheckpoint(model_dir, eval_metric)
    start_step, stopped_early = 0, False
    if checkpoints.latest_step() is not None:
        state, position = checkpoints.restore(state, shardings.state)
        start_step = int(position["step"])
        marker = os.path.join(model_dir, STOPPED_EARLY)
        if os.path.exists(marker):
            with open(marker) as f:
                stopped_early = json.load(f)["step"] == start_step
        logger.info(f"[train] resumed from {checkpoints.directory}/{start_step}")
    else:
        state = jax.device_put(state, shardings.state)

    n_trainable = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.trainable))
    trainable_note = ""
    if state.masks:
        from xprompt_jax.prompts.masks import surviving_parameters
        unmasked = surviving_parameters(state.masks["token_mask"], state.masks["piece_mask"], config.emb_dim)
        if unmasked < prompt_spec.length * config.emb_dim:
            trainable_note = f" ({unmasked:,} unmasked)"
    kind = "" if prompt_spec.kind == "prompt" else f"{prompt_spec.kind} "
    what = (f"{kind}prompt {prompt_spec.length}x{config.emb_dim} ({prompt_spec.init})"
            if model.prompt_module is not None
            else "no prompt")
    logger.info(f"[train] model: {config.emb_dim}-wide, {config.num_encoder_layers}+{config.num_decoder_layers} layers; "
        f"{what}; trains {trainable}: {n_trainable:,} parameters{trainable_note}")
    logger.info(f"[train] mesh {dict(mesh.shape)} on {jax.device_count()} {jax.default_backend()} device(s), "
        f"{jax.process_count()} process(es); batch {batch_size}; {train_data.num_examples} training examples")

    step_fn = train_step.jit_train_step(train_step.make_train_step(model, optimizer, z_loss, accumulation_steps,
                                                               dropout, lr_fn), shardings)
    evaluator = (Evaluator(model, eval_data, vocabulary, eval_batch_size or batch_size, eval_mode, mesh=mesh)
                 if eval_data is not None else None)
    summaries = Summaries(model_dir)
    progress = Progress(train_steps, start_step)
    batches = train_data.batches(batch_size, shuffle=True, seed=seed, start_step=start_step,
                                 process_index=jax.process_index(), process_count=jax.process_count())

    def data_position(at_step):  # what a restart needs to see the same batches from here on
        return {"step": at_step, "seed": seed, "batch_size": batch_size}

    history, train_losses, stale, last_eval = [], [], 0, None
    best_so_far = best.best()
    best_value = best_so_far[1][eval_metric] if best_so_far else -np.inf
    step = start_step
    while step < train_steps and not stopped_early:
        local = next(batches)
        state, metrics = step_fn(state, frozen, partitioning.global_batch(
            {k: local[k] for k in train_step.BATCH_KEYS}, mesh))
        step += 1
        if step % log_period == 0 or step == train_steps or step == start_step + 1:
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            train_losses.append((step, values["loss"]))
            summaries.scalars("train", step, values)
            progress.update(step, {k: values[k] for k in ("loss", "learning_rate") if k in values})
        if step % checkpoint_period == 0 or step == train_steps:
            checkpoints.save(step, state, data_position(step))
        if evaluator is not None and (step % eval_period == 0 or step == train_steps):
            last_eval = evaluator(state.trainable, frozen, state.masks)
            record = {"step": step, **last_eval}
            history.append(record)
            summaries.scalars("eval", step, last_eval)
            _append_jsonl(os.path.join(model_dir, "eval_metrics.jsonl"), record)
            if eval_metric not in last_eval:
                raise ConfigError(f"train.eval_metric={eval_metric!r} is not among this task's metrics "
                                  f"{sorted(last_eval)}")
            logger.info(f"[eval] step {step}: " + ", ".join(f"{k} {v:.2f}" for k, v in last_eval.items()))
            if last_eval[eval_metric] > best_value:
                best_value, stale = last_eval[eval_metric], 0
                best.save(step, state.trainable, state.masks, record)
            else:
                stale += 1
                if early_stopping_patience and stale >= early_stopping_patience:
                    logger.info(f"[train] early stop at step {step}: no {eval_metric} gain in {stale} evaluations")
                    if checkpoints.latest_step() != step:
                        checkpoints.save(step, state, data_position(step))
                    if is_main_process():  # a restart sees this and does not train on
                        export.save_json(os.path.join(model_dir, STOPPED_EARLY), {"step": step})
                    break
    checkpoints.wait()
    best.wait()
    summaries.close()

    result = {"step": step, "final": last_eval, "history": history, "train_loss": train_losses,
              "trainable_parameters": n_trainable,
              "seconds": time.time() - started}
    best_entry = best.best()
    final_trainable, final_masks = state.trainable, state.masks
    if best_entry is not None:
        result["best"] = best_entry[1]
        # Onto this run's shardings: the best may have been saved by another topology (a resumed pod run).
        params, _ = best.restore({"trainable": state.trainable, "masks": state.masks})
        final_trainable, final_masks = params["trainable"], params["masks"]
    export_dir = os.path.join(model_dir, export.EXPORT_DIR)
    if model.prompt_module is not None:
        prompt_values = np.asarray(model.prompt(final_trainable, final_masks))
        result["prompt"] = prompt_values
        if is_main_process():
            export.save_npy(os.path.join(export_dir, export.PROMPT_FILE), prompt_values)
            if export_peft:
                export.save_peft_adapter(os.path.join(export_dir, "peft_adapter"), prompt_values, checkpoint, config)
    if T5_WEIGHTS in final_trainable:
        export.save_t5_checkpoint(os.path.join(export_dir, "model"), final_trainable[T5_WEIGHTS])
    logger.info(f"[train] done: step {step} in {result['seconds']:.0f}s; exported to {export_dir}")
    checkpoints.close()
    best.close()
    return result


def train_settings() -> Dict[str, Any]:
    """``train``'s effective arguments: its defaults overridden by the current gin bindings."""
    import inspect
    settings = {name: p.default for name, p in inspect.signature(train).parameters.items()
                if p.default is not inspect.Parameter.empty}
    settings.update(gin.get_bindings("xprompt_jax.train"))
    return settings


def _check_vocabulary(config: T5Config, vocabulary, checkpoint):
    if vocabulary.piece_count > config.vocab_size:
        raise ConfigError(f"the vocabulary {vocabulary.path} has {vocabulary.piece_count} pieces but the model "
                          f"{checkpoint or ''} embeds only {config.vocab_size}; use the model's own vocabulary")


def _append_jsonl(path: str, record: dict):
    if is_main_process():
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


@gin.configurable(module="xprompt_jax", denylist=["model_config"])
def evaluate(prompt_source: str = gin.REQUIRED,
             checkpoint: Optional[str] = None,
             task: Optional[str] = None,
             split: str = "validation",
             cache: Optional[str] = None,
             data_cache_dir: Optional[str] = None,
             vocabulary_path: Optional[str] = None,
             input_length: int = 512,
             target_length: int = 16,
             batch_size: int = 32,
             mode: str = "auto",
             combine: str = "prefix",
             seed: int = 0,
             model_config: Optional[T5Config] = None) -> Dict[str, float]:
    """Score a saved prompt (``.npy``, PEFT adapter, or a run's ``MODEL_DIR`` export) on a task split."""
    require_string("PROMPT_SOURCE", prompt_source, "evaluate.prompt_source")
    values, source = export.load_prompt_source(prompt_source)
    data = open_split(task, split, cache, data_cache_dir, input_length, target_length)
    vocabulary = split_vocabulary(data, vocabulary_path)
    model_config = model_config if model_config is not None else default_model_config(checkpoint)
    config, frozen = load_frozen(checkpoint, model_config, seed=seed)
    from xprompt_jax.prompts.initializers import from_array
    from xprompt_jax.prompts.modules import Prompt
    if values.shape[1] != config.emb_dim:
        raise ConfigError(f"the prompt in {source} is {values.shape[1]} wide but the model is {config.emb_dim} wide")
    model = PromptedT5(config, Prompt(length=values.shape[0], width=config.emb_dim, pieces=1,
                                      init_fn=from_array(values, source)), combine)
    trainable, masks = model.init(jax.random.PRNGKey(0))
    metrics = Evaluator(model, data, vocabulary, batch_size, mode)(trainable, frozen, masks)
    logger.info(f"[evaluate] {source} on {data.meta.get('task')}:{data.meta.get('split')}: "
        + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return metrics
