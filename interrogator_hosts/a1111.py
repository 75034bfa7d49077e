"""AUTOMATIC1111 / Forge adapter: a facade over the modules that hold each concern.

Imported only inside a running webui (the modules import ``modules.*`` lazily, at call time, so importing this
one is cheap). Pieces:

* :mod:`.a1111_host` — :class:`A1111Host`, :class:`ForgeHost`, :func:`make_host` (the host adapters).
* :mod:`.a1111_settings` — the Settings page section (``register_settings``, ``read_settings``).
* :mod:`.a1111_service` — :class:`InterrogatorService`, the one engine shared by tab, img2img script and API.
* :mod:`.a1111_hooks` — the img2img hook (``apply_to_processing``) and the optional replacement of the
  built-in CLIP interrogator (``install_builtin_hook``).
* :mod:`.a1111_ui` / :mod:`.a1111_api` — the tab and the HTTP routes.
"""
from __future__ import annotations

from .a1111_host import A1111Host, ForgeHost, is_forge, make_host, webui_low_vram
from . import a1111_settings
from .a1111_settings import (DEFAULTS, MAX_BEAM_WIDTH, NO_CAPTION, OPT_PREFIX, SETTINGS_SECTION, Settings, models_dir,
                             read_settings, target_info)
from .a1111_service import InterrogatorService, get_service, offload_unless_kept, set_service
from .a1111_hooks import (IMG2IMG_ACTIONS, apply_to_processing, install_builtin_hook, normalize_action,
                          remove_builtin_hook)

__all__ = ["A1111Host", "ForgeHost", "is_forge", "make_host", "webui_low_vram", "DEFAULTS", "MAX_BEAM_WIDTH",
           "NO_CAPTION", "OPT_PREFIX", "SETTINGS_SECTION", "Settings", "models_dir", "read_settings",
           "register_settings", "target_info", "InterrogatorService", "get_service", "set_service",
           "IMG2IMG_ACTIONS", "apply_to_processing", "install_builtin_hook", "normalize_action",
           "remove_builtin_hook"]


def register_settings() -> None:
    """``on_ui_settings`` callback: the "Prompt Interrogator" section of the Settings page, wired to the service
    (turning keep_loaded off offloads the models now)."""
    a1111_settings.register_settings(on_change={"keep_loaded": offload_unless_kept})
