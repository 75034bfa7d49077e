"""The "Prompt Interrogator" section of the webui's Settings page: keys, defaults, reading and registration."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

from interrogator_core import TARGETS, list_caption_models, list_modes, list_targets
from interrogator_core.targets import CUSTOM

log = logging.getLogger(__name__)

OPT_PREFIX = "prompt_interrogator_"
SETTINGS_SECTION = ("prompt_interrogator", "Prompt Interrogator")
NO_CAPTION = "none"
#: Settings page defaults (keys without the ``prompt_interrogator_`` prefix).
DEFAULTS: Dict[str, Any] = {
    "clip_model": "ViT-L-14/openai",
    "caption_model": "blip-large",
    "mode": "best",
    "keep_loaded": False,
    "cache_dir": "",
    "min_flavors": 8,
    "max_flavors": 32,
    "negative_count": 16,
    "replace_builtin": False,
    "api_max_mb": 20,
    "target": CUSTOM,
    "beam_width": 1,
}
MAX_BEAM_WIDTH = 8


def _models_path() -> str:
    from modules import shared

    path = getattr(shared, "models_path", None)
    if path is None:
        try:
            from modules.paths_internal import models_path as path  # type: ignore[no-redef]
        except ImportError:
            path = "models"
    return str(path)


def default_cache_dir() -> str:
    """``models/clip-interrogator``: clip-interrogator-ext's cache folder, so its caches are reused."""
    return os.path.join(_models_path(), "clip-interrogator")


@dataclass
class Settings:
    """The settings page values (see :data:`DEFAULTS`)."""

    clip_model: str = DEFAULTS["clip_model"]
    caption_model: Optional[str] = DEFAULTS["caption_model"]
    mode: str = DEFAULTS["mode"]
    keep_loaded: bool = DEFAULTS["keep_loaded"]
    cache_dir: str = ""
    min_flavors: int = DEFAULTS["min_flavors"]
    max_flavors: int = DEFAULTS["max_flavors"]
    negative_count: int = DEFAULTS["negative_count"]
    replace_builtin: bool = DEFAULTS["replace_builtin"]
    api_max_mb: float = DEFAULTS["api_max_mb"]
    target: str = DEFAULTS["target"]
    beam_width: int = DEFAULTS["beam_width"]


def read_settings() -> Settings:
    """Current values from ``shared.opts`` (defaults where a key is missing, e.g. before the UI exists)."""
    from modules import shared

    opts = getattr(shared, "opts", None)

    def get(key: str) -> Any:
        value = getattr(opts, OPT_PREFIX + key, None) if opts is not None else None
        return DEFAULTS[key] if value is None else value

    caption = str(get("caption_model") or "").strip()
    return Settings(
        clip_model=str(get("clip_model")).strip() or DEFAULTS["clip_model"],
        caption_model=None if caption.lower() in ("", NO_CAPTION) else caption,
        mode=str(get("mode")),
        keep_loaded=bool(get("keep_loaded")),
        cache_dir=str(get("cache_dir") or "").strip() or default_cache_dir(),
        min_flavors=int(get("min_flavors")),
        max_flavors=int(get("max_flavors")),
        negative_count=int(get("negative_count")),
        replace_builtin=bool(get("replace_builtin")),
        api_max_mb=float(get("api_max_mb")),
        target=str(get("target")).strip() or CUSTOM,
        beam_width=int(get("beam_width")),
    )


def target_info() -> str:
    """The target presets in one line (dropdown and settings help text)."""
    return "; ".join([f"{name}: {t.description}" for name, t in TARGETS.items()]
                     + [f"{CUSTOM}: the CLIP model you pick"])


def register_settings() -> None:
    """``on_ui_settings`` callback: the "Prompt Interrogator" section of the Settings page."""
    import gradio as gr
    from modules import shared

    from interrogator_core import list_clip_models

    def clip_choices() -> dict:
        try:
            names = list_clip_models()
        except Exception as e:  # open_clip missing or broken: still let the user type a name
            log.warning("cannot list CLIP models: %s", e)
            names = []
        return {"choices": names, "allow_custom_value": True}

    options = {
        "clip_model": shared.OptionInfo(DEFAULTS["clip_model"], "Default CLIP model", gr.Dropdown, clip_choices,
                                        section=SETTINGS_SECTION),
        "caption_model": shared.OptionInfo(DEFAULTS["caption_model"], "Default caption model", gr.Dropdown,
                                           lambda: {"choices": list_caption_models() + [NO_CAPTION],
                                                    "allow_custom_value": True}, section=SETTINGS_SECTION),
        "mode": shared.OptionInfo(DEFAULTS["mode"], "Default mode", gr.Radio, lambda: {"choices": list_modes()},
                                  section=SETTINGS_SECTION),
        "min_flavors": shared.OptionInfo(DEFAULTS["min_flavors"], "Minimum flavors (best mode)", gr.Slider,
                                         {"minimum": 0, "maximum": 64, "step": 1}, section=SETTINGS_SECTION),
        "max_flavors": shared.OptionInfo(DEFAULTS["max_flavors"], "Maximum flavors", gr.Slider,
                                         {"minimum": 1, "maximum": 64, "step": 1}, section=SETTINGS_SECTION),
        "negative_count": shared.OptionInfo(DEFAULTS["negative_count"], "Terms in the negative prompt (0: none)",
                                            gr.Slider, {"minimum": 0, "maximum": 64, "step": 1},
                                            section=SETTINGS_SECTION),
        "keep_loaded": shared.OptionInfo(DEFAULTS["keep_loaded"],
                                         "Keep interrogator models in VRAM between calls (faster, uses VRAM)",
                                         onchange=_on_keep_loaded_change, section=SETTINGS_SECTION),
        "cache_dir": shared.OptionInfo("", "Label embedding cache folder (empty: models/clip-interrogator, "
                                           "shared with clip-interrogator-ext)", section=SETTINGS_SECTION),
        "replace_builtin": shared.OptionInfo(DEFAULTS["replace_builtin"],
                                             "Use Prompt Interrogator for the built-in 'Interrogate CLIP' button "
                                             "and /sdapi/v1/interrogate (model 'clip')", section=SETTINGS_SECTION),
        "api_max_mb": shared.OptionInfo(DEFAULTS["api_max_mb"], "Largest image accepted by the API (MB, decoded)",
                                        gr.Number, section=SETTINGS_SECTION),
        "target": shared.OptionInfo(DEFAULTS["target"], "Default target model (picks the CLIP model; custom: the "
                                                        "default CLIP model above)", gr.Dropdown,
                                    lambda: {"choices": list_targets()}, section=SETTINGS_SECTION).info(target_info()),
        "beam_width": shared.OptionInfo(DEFAULTS["beam_width"], "Default beam width (1: greedy chain; k > 1: never "
                                                                "worse, about k times slower)", gr.Slider,
                                        {"minimum": 1, "maximum": MAX_BEAM_WIDTH, "step": 1},
                                        section=SETTINGS_SECTION),
    }
    for key, info in options.items():
        shared.opts.add_option(OPT_PREFIX + key, info)


def _on_keep_loaded_change() -> None:
    from .a1111_service import get_service

    if not read_settings().keep_loaded:
        get_service().offload()
