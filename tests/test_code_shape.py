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
    forbidden = ("xprompt_jax.run", "xprompt_jax.xprompt", "xprompt_jax.cli", "xprompt_jax.commands",
                 "xprompt_jax.assembly", "xprompt_jax.ensembling", "gin", "tasks")
    found = {str(p.relative_to(REPO)): name for p in (REPO / "xprompt_jax" / package).rglob("*.py")
             for name in _imports(p) if name.split(".")[0] in ("xprompt_jax", "gin", "tasks")
             and any(name == f or name.startswith(f + ".") for f in forbidden)}
    assert not found, f"xprompt_jax/{package} imports the run: {found}"


def test_tasks_import_nothing_from_xprompt_jax():
    found = {str(p.relative_to(REPO)): name for p in (REPO / "tasks").rglob("*.py")
             for name in _imports(p) if name.split(".")[0] == "xprompt_jax"}
    assert not found, f"tasks/ imports xprompt_jax (xprompt_jax imports tasks: one direction only): {found}"


def _library_sources():
    """Every module of the package outside the entry layer (``xprompt_jax/cli/``)."""
    return [p for p in sorted((REPO / "xprompt_jax").rglob("*.py")) if "cli" not in p.relative_to(REPO).parts]


def test_library_code_reads_no_global_gin_state():
    """gin binds configuration at the entry point (xprompt_jax/cli/), as T5X does."""
    found = sorted(str(p.relative_to(REPO)) for p in _library_sources()
                   if "gin" in {n.split(".")[0] for n in _imports(p)})
    assert not found, f"library modules that import gin: {found}"


def test_library_modules_do_not_import_the_entry_layer():
    """The entry layer (argument parsing, gin files and bindings, the command table) depends on the
    library, never the other way round."""
    found = {str(p.relative_to(REPO)): name for p in _library_sources() for name in _imports(p)
             if name == "xprompt_jax.cli" or name.startswith("xprompt_jax.cli.")}
    assert not found, f"library modules that import xprompt_jax.cli: {found}"


def _module_graph():
    """{module: the package's modules it imports, at any depth}; ``from pkg import sub`` counts as ``pkg.sub``."""
    modules = {}
    for path in sorted((REPO / "xprompt_jax").rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                               for a in node.names)
        graph[name] = sorted(t for t in targets if t in modules and t != name)
    return graph


def test_no_import_circle():
    """No module reaches itself through imports (imports inside functions count: they only hide a circle)."""
    graph, state, circles = _module_graph(), {}, []

    def visit(module, path):
        state[module] = "open"
        for target in graph[module]:
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"
    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not circles, f"import circles: {circles}"
