"""Evaluation speed with length buckets against fixed-length evaluation, timed alternately in one run.

    python benchmarks/eval_speed.py [--task boolq --split validation --examples 640 --batch 32]
        [--size small --dtype float32 --prompt 100 --rounds 3] [--out eval.json]

Both sides run the run's own ``Evaluator`` (rank classification, the default for SuperGLUE's label
tasks) on the same examples with the same prompt and frozen T5 1.1 (random weights): one with
``buckets=None`` (every batch padded to the cache's input length, 512 by default), one with the run's
default buckets (``bucket_lengths(input_length)``; batches longest first, each cut to the smallest bucket
holding it). Each side is compiled and run once untimed (one program per bucket), then the two are timed
alternately (A, B, A, B, ...), so the shared machine's noise falls on both; the ratio of the median
seconds per evaluation is the speed-up. The predictions of both sides must agree, and they are checked.

``--examples N`` evaluates every k-th example of the split (N of them, the split's length distribution),
so a CPU measurement fits in minutes; ``--examples 0`` takes the whole split. The cache is read from (or
written to, with seqio and TensorFlow) ``--data_cache``, as ``compare_peft.py`` does.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="boolq", help="rte, wic, boolq, cb or copa")
    p.add_argument("--split", default="validation")
    p.add_argument("--examples", type=int, default=640, help="every k-th example, N in all; 0: the whole split")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", default="small")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--prompt", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--input_length", type=int, default=512)
    p.add_argument("--target_length", type=int, default=16)
    p.add_argument("--data_cache", default=os.path.join(ROOT, "benchmarks", "data_cache"))
    p.add_argument("--data_dir", default=os.path.join(SHARED, "data", "superglue"))
    p.add_argument("--vocab_path", default=os.path.join(SHARED, "fixtures", "t5_sentencepiece.model"))
    p.add_argument("--out", default=None, help="JSON file for the result")
    return p.parse_args(argv)


def every_kth(split, count: int):
    """A CachedSplit of ``count`` evenly spaced examples of ``split`` (all of them when count is 0)."""
    from xprompt_jax.data.cache import CachedSplit
    n = split.num_examples
    if count <= 0 or count >= n:
        return split
    rows = np.linspace(0, n - 1, count).round().astype(np.int64)
    features = {name: np.asarray(array[rows]) for name, array in split.features.items()}
    return CachedSplit(split.path, dict(split.meta, num_examples=count), features)


def main(argv=None):
    args = parse_args(argv)
    import jax

    from benchmarks.compare_peft import open_task, write_json
    from xprompt_jax import assembly, partitioning
    from xprompt_jax.data.task_cache import split_vocabulary
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.prompts.kinds import make_spec
    from xprompt_jax.run.config import DataConfig, EvalConfig

    full = open_task(args, args.task, args.split)
    split = every_kth(full, args.examples)
    vocabulary = split_vocabulary(full, args.vocab_path)
    cfg = t5_config(args.size, dtype=args.dtype, param_dtype=args.dtype)  # a bare size means T5 1.1
    frozen = assembly.random_frozen(cfg, partitioning.make_mesh(-1, 1))
    model = assembly.prompted_model(cfg, make_spec(length=args.prompt, init="sampled_vocabulary"), frozen)
    trainable, masks = model.init(jax.random.PRNGKey(0))
    evaluation = EvalConfig(mode="rank", batch_size=args.batch)
    sides = {name: assembly.evaluator_for(model, split, vocabulary, DataConfig(length_buckets=on), evaluation)
             for name, on in (("fixed", False), ("buckets", True))}
    buckets = sides["buckets"].buckets
    lengths = split.input_lengths()
    print(f"{args.task}:{args.split}, {split.num_examples} of {full.num_examples} examples (mean input "
          f"{lengths.mean():.0f} tokens, cache length {split.features['encoder_input_tokens'].shape[1]}), "
          f"batch {args.batch}, T5 1.1 {args.size} {args.dtype}, prompt {args.prompt}; buckets {list(buckets)}")

    def evaluate(side):
        return sides[side].predictions_text(trainable, frozen, masks)

    predictions, compile_s = {}, {}
    for side in sides:  # compile every bucket's program; untimed
        t0 = time.perf_counter()
        predictions[side] = evaluate(side)
        compile_s[side] = time.perf_counter() - t0
    agree = float(np.mean([a == b for a, b in zip(predictions["fixed"], predictions["buckets"])]))
    seconds = {side: [] for side in sides}
    for r in range(args.rounds):
        for side in sides:
            t0 = time.perf_counter()
            evaluate(side)
            seconds[side].append(time.perf_counter() - t0)
        print(f"round {r + 1}: fixed {seconds['fixed'][-1]:.1f} s, buckets {seconds['buckets'][-1]:.1f} s", flush=True)
    median = {side: statistics.median(v) for side, v in seconds.items()}
    speedup = median["fixed"] / median["buckets"]
    print(f"\n{'side':<10}{'s/eval (median)':>16}{'examples/s':>12}{'first run s':>13}")
    for side in sides:
        print(f"{side:<10}{median[side]:>16.2f}{split.num_examples / median[side]:>12.1f}{compile_s[side]:>13.1f}")
    print(f"speed-up of buckets over fixed length: {speedup:.2f}x; predictions agree on {agree * 100:.1f}%")
    if agree < 0.999:
        print("WARNING: the two sides' predictions differ beyond ties in float rounding", file=sys.stderr)
    write_json(args, {"args": vars(args), "num_examples": split.num_examples, "buckets": list(buckets),
                      "seconds": seconds, "median_s": median, "compile_and_first_s": compile_s,
                      "speedup": speedup, "predictions_agree": agree, "jax_device": str(jax.devices()[0])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
