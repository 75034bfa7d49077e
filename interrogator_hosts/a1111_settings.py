"""The "Prompt Interrogator" section of the webui's Settings page: keys, defaults, reading and registration."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional

from interrogator_core import AUTO_STYLE, MAX_BEAM_WIDTH, NO_CAPTION, SETTINGS  # noqa: F401 (re-exported)
from interrogator_core.hostapi import TAGGER_SETTINGS, caption_style_value, list_clip_model_names, target_help

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


def models_dir() -> str:
    """``models/clip-interrogator``: where the webui keeps our label caches and local models — also
    clip-interrogator-ext's cache folder, so its caches are reused (the cache folder when the setting is empty)."""
    return os.path.join(_models_path(), "clip-interrogator")


def target_info() -> str:
    """The target presets in one line (dropdown and settings help text): the core's :func:`target_help`."""
    return target_help()


def clip_model_choices() -> List[str]:
    """CLIP model names for the dropdowns (empty when open_clip cannot list them: the user can still type one)."""
    try:
        return list_clip_model_names()
    except Exception as e:  # open_clip missing or broken
        log.warning("cannot list CLIP models: %s", e)
        return []


def caption_model_choices() -> List[str]:
    """Caption model names for the dropdowns, and ``none`` (no caption) last, where the webui always had it."""
    setting = SETTINGS["caption_model"]
    return list(setting.choices()) + [setting.none_word]


#: The core's parser of a caption style as typed or stored (``auto`` or empty: None, the target's).
parse_caption_style = caption_style_value


def caption_style_choices() -> List[str]:
    """Caption styles for the dropdowns, and ``auto`` (the target's default)."""
    return SETTINGS["caption_style"].options()


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
            args: Any = None, *, info: Optional[Callable[[], str]] = None, onchange: Optional[str] = None,
            stored: Any = None) -> Any:
    """One settings-page entry: a :class:`Settings` field whose metadata drives registration and reading.

    Args:
        default: the field's default (what :func:`read_settings` gives when the key is missing).
        label: the label on the Settings page.
        parse: stored value → field value (type conversion and normalisation, e.g. "none" → None).
        component: the gradio component's class name (None: the webui's default for the type).
        args: its ``component_args`` (a dict, or a callable returning one, evaluated when the page is built).
        info: help text shown under the option (a callable: evaluated when the page is built).
        onchange: the name of a callback :func:`register_settings` is given, called when the value changes.
        stored: the default stored on the Settings page when it differs from ``default`` (e.g. "" for a
            folder whose real default depends on the webui's paths).
    """
    meta = {"label": label, "parse": parse, "component": component, "args": args, "info": info,
            "onchange": onchange, "stored": default if stored is None else stored}
    return field(default=default, metadata=meta)


def _from_table(name: str, label: str, component: Optional[str] = None, *, stored: Any = None) -> Any:
    """The option of the core's setting ``name`` (:data:`interrogator_core.SETTINGS`): its default, its parser
    (an empty text gives the default back), its help under the option, and for a slider or choice component its
    bounds or choices; ``label``: the page's wording."""
    setting = SETTINGS[name]
    shown = setting.default_value() if stored is None else stored

    def parse(value: Any) -> Any:
        parsed = setting.parse(value)
        return setting.parse(shown) if parsed == "" else parsed

    args: Any = None
    if component == "Slider":
        args = {"minimum": setting.minimum, "maximum": setting.maximum, "step": 0.01 if setting.type is float else 1}
    elif setting.choices is not None and component is not None:
        args = lambda: {"choices": clip_model_choices() if name == "clip_model" else setting.options()}  # noqa: E731
    return _option(setting.parse(shown), label, parse, component, args, info=setting.help_text, stored=shown)


