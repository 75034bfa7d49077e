"""Every user-facing setting, declared once: name, type, default, bounds, choices and help.

The hosts build their controls from this table: the ComfyUI node inputs (``nodes.py``), the A1111/Forge
settings page, tab and API request models (``interrogator_hosts/a1111_*.py``) and the CLI flags
(:mod:`interrogator_core.cli`); ``tests/test_settings_table.py`` fails when one of them shows another bound,
default or choice. A host keeps only its wording around a setting (a label, the widget kind) and the settings
that exist on that host alone (e.g. the webui's "Largest image accepted by the API").

Values: :attr:`Setting.default` is what a widget shows (``"auto"``, ``"none"``, ``""``); :meth:`Setting.parse`
turns a widget, flag or stored value into the engine's value (the one place where ``"none"`` means no caption
model and ``"auto"`` the target's caption style); :meth:`Setting.check` also enforces the bounds and a closed
choice list. The engine's own checks (:class:`~interrogator_core.request.Request`,
:class:`~interrogator_core.InterrogatorConfig`) use the same constants.

Adding a setting: add one :class:`Setting` to :data:`SETTINGS` (its bounds as named constants where the engine
checks them too), give the engine the field or argument, then show it in each host that should have it with
that host's builder (``nodes.py`` ``_input``, ``a1111_settings`` ``_option``, ``a1111_api`` ``_field``,
``cli`` :func:`add_flag`); the table test then checks the new control against the table with no change.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Type

from .caption import AUTO_STYLE, NO_CAPTION, list_caption_models, list_caption_styles
from .errors import UnknownNameError
from .host import PRECISIONS, OffloadPolicy
from .request import (BEAM_WIDTH_MIN, DEFAULT_MIN_FLAVORS, FLAVORS_MAX, MAX_BEAM_WIDTH, MAX_FLAVORS_MIN,
                      MIN_FLAVORS_MIN, NEGATIVE_COUNT_MAX, NEGATIVE_COUNT_MIN, flag, list_modes, whole_number)
from .targets import CUSTOM, TARGETS, list_targets

__all__ = ["SETTINGS", "Setting", "add_flag", "caption_model_value", "caption_style_value", "get_setting",
           "list_clip_model_names", "list_settings", "target_help"]

#: Labels per table in analyze (``top_n``): the most a host offers.
TOP_N_MAX = 100


def target_help(custom: str = "the CLIP model you pick") -> str:
    """The targets in one line, ``name: description; ...`` (``custom``: what target custom uses, in the host's
    words) — the one text every host shows for the target setting."""
    return "; ".join([f"{name}: {t.description}" for name, t in TARGETS.items()] + [f"{CUSTOM}: {custom}"])


def list_clip_model_names() -> List[str]:
    """open_clip's ``ARCH/TAG`` names (``list_clip_models()``), imported when asked (open_clip is heavy)."""
    from .clip import list_clip_models

    return list_clip_models()


def _precisions() -> List[str]:
    return list(PRECISIONS)


def _caption_lengths() -> List[str]:
    from .captioning import list_caption_lengths

    return list_caption_lengths()


def _offload_policies() -> List[str]:
    return [p.value for p in OffloadPolicy]


def _caption_model_help() -> str:
    return "registry names: " + ", ".join(list_caption_models())


