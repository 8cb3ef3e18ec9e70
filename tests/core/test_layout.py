"""The package's import graph, read from its source with ``ast``: no import circle, and a
core that imports no door and no optional framework.

Run it alone to see the graph's verdict: ``pytest tests/core/test_layout.py``. Every import counts,
also one inside a function, except those under ``if TYPE_CHECKING:`` (they never run) and
those marked on their line with ``# deferred: <why>`` (an import put off on purpose; each one
is listed by ``test_every_deferred_import_says_why``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import django_idempotency

PACKAGE = "django_idempotency"
ROOT = Path(django_idempotency.__file__).parent
MARK = "# deferred:"

#: The core: what every door builds on. It must work with no door and no optional extra.
CORE = f"{PACKAGE}.core"
DOORS = tuple(
    f"{PACKAGE}.{name}" for name in ("drf", "ninja", "celery", "views", "once", "admin", "checks")
)
FRAMEWORKS = ("rest_framework", "ninja", "celery", "kombu")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package except the migrations (Django loads those, no one imports
    them), by dotted name."""
    return {
        module_name(path): path
        for path in sorted(ROOT.rglob("*.py"))
        if "migrations" not in path.relative_to(ROOT).parts
    }


MODULES = package_modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth; ``if TYPE_CHECKING:`` bodies skipped."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            for other in node.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def _marked(node: ast.stmt, lines: list[str]) -> bool:
    end = node.end_lineno or node.lineno
    return any(MARK in line for line in lines[node.lineno - 1 : end])


def _absolute(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package(name) else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_names(name: str, *, marked: bool = False) -> set[str]:
    """The dotted names ``name`` imports; with ``marked``, only its deferred imports."""
    source = MODULES[name].read_text()
    lines = source.splitlines()
    found: set[str] = set()
    for node in _import_nodes(ast.parse(source)):
        if _marked(node, lines) != marked:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        target = _absolute(name, node)
        found.add(target)
        # ``from package import module`` imports the module itself.
        found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def internal_edges(name: str) -> set[str]:
    """The package's modules ``name`` imports by name. The parent packages Python runs on the
    way (``a`` and ``a.b`` for ``a.b.c``) are left out: a package's ``__init__`` may import
    its own submodules, as long as they do not import names back from it."""
    return {target for target in imported_names(name) if target in MODULES} - {name}


def graph() -> dict[str, set[str]]:
    return {name: internal_edges(name) for name in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def closure(start: str, edges: dict[str, set[str]]) -> set[str]:
    """Every module that importing ``start`` runs: what it imports, their parents, and so on."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:end]) for end in range(1, len(parts)))
        todo.extend(edges.get(name, ()))
    return seen & set(MODULES)


def _in(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_the_graph_sees_the_whole_package() -> None:
    edges = graph()
    assert f"{PACKAGE}.core.engine" in edges
    assert f"{PACKAGE}.core.operation" in edges[f"{PACKAGE}.core.engine"]
    assert sum(len(targets) for targets in edges.values()) > 50


def test_the_graph_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("name", sorted(name for name in MODULES if _in(name, (CORE,))))
def test_the_core_imports_no_door_and_no_optional_framework(name: str) -> None:
    edges = graph()
    reached = closure(name, edges)
    doors = sorted(module for module in reached if _in(module, DOORS))
    assert doors == [], f"importing {name} runs these doors"
    frameworks = sorted(
        f"{module} imports {target}"
        for module in reached
        for target in imported_names(module)
        if _in(target, FRAMEWORKS)
    )
    assert frameworks == [], f"importing {name} needs optional frameworks"


def test_every_deferred_import_says_why() -> None:
    for name in MODULES:
        lines = MODULES[name].read_text().splitlines()
        for line in lines:
            if MARK in line:
                assert line.split(MARK, 1)[1].strip(), f"{name}: {line.strip()}"


def test_each_sql_dialect_of_the_store_offers_the_same_statements() -> None:
    from django_idempotency.core.store import postgresql, sqlite

    def offered(module: object) -> set[str]:
        return {name for name in vars(module) if not name.startswith("_") and name.isupper()} | {
            name
            for name, value in vars(module).items()
            if callable(value)
            and getattr(value, "__module__", None) == module.__name__  # type: ignore[attr-defined]
            and not name.startswith("_")
        }

    assert offered(postgresql) == offered(sqlite)
    for module in (postgresql, sqlite):
        for statement in ("CLAIM", "FIND_BY_KEY", "FIND_BY_REFERENCE", "COMPLETE", "LOG_EVENT"):
            sql = getattr(module, statement)
            assert "{" not in sql, (module.__name__, statement)  # every name filled in
            assert "\n" not in sql, (module.__name__, statement)  # one line in the logs