@dataclass
class Settings:
    """The settings page values. Each field is one option of the page (key: ``prompt_interrogator_<field>``);
    its metadata (label, component, parser) is the one place the option is described: the core's settings table
    for the engine's settings, here for the webui's own (keep_loaded, cache_dir's folder, replace_builtin,
    api_max_mb)."""

    clip_model: str = _from_table("clip_model", "Default CLIP model", EDITABLE)
    caption_model: Optional[str] = _from_table("caption_model", "Default caption model", EDITABLE)
    caption_style: Optional[str] = _from_table("caption_style", "Default caption style", "Dropdown")
    caption_prompt: Optional[str] = _option(
        None, "Caption instruction for chat caption models (empty: the style's own; replaces it when given)",
        SETTINGS["caption_prompt"].parse, "Textbox", {"lines": 2}, info=SETTINGS["caption_prompt"].help_text,
        stored="")
    trust_remote_code: bool = _from_table("trust_remote_code", "Trust remote code of caption models")
    mode: str = _from_table("mode", "Default mode", "Radio")
    min_flavors: int = _from_table("min_flavors", "Minimum flavors (best mode)", "Slider")
    max_flavors: int = _from_table("max_flavors", "Maximum flavors", "Slider")
    negative_count: int = _from_table("negative_count", "Terms in the negative prompt (0: none)", "Slider")
    keep_loaded: bool = _option(False, "Keep interrogator models in VRAM between calls (faster, uses VRAM)", bool,
                                onchange="keep_loaded")
    cache_dir: str = _option("", "Label embedding cache folder (empty: models/clip-interrogator, shared with "
                                 "clip-interrogator-ext)", lambda v: str(v or "").strip() or models_dir())
    replace_builtin: bool = _option(False, "Use Prompt Interrogator for the built-in 'Interrogate CLIP' button "
                                           "and /sdapi/v1/interrogate (model 'clip')", bool)
    api_max_mb: float = _option(20, "Largest image accepted by the API (MB, decoded)", float, "Number")
    target: str = _from_table("target", "Default target model (picks the CLIP model; custom: the default CLIP "
                                        "model above)", "Dropdown")
    beam_width: int = _from_table("beam_width", "Default beam width", "Slider")
    # caption controls (issue 19 item 5)
    caption_length: Optional[str] = _from_table("caption_length", "Caption length preset", "Dropdown")
    trigger_prefix: str = _from_table("trigger_prefix", "Trigger words before every positive prompt", "Textbox")
    trigger_suffix: str = _from_table("trigger_suffix", "Trigger words after every positive prompt", "Textbox")
    caption_replace: Optional[str] = _from_table("caption_replace", "Caption replace list file (empty: none)",
                                                 "Textbox")

    # image taggers (a WD v3 tagger folder as the caption model): the table's TAGGER_SETTINGS
    general_threshold: float = _from_table("general_threshold", "Tagger: general tag threshold", "Slider")
    character_threshold: float = _from_table("character_threshold", "Tagger: character tag threshold", "Slider")
    include_rating: bool = _from_table("include_rating", "Tagger: rating tag first")
    character_first: bool = _from_table("character_first", "Tagger: character tags first")
    replace_underscores: bool = _from_table("replace_underscores", "Tagger: underscores to spaces")
    escape_parentheses: bool = _from_table("escape_parentheses", "Tagger: escape parentheses")
    exclude: str = _from_table("exclude", "Tagger: tags never written (comma-separated)", "Textbox")
    always_first: str = _from_table("always_first", "Tagger: tags put first when found (comma-separated)",
                                    "Textbox")
    max_tags: int = _from_table("max_tags", "Tagger: most tags (0: no limit)", "Number")

    def tagger_values(self) -> Dict[str, Any]:
        """The tagger settings of this page by name (for ``interrogator_core.tagger_options``)."""
        return {name: getattr(self, name) for name in TAGGER_SETTINGS}


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


def register_settings(on_change: Optional[Dict[str, Callable[[], None]]] = None) -> None:
    """The "Prompt Interrogator" section of the Settings page (the ``on_ui_settings`` callback is
    :func:`interrogator_hosts.a1111.register_settings`, which passes the service's callbacks).

    Args:
        on_change: option name → called (no arguments) when the user changes that option (e.g.
            ``keep_loaded``: offload the models when it is turned off).
    """
    from modules import shared

    callbacks = dict(on_change or {})
    for f in fields(Settings):
        meta = f.metadata
        component = setting_component(meta["component"])
        onchange = callbacks.get(meta["onchange"]) if meta["onchange"] else None
        info = shared.OptionInfo(meta["stored"], meta["label"], component, meta["args"], onchange=onchange,
                                 section=SETTINGS_SECTION)
        if meta["info"] is not None:
            info = info.info(meta["info"]())
        shared.opts.add_option(OPT_PREFIX + f.name, info)


#: The caption controls: settings page options that a call (API request, tab) may override.
CAPTION_CONTROLS = ("caption_length", "trigger_prefix", "trigger_suffix", "caption_replace")