@dataclass(frozen=True)
class Setting:
    """One user-facing setting.

    Attributes:
        name: the engine's name (``InterrogatorConfig`` field or ``interrogate`` argument; CLI flag
            ``--name-with-dashes`` unless :attr:`flag` says otherwise).
        type: ``int``, ``float``, ``bool`` or ``str`` (``list`` for several folders).
        default: what a control shows by default (``"auto"``/``"none"``/``""`` rather than None); a callable is
            called (a default that depends on the machine, e.g. the cache folder).
        help: one line for tooltips, ``--help`` and API docs (:meth:`help_text` adds the dynamic part).
        label: a short title for settings pages.
        minimum / maximum: bounds of a number (None: unbounded on that side).
        choices: returns the valid values (a callable: lists that depend on what is installed).
        open_choices: the choices are suggestions; other values are valid too (model names, hub ids, folders).
        none_word: the value that means "unset" and parses to None (``"none"``: no caption model; ``"auto"``:
            the target's style; ``""`` for free text).
        details: returns text appended to :attr:`help` (lists built at call time).
        unset_ok: a host may leave it unset (None) and the engine applies the default (``min_flavors``: the
            default capped at ``max_flavors``).
        host_default: a host may show its own default (its model folder for ``cache_dir``).
        flag: the CLI flag ("" where the CLI has none).
    """

    name: str
    type: Type
    default: Any
    help: str
    label: str = ""
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[Callable[[], Sequence[str]]] = None
    open_choices: bool = False
    none_word: Optional[str] = None
    details: Optional[Callable[[], str]] = None
    unset_ok: bool = False
    host_default: bool = False
    flag: Optional[str] = None

    @property
    def cli_flag(self) -> str:
        """``--max-flavors`` (or :attr:`flag`; "" where the CLI has none)."""
        return "--" + self.name.replace("_", "-") if self.flag is None else self.flag

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def options(self) -> List[str]:
        """The values a choice control lists: the ``none_word`` first (where there is one), then
        :attr:`choices`; [] for a setting without choices."""
        if self.choices is None:
            return []
        head = [self.none_word] if self.none_word else []
        return head + [c for c in self.choices() if c != self.none_word]

    def help_text(self) -> str:
        """:attr:`help` and its dynamic part (e.g. the target list)."""
        return self.help + (f" ({self.details()})" if self.details is not None else "")

    def bounds_text(self) -> str:
        """"0 to 64" / "1 or more" ("" without bounds)."""
        if self.minimum is None and self.maximum is None:
            return ""
        if self.maximum is None:
            return f"{_num(self.minimum)} or more"
        return f"{_num(self.minimum)} to {_num(self.maximum)}"

    def parse(self, value: Any) -> Any:
        """A control's, flag's or stored value → the engine's value (type conversion, ``none_word`` → None,
        text stripped); a whole number also within the bounds (ValueError naming the setting otherwise)."""
        if value is None:
            return None
        if self.none_word is not None and isinstance(value, str) and \
                value.strip().lower() in ("", self.none_word.lower()):
            return None
        if self.type is bool:
            return flag(self.name, value)
        if self.type is int:
            return whole_number(self.name, value, int(self.minimum or 0),
                                None if self.maximum is None else int(self.maximum))
        if self.type is float:
            number = float(value)
            if (self.minimum is not None and number < self.minimum) or \
                    (self.maximum is not None and number > self.maximum):
                raise ValueError(f"{self.name} must be from {self.bounds_text()}, got {value!r}")
            return number
        if self.type is str:
            if not isinstance(value, str):
                raise ValueError(f"{self.name} must be text, got {value!r}")
            return value.strip()
        return value

    def check(self, value: Any) -> Any:
        """:meth:`parse`, and a value of a closed choice list must be one of them (UnknownNameError)."""
        parsed = self.parse(value)
        if parsed is not None and self.choices is not None and not self.open_choices:
            valid = self.options()
            if parsed not in valid:
                raise UnknownNameError(self.name.replace("_", " "), str(parsed), valid)
        return parsed


def _num(value: Optional[float]) -> str:
    return "" if value is None else (str(int(value)) if float(value).is_integer() else str(value))


def caption_model_value(value: Any) -> Optional[str]:
    """A caption model as typed or stored → the engine's value (``none`` or empty: None, no caption model)."""
    return SETTINGS["caption_model"].parse(None if value is None else str(value))


def caption_style_value(value: Any) -> Optional[str]:
    """A caption style as typed or stored → the engine's value (``auto`` or empty: None, the target's)."""
    return SETTINGS["caption_style"].parse(None if value is None else str(value))


