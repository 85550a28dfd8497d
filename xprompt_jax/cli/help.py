"""What ``xprompt-jax COMMAND --help`` teaches: a working example, the gin layering, and the run file's
macros with their defaults, read from the gin files themselves so the help stays true.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

from xprompt_jax.cli.gin_flags import GIN_DIR

# The run file each gin command reads, and the arguments its example adds to the layering.
RUN_FILES = {"train": "runs/prompt_tune.gin", "evaluate": "runs/eval.gin", "xprompt": "runs/xprompt.gin",
             "ensemble": "runs/ensemble.gin", "predict": "runs/predict.gin", "sweep": "runs/sweep_demo.gin",
             "transfer": "runs/transfer.gin"}
LAYERING = ("Runs compose in T5X's order, each file overriding the ones before it, then the flags:\n"
            "  --gin_file=models/<variant>.gin  architecture family    (models/: {models})\n"
            "  --gin_file=sizes/<size>.gin      its size               (sizes/: {sizes})\n"
            "  --gin_file=prompts/<init>.gin    prompt initialisation  (prompts/: {prompts})\n"
            "  --gin_file=runs/<run>.gin        the run and its macros (runs/: {runs})\n"
            "  --gin.NAME=VALUE                 a run file's macro or any binding, e.g. --gin.BATCH_SIZE=8,\n"
            "                                   strings in two quotes: --gin.MODEL_DIR=\"'/tmp/run'\"\n"
            "Gin files are looked up as given, then in {gin_dir}.")
_MACRO = re.compile(r"^([A-Z_][A-Z0-9_]*)\s*=\s*(.+?)\s*$")
_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]")


def gin_files(folder: str) -> List[str]:
    """The gin files shipped in ``gin/<folder>/``, as ``--gin_file`` takes them."""
    path = os.path.join(GIN_DIR, folder)
    return sorted(f"{folder}/{name}" for name in os.listdir(path) if name.endswith(".gin"))


def run_file_macros(run_file: str) -> Dict[str, str]:
    """``{MACRO: default}`` a run file defines, its includes first (a later definition wins), in order."""
    macros: Dict[str, str] = {}
    path = run_file if os.path.exists(run_file) else os.path.join(GIN_DIR, run_file)
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = line.split("#", 1)[0].rstrip()
            included = _INCLUDE.match(text)
            if included:
                macros.update(run_file_macros(included.group(1)))
                continue
            match = _MACRO.match(text)
            if match:
                macros[match.group(1)] = "(required)" if match.group(2) == "%gin.REQUIRED" else match.group(2)
    return macros


def run_file_example(run_file: str) -> Optional[str]:
    """The example command in the run file's header comment (``#   xprompt-jax ...`` and its continuations)."""
    lines: List[str] = []
    with open(os.path.join(GIN_DIR, run_file), encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            body = line[1:].strip()
            if not lines and body.startswith("xprompt-jax"):
                lines.append(body)
            elif lines and lines[-1].endswith("\\"):
                lines.append("    " + body)
            elif lines:
                break
    return "\n  ".join(lines) or None


def layering() -> str:
    def names(folder):
        return ", ".join(os.path.basename(p)[:-4] for p in gin_files(folder))
    return LAYERING.format(models=names("models"), sizes=names("sizes"), prompts=names("prompts"),
                           runs=names("runs"), gin_dir=GIN_DIR)


def command_epilog(command: str) -> str:
    """The help text after a gin command's flags: example, layering, macros and their defaults."""
    run_file = RUN_FILES[command]
    macros = run_file_macros(run_file)
    width = max(len(name) for name in macros)
    parts = []
    example = run_file_example(run_file)
    if example:
        parts.append("example:\n  " + example)
    parts.append(layering())
    parts.append(f"macros of {run_file} (--gin.NAME=VALUE), with their defaults:\n" +
                 "\n".join(f"  {name:<{width}}  {value}" for name, value in macros.items()))
    return "\n\n".join(parts)


def smoke_epilog() -> str:
    return ("example:\n"
            "  xprompt-jax smoke --checkpoint=/path/t5x/checkpoint_1100000 --gin_file=models/t5_1_1.gin "
            "--gin_file=sizes/base.gin\n"
            "  xprompt-jax smoke --checkpoint=/path/hf_t5_folder\n\n"
            "A T5X checkpoint stores no architecture: give its size with --gin_file=sizes/<size>.gin (and\n"
            "--gin_file=models/t5_1_0.gin for T5 1.0). When exactly one known size matches its shapes, smoke\n"
            "uses it and says so. A Hugging Face folder carries its own config.json.\n\n" + layering())


def missing_run_file_advice(command: str) -> Tuple[str, str]:
    """(the flag to add, the run files that exist) for a gin command given no run file."""
    return f"--gin_file={RUN_FILES[command]}", ", ".join(gin_files("runs"))
