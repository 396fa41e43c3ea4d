"""The house's layers, read from the source with `ast` (issue #12): the import graph of schemas/, plumbing/,
connectors/ and services/ has no circle; each layer imports only what lies below it

    services      the services (monitor, casefeed, cases, compare, desk, ...), and services/casedb
    connectors    the departments' connectors
    plumbing      Kafka clients, settings, processes, HTTP serving, backoff, tables, clock
    schemas       the wire: Avro schemas, codec, topics, the alert vocabulary, the errors every layer raises

and no module imports a private name (a leading underscore) from another package. Every import counts, those
inside functions too: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "plumbing", "connectors", "services")


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module
    module: str  # the house's module imported (the most specific one that exists)
    names: tuple[str, ...]  # the names taken with `from module import names` (empty for `import module`)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _house() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _resolve(modules: dict[str, Path], importer: str, node: ast.ImportFrom) -> str | None:
    if node.level:  # relative: from the importer's package
        is_package = modules[importer].name == "__init__.py"
        base = importer.split(".")[: len(importer.split(".")) - node.level + (1 if is_package else 0)]
        return ".".join([*base, *([node.module] if node.module else [])])
    return node.module


@functools.cache
def _tree(path: Path) -> ast.Module:
    """The parsed source, once per test session (the tests below read every module of the house)."""
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(modules: dict[str, Path]) -> Iterator[Import]:
    for importer, path in modules.items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        yield Import(importer, alias.name, (), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(modules, importer, node)
                if source is None or source.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:  # `from pkg import module` depends on the module itself
                    target = f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    if target in modules:
                        yield Import(importer, target, (alias.name,) if target == source else (), node.lineno)


def _graph() -> dict[str, set[str]]:
    modules = _house()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in _imports(modules):
        if imp.module != imp.importer:
            graph[imp.importer].add(imp.module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of `graph` (a path that comes back to its first node), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _package(module: str, modules: dict[str, Path]) -> str:
    """The package a module belongs to (a package's __init__ belongs to the package itself)."""
    return module if modules[module].name == "__init__.py" else module.rpartition(".")[0]


def test_the_graph_sees_the_house() -> None:
    graph = _graph()
    assert {"schemas.codec", "plumbing.kafka_io", "services.casedb.store", "services.cli"} <= set(graph)
    assert "services.casedb.models" in graph["services.casedb.store"]  # a top-level import
    assert "services.casedb.database" in graph["services.cli"]  # an import inside a function counts too


def test_find_cycle_reports_the_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_between_modules() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or ())


@pytest.mark.parametrize("layer,below", [("schemas", set()), ("plumbing", {"schemas"}),
                                         ("connectors", {"schemas", "plumbing"})])
def test_a_layer_imports_only_what_lies_below(layer: str, below: set[str]) -> None:
    modules = _house()
    wrong = sorted(f"{imp.importer} (line {imp.line}) imports {imp.module}" for imp in _imports(modules)
                   if imp.importer.split(".")[0] == layer
                   and imp.module.split(".")[0] not in below | {layer})
    assert wrong == []


def test_no_circle_between_the_packages_of_services() -> None:
    """services.cases and services.compare, and every other pair of packages, do not import each other."""
    modules = _house()
    graph: dict[str, set[str]] = {}
    for imp in _imports(modules):
        a, b = _package(imp.importer, modules), _package(imp.module, modules)
        if a != b and a.startswith("services.") and b.startswith("services."):
            graph.setdefault(a, set()).add(b)
    cycle = find_cycle(graph)
    assert cycle is None, "packages import each other: " + " -> ".join(cycle or ())


def test_no_private_name_is_imported_from_another_package() -> None:
    modules = _house()
    wrong = sorted(f"{imp.importer} (line {imp.line}) imports {name} from {imp.module}"
                   for imp in _imports(modules) for name in imp.names
                   if name.startswith("_") and not name.startswith("__")
                   and _package(imp.importer, modules) != _package(imp.module, modules))
    assert wrong == []
