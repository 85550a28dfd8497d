"""Multi-task serving throughput: requests of several tasks in mixed batches against per-task batches.

    python benchmarks/multitask_serving.py [--size small --tasks 3 --requests 96 --batch 32 --inputs 128]
        [--prompt 100 --rounds 3] [--out serving.json]

A queue of ``--requests`` requests, each for one of ``--tasks`` tasks (shares 50/30/20 for three), is
answered by rank classification over each task's two labels (T5 1.1 of ``--size``, random weights; each
task its own random prompt). Mixed: batches of ``--batch`` requests in arrival order, each routed to its
task's prompt inside the batch (``xprompt_jax.multitask``). Per task: each task's requests batched alone
with the ordinary single-prompt model, the last batch of each task padded to the batch size (one compiled
shape, as a server keeps). Both sides are compiled first, then timed alternately (A, B, A, B ...), and
their predictions are checked to agree. Prints requests/s of each and the ratio.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _queue(args, rng):
    shares = np.array([0.5, 0.3, 0.2] if args.tasks == 3 else [1.0] * args.tasks)
    task_ids = rng.choice(args.tasks, size=args.requests, p=shares / shares.sum()).astype(np.int32)
    tokens = rng.randint(3, 32000, (args.requests, args.inputs)).astype(np.int32)
    lengths = rng.randint(args.inputs // 4, args.inputs + 1, args.requests)
    tokens[np.arange(args.inputs)[None, :] >= lengths[:, None]] = 0
    return tokens, task_ids


def _batches(rows: np.ndarray, size: int):
    """Row indices in batches of ``size``, the last one padded by repeating its first row (dropped later)."""
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        yield chunk, np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk))])


def build(args):
    import jax
    import jax.numpy as jnp

    from xprompt_jax import assembly, multitask, partitioning
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.prompted import build_prompted_t5
    from xprompt_jax.prompts.kinds import make_spec
    from xprompt_jax.run.evaluator import rank_scores

    config = t5_config(args.size, dtype=args.dtype, param_dtype=args.dtype)
    frozen = assembly.random_frozen(config, partitioning.make_mesh(-1, 1))
    rng = np.random.RandomState(0)
    prompts = [rng.normal(scale=5.0, size=(args.prompt, config.emb_dim)).astype(np.float32) for _ in range(args.tasks)]
    labels = [np.array([[3 + 2 * t, 1], [4 + 2 * t, 1]], np.int32) for t in range(args.tasks)]
    mixed_model = multitask.MultiTaskPrompts(config, prompts)
    trainable, _ = mixed_model.init()
    table, valid = multitask.task_label_table(labels)
    mixed_fn = jax.jit(lambda x, t: multitask.mixed_rank_predictions(mixed_model, trainable, frozen, x, t, table, valid))
    def single_task(prompt, label_ids):
        """The ordinary one-prompt model with ``prompt`` as its value, rank-classifying over ``label_ids``."""
        model = build_prompted_t5(config, make_spec(length=args.prompt, init="uniform"), frozen)
        params, masks = model.init(jax.random.PRNGKey(0))
        params = jax.tree.map(lambda _: jnp.asarray(prompt), params)
        label_ids = jnp.asarray(label_ids)
        return jax.jit(lambda x: rank_scores(model, params, frozen, masks, x, label_ids).argmax(-1))

    return mixed_fn, [single_task(prompt, label_ids) for prompt, label_ids in zip(prompts, labels)]


def serve_mixed(mixed_fn, tokens, task_ids, batch):
    out = np.zeros(len(tokens), np.int64)
    for rows, padded in _batches(np.arange(len(tokens)), batch):
        out[rows] = np.asarray(mixed_fn(tokens[padded], task_ids[padded]))[:len(rows)]
    return out


def serve_per_task(single, tokens, task_ids, batch):
    out = np.zeros(len(tokens), np.int64)
    for task, fn in enumerate(single):
        for rows, padded in _batches(np.flatnonzero(task_ids == task), batch):
            out[rows] = np.asarray(fn(tokens[padded]))[:len(rows)]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="small")
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--requests", type=int, default=96)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--inputs", type=int, default=128)
    p.add_argument("--prompt", type=int, default=100)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    tokens, task_ids = _queue(args, np.random.RandomState(1))
    mixed_fn, single = build(args)
    sides = {"mixed": lambda: serve_mixed(mixed_fn, tokens, task_ids, args.batch),
             "per_task": lambda: serve_per_task(single, tokens, task_ids, args.batch)}
    answers = {name: side() for name, side in sides.items()}  # compiles every program; untimed
    agree = float(np.mean(answers["mixed"] == answers["per_task"]))
    seconds = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, side in sides.items():
            t0 = time.perf_counter()
            side()
            seconds[name].append(time.perf_counter() - t0)
    rate = {name: args.requests / statistics.median(s) for name, s in seconds.items()}
    counts = np.bincount(task_ids, minlength=args.tasks).tolist()
    batches = {"mixed": math.ceil(args.requests / args.batch), "per_task": sum(math.ceil(c / args.batch) for c in counts)}
    print(f"T5 1.1 {args.size} ({args.dtype}), {args.tasks} tasks ({counts} requests), batch {args.batch}, "
          f"inputs {args.inputs} + prompt {args.prompt}; rank classification")
    for name in sides:
        print(f"  {name:<9} {batches[name]} batches  {rate[name]:8.2f} requests/s  (median of {args.rounds})")
    print(f"  mixed / per-task: {rate['mixed'] / rate['per_task']:.2f}x; predictions agree on {agree * 100:.1f}%")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "seconds": seconds, "requests_per_s": rate, "batches": batches,
                       "task_counts": counts, "agree": agree}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
