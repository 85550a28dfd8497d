"""xprompt-jax: prompt tuning, XPrompt and EPT on frozen T5 models, configured with gin files.

    xprompt-jax demo [--work_dir xprompt_demo]    # the built-in demo, no download
    xprompt-jax smoke [--checkpoint PATH] [--gin_file=sizes/SIZE.gin]
    xprompt-jax train --gin_file=models/t5_1_1.gin --gin_file=sizes/base.gin --gin_file=runs/prompt_tune.gin ...
    xprompt-jax evaluate --gin_file=... --gin_file=runs/eval.gin --gin.PROMPT_SOURCE="'/tmp/run'" ...
    xprompt-jax xprompt --gin_file=... --gin_file=runs/xprompt.gin --gin.MODEL_DIR="'/tmp/xprompt'" ...
    xprompt-jax ensemble --gin_file=... --gin_file=runs/ensemble.gin --gin.PROMPT_SOURCES="['/tmp/a', '/tmp/b']" ...
    xprompt-jax predict --gin_file=... --gin_file=runs/predict.gin --gin.PROMPT_SOURCE="'/tmp/run'" --gin.OUTPUT_FILE=...
    xprompt-jax transfer --gin_file=... --gin_file=runs/transfer.gin --gin.PROMPTS="{'task_a': '/tmp/a'}" ...
    xprompt-jax sweep --gin_file=runs/sweep_demo.gin --gin.SWEEP_DIR="'/tmp/sweep'" [--dry_run]
    xprompt-jax convert --checkpoint=.../model.ckpt-1000000 --out=/tmp/t5_orbax

The command table (``COMMANDS``) names each sub-command's help line; ``smoke``, ``demo`` and ``convert``
take flags of their own, the others are gin entry points (``gin_configurables.ENTRY_POINTS``) configured entirely by
``--gin_file`` and ``--gin.NAME=VALUE``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import gin

from xprompt_jax import distributed
from xprompt_jax.cli import help as command_help
from xprompt_jax.cli.gin_configurables import ENTRY_POINTS
from xprompt_jax.cli.gin_flags import GinError, parse_gin, split_gin_args
from xprompt_jax.errors import CheckpointError, ConfigError, DataError, disk_full_message, no_space_left
from xprompt_jax.stopping import Stopped

COMMANDS = {
    "smoke": "load a T5 checkpoint, print its summary and run it",
    "train": "prompt-tune a frozen T5 (gin: runs/prompt_tune.gin)",
    "evaluate": "score a saved prompt on a task split (gin: runs/eval.gin)",
    "xprompt": "prompt tuning, pruning and rewinding in one run (gin: runs/xprompt.gin)",
    "ensemble": "majority vote of N saved prompts in one batch (gin: runs/ensemble.gin)",
    "predict": "a saved prompt's predictions on a split, labelled or not, as JSON lines (gin: runs/predict.gin)",
    "transfer": "every saved prompt on every task: zero-shot transfer matrices and heatmaps (gin: runs/transfer.gin)",
    "sweep": "a grid of runs (methods x tasks x seeds x learning rates ...), resumable, and its table "
             "(gin: runs/sweep_*.gin)",
    "demo": "the built-in demo: pre-train a tiny T5, prompt-tune it, run XPrompt",
    "convert": "write a Mesh TensorFlow checkpoint (model.ckpt-N) as an Orbax one (needs TensorFlow, once)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xprompt-jax", description=__doc__.split("\n\n")[0],
                                     epilog="examples (each command's --help has more):\n" + __doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    for name, help_text in COMMANDS.items():
        epilog = (command_help.command_epilog(name) if name in command_help.RUN_FILES
                  else command_help.smoke_epilog() if name == "smoke" else None)
        command_parser = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        distributed.add_flags(command_parser)  # --coordinator_address, --num_processes, ... on every command
    sub.choices["smoke"].add_argument("--checkpoint", help="T5X checkpoint folder, T5X run folder or Hugging Face "
                                      "folder (local or gs://)")
    sub.choices["demo"].add_argument("--work_dir", default="xprompt_demo", help="where the demo writes everything")
    sub.choices["sweep"].add_argument("--dry_run", action="store_true", help="list the cells and what each would do")
    sub.choices["demo"].add_argument("--quick", action="store_true", help="shortened stages (as the test suite runs it)")
    from xprompt_jax.cli import convert  # its flags; TensorFlow is imported only when it runs
    convert.add_arguments(sub.choices["convert"])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    gin_files, gin_bindings, rest = split_gin_args(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    if args.command is None:
        parser.print_help()
        return 2
    try:  # several processes (TPU pod, GPU hosts, SLURM) join here, before JAX touches a device
        distributed.initialize_from_args(args)
    except distributed.DistributedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command in command_help.RUN_FILES and not gin_files:
        flag, runs = command_help.missing_run_file_advice(args.command)
        print(f"error: `xprompt-jax {args.command}` is configured by gin files and none was given: add {flag} "
              f"(and models/, sizes/, prompts/ files; see `xprompt-jax {args.command} --help`). Run files: {runs}",
              file=sys.stderr)
        return 2
    _compilation_cache_from_environment()
    try:
        gin.clear_config()  # one command, one configuration (matters when main() runs in-process)
        parse_gin(gin_files, gin_bindings)
    except GinError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "smoke":
        from xprompt_jax.cli.smoke import smoke  # jax and the readers: loaded only for the command that needs them
        return smoke(args, gin_given=bool(gin_files or gin_bindings))
    if args.command == "convert":
        from xprompt_jax.cli.convert import convert
        return convert(args)
    if args.command == "sweep":
        return _run_gin_entry("sweep", lambda: _sweep(args.dry_run))
    if args.command == "demo":
        from xprompt_jax.cli.demo import run_demo
        run_demo(args.work_dir, args.quick)
        return 0
    return _run_gin_entry(args.command)


def _sweep(dry_run: bool) -> int:
    from xprompt_jax.cli.sweep import sweep
    return sweep(dry_run)


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


def _run_gin_entry(command: str, entry=None) -> int:
    """Run ``train``/``evaluate``/``xprompt``/``ensemble`` (or ``entry``) as gin configured them.

    Bad settings exit 2 with one clear line; a preempted run (SIGTERM) saved its checkpoint and exits 0;
    Ctrl-C ends with one line (130), not a traceback.
    """
    try:
        (entry or ENTRY_POINTS[command])()
    except Stopped as stop:  # SIGTERM: a checkpoint was saved (or nothing half-made written); the same command resumes
        print(f"[{command}] {stop}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        print(f"[{command}] interrupted: checkpoints already written are kept; run the same command to resume",
              file=sys.stderr)
        return 130
    except (ConfigError, CheckpointError, DataError) as err:
        print(f"error: {_without_gin_context(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        full, path = no_space_left(err)
        if full:  # every write site leaves its previous file or nothing; the same command resumes
            print(f"error: {disk_full_message(path)}", file=sys.stderr)
            return 2
        if not isinstance(err, (ValueError, RuntimeError, TypeError)):
            raise
        text = str(err)
        if "Required bindings" in text or "required positional argument" in text or "gin" in type(err).__module__:
            first = _without_gin_context(err).splitlines()[0]
            print(f"error: gin: {first} (set it with --gin.NAME=VALUE, e.g. --gin.MODEL_DIR=\"'/tmp/run'\", and "
                  f"check that {command_help.RUN_FILES.get(command, 'a runs/ file')} is among the --gin_file flags)",
                  file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
