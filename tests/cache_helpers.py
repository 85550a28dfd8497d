"""Small cached splits written with the real cache writer, and the CLI run that trains on them (no seqio)."""
import sys

import numpy as np

from xprompt_jax.data.cache import write_cached_split


def write_label_task(path, vocab_path, n=48, seed=0, inputs_length=12, task="test_yes_no",
                     labels=("yes", "no")):
    """A two-label task whose label is decided by the first input token, tokenised with ``vocab_path``."""
    from xprompt_jax.vocabulary import Vocabulary
    vocab = Vocabulary(str(vocab_path))
    rng = np.random.RandomState(seed)
    label_ids = vocab.encode_padded(list(labels))
    inputs = rng.randint(3, 300, (n, inputs_length)).astype(np.int32)
    inputs[:, -1] = 1
    classes = (inputs[:, 0] % 2).astype(int)
    targets = label_ids[classes].astype(np.int32)
    examples = [{"inputs_pretokenized": " ".join(map(str, row)), "targets_pretokenized": labels[c], "idx": i}
                for i, (row, c) in enumerate(zip(inputs, classes))]
    features = {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
                "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
                "decoder_loss_weights": (targets > 0).astype(np.int32)}
    meta = {"task": task, "split": "train", "label_names": list(labels),
            "sequence_length": {"inputs": inputs_length, "targets": int(targets.shape[1])},
            "vocabulary": {"path": str(vocab_path), "extra_ids": 100}}
    return write_cached_split(str(path), meta=meta, features=features, examples=examples)


def train_command(model_dir, data, steps, checkpoint_period, eval_period):
    """``xprompt-jax train`` on the T5X fixture and ``data``'s caches (keys checkpoint, train, eval):
    a 4-token prompt, batch 8, as tests launch it in a subprocess."""
    return [sys.executable, "-m", "xprompt_jax.main", "train",
            "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=prompts/sampled_vocabulary.gin",
            "--gin_file=runs/prompt_tune.gin",
            f"--gin.MODEL_DIR='{model_dir}'", f"--gin.CHECKPOINT='{data['checkpoint']}'",
            f"--gin.xprompt_jax.train.train_cache='{data['train']}'",
            f"--gin.xprompt_jax.train.eval_cache='{data['eval']}'",
            "--gin.BATCH_SIZE=8", f"--gin.TRAIN_STEPS={steps}", f"--gin.CHECKPOINT_PERIOD={checkpoint_period}",
            f"--gin.EVAL_PERIOD={eval_period}", "--gin.PROMPT_LENGTH=4", "--gin.xprompt_jax.PromptSpec.pieces=2"]
