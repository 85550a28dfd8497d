"""Refuse a ``--gin.MACRO=value`` that no loaded gin file reads.

gin accepts a binding of any macro name, read or not, so ``--gin.BATCH_SIZ=4`` used to train with the
default batch and say nothing. A macro binding (a name without a dot) takes effect only where some
file, or another binding, says ``%NAME``; this module collects those references from the files as
loaded (following their ``include``s) and names the closest macro when the user's is not among them.
"""
from __future__ import annotations

import difflib
import os
import re
from typing import Iterable, List, Sequence, Set

from xprompt_jax.errors import ConfigError

_REFERENCE = re.compile(r"%([A-Za-z_][\w./]*)")
_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.M)
_MACRO_BINDING = re.compile(r"^\s*([A-Za-z_]\w*)\s*=")


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _resolve(path: str, search_dirs: Sequence[str]) -> str:
    for candidate in [path] + [os.path.join(d, path) for d in search_dirs]:
        if os.path.exists(candidate):
            return candidate
    return ""


def loaded_texts(files: Iterable[str], search_dirs: Sequence[str]) -> List[str]:
    """The texts of ``files`` and of everything they include, each once."""
    texts, seen, pending = [], set(), list(files)
    while pending:
        path = _resolve(pending.pop(), search_dirs)
        if not path or os.path.abspath(path) in seen:
            continue
        seen.add(os.path.abspath(path))
        with open(path, encoding="utf-8") as f:
            text = _strip_comments(f.read())
        texts.append(text)
        pending.extend(_INCLUDE.findall(text))
    return texts


def referenced_macros(texts: Iterable[str]) -> Set[str]:
    return {name for text in texts for name in _REFERENCE.findall(text)}


def files_reading(macro: str, search_dirs: Sequence[str]) -> List[str]:
    """The shipped gin files (``prompts/x.gin`` ...) that read ``%macro``."""
    found = []
    for folder in search_dirs:
        for root, _, names in sorted(os.walk(folder)):
            for name in sorted(names):
                if name.endswith(".gin"):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as f:
                        if macro in referenced_macros([_strip_comments(f.read())]):
                            found.append(os.path.relpath(path, folder))
    return found


def check_macro_bindings(files: Sequence[str], bindings: Sequence[str], search_dirs: Sequence[str]) -> None:
    """Raise ConfigError for the first macro binding in ``bindings`` that nothing reads."""
    texts = loaded_texts(files, search_dirs) + [_strip_comments(b) for b in bindings]
    used = referenced_macros(texts)
    for binding in bindings:
        match = _MACRO_BINDING.match(binding)
        if not match or match.group(1) in used:
            continue
        name = match.group(1)
        if not used:
            runs = ", ".join(sorted(f"runs/{n}" for n in os.listdir(os.path.join(search_dirs[0], "runs"))
                                    if n.endswith(".gin"))) if search_dirs else ""
            raise ConfigError(f"--gin.{name} is not read by any loaded gin file, so it would have no effect: no run "
                              f"file is loaded; add one with --gin_file (e.g. --gin_file=runs/prompt_tune.gin for "
                              f"train; run files: {runs})")
        shipped = files_reading(name, search_dirs)
        if shipped:  # a real macro of a file that is not loaded: say which files read it
            raise ConfigError(f"--gin.{name} is not read by any loaded gin file, so it would have no effect; "
                              f"{', '.join(shipped)} read it: add the one you mean with --gin_file")
        close = difflib.get_close_matches(name, sorted(used), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"--gin.{name} is not read by any loaded gin file, so it would have no effect; "
                          f"{hint}the macros these files read: {', '.join(sorted(used))}")
