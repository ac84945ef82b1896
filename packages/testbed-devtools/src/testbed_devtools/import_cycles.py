"""Find import cycles between the project's own modules, statically.

``python -m testbed_devtools.import_cycles packages/*/src`` parses every ``*.py``
under the given source roots with :mod:`ast` (nothing is imported or run), turns
each ``import`` / ``from ... import`` of a first-party module into an edge of a
module graph, and reports every strongly connected component as a cycle
``a -> b -> a`` with the file and line of each import. Exit 0 (and how many
modules and edges were checked) when there is none, 1 when there are cycles, 2
when a root cannot be read or a file does not parse.

What counts as an edge:

- Module-level imports and imports inside functions, methods and classes alike.
  A lazy import inside a function breaks the cycle at run time, but the two
  modules still depend on each other: the cycle is a design smell all the same,
  and the fix is a module that both can import (or passing the dependency in).
- Not imports under ``if TYPE_CHECKING:`` / ``if typing.TYPE_CHECKING:`` (only
  type checkers follow them; the ``else:`` branch runs and counts).
- ``from pkg import name`` is an edge to the submodule ``pkg.name`` when that
  module exists, otherwise to ``pkg`` (its ``__init__``).
- ``import a.b.c`` is an edge to ``a.b.c`` only. Python runs ``a/__init__.py`` and
  ``a/b/__init__.py`` first, but a package whose ``__init__`` re-exports
  submodules that import each other is the normal layout, not a cycle; a
  submodule that imports names *from* its package's ``__init__`` is an edge, and
  caught.
- Imports of modules outside the roots (stdlib, third party) are ignored, and so
  are dynamic imports (``importlib.import_module``).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path


class ScanError(Exception):
    """A source root or file that cannot be analysed."""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass
class Graph:
    modules: dict[str, Module] = field(default_factory=dict)
    #: importer -> imported -> (file, line) of the first such import
    edges: dict[str, dict[str, tuple[Path, int]]] = field(default_factory=dict)

    @property
    def edge_count(self) -> int:
        return sum(len(targets) for targets in self.edges.values())


def discover(roots: Iterable[Path]) -> dict[str, Module]:
    """Every module under the source roots, by dotted name."""
    modules: dict[str, Module] = {}
    for root in roots:
        if not root.is_dir():
            raise ScanError(f"{root}: not a directory (give source roots such as packages/*/src)")
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            if not parts or not all(p.isidentifier() for p in parts):
                continue
            name = ".".join(parts)
            if name in modules:
                raise ScanError(
                    f"module {name} is defined twice: {modules[name].path} and {path}; "
                    "two distributions must not ship the same module"
                )
            modules[name] = Module(name, path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements anywhere in ``node``, except under ``if TYPE_CHECKING:``."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for stmt in node.orelse:
            yield from _imports(stmt)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _imports(child)


def _known_prefix(name: str, modules: dict[str, Module]) -> str | None:
    """The longest prefix of ``name`` that is a first-party module."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _targets(
    stmt: ast.Import | ast.ImportFrom, module: Module, modules: dict[str, Module]
) -> Iterator[str]:
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            target = _known_prefix(alias.name, modules)
            if target is not None:
                yield target
        return
    if stmt.level:
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        parts = package.split(".") if package else []
        up = stmt.level - 1
        if up >= len(parts):
            return  # beyond the top-level package: Python raises ImportError
        base_parts = parts[: len(parts) - up]
        if stmt.module:
            base_parts.append(stmt.module)
        base = ".".join(base_parts)
    else:
        base = stmt.module or ""
    for alias in stmt.names:
        submodule = f"{base}.{alias.name}" if base else alias.name
        if alias.name != "*" and submodule in modules:
            yield submodule
            continue
        target = _known_prefix(base, modules) if base else None
        if target is not None:
            yield target


def build_graph(roots: Iterable[Path]) -> Graph:
    graph = Graph(modules=discover(roots))
    for module in graph.modules.values():
        try:
            tree = ast.parse(module.path.read_bytes(), filename=str(module.path))
        except SyntaxError as exc:
            raise ScanError(f"{module.path}:{exc.lineno}: cannot parse: {exc.msg}") from exc
        except OSError as exc:
            raise ScanError(f"{module.path}: cannot read: {exc.strerror}") from exc
        out = graph.edges.setdefault(module.name, {})
        for stmt in _imports(tree):
            for target in _targets(stmt, module, graph.modules):
                if target != module.name:
                    out.setdefault(target, (module.path, stmt.lineno))
    return graph


def strongly_connected(edges: dict[str, dict[str, object]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components with more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
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
    return sorted(found)


def shortest_cycle(edges: dict[str, dict[str, object]], component: Sequence[str]) -> list[str]:
    """A shortest cycle through the component's first module: ``[a, b, ..., a]``."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges.get(node, {})):
            if child not in members:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in its component")  # pragma: no cover


def report(graph: Graph, components: list[list[str]], base: Path | None = None) -> str:
    def where(path: Path, line: int) -> str:
        shown = path
        if base is not None:
            try:
                shown = path.resolve().relative_to(base.resolve())
            except ValueError:
                shown = path
        return f"{shown}:{line}"

    lines = [
        f"import_cycles: {len(components)} import cycle(s) between first-party modules "
        f"({len(graph.modules)} modules, {graph.edge_count} imports checked):"
    ]
    for component in components:
        cycle = shortest_cycle(graph.edges, component)
        lines.append("")
        lines.append("  " + " -> ".join(cycle))
        for src, dst in pairwise(cycle):
            path, line = graph.edges[src][dst]
            lines.append(f"    {src} imports {dst} at {where(path, line)}")
        if len(component) > len(cycle) - 1:
            lines.append(f"    (same cycle group: {', '.join(component)})")
    lines.append("")
    lines.append(
        "Break each cycle: move what both modules need into a module of its own that "
        "imports neither, or pass the dependency in. Imports under `if TYPE_CHECKING:` "
        "do not count; imports inside functions do."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed_devtools.import_cycles",
        description="Fail when first-party modules import each other in a cycle "
        "(static: ast, nothing is imported).",
    )
    parser.add_argument("roots", nargs="+", type=Path, help="source roots, e.g. packages/*/src")
    args = parser.parse_args(argv)
    try:
        graph = build_graph(args.roots)
    except ScanError as exc:
        print(f"import_cycles: {exc}", file=sys.stderr)
        return 2
    components = strongly_connected(graph.edges)
    if components:
        print(report(graph, components, base=Path.cwd()), file=sys.stderr)
        return 1
    print(
        f"import_cycles: no cycles: {len(graph.modules)} modules, {graph.edge_count} "
        f"first-party imports in {len(args.roots)} source root(s)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
