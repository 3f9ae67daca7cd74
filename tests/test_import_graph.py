"""The package's import graph: no circle, lazy imports included, and the library apart from the commands.

The graph is read from the source with `ast`, without importing anything: every `import` and
`from ... import` of a module (at the top, inside a function, under `if TYPE_CHECKING`), and every
module it imports by name, a string constant that is the full name of one of the package's
submodules (`import_module(...)`, the sub-command table in cli.py, the lazy exports of `ast_min`).
`from package import name` is an edge to `package.name` when that is a module, else to `package`.
Names computed at run time (an f-string) are not seen: that is how the kernels' variant registry
finds the `variant_*.py` files beside it (plugin discovery, `kernels/variants.py`), which import it to
register themselves.

Rules (docs: CONTRIBUTING.md, "Add a sub-command"):
- no circle: a module never imports, even lazily, a module that imports it back;
- the library never imports a command: nothing outside `ast_min.commands` and `ast_min.cli` imports them.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import ast_min

# Where each package's files are: ast_min, and its kernels, installed from the top-level kernels/ folder.
PACKAGE_FOLDERS = {
    "ast_min": Path(ast_min.__file__).parent,
    "ast_min.kernels": Path(importlib.util.find_spec("ast_min.kernels").submodule_search_locations[0]),
}
COMMAND_SIDE = ("ast_min.cli", "ast_min.commands")


def package_modules() -> dict[str, Path]:
    """Module name -> source file, for every .py file of the packages."""
    found = {}
    for package, folder in PACKAGE_FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.setdefault(".".join((package, *parts)), path)
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that module `name` (source `path`) imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]  # the package it is in
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") if node.level else node.module
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value and node.value in known:
            targets.add(node.value)  # imported by name (a dotted name: "ast_min" alone is also a dict key)
    return {t for t in targets if t in known and t != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the directed graph as [a, b, ..., a], or None: depth-first search, colouring nodes."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once all its successors are

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return path[path.index(successor):] + [node, successor] if successor in path else [node, successor]
            if successor not in state and (cycle := visit(successor, path + [node])) is not None:
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])) is not None:
            return cycle
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def is_command_side(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in COMMAND_SIDE)


def test_the_graph_sees_every_kind_of_import(graph):
    """Edges the rules depend on are found: otherwise an empty graph would pass every rule."""
    assert "ast_min.features" in graph["ast_min.features_fast"]  # from ... import at the top
    assert "ast_min.kernels" in graph["ast_min.backends"]  # `from ast_min import kernels` inside a function
    assert "ast_min.commands.train" in graph["ast_min.cli"]  # by name, in the sub-command table
    assert "ast_min.model" in graph["ast_min"]  # by name, in the lazy exports
    assert "ast_min.recipes" in graph["ast_min.data.pipeline"]  # under `if TYPE_CHECKING`
    assert "ast_min.kernels.cost" in graph["ast_min.kernels.variants"]  # inside a function, in the kernels folder


def test_find_cycle_finds_a_circle_and_only_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no circle


def test_no_library_module_imports_a_command(graph):
    library = {name: targets for name, targets in graph.items() if not is_command_side(name)}
    offending = {name: sorted(t for t in targets if is_command_side(t)) for name, targets in library.items()}
    offending = {name: targets for name, targets in offending.items() if targets}
    assert offending == {}, f"library modules importing the command line: {offending}"
    assert "ast_min.classify" in graph["ast_min.commands.classify"]  # the commands do call the library


def test_the_import_graph_has_no_circle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"
