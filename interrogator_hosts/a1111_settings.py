"""The "Prompt Interrogator" section of the webui's Settings page: keys, defaults, reading and registration."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional

from interrogator_core import (AUTO_STYLE, MAX_BEAM_WIDTH, NO_CAPTION, TARGETS, list_caption_models,
                               list_caption_styles, list_modes, list_targets)
from interrogator_core.targets import CUSTOM

log = logging.getLogger(__name__)

OPT_PREFIX = "prompt_interrogator_"
SETTINGS_SECTION = ("prompt_interrogator", "Prompt Interrogator")


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
    return models_dir()


def models_dir() -> str:
    """``models/clip-interrogator``: where the webui keeps our label caches and local models."""
    return os.path.join(_models_path(), "clip-interrogator")


def target_info() -> str:
    """The target presets in one line (dropdown and settings help text)."""
    return "; ".join([f"{name}: {t.description}" for name, t in TARGETS.items()]
                     + [f"{CUSTOM}: the CLIP model you pick"])


def clip_model_choices() -> List[str]:
    """CLIP model names for the dropdowns (empty when open_clip cannot list them: the user can still type one)."""
    from interrogator_core import list_clip_models

    try:
        return list_clip_models()
    except Exception as e:  # open_clip missing or broken
        log.warning("cannot list CLIP models: %s", e)
        return []


def caption_model_choices() -> List[str]:
    """Caption model names for the dropdowns, and ``none`` (no caption)."""
    return list_caption_models() + [NO_CAPTION]


def _on_keep_loaded_change() -> None:
    from .a1111_service import get_service

    if not read_settings().keep_loaded:
        get_service().offload()


def _text_or(default: str) -> Callable[[Any], str]:
    return lambda v: str(v or "").strip() or default


def _optional_text(value: Any) -> Optional[str]:
    return str(value or "").strip() or None


def parse_caption_style(value: Any) -> Optional[str]:
    """A caption style as typed or stored → the engine's value (``auto`` or empty: None, the target's)."""
    text = str(value or "").strip()
    return None if text.lower() in ("", AUTO_STYLE) else text


def caption_style_choices() -> List[str]:
    """Caption styles for the dropdowns, and ``auto`` (the target's default)."""
    return [AUTO_STYLE] + list_caption_styles()


def _caption(value: Any) -> Optional[str]:
    text = str(value or "").strip()
    return None if text.lower() in ("", NO_CAPTION) else text


#: Component name of a dropdown the user may also type into (see :func:`setting_component`).
EDITABLE = "DropdownEditable"


def setting_component(name: Optional[str]) -> Any:
    """A settings option's component class by name: a gradio class, or :data:`EDITABLE`, the webui's own
    ``modules.ui_components.DropdownEditable``.

    The webui sends an option's component arguments again as ``gr.update(value=..., **args)`` on every page
    load, and gradio 3.41 (A1111 1.10) refuses an update argument the component's ``update()`` does not take
    (``allow_custom_value``): the whole settings refresh fails and the checkpoint dropdown shows "Error". So
    component arguments hold only what an update takes, and an editable dropdown is a class that sets the flag
    in its constructor.
    """
    import gradio as gr

    if name is None:
        return None
    if name == EDITABLE:
        try:
            from modules.ui_components import DropdownEditable
        except ImportError:  # pragma: no cover - A1111 >= 1.6 and Forge have it
            return _editable_dropdown(gr)
        return DropdownEditable
    return getattr(gr, name)


def _editable_dropdown(gr: Any) -> Any:
    class EditableDropdown(gr.Dropdown):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(allow_custom_value=True, **kwargs)

        def get_block_name(self) -> str:
            return "dropdown"

    return EditableDropdown


def _option(default: Any, label: str, parse: Callable[[Any], Any], component: Optional[str] = None,
            args: Any = None, *, info: Optional[Callable[[], str]] = None,
            onchange: Optional[Callable[[], None]] = None, stored: Any = None) -> Any:
    """One settings-page entry: a :class:`Settings` field whose metadata drives registration and reading.

    Args:
        default: the field's default (what :func:`read_settings` gives when the key is missing).
        label: the label on the Settings page.
        parse: stored value → field value (type conversion and normalisation, e.g. "none" → None).
        component: the gradio component's class name (None: the webui's default for the type).
        args: its ``component_args`` (a dict, or a callable returning one, evaluated when the page is built).
        info: help text shown under the option (a callable: evaluated when the page is built).
        onchange: called by the webui when the value changes.
        stored: the default stored on the Settings page when it differs from ``default`` (e.g. "" for a
            folder whose real default depends on the webui's paths).
    """
    meta = {"label": label, "parse": parse, "component": component, "args": args, "info": info,
            "onchange": onchange, "stored": default if stored is None else stored}
    return field(default=default, metadata=meta)


@dataclass
class Settings:
    """The settings page values. Each field is one option of the page (key: ``prompt_interrogator_<field>``);
    its metadata (label, component, parser) is the one place the option is described."""

    clip_model: str = _option("ViT-L-14/openai", "Default CLIP model", _text_or("ViT-L-14/openai"), EDITABLE,
                              lambda: {"choices": clip_model_choices()})
    caption_model: Optional[str] = _option(
        "blip-large", "Default caption model", _caption, EDITABLE, lambda: {"choices": caption_model_choices()})
    caption_style: Optional[str] = _option(
        None, "Default caption style (auto: the target's; detailed/tags need a caption model that can write "
                    "them, e.g. Florence-2, Qwen-VL, JoyCaption)", parse_caption_style, "Dropdown",
        lambda: {"choices": caption_style_choices()}, stored=AUTO_STYLE)
    caption_prompt: Optional[str] = _option(
        None, "Caption instruction for chat caption models (empty: the style's own; replaces it when given)",
        _optional_text, "Textbox", {"lines": 2}, stored="")
    trust_remote_code: bool = _option(
        False, "Trust remote code of caption models (runs Python code from the model's repository; only for "
               "models you trust)", bool)
    mode: str = _option("best", "Default mode", str, "Radio", lambda: {"choices": list_modes()})
    min_flavors: int = _option(8, "Minimum flavors (best mode)", int, "Slider",
                               {"minimum": 0, "maximum": 64, "step": 1})
    max_flavors: int = _option(32, "Maximum flavors", int, "Slider", {"minimum": 1, "maximum": 64, "step": 1})
    negative_count: int = _option(16, "Terms in the negative prompt (0: none)", int, "Slider",
                                  {"minimum": 0, "maximum": 64, "step": 1})
    keep_loaded: bool = _option(False, "Keep interrogator models in VRAM between calls (faster, uses VRAM)", bool,
                                onchange=_on_keep_loaded_change)
    cache_dir: str = _option("", "Label embedding cache folder (empty: models/clip-interrogator, shared with "
                                 "clip-interrogator-ext)", lambda v: str(v or "").strip() or default_cache_dir())
    replace_builtin: bool = _option(False, "Use Prompt Interrogator for the built-in 'Interrogate CLIP' button "
                                           "and /sdapi/v1/interrogate (model 'clip')", bool)
    api_max_mb: float = _option(20, "Largest image accepted by the API (MB, decoded)", float, "Number")
    target: str = _option(CUSTOM, "Default target model (picks the CLIP model; custom: the default CLIP model "
                                  "above)", _text_or(CUSTOM), "Dropdown", lambda: {"choices": list_targets()},
                          info=target_info)
    beam_width: int = _option(1, "Default beam width (1: greedy chain; k > 1: never worse, about k times slower)",
                              int, "Slider", {"minimum": 1, "maximum": MAX_BEAM_WIDTH, "step": 1})


#: Settings page defaults (keys without the ``prompt_interrogator_`` prefix), as stored on the page.
DEFAULTS: Dict[str, Any] = {f.name: f.metadata["stored"] for f in fields(Settings)}


def read_settings() -> Settings:
    """Current values from ``shared.opts`` (defaults where a key is missing, e.g. before the UI exists)."""
    from modules import shared

    opts = getattr(shared, "opts", None)
    values = {}
    for f in fields(Settings):
        value = getattr(opts, OPT_PREFIX + f.name, None) if opts is not None else None
        values[f.name] = f.metadata["parse"](f.metadata["stored"] if value is None else value)
    return Settings(**values)


def register_settings() -> None:
    """``on_ui_settings`` callback: the "Prompt Interrogator" section of the Settings page."""
    from modules import shared

    for f in fields(Settings):
        meta = f.metadata
        component = setting_component(meta["component"])
        info = shared.OptionInfo(meta["stored"], meta["label"], component, meta["args"], onchange=meta["onchange"],
                                 section=SETTINGS_SECTION)
        if meta["info"] is not None:
            info = info.info(meta["info"]())
        shared.opts.add_option(OPT_PREFIX + f.name, info)