def _default_cache_dir() -> str:
    from .cache import default_cache_dir

    return str(default_cache_dir())


_SETTINGS: List[Setting] = [
    # -- the request (``Interrogator.interrogate``) ---------------------------------------------------------
    Setting("mode", str, "best", "best: chain of flavors (slowest, best); fast: top labels; classic: "
            "clip-interrogator 1 style; negative: negative prompt only; caption: caption only", "Mode",
            choices=list_modes),
    Setting("min_flavors", int, DEFAULT_MIN_FLAVORS, "fewest flavors in the best-mode chain (unset: "
            f"{DEFAULT_MIN_FLAVORS}, or max_flavors when that is lower)", "Minimum flavors (best mode)",
            minimum=MIN_FLAVORS_MIN, maximum=FLAVORS_MAX, unset_ok=True),
    Setting("max_flavors", int, 32, "most flavors in the prompt (negative mode: most negative terms)",
            "Maximum flavors", minimum=MAX_FLAVORS_MIN, maximum=FLAVORS_MAX),
    Setting("negative_count", int, 16, "most terms in the negative prompt (0: none)", "Negative terms",
            minimum=NEGATIVE_COUNT_MIN, maximum=NEGATIVE_COUNT_MAX),
    Setting("beam_width", int, 1, "prompts kept at each chain step: 1 = greedy (fastest); k > 1 is never worse "
            "and takes about k times as long", "Beam width", minimum=BEAM_WIDTH_MIN, maximum=MAX_BEAM_WIDTH),
    Setting("similarities", bool, True, "also compute the similarities that cost an extra text encode "
            "(fast/classic prompts)", "Similarities", flag=""),
    Setting("top_n", int, 5, "labels per table in analyze", "Top labels per table", minimum=1,
            maximum=TOP_N_MAX, flag="--top"),
    Setting("with_caption", bool, False, "analyze: also write a caption", "Also caption", flag=""),
    # -- the models ------------------------------------------------------------------------------------------
    Setting("target", str, CUSTOM, "the diffusion model the prompt is for: picks the CLIP model(s), the "
            "caption style and the prompts a result carries", "Target model", choices=list_targets,
            details=target_help),
    Setting("clip_model", str, "ViT-L-14/openai", "open_clip model that ranks the labels (target custom): "
            "ARCH/TAG, hf-hub:ORG/REPO, ARCH/path/to/weights or a snapshot folder; match your checkpoint "
            "(ViT-L-14/openai for SD 1.x, ViT-H-14 for SD 2.x, ViT-bigG-14 for SDXL)", "CLIP model",
            choices=list_clip_model_names, open_choices=True),
    Setting("caption_model", str, "blip-large", "captioner that writes the sentence the prompt starts with: a "
            f"registry name, a Hugging Face id or a folder; {NO_CAPTION}: CLIP only (negative mode, analyze)",
            "Caption model", choices=list_caption_models, open_choices=True, none_word=NO_CAPTION,
            details=_caption_model_help),
    Setting("caption_style", str, AUTO_STYLE, "how the caption is written: short (one sentence), detailed (a "
            f"paragraph), tags (comma-separated); {AUTO_STYLE}: the target's default. detailed/tags need a caption "
            "model that can write them (e.g. Florence-2, Qwen-VL, JoyCaption)", "Caption style",
            choices=list_caption_styles, none_word=AUTO_STYLE),
    Setting("caption_prompt", str, "", "your own instruction for chat caption models (Qwen-VL, "
            "LLaVA/JoyCaption); replaces the style's; empty: the style's", "Caption instruction", none_word=""),
    Setting("caption_max_length", int, None, "most new tokens of a caption (unset: by style, 256 with a caption "
            "instruction)", "Caption length", minimum=1, unset_ok=True, flag=""),
    Setting("caption_length", str, AUTO_STYLE, "caption length preset: very_short (under 15 words), short (one "
            "sentence), medium (2-3 sentences), long (a paragraph), very_long; sets the instruction (Qwen-VL, "
            "JoyCaption), the Florence-2 task and the token budget (BLIP/GIT: only that); auto: the style's",
            "Caption length preset", choices=_caption_lengths, none_word=AUTO_STYLE),
    Setting("trigger_prefix", str, "", "text put before every positive prompt (e.g. a LoRA trigger word); not the "
            "caption, not the negative", "Trigger words (prefix)"),
    Setting("trigger_suffix", str, "", "text put after every positive prompt; not the caption, not the negative",
            "Trigger words (suffix)"),
    Setting("caption_replace", str, "", "replace list file applied to each written caption: lines 'old => new' "
            "replace, plain lines remove (whole words, any case); empty: none", "Caption replace list",
            none_word=""),
    Setting("trust_remote_code", bool, False, "let a caption model run Python code from its folder or hub "
            "repository; only for models you trust (off: native transformers only)", "Trust remote code"),
    Setting("sdxl_dual", bool, False, "target sdxl only: also build prompts for SDXL's CLIP ViT-L/14 encoder "
            "(positive/negative stay ViT-bigG's); loads a second CLIP model", "SDXL: both text encoders"),
    # -- devices and memory ----------------------------------------------------------------------------------
    Setting("precision", str, "auto", "model dtype; auto: fp16 where the host (or CUDA) uses fp16, else fp32; int8/nf4: the caption "
            "model quantized with bitsandbytes (CUDA only, the [quant] extra; CLIP as with auto)",
            "Precision", choices=_precisions),
    Setting("offload", str, OffloadPolicy.KEEP.value, "when models leave the device: keep (between calls), "
            "offload (after each call), lowvram (one model at a time)", "Offload policy",
            choices=_offload_policies),
    Setting("device", str, "auto", "auto, cpu, cuda, cuda:1, mps", "Device"),
    Setting("batch_size", int, 4, "images per engine call", "Batch size", minimum=1),
    Setting("caption_batch_size", int, 8, "images per caption-model batch (lower it for low VRAM)",
            "Caption batch size", minimum=1, flag=""),
    Setting("image_batch_size", int, 16, "images per CLIP image-encoder batch", "Image batch size", minimum=1,
            flag=""),
    Setting("text_batch_size", int, 512, "labels per CLIP text-encoder batch", "Text batch size", minimum=1,
            flag=""),
    Setting("flavor_intermediate_count", int, 2048, "how many top-ranked labels the chains choose from",
            "Flavor candidates", minimum=1, flag=""),
    # -- image taggers (``InterrogatorConfig.tagger_options``, :class:`~interrogator_core.tagger.TaggerOptions`)
    Setting("general_threshold", float, 0.35, "tagger: lowest score of a general tag that is kept (inclusive)",
            "Tagger: general threshold", minimum=0.0, maximum=1.0),
    Setting("character_threshold", float, 0.85, "tagger: lowest score of a character tag that is kept (inclusive)",
            "Tagger: character threshold", minimum=0.0, maximum=1.0),
    Setting("include_rating", bool, False, "tagger: put the most likely rating tag first", "Tagger: rating tag"),
    Setting("character_first", bool, True, "tagger: character tags before the others (off: all by score)",
            "Tagger: characters first", flag=""),
    Setting("replace_underscores", bool, True, "tagger: long_hair -> long hair (kaomoji such as ^_^ keep theirs)",
            "Tagger: underscores to spaces", flag=""),
    Setting("escape_parentheses", bool, True, "tagger: write ( ) as \\( \\) so A1111/ComfyUI read them as text",
            "Tagger: escape parentheses", flag=""),
    Setting("exclude", str, "", "tagger: tags never written (comma-separated, any spelling)", "Tagger: exclude tags",
            flag="--exclude-tags"),
    Setting("always_first", str, "", "tagger: tags put first when found (comma-separated, in this order)",
            "Tagger: always-first tags"),
    Setting("max_tags", int, 0, "tagger: most tags in the prompt (0: no limit)", "Tagger: maximum tags",
            minimum=0),
    # -- folders ---------------------------------------------------------------------------------------------
    Setting("cache_dir", str, _default_cache_dir, "label-embedding cache folder", "Label cache folder",
            host_default=True),
    Setting("model_dirs", list, (), "folders searched for local model files first", "Model folders",
            host_default=True, flag="--models-dir"),
    Setting("download_dir", str, None, "where downloads go (unset: the Hugging Face cache)", "Download folder",
            unset_ok=True, host_default=True, flag=""),
    Setting("data_dir", str, None, "folder with the built-in label lists (unset: the bundled data/)",
            "Label lists folder", unset_ok=True),
    Setting("user_tables_dir", str, None, "folder of extra NAME.txt label lists", "Extra label lists",
            unset_ok=True, flag="--user-tables"),
    Setting("blocklist", str, None, "labels never to use, one per line", "Blocklist", unset_ok=True),
]

