"""The host adapters' imports, read from the source (no import runs): no module of ``interrogator_hosts`` (nor
``nodes.py``) imports one that imports it back, directly or through others, counting imports inside functions;
and hosts reach the engine only through its public surface: ``interrogator_core`` (its ``__all__``) and
``interrogator_core.hostapi``, the one module for host adapters."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import interrogator_core
from interrogator_core import hostapi

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {"interrogator_core": set(interrogator_core.__all__), "interrogator_core.hostapi": set(hostapi.__all__)}


def _host_modules() -> Dict[str, Path]:
    modules = {f"interrogator_hosts.{p.stem}": p for p in sorted((ROOT / "interrogator_hosts").glob("*.py"))
               if p.stem != "__init__"}
    modules["nodes"] = ROOT / "nodes.py"
    return modules


def _imports(name: str, path: Path) -> List[Tuple[str, List[str]]]:
    """(module, imported names) of every import statement in the file, relative ones resolved."""
    package = name.rsplit(".", 1)[0] if "." in name else ""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(filter(None, [package, base]))
            names = [alias.name for alias in node.names]
            if not node.module and node.level:  # from . import a1111_settings
                found += [(f"{base}.{n}", []) for n in names]
            else:
                found.append((base, names))
    return found


def test_no_import_circle_among_the_host_modules():
    modules = _host_modules()
    graph: Dict[str, Set[str]] = {name: {m for m, _ in _imports(name, path) if m in modules}
                                  for name, path in modules.items()}
    circles = []

    def visit(name: str, path: List[str]) -> None:
        for nxt in graph[name]:
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif len(path) < len(graph):
                visit(nxt, path + [nxt])

    for name in graph:
        visit(name, [name])
    assert circles == [], circles


def test_hosts_use_only_the_public_surface_of_the_engine():
    wrong = []
    for name, path in _host_modules().items():
        for module, names in _imports(name, path):
            if not module.startswith("interrogator_core"):
                continue
            if module not in PUBLIC:
                wrong.append(f"{name} imports {module}")
            else:
                wrong += [f"{name} imports {module}.{n}, not public" for n in names if n not in PUBLIC[module]]
    assert wrong == [], "\n".join(wrong)
