"""Two versions of the fixed-shape train step timed alternately in one run (A, B, A, B...).

    python benchmarks/ab_step.py --a /path/to/old/checkout --b . [--b_xla_flags "..."] \
        [--rounds 6 --steps 2] [--size small --batch 8 --inputs 256 --prompt 100 --dtype float32]

Each side is a worker process with its own ``PYTHONPATH`` (and ``XLA_FLAGS``): it builds and compiles the
step ``benchmarks/train_step.py`` times, then runs ``--steps`` steps each time it is told to, so that
machine noise (a shared CPU) falls on both sides. Prints both losses (they must agree: a change of speed
must not change numerics), the median seconds per step of each side and the ratio B/A.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKER_ARGS = ("size", "batch", "inputs", "targets", "prompt", "dtype")


def build(args):
    """The jitted step of ``benchmarks/train_step.py`` and its arguments: ``(step, state, frozen, batch)``."""
    import jax
    import numpy as np

    from xprompt_jax import assembly, partitioning, train_step
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.optimizers import make_optimizer
    from xprompt_jax.prompts.kinds import make_spec

    config = t5_config(variant="t5_1_1", size=args.size, dtype=args.dtype, param_dtype=args.dtype)
    mesh = partitioning.make_mesh(-1, 1)
    frozen = assembly.random_frozen(config, mesh)
    model = assembly.prompted_model(config, make_spec(length=args.prompt, init="uniform", pieces=1), frozen)
    opt = make_optimizer("adafactor", learning_rate=0.3)
    state = train_step.create_state(model, opt, jax.random.PRNGKey(0))
    step = assembly.compile_step(model, opt, state, mesh)
    state = step.place_state(state)
    rng = np.random.RandomState(0)
    targets = rng.randint(3, 32000, (args.batch, args.targets)).astype(np.int32)
    batch = partitioning.global_batch({
        "encoder_input_tokens": rng.randint(3, 32000, (args.batch, args.inputs)).astype(np.int32),
        "decoder_target_tokens": targets,
        "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
        "decoder_loss_weights": np.ones_like(targets)}, mesh)
    return step, state, frozen, batch


def worker(args):
    import jax

    step, state, frozen, batch = build(args)
    state, metrics = step(state, frozen, batch)  # the state is donated: carry it on
    print(json.dumps({"ready": True, "loss": float(metrics["loss"])}), flush=True)
    for line in sys.stdin:
        n = int(line)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            state, metrics = step(state, frozen, batch)
        jax.block_until_ready(metrics)
        print(json.dumps({"seconds": (time.perf_counter() - t0) / n, "cpu": (time.process_time() - c0) / n}),
              flush=True)


def start(root: str, xla_flags: str, args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(root))
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    cmd = [sys.executable, os.path.abspath(__file__), "--worker"]
    for name in WORKER_ARGS:
        cmd += [f"--{name}", str(getattr(args, name))]
    return subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.abspath(root))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--a", default=".")
    parser.add_argument("--b", default=".")
    parser.add_argument("--a_xla_flags", default="")
    parser.add_argument("--b_xla_flags", default="")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=100)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    sides = {}
    for name, root, flags in (("A", args.a, args.a_xla_flags), ("B", args.b, args.b_xla_flags)):
        proc = start(root, flags, args)  # one at a time: compiles do not overlap
        sides[name] = (proc, json.loads(proc.stdout.readline()))
    times, cpu = {"A": [], "B": []}, {"A": [], "B": []}
    for _ in range(args.rounds):
        for name, (proc, _) in sides.items():
            proc.stdin.write(f"{args.steps}\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            times[name].append(reply["seconds"])
            cpu[name].append(reply["cpu"])
    for proc, _ in sides.values():
        proc.stdin.close()
        proc.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for name, root, flags in (("A", args.a, args.a_xla_flags), ("B", args.b, args.b_xla_flags)):
        print(f"{name}: {root} XLA_FLAGS={flags!r} loss {sides[name][1]['loss']:.6f} "
              f"median {med[name]:.3f} s/step (cpu {med_cpu[name]:.3f} s)  all {[round(t, 3) for t in times[name]]}")
    print(f"B/A cpu-time ratio: {med_cpu['B'] / med_cpu['A']:.3f}")
    print(f"B/A time ratio: {med['B'] / med['A']:.3f}  (per-round ratios "
          f"{[round(b / a, 3) for a, b in zip(times['A'], times['B'])]})")


if __name__ == "__main__":
    main()
