"""``xprompt-jax smoke``: load a T5 checkpoint, print its summary, run a forward pass, score and decode.

The default checkpoint is the real T5X test checkpoint in ``../shared/fixtures/t5x_t5_1_1_tiny/checkpoint_3``
(a development checkout's); a T5X checkpoint carries no config, so its size comes from gin
(``--gin_file=sizes/...``), a Hugging Face folder carries its own.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import numpy as np
from flax import traverse_util

from xprompt_jax.cli.gin_configurables import t5_config
from xprompt_jax.errors import CheckpointError
from xprompt_jax.models.config import describe
from xprompt_jax.models.decoding import greedy_decode, shift_right, token_log_likelihoods
from xprompt_jax.models.t5 import T5
from xprompt_jax.t5_import import load_t5_checkpoint

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SMOKE_CHECKPOINT = os.path.join(REPO_ROOT, "..", "shared", "fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")
DEFAULT_SMOKE_CONFIG = "t5_1_1_prompt_tuning_test"


def smoke(args: argparse.Namespace, gin_given: bool) -> int:
    """Load, describe and run the checkpoint; 0, or 2 with one line when it cannot be read."""
    path = args.checkpoint or os.path.normpath(DEFAULT_SMOKE_CHECKPOINT)
    if args.checkpoint is None and not os.path.exists(path):
        print(f"error: the default smoke checkpoint {path} is missing. It lives in the ../shared folder beside "
              "a development checkout; pass --checkpoint=PATH (a T5X checkpoint folder with --gin_file=sizes/..., "
              "or a Hugging Face T5 folder) instead.", file=sys.stderr)
        return 2
    print(f"[smoke] loading {path}")
    start = time.time()
    try:
        # T5X checkpoints carry no config: take it from gin when given, else the fixture's architecture.
        config = t5_config() if gin_given else (t5_config(DEFAULT_SMOKE_CONFIG) if args.checkpoint is None else None)
        config, params = load_t5_checkpoint(path, config, guess_size=True)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    flat = traverse_util.flatten_dict(params, sep="/")
    total = sum(math.prod(v.shape) for v in flat.values())
    print(f"[smoke] loaded in {time.time() - start:.1f}s on {jax.default_backend()} "
          f"({jax.device_count()} device(s))")
    print(f"[smoke] model: {describe(config)}")
    print(f"[smoke] parameters: {total:,} in {len(flat)} arrays; first of each kind:")
    shown = set()
    for name, value in sorted(flat.items()):
        kind = name.replace("layers_0", "layers_N")
        if "layers_" in name and "layers_0" not in name:
            continue
        if kind not in shown:
            shown.add(kind)
            print(f"    {kind:<58} {str(tuple(value.shape)):<14} {value.dtype}")

    model = T5(config)
    inputs = _in_vocabulary(np.array([[37, 5, 2983, 21, 8, 1, 0, 0], [13, 9, 1, 0, 0, 0, 0, 0]], np.int32), config)
    targets = _in_vocabulary(np.array([[1176, 1], [2841, 1]], np.int32), config)
    logits = jax.jit(lambda p, x, y: model.apply({"params": p}, x, y))(params, inputs, shift_right(targets))
    scores = token_log_likelihoods(logits, targets).sum(axis=-1)  # score_targets, from the same forward pass
    decoded = greedy_decode(model, params, inputs, max_decode_length=6)
    print(f"[smoke] forward: inputs {inputs.shape} -> logits {tuple(logits.shape)} {logits.dtype}, "
          f"finite={bool(np.isfinite(np.asarray(logits)).all())}")
    print(f"[smoke] log-likelihood of targets {targets.tolist()}: "
          f"{', '.join(f'{float(x):.3f}' for x in np.asarray(scores))}")
    print(f"[smoke] greedy decode (6 steps): {np.asarray(decoded).tolist()}")
    if not np.isfinite(np.asarray(logits)).all():
        print("error: the forward pass gave non-finite logits; the checkpoint or its config is wrong", file=sys.stderr)
        return 2
    print("[smoke] ok")
    return 0


def _in_vocabulary(ids: np.ndarray, config) -> np.ndarray:
    """Sample word ids folded into the model's vocabulary (ByT5 has 384 rows), padding and EOS kept."""
    return np.where(ids > 2, 3 + (ids - 3) % (config.vocab_size - 3), ids).astype(np.int32)
