"""Check dbcli's layering: no import circle between its modules or its packages, no module too long.

Reads every ``.py`` file under the package with ``ast`` (nothing is imported), collects every
``import`` and ``from ... import`` statement anywhere in it (inside functions and ``if TYPE_CHECKING:``
blocks included) and builds two graphs:

- modules: ``dbcli.engine.pipeline -> dbcli.postprocess.boxes``; ``from dbcli.engine import x`` is an
  edge to the submodule ``dbcli.engine.x`` when there is one, else to ``dbcli.engine`` (its
  ``__init__``);
- packages: each module mapped to its top-level unit under ``dbcli`` (``dbcli.engine`` for
  ``dbcli.engine.pipeline``, ``dbcli.weights`` for the module ``dbcli/weights.py``, ``dbcli`` for the
  root ``__init__``), edges between distinct units.

A graph with a circle fails, each circle named (``a -> b -> a``) with the import lines that make it;
so does a module of more than ``--max-lines`` lines (400). Exit status 0 when clean, 1 otherwise.

Usage: ``python scripts/check_imports.py [PACKAGE_DIR] [--max-lines N]`` (default ``dbcli`` beside
this script's folder).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINES = 400


@dataclass
class Graph:
    """A directed graph whose edges remember where they come from (``file:line``)."""

    edges: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def add_node(self, node: str) -> None:
        self.edges.setdefault(node, {})

    def add(self, src: str, dst: str, where: str) -> None:
        self.add_node(src)
        self.add_node(dst)
        if src != dst:
            wheres = self.edges[src].setdefault(dst, [])
            if where not in wheres:
                wheres.append(where)


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``: dotted name -> file (a package is its ``__init__``)."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name of a ``from X import ...`` statement, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: dict[str, Path], top: str) -> Iterable[tuple[str, int]]:
    """``(imported module, line)`` for every import of a module of ``top`` in the file ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == top or alias.name.startswith(top + "."):
                    yield _known_prefix(alias.name, known), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module, is_package)
            if base != top and not base.startswith(top + "."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in known else _known_prefix(base, known)), node.lineno


def _known_prefix(name: str, known: dict[str, Path]) -> str:
    """``name`` or its longest prefix that is a module of the package."""
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def unit_of(module: str, top: str) -> str:
    """The package-level unit of ``module``: ``top.<first part>`` (a subpackage or a top-level module)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else top


def build_graphs(root: Path) -> tuple[Graph, Graph]:
    """The module graph and the package graph of the package at ``root``."""
    top = root.name
    known = module_names(root)
    modules, packages = Graph(), Graph()
    for name, path in known.items():
        modules.add_node(name)
        packages.add_node(unit_of(name, top))
        for target, line in imports_of(name, path, known, top):
            where = f"{path.relative_to(root.parent)}:{line}"
            modules.add(name, target, where)
            packages.add(unit_of(name, top), unit_of(target, top), where)
    return modules, packages


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph.edges):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def one_cycle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest circle through the first node of ``component`` (breadth-first), as a node path."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.edges[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component  # not reached: a component of two or more nodes has a circle through each


def describe_cycles(graph: Graph, kind: str) -> list[str]:
    """One message per circle of ``graph``: the circle, then each of its edges' import lines."""
    messages = []
    for component in strongly_connected(graph):
        cycle = one_cycle(graph, component)
        lines = [f"{kind} import circle: {' -> '.join(cycle)}"]
        if len(component) > len(cycle) - 1:
            lines.append(f"    (one of the circles among {', '.join(component)})")
        for src, dst in zip(cycle, cycle[1:]):
            lines.append(f"    {src} -> {dst}: {', '.join(graph.edges[src][dst])}")
        messages.append("\n".join(lines))
    return messages


def long_modules(root: Path, max_lines: int) -> list[str]:
    """A message for every module of more than ``max_lines`` lines."""
    messages = []
    for path in sorted(root.rglob("*.py")):
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > max_lines:
            messages.append(f"{path.relative_to(root.parent)}: {count} lines (at most {max_lines})")
    return messages


def check(root: Path, max_lines: int = MAX_LINES) -> list[str]:
    """Every problem found in the package at ``root`` (empty: clean)."""
    modules, packages = build_graphs(root)
    return describe_cycles(packages, "package") + describe_cycles(modules, "module") + long_modules(root, max_lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent / "dbcli")
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    if not (args.package / "__init__.py").is_file():
        print(f"{args.package}: not a package (no __init__.py)", file=sys.stderr)
        return 2
    problems = check(args.package, args.max_lines)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.package}", file=sys.stderr)
        return 1
    print(f"{args.package}: no import circle, no module over {args.max_lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
