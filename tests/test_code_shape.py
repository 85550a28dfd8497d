"""The shape the code keeps (issue 13): small files and functions, and packages that depend one way.

These are checks on the source, not style: a newcomer should be able to read any module in one sitting,
and the model and prompt code must stay usable without the run around it.
"""
import ast
import pathlib

import pytest
from helpers import REPO

PACKAGES = ("xprompt_jax", "tasks")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _sources():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def _imports(path: pathlib.Path):
    """Every module ``path`` imports, at any depth (imports inside functions count too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_no_source_file_is_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_is_over_80_lines():
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("package", ["models", "prompts"])
def test_the_model_and_prompt_packages_do_not_import_the_run(package):
    forbidden = ("xprompt_jax.run", "xprompt_jax.xprompt", "xprompt_jax.main", "xprompt_jax.demo",
                 "xprompt_jax.ensembling", "gin", "tasks")
    found = {str(p.relative_to(REPO)): name for p in (REPO / "xprompt_jax" / package).rglob("*.py")
             for name in _imports(p) if name.split(".")[0] in ("xprompt_jax", "gin", "tasks")
             and any(name == f or name.startswith(f + ".") for f in forbidden)}
    assert not found, f"xprompt_jax/{package} imports the run: {found}"


def test_tasks_import_nothing_from_xprompt_jax():
    found = {str(p.relative_to(REPO)): name for p in (REPO / "tasks").rglob("*.py")
             for name in _imports(p) if name.split(".")[0] == "xprompt_jax"}
    assert not found, f"tasks/ imports xprompt_jax (xprompt_jax imports tasks: one direction only): {found}"


def test_library_code_reads_no_global_gin_state():
    """gin binds configuration at the entry point (gin_configurables.py, gin_flags.py), as T5X does."""
    entry = {"gin_configurables.py", "gin_flags.py", "gin_checks.py", "main.py", "demo.py"}  # demo: runs gin files
    found = sorted(str(p.relative_to(REPO)) for p in (REPO / "xprompt_jax").rglob("*.py")
                   if p.name not in entry and "gin" in {n.split(".")[0] for n in _imports(p)})
    assert not found, f"library modules that import gin: {found}"
