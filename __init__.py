"""ComfyUI entry point of Prompt Interrogator: exports the node mappings, nothing else.

No work at import beyond importing the thin node module (models load when a workflow first runs). A missing
dependency logs one clear error and registers no nodes, so ComfyUI still starts.
"""
import importlib.util
import logging
import os
import sys

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

_log = logging.getLogger("prompt_interrogator.comfyui")
_HERE = os.path.dirname(os.path.abspath(__file__))
#: import name → pip name, for the error message.
_REQUIRED = {"open_clip": "open-clip-torch", "transformers": "transformers", "safetensors": "safetensors",
             "PIL": "pillow", "numpy": "numpy"}

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

# The engine packages (interrogator_core, interrogator_hosts) are imported by their own names. Appended, not
# prepended: this folder's nodes.py must never shadow ComfyUI's own `nodes` module.
if _HERE not in sys.path:
    sys.path.append(_HERE)

_missing = [pip for mod, pip in _REQUIRED.items() if importlib.util.find_spec(mod) is None]
if _missing:
    _log.error("Prompt Interrogator: missing Python packages %s; its nodes are not registered. Install them "
               "into ComfyUI's Python with: python -m pip install -r %s", ", ".join(_missing),
               os.path.join(_HERE, "requirements.txt"))
else:
    try:
        from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811
    except ImportError as e:
        _log.error("Prompt Interrogator: cannot import its nodes (%s: %s); its nodes are not registered. "
                   "Install its requirements into ComfyUI's Python: python -m pip install -r %s",
                   type(e).__name__, e, os.path.join(_HERE, "requirements.txt"))
