"""No import circles (issue 18, item 4): no module of the core or the hosts imports one that imports it back,
directly or through others.

The graph is read statically from the source (``ast``), so it sees every import a module can run: module level,
inside functions (the lazy ones) and inside ``try`` blocks. Only imports under ``if TYPE_CHECKING:`` are left
out (they never run). An edge goes to the module a statement names: ``from . import x`` reaches the submodule
``x`` when there is one, else the package's ``__init__``; importing a submodule does not count as importing its
package (the package is always imported first, by Python itself).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("interrogator_core", "interrogator_hosts")

#: Circles allowed to remain (sorted tuples of the modules in each circle): none. The test says when an entry is
#: stale.
KNOWN: Set[Tuple[str, ...]] = set()


def _modules() -> Dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every import statement that can run (function level included), none under ``if TYPE_CHECKING:``."""
    stack: List[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _targets(name: str, path: Path, node: ast.stmt, modules: Dict[str, Path]) -> Set[str]:
    """The project modules one import statement of module ``name`` imports."""
    def known(candidate: str) -> Optional[str]:
        return candidate if candidate in modules else None

    out: Set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            # "import a.b.c" runs a, a.b and a.b.c; the deepest project module is the one named
            parts = alias.name.split(".")
            for i in range(len(parts), 0, -1):
                hit = known(".".join(parts[:i]))
                if hit:
                    out.add(hit)
                    break
        return out
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for alias in node.names:
        hit = known(f"{base}.{alias.name}") or known(base)  # a submodule by that name, else the module itself
        if hit:
            out.add(hit)
    return out


def import_graph() -> Dict[str, Set[str]]:
    """``{module: project modules it imports}`` for every module of :data:`PACKAGES`."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: Set[str] = set()
        for node in _import_nodes(tree):
            edges |= _targets(name, path, node, modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import circles: each strongly connected component of more than one module (Tarjan), as one circle
    through it (``[a, b, ..., a]``) so the message can name the imports to cut."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    components: List[Set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_circle(graph, c) for c in components]


def _circle(graph: Dict[str, Set[str]], component: Set[str]) -> List[str]:
    """The shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle through {start}")  # pragma: no cover - Tarjan gave a component


def test_no_import_circles():
    found = cycles(import_graph())
    new = [c for c in found if tuple(sorted(set(c))) not in KNOWN]
    assert not new, "import circles (cut one import of each; move what both need to a module both import):\n" + \
        "\n".join("  " + " -> ".join(c) for c in new)
    stale = KNOWN - {tuple(sorted(set(c))) for c in found}
    assert not stale, f"KNOWN lists circles that no longer exist; remove them from tests/test_import_graph.py: {stale}"


def test_the_graph_sees_function_level_and_relative_imports():
    """The reader itself: a lazy import inside a function is an edge, a TYPE_CHECKING one is not."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import X\n"
                     "def f():\n    from . import y\n    import interrogator_core.z as z\n")
    modules = {"interrogator_core": ROOT, "interrogator_core.m": ROOT, "interrogator_core.x": ROOT,
               "interrogator_core.y": ROOT, "interrogator_core.z": ROOT}
    path = ROOT / "interrogator_core" / "m.py"
    edges = set()
    for node in _import_nodes(tree):
        edges |= _targets("interrogator_core.m", path, node, modules)
    assert edges == {"interrogator_core.y", "interrogator_core.z"}
