"""ComfyUI entry point of Prompt Interrogator: exports ``comfy_entrypoint`` (V3 nodes), nothing else.

No work at import beyond importing the thin node module (models load when a workflow first runs). When the
pack cannot run — a missing Python package, or a ComfyUI without the V3 node API (``comfy_api.latest``) — it
logs one clear error and exports an empty ``NODE_CLASS_MAPPINGS`` instead, so ComfyUI still starts and
registers nothing from here. (ComfyUI reads ``NODE_CLASS_MAPPINGS`` before ``comfy_entrypoint``, so the two
are never exported together.)
"""
import importlib
import importlib.util
import logging
import os
import sys

__all__ = ["comfy_entrypoint"]

_log = logging.getLogger("prompt_interrogator.comfyui")
_HERE = os.path.dirname(os.path.abspath(__file__))
_REQUIREMENTS = os.path.join(_HERE, "requirements.txt")
#: import name → pip name, for the error message.
_REQUIRED = {"open_clip": "open-clip-torch", "transformers": "transformers", "safetensors": "safetensors",
             "PIL": "pillow", "numpy": "numpy"}
#: What the nodes use from ComfyUI's V3 node API (present in ComfyUI 0.3.75 and in today's ComfyUI).
_V3_API = ("ComfyNode", "Schema", "NodeOutput", "Custom", "Hidden", "Combo", "Int", "Float", "Boolean",
           "String", "Image")

# The engine packages (interrogator_core, interrogator_hosts) are imported by their own names. Appended, not
# prepended: this folder's nodes.py must never shadow ComfyUI's own `nodes` module.
if _HERE not in sys.path:
    sys.path.append(_HERE)


def _problem() -> str:
    """Why the nodes cannot be registered here ("" when they can)."""
    missing = [pip for mod, pip in _REQUIRED.items() if importlib.util.find_spec(mod) is None]
    if missing:
        return (f"missing Python packages {', '.join(missing)}. Install them into ComfyUI's Python with: "
                f"python -m pip install -r {_REQUIREMENTS}")
    try:
        latest = importlib.import_module("comfy_api.latest")
        absent = [n for n in _V3_API if not hasattr(latest.io, n)] + \
                 ([] if hasattr(latest, "ComfyExtension") else ["ComfyExtension"])
    except (ImportError, AttributeError) as e:
        absent = [f"comfy_api.latest ({type(e).__name__}: {e})"]
    if absent:
        return ("this ComfyUI has no V3 node API (missing: " + ", ".join(absent) + "). The pack needs a ComfyUI "
                "with comfy_api.latest (tested on 0.3.75 and newer): update ComfyUI")
    return ""


_why = _problem()
if not _why:
    try:
        from .nodes import comfy_entrypoint  # noqa: F401
    except ImportError as e:
        _why = (f"cannot import its nodes ({type(e).__name__}: {e}). Install its requirements into ComfyUI's "
                f"Python: python -m pip install -r {_REQUIREMENTS}")
if _why:
    _log.error("Prompt Interrogator: %s; its nodes are not registered.", _why)
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}
    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
