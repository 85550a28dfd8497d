"""The ``xprompt-jax`` command.

    xprompt-jax smoke [--checkpoint PATH] [--gin_file=F ...] [--gin.NAME=VALUE ...]
    xprompt-jax train --gin_file=models/t5_1_1.gin --gin_file=sizes/base.gin \
        --gin_file=prompts/sampled_vocabulary.gin --gin_file=runs/prompt_tune.gin --gin.MODEL_DIR="'/tmp/run'" ...
    xprompt-jax evaluate --gin_file=... --gin_file=runs/eval.gin --gin.PROMPT_SOURCE="'/tmp/run'" ...
    xprompt-jax demo [--work_dir xprompt_demo]    # the built-in demo, no download
    xprompt-jax xprompt --gin_file=... --gin_file=runs/xprompt.gin --gin.MODEL_DIR="'/tmp/xprompt'" ...
    xprompt-jax ensemble --gin_file=... --gin_file=runs/ensemble.gin --gin.PROMPT_SOURCES="['/tmp/a', '/tmp/b']" ...

``smoke`` loads a T5 checkpoint (default: the real T5X test checkpoint in
``../shared/fixtures/t5x_t5_1_1_tiny/checkpoint_3``), prints the model's summary, runs a forward pass,
scores a target and decodes greedily. Training, XPrompt and the demo arrive as further sub-commands.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SMOKE_CHECKPOINT = os.path.join(REPO_ROOT, "..", "shared", "fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")
DEFAULT_SMOKE_CONFIG = "t5_1_1_prompt_tuning_test"


def _smoke(args: argparse.Namespace, gin_given: bool) -> int:
    import jax
    import numpy as np
    from flax import traverse_util

    from xprompt_jax.errors import CheckpointError
    from xprompt_jax.gin_configurables import t5_config
    from xprompt_jax.models.config import describe
    from xprompt_jax.models.decoding import (
        greedy_decode,
        shift_right,
        token_log_likelihoods,
    )
    from xprompt_jax.models.t5 import T5
    from xprompt_jax.t5_import import load_t5_checkpoint

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
        config, params = load_t5_checkpoint(path, config)
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
    inputs = np.array([[37, 5, 2983, 21, 8, 1, 0, 0], [13, 9, 1, 0, 0, 0, 0, 0]], np.int32)
    targets = np.array([[1176, 1], [2841, 1]], np.int32)
    logits = jax.jit(lambda p, x, y: model.apply({"params": p}, x, y))(params, inputs, shift_right(targets))
    scores = token_log_likelihoods(logits, targets).sum(axis=-1)  # score_targets, from the same forward pass
    decoded = greedy_decode(model, params, inputs, max_decode_length=6)
    print(f"[smoke] forward: inputs {inputs.shape} -> logits {tuple(logits.shape)} {logits.dtype}, "
          f"finite={bool(np.isfinite(np.asarray(logits)).all())}")
    print(f"[smoke] log-likelihood of targets {targets.tolist()}: "
          f"{', '.join(f'{float(x):.3f}' for x in np.asarray(scores))}")
    print(f"[smoke] greedy decode (6 steps): {np.asarray(decoded).tolist()}")
    print("[smoke] ok")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    import gin

    from xprompt_jax.gin_flags import GinError, parse_gin, split_gin_args

    argv = list(sys.argv[1:] if argv is None else argv)
    gin_files, gin_bindings, rest = split_gin_args(argv)
    parser = argparse.ArgumentParser(prog="xprompt-jax", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    smoke = sub.add_parser("smoke", help="load a T5 checkpoint, print its summary and run it")
    smoke.add_argument("--checkpoint", help="T5X checkpoint folder, T5X run folder or Hugging Face folder "
                       "(local or gs://)")
    sub.add_parser("train", help="prompt-tune a frozen T5 (gin: runs/prompt_tune.gin)")
    sub.add_parser("evaluate", help="score a saved prompt on a task split (gin: runs/eval.gin)")
    sub.add_parser("xprompt", help="prompt tuning, pruning and rewinding in one run (gin: runs/xprompt.gin)")
    sub.add_parser("ensemble", help="majority vote of N saved prompts in one batch (gin: runs/ensemble.gin)")
    demo = sub.add_parser("demo", help="the built-in demo: pre-train a tiny T5, prompt-tune it, run XPrompt")
    demo.add_argument("--work_dir", default="xprompt_demo", help="where the demo writes everything")
    demo.add_argument("--quick", action="store_true", help="shortened stages (as the test suite runs it)")
    from xprompt_jax import distributed
    for command_parser in sub.choices.values():  # --coordinator_address, --num_processes, ... on every command
        distributed.add_flags(command_parser)
    args = parser.parse_args(rest)
    if args.command is None:
        parser.print_help()
        return 2
    try:  # several processes (TPU pod, GPU hosts, SLURM) join here, before JAX touches a device
        distributed.initialize_from_args(args)
    except distributed.DistributedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _compilation_cache_from_environment()
    try:
        gin.clear_config()  # one command, one configuration (matters when main() runs in-process)
        parse_gin(gin_files, gin_bindings)
    except GinError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "smoke":
        return _smoke(args, gin_given=bool(gin_files or gin_bindings))
    if args.command == "demo":
        from xprompt_jax.demo import run_demo
        run_demo(args.work_dir, args.quick)
        return 0
    return _run_gin_entry(args.command)


DEFAULT_COMPILATION_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "xprompt_jax", "xla")


def _compilation_cache_from_environment():
    """Keep compiled XLA programs across runs and stages: restarts, sweeps, XPrompt's stages (each stage
    builds its own step; with the cache the second compilation of the same program is a disk read).

    ``XPROMPT_COMPILATION_CACHE=DIR`` chooses the folder (default ``~/.cache/xprompt_jax/xla``);
    ``XPROMPT_COMPILATION_CACHE=off`` turns it off.
    """
    cache = os.environ.get("XPROMPT_COMPILATION_CACHE", DEFAULT_COMPILATION_CACHE)
    if cache and cache != "off":
        import jax
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _without_gin_context(err: Exception) -> str:
    """The error's own message: gin appends an 'In call to configurable ...' line to errors it passes on."""
    return str(err).split("\n  In call to configurable")[0]


def _run_gin_entry(command: str) -> int:
    """Run ``train``/``evaluate``/``xprompt``/``ensemble`` as gin configured them.

    Bad settings exit 2 with one clear line; a preempted run (SIGTERM) saved its checkpoint and exits 0;
    Ctrl-C ends with one line (130), not a traceback.
    """
    from xprompt_jax.errors import CheckpointError, ConfigError, DataError
    from xprompt_jax.gin_configurables import ENTRY_POINTS
    from xprompt_jax.run.preemption import RunPreempted
    try:
        ENTRY_POINTS[command]()
    except RunPreempted as stop:
        print(f"[{command}] {stop}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        print(f"[{command}] interrupted: checkpoints already written are kept; run the same command to resume",
              file=sys.stderr)
        return 130
    except (ConfigError, CheckpointError, DataError) as err:
        print(f"error: {_without_gin_context(err)}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, TypeError) as err:
        text = str(err)
        if "Required bindings" in text or "required positional argument" in text or "gin" in type(err).__module__:
            print(f"error: gin: {_without_gin_context(err)} (set it with --gin.NAME=VALUE, e.g. "
                  "--gin.MODEL_DIR=\"'/tmp/run'\")", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
