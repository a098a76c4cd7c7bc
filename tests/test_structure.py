"""The shape of the code, read with ``ast`` (nothing is imported): for ``musicdiff/`` and ``pipelines/``,
no import cycle among repository modules (every import statement counts, those inside functions too),
no private name (leading underscore) taken from another repository module, no function over
:data:`MAX_FUNCTION_LINES` lines, no module over :data:`MAX_MODULE_LINES` lines, no module file
directly in ``musicdiff/`` besides ``__init__.py`` and ``tracking.py``, and ``musicdiff`` never
imports ``pipelines``.

An import edge goes to the deepest repository module an import statement names: ``import a.b.c`` and
``from a.b import c`` (``c`` a module) point at ``a.b.c``, ``from a.b import name`` at ``a.b``. The
packages Python runs on the way (``a/__init__.py``) are not counted as edges.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("musicdiff", "pipelines")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 450
TOP_LEVEL_MODULES = {"__init__.py", "tracking.py"}



@cache
def modules() -> dict[str, Path]:
    """Every repository module under :data:`PACKAGES`, dotted name -> file (a package is its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


@cache
def tree(name: str) -> ast.Module:
    path = modules()[name]
    return ast.parse(path.read_text(), filename=str(path))


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _absolute(name: str, node: ast.ImportFrom) -> str:
    """The module an ``ImportFrom`` in module ``name`` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if _is_package(name) else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _deepest(dotted: str) -> str | None:
    """The longest prefix of ``dotted`` that is a repository module."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules():
            return candidate
    return None


def imports(name: str) -> list[tuple[str, ast.AST, str | None]]:
    """``(target module, node, imported name)`` for every import of a repository module in ``name``
    (``imported name``: the name of a ``from`` import, None for ``import``)."""
    out = []
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _deepest(alias.name)
                if target:
                    out.append((target, node, None))
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(name, node)
            for alias in node.names:
                target = _deepest(f"{source}.{alias.name}") if alias.name != "*" else None
                target = target if target and target != _deepest(source) else _deepest(source)
                if target:
                    out.append((target, node, alias.name))
    return out


def graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in imports(name) if target != name} for name in modules()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def _module_aliases(name: str) -> dict[str, str]:
    """Local names bound to repository modules in ``name``: ``import a.b as m`` (m), ``import a.b``
    (a; attribute chains are resolved below), ``from a import b`` with ``a.b`` a module (b)."""
    aliases = {}
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules():
                    aliases[alias.asname] = alias.name
                elif not alias.asname and alias.name.split(".")[0] in modules():
                    aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(name, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules():
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    return aliases


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def private_uses(name: str) -> list[str]:
    """``from X import _name`` and ``X._name`` in ``name`` where X is another repository module."""
    found = []
    for target, node, imported in imports(name):
        if imported and _private(imported) and target != name and f"{target}.{imported}" not in modules():
            found.append(f"{name}:{node.lineno} from {target} import {imported}")
    aliases = _module_aliases(name)
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value)
            if dotted is None or dotted.split(".")[0] not in aliases:
                continue
            head, *rest = dotted.split(".")
            module = ".".join([aliases[head], *rest])
            if module in modules() and module != name:
                found.append(f"{name}:{node.lineno} {module}.{node.attr}")
    return found


def long_functions(name: str) -> list[str]:
    """``module:qualified name (lines)`` of each function over :data:`MAX_FUNCTION_LINES` lines (from
    its ``def`` to its last line, docstring included)."""
    found = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualified = f"{prefix}{child.name}"
                length = child.end_lineno - child.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{qualified} ({length} lines)")
                walk(child, f"{qualified}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree(name), "")
    return found


def test_modules_are_found():
    assert "musicdiff.weights.registry" in modules() and "pipelines.graph" in modules()
    assert len(modules()) > 50


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles among repository modules:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_cycle_detection_sees_imports_inside_functions():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # a function-level import is an edge like any other
    assert "musicdiff.evaluation.embeddings.musicnn" in graph()["musicdiff.evaluation.embeddings.registry"]


def test_no_private_name_from_another_module():
    found = [use for name in modules() for use in private_uses(name)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_no_long_function():
    found = [f for name in modules() for f in long_functions(name)]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


def test_no_long_module():
    found = [f"{name} ({n} lines)" for name, path in modules().items()
             if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not found, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(found)


def test_musicdiff_top_level_holds_only_init_and_tracking():
    extra = sorted(p.name for p in (ROOT / "musicdiff").glob("*.py") if p.name not in TOP_LEVEL_MODULES)
    assert not extra, f"module files directly in musicdiff/ (put them in a subpackage): {extra}"


def test_musicdiff_never_imports_pipelines():
    found = [f"{name}:{node.lineno} imports {target}" for name in modules() if name.split(".")[0] == "musicdiff"
             for target, node, _ in imports(name) if target.split(".")[0] == "pipelines"]
    assert not found, "\n".join(found)
