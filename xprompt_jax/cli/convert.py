"""``xprompt-jax convert``: a Mesh TensorFlow checkpoint (the original T5 release, ``model.ckpt-N``) read
once with TensorFlow and written as an Orbax checkpoint with T5X's names, which loads on TensorFlow-free
hosts like any T5X checkpoint (``--gin.CHECKPOINT='DIR'`` with the models/ and sizes/ it prints).
"""
from __future__ import annotations

import argparse
import os
import sys

from flax import traverse_util

from xprompt_jax import export
from xprompt_jax.errors import CheckpointError
from xprompt_jax.models.config import NAMED_CONFIGS, describe, variant_and_size
from xprompt_jax.t5_import import mesh_tf
from xprompt_jax.t5_import.loader import check_finite, check_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a model.ckpt-N prefix, or the folder holding it")
    parser.add_argument("--out", required=True, help="the Orbax checkpoint folder to write (must not exist)")


def convert(args: argparse.Namespace) -> int:
    out = os.path.abspath(args.out)
    try:
        if os.path.exists(out):
            raise CheckpointError(f"{out} already exists; choose a new --out folder")
        config, flat = mesh_tf.read_mesh_tf_checkpoint(args.checkpoint)
        check_params(flat, config, args.checkpoint)
        check_finite(flat, args.checkpoint)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    export.save_t5_checkpoint(out, traverse_util.unflatten_dict(flat, sep="/"))
    names = [name for name, named in NAMED_CONFIGS.items() if named == config]
    print(f"[convert] {args.checkpoint}: {describe(config)}")
    print(f"[convert] wrote {out} ({len(flat)} arrays, T5X names, Orbax)")
    if names:
        variant_size = [variant_and_size(n) for n in names]
        layering = " or ".join(f"--gin_file=models/{v}.gin --gin_file=sizes/{s}.gin" for v, s in variant_size)
        print(f"[convert] its shapes are {' = '.join(names)}: use it with {layering} --gin.CHECKPOINT=\"'{out}'\"")
    else:
        print(f"[convert] no named config has these shapes: pass its T5Config in Python, or bind "
              f"xprompt_jax.t5_config fields in gin, with --gin.CHECKPOINT=\"'{out}'\"")
    return 0
