"""No import cycle inside `mailpixel/`: each module imports downward only.

The graph is read from the source with `ast`, not from `sys.modules` after an import, so it sees
every import a module can make, wherever it is written:
- at the top of the file;
- inside a function (a deferred import keeps the pixel path lean, but a cycle through one is
  still a cycle: it only moves the partially initialised module from import time to the first
  call, and it hides the layering from the reader);
- under `if TYPE_CHECKING:` (never run, but mypy follows it, and a type that has to be fetched
  from a module above you says the code is in the wrong place just as loudly). Counting them
  costs nothing today: no cycle runs through one.

An import of `mailpixel.a.b` also runs the package `mailpixel.a` first, so the graph has an edge
to each package on the way, except to the importer's own packages: Python initialises those
before the importer whatever it writes, so that edge is not one the module chose.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "mailpixel"


def module_name(path: Path) -> str:
    """`mailpixel.ops.cli` for mailpixel/ops/cli.py, `mailpixel.ops` for its __init__.py."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def packages_of(module: str) -> list[str]:
    """`mailpixel`, `mailpixel.ops` for mailpixel.ops.cli: what importing it runs first."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def imported(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` one file imports, anywhere in it (see the module docstring)."""
    name = module_name(path)
    # The package a relative import starts from: the module's own for an __init__.py.
    here = name.split(".") if is_package(path) else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets.add(module)
            # `from mailpixel.ops import cli` imports the module mailpixel.ops.cli.
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    own = set(packages_of(name))
    edges: set[str] = set()
    for target in targets:
        for reached in (*packages_of(target), target):
            if reached in known and reached not in own and reached != name:
                edges.add(reached)
    return edges


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(path) for path in files}
    return {module_name(path): imported(path, known) for path in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None: depth-first search, iterative, sorted for a stable
    message."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif following in on_path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph[following])))
    return None


def test_the_graph_sees_deferred_and_type_checking_imports():
    """The reader of the graph finds the imports a plain `import` would not run, or the test
    below would prove nothing about them."""
    graph = import_graph()
    assert "mailpixel.ops.local.stack" in graph["mailpixel.ops.cli"]  # inside cmd_run only
    assert "mailpixel.secrets" in graph["mailpixel.ops.replay"]  # under TYPE_CHECKING only
    assert "mailpixel.ops.instrument" in graph["mailpixel.ops.instrument_cli"]  # at the top


def test_find_cycle_reports_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_in_mailpixel_imports_in_a_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