#: The settings by name (see :class:`Setting`).
SETTINGS: Dict[str, Setting] = {s.name: s for s in _SETTINGS}


#: the settings of an image tagger, the fields of :class:`~interrogator_core.tagger.TaggerOptions`
TAGGER_SETTINGS = ("general_threshold", "character_threshold", "include_rating", "character_first",
                   "replace_underscores", "escape_parentheses", "exclude", "always_first", "max_tags")


def tagger_options(values: Dict[str, Any]) -> Any:
    """A :class:`~interrogator_core.tagger.TaggerOptions` from the tagger settings in ``values`` (a host's
    controls, flags or stored options by setting name; missing ones take the table's default), each parsed by
    its setting."""
    from .tagger import TaggerOptions

    return TaggerOptions(**{name: SETTINGS[name].parse(values.get(name, SETTINGS[name].default_value()))
                            for name in TAGGER_SETTINGS})


def get_setting(name: str) -> Setting:
    """The setting ``name`` (UnknownNameError naming the valid ones)."""
    try:
        return SETTINGS[name]
    except KeyError:
        raise UnknownNameError("setting", name, SETTINGS) from None


def list_settings() -> List[str]:
    return list(SETTINGS)


class _WholeNumberArg:
    """argparse ``type`` of a whole-number flag: the setting's bounds (readable as ``.setting``)."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.__name__ = "whole number"

    def __call__(self, text: str) -> int:
        try:
            return self.setting.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None


def add_flag(parser: Any, name: str, *, help: Optional[str] = None, **overrides: Any) -> argparse.Action:
    """Add setting ``name``'s CLI flag to ``parser`` (an ArgumentParser or argument group): its type and bounds,
    default, choices (closed lists only) and help from the table (``help``: replaces the table's; other
    keywords go to ``add_argument`` as they are, e.g. ``choices`` with an extra CLI-only value)."""
    s = get_setting(name)
    kwargs: Dict[str, Any] = {}
    default = s.default_value()
    if s.type is bool:
        kwargs["action"] = "store_true"
    elif s.type is list:
        kwargs.update(action="append", default=list(default), metavar="DIR")
    else:
        kwargs["default"] = None if s.unset_ok else default
        if s.type is int:
            kwargs["type"] = _WholeNumberArg(s)
        elif s.type is float:
            kwargs["type"] = float
        if s.choices is not None and not s.open_choices:
            kwargs["choices"] = s.options()
    text = help if help is not None else s.help_text()
    facts = [s.bounds_text()] if s.bounds_text() else []
    if s.type is list:
        facts.append("repeatable")
    if s.type not in (bool, list) and default not in (None, ""):
        facts.append(f"default: {default}")
    kwargs["help"] = (text + f" ({'; '.join(facts)})" if facts else text).replace("%", "%%")
    kwargs.update(overrides)
    return parser.add_argument(s.cli_flag, **kwargs)
