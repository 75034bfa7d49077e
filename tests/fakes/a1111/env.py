"""Puts the A1111 (and optionally Forge) fakes on sys.path and resets their recorded state between tests."""
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEBUI = str(HERE / "webui")
FORGE = str(HERE / "forge")
ROOT = HERE.parents[2]  # the extension root


def _drop(prefixes):
    for name in list(sys.modules):
        if name.split(".")[0] in prefixes:
            del sys.modules[name]


def install(forge: bool = False):
    """Fresh fake modules (webui, plus Forge's backend when ``forge``); returns ``modules.shared``.

    Like the webui, it patches ``torch.load`` (``modules.safe``); :func:`uninstall` restores it."""
    uninstall()
    _drop({"modules", "launch", "backend"})
    for p in (WEBUI, FORGE):
        while p in sys.path:
            sys.path.remove(p)
    sys.path.insert(0, WEBUI)
    if forge:
        sys.path.insert(0, FORGE)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    importlib.invalidate_caches()
    from modules import safe, shared  # noqa: F401  (the webui imports safe at start-up: torch.load is patched)

    return shared


def uninstall():
    safe = sys.modules.get("modules.safe")
    if safe is not None:
        import torch

        torch.load = safe.unsafe_torch_load
    _drop({"modules", "launch", "backend"})
    for p in (WEBUI, FORGE):
        while p in sys.path:
            sys.path.remove(p)
