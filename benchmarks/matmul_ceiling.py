"""The measured matrix-product ceiling of the device, the denominator of "percent of the bf16 ceiling".

    python benchmarks/matmul_ceiling.py [--size 8192 --dtype bfloat16 --repeats 10] [--out ceiling.json]

Times ``--repeats`` jitted ``[size, size] x [size, size]`` products in JAX on random data after a warm-up
(one program, the operands already on the device) and prints TFLOP/s (2 * size^3 per product). The
training step's model TFLOP/s (``compare_peft.py --mode fixed`` prints it) over this number is the
fraction of the ceiling the step reaches.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    a, b = (jax.random.normal(k, (args.size, args.size), args.dtype) for k in jax.random.split(jax.random.PRNGKey(0)))
    product = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(product(a, b))
    jax.block_until_ready(product(a, b))
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        out = product(a, b)
    jax.block_until_ready(out)
    seconds = (time.perf_counter() - t0) / args.repeats
    tflops = 2 * args.size ** 3 / seconds / 1e12
    device = jax.devices()[0]
    print(f"{args.size}^3 {args.dtype} matrix product on {device.device_kind}: {seconds * 1e3:.2f} ms, "
          f"{tflops:.1f} TFLOP/s")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"size": args.size, "dtype": args.dtype, "seconds": seconds, "tflop_per_s": tflops,
                       "device": device.device_kind}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
