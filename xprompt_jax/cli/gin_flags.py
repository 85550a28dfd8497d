"""T5X-style gin flags: ``--gin_file=F`` (repeatable, applied in order) then ``--gin.NAME=VALUE`` overrides.

A gin file that is not found as given is looked up in the package's ``xprompt_jax/gin/`` folder, so
``--gin_file=sizes/base.gin`` works from any directory.
"""
from __future__ import annotations

import logging
import os
import sys
import tokenize
from typing import List, Sequence, Tuple

import gin

from xprompt_jax.cli import gin_configurables  # registers every configurable gin files name
from xprompt_jax.cli.gin_checks import check_macro_bindings, loaded_texts
from xprompt_jax.errors import ConfigError

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")  # shipped in the package


def split_gin_args(argv: Sequence[str]) -> Tuple[List[str], List[str], List[str]]:
    """Separate ``--gin_file``/``--gin.X=`` arguments from the rest; returns (files, bindings, rest)."""
    files, bindings, rest = [], [], []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--gin_file="):
            files.append(arg.split("=", 1)[1])
        elif arg == "--gin_file" and i + 1 < len(args):
            files.append(args[i + 1])
            i += 1
        elif arg.startswith("--gin."):
            name_value = arg[len("--gin."):]
            if "=" not in name_value:
                raise SystemExit(f"error: {arg} needs a value: --gin.NAME=VALUE")
            name, value = name_value.split("=", 1)
            bindings.append(f"{name} = {value}")
        else:
            rest.append(arg)
        i += 1
    return files, bindings, rest


def resolve_gin_file(path: str) -> str:
    """A gin file as given, or relative to the repository's ``gin/`` folder."""
    if os.path.exists(path):
        return path
    candidate = os.path.join(GIN_DIR, path)
    if os.path.exists(candidate):
        return candidate
    raise GinError(f"gin file {path} not found (looked in the working directory and in {GIN_DIR})")


def _drop_gin_resource_probe(record) -> bool:
    """gin tries every include as a Python package resource first and logs an ERROR when it is not one
    (``Path not found: runs/prompt_tune.gin``) before finding the file on its search path: noise."""
    return not (record.module == "resource_reader" and record.getMessage().startswith("Path not found"))


class GinError(ValueError):
    """A gin file or binding that cannot be applied; the message names it."""


_LAST_FILES: List[str] = []


def parse_gin(files: Sequence[str], bindings: Sequence[str]) -> None:
    """Apply gin files in order, then the bindings. Unknown files, names or fields raise ``GinError``."""
    root = logging.getLogger()
    if _drop_gin_resource_probe not in root.filters:
        root.addFilter(_drop_gin_resource_probe)
    gin.add_config_file_search_path(GIN_DIR)
    resolved = [resolve_gin_file(path) for path in files]
    global _LAST_FILES
    # Bindings layered on an earlier call's files (parse_gin(files, ...), then parse_gin([], more)) are
    # checked against those files.
    _LAST_FILES = resolved or _LAST_FILES
    try:  # before gin applies anything: a misspelt macro or a replaced name would be lost silently
        gin_configurables.check_renamed(loaded_texts(resolved, [GIN_DIR]) + list(bindings))
        check_macro_bindings(_LAST_FILES, bindings, [GIN_DIR])
    except ConfigError as err:
        raise GinError(str(err)) from None
    for binding in bindings:  # one at a time first, so a malformed one is named (gin's tokenizer does not)
        _check_binding_syntax(binding)
    try:
        gin.parse_config_files_and_bindings(resolved, list(bindings), finalize_config=False)
    except (ValueError, KeyError, TypeError, SyntaxError, tokenize.TokenError) as err:
        raise GinError(f"gin: {err}") from err
    _apply_task_bindings()


class _SyntaxOnly(gin.config_parser.ParserDelegate):
    """Reads a value's syntax only: references (``@name``, ``%MACRO``) are checked later, by gin itself."""

    def configurable_reference(self, scoped_configurable_name, evaluate):
        return None

    def macro(self, macro_name):
        return None


def _check_binding_syntax(binding: str) -> None:
    """A ``NAME = VALUE`` whose value gin cannot read (``--gin.BATCH_SIZE=[8``) is one line naming it."""
    name, _, value = binding.partition("=")
    try:
        gin.config_parser.ConfigParser(value.strip(), _SyntaxOnly()).parse_value()
    except (SyntaxError, ValueError, tokenize.TokenError) as err:
        detail = err.args[0] if isinstance(err, tokenize.TokenError) else str(err).splitlines()[0]
        raise GinError(f"--gin.{name.strip()}={value.strip()} is not a value gin can read ({detail}): write "
                       "numbers as 8, lists as [8, 16], strings in two quotes as \"'text'\"") from None


def _apply_task_bindings():
    """Re-register task modules a gin file imported, so bindings such as
    ``tasks.superglue.register_superglue.data_dir`` take effect (registration at import precedes gin)."""
    for module, register in (("tasks.superglue", "register_superglue"), ("tasks.glue", "register_glue"),
                             ("tasks.suite", "register_suite")):
        if module in sys.modules and gin.get_bindings(f"{module}.{register}"):
            getattr(sys.modules[module], register)()
