"""Ahead-of-time compile time of the prompt-tuning train step: scanned layers against unrolled ones.

    python benchmarks/compile_time.py --sizes xl,xxl [--batch 32 --inputs 512 --targets 8 --prompt 100]
        [--remat full] [--json out.json]

Nothing is allocated: the frozen weights, the train state and the batch are abstract shapes
(``jax.ShapeDtypeStruct``), and the step is ``jit(...).lower(...).compile()``'d for the local backend, as a
run's first step would compile it. For each size the unrolled and the scanned model (``T5Config.scan_layers``,
T5X's ``scan_layers``) are compiled in turn, and the script prints the seconds to lower and to compile
and the ratio. On a CPU host the compile is XLA:CPU's, the work a GPU or TPU host's compiler does in the
same shape (one layer body against 24 copies).
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np


def abstract_batch(batch: int, inputs: int, targets: int) -> dict:
    spec = jax.ShapeDtypeStruct
    return {"encoder_input_tokens": spec((batch, inputs), np.int32),
            "decoder_target_tokens": spec((batch, targets), np.int32),
            "decoder_input_tokens": spec((batch, targets), np.int32),
            "decoder_loss_weights": spec((batch, targets), np.int32)}


def compile_seconds(size: str, scan: bool, args) -> dict:
    """(lower, compile) seconds of the train step of T5 1.1 ``size``, nothing allocated."""
    from xprompt_jax import assembly, partitioning, train_step
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.models.t5 import param_shapes
    from xprompt_jax.optimizers import make_optimizer
    from xprompt_jax.prompts.kinds import make_spec

    config = t5_config(size, dtype=args.dtype, param_dtype=args.frozen_dtype, remat=args.remat, scan_layers=scan)
    mesh = partitioning.make_mesh(-1, 1)
    frozen = param_shapes(config)
    model = assembly.prompted_model(config, make_spec(length=args.prompt, init="uniform", pieces=1), frozen)
    optimizer = make_optimizer("adafactor", learning_rate=0.3)
    state = jax.eval_shape(lambda: train_step.create_state(model, optimizer, jax.random.PRNGKey(0)))
    step = assembly.compile_step(model, optimizer, state, mesh)
    t0 = time.perf_counter()
    lowered = step.lower(state, frozen, abstract_batch(args.batch, args.inputs, args.targets))
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lowered.compile()
    compile_s = time.perf_counter() - t0
    return {"size": size, "scan_layers": scan, "lower_s": round(lower_s, 2), "compile_s": round(compile_s, 2),
            "total_s": round(lower_s + compile_s, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="xl,xxl")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--inputs", type=int, default=512)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=100)
    parser.add_argument("--dtype", default="bfloat16", help="activation dtype (a GPU/TPU run's default)")
    parser.add_argument("--frozen_dtype", default="bfloat16")
    parser.add_argument("--remat", default="full", help="xl and xxl runs use remat at batch 32")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}); batch {args.batch}, inputs "
          f"{args.inputs} + prompt {args.prompt}, targets {args.targets}, {args.dtype}, remat {args.remat}", flush=True)
    rows = []
    for size in args.sizes.split(","):
        for scan in (True, False):
            row = compile_seconds(size, scan, args)
            rows.append(row)
            print(f"  {size:>5} {'scanned' if scan else 'unrolled':>8}: lower {row['lower_s']:7.1f} s, compile "
                  f"{row['compile_s']:7.1f} s, total {row['total_s']:7.1f} s", flush=True)
        unrolled, scanned = rows[-1], rows[-2]
        print(f"  {size:>5} unrolled / scanned: {unrolled['total_s'] / scanned['total_s']:.1f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
