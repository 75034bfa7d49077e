"""The caption stage of the pipeline: which style a caption is written in, its token budget, and batched
``generate`` with Cancel, progress and a smaller batch on a device OOM. The caption families themselves (how
each model is loaded and prompted) are in :mod:`caption`."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

from PIL import Image

from .caption import FAMILIES, Captioner
from .errors import InterrogatorError
from .host import retry_smaller_on_oom
from .pool import ModelPool, caption_key
from .tagger import Tagger

if TYPE_CHECKING:
    from .interrogator import InterrogatorConfig

log = logging.getLogger(__name__)

#: max new tokens of a caption per style when ``caption_max_length`` is None (a paragraph needs room)
CAPTION_TOKENS: Dict[str, int] = {"short": 32, "detailed": 256, "tags": 128}
#: ... and with a free instruction (``caption_prompt``)
INSTRUCTION_TOKENS = 256


@dataclass(frozen=True)
class CaptionLength:
    """A caption length preset: how each kind of caption family is asked for that length.

    ``instruction``: what chat families (Qwen-VL, LLaVA/JoyCaption) are told instead of the style's instruction
    (prose styles; a tags caption keeps its instruction); ``task``: the Florence-2 task token (prose styles);
    ``tokens``: the max new tokens for every family (BLIP/GIT get only this)."""

    instruction: str
    task: str
    tokens: int


#: The caption length presets (``caption_length``; None: the style's own instruction and budget), shortest first.
CAPTION_LENGTHS: Dict[str, CaptionLength] = {
    "very_short": CaptionLength("Write a very short caption for this image (under 15 words).", "<CAPTION>", 24),
    "short": CaptionLength("Write a short caption for this image: one sentence, under 30 words.", "<CAPTION>", 48),
    "medium": CaptionLength("Write a medium-length caption for this image: two or three sentences, under 60 "
                            "words.", "<DETAILED_CAPTION>", 96),
    "long": CaptionLength("Write a long descriptive caption for this image: one paragraph, under 120 words.",
                          "<MORE_DETAILED_CAPTION>", 192),
    "very_long": CaptionLength("Write a very long, detailed description of this image: the subject, the setting, "
                               "the composition, the lighting, the colors and the style, under 250 words.",
                               "<MORE_DETAILED_CAPTION>", 384),
}


def list_caption_lengths() -> List[str]:
    return list(CAPTION_LENGTHS)


def caption_tokens(config: "InterrogatorConfig", style: str) -> int:
    """Max new tokens of a caption in ``style`` under ``config``: ``caption_max_length``, else the length
    preset's, else by style (256 with a free instruction)."""
    if config.caption_max_length is not None:
        return config.caption_max_length
    if config.caption_length is not None:
        return CAPTION_LENGTHS[config.caption_length].tokens
    return INSTRUCTION_TOKENS if config.caption_prompt else CAPTION_TOKENS.get(style, INSTRUCTION_TOKENS)


def caption_instruction(config: "InterrogatorConfig", prompting: str, style: str) -> Optional[str]:
    """What reaches a caption model of ``prompting`` kind ("none"/"task"/"chat") in ``style``: the user's
    ``caption_prompt``, else the length preset's instruction (chat) or task token (Florence-2) for prose styles,
    else None (the style's own)."""
    if config.caption_prompt:
        return config.caption_prompt
    if config.caption_length is None or style == "tags" or prompting == "none":
        return None
    preset = CAPTION_LENGTHS[config.caption_length]
    return preset.instruction if prompting == "chat" else preset.task


#: A replace list: (compiled word-boundary pattern, replacement; "" removes)
ReplaceRules = List[Tuple["re.Pattern[str]", str]]


def read_replace_list(source: Union[str, "os.PathLike[str]", Sequence[str]]) -> ReplaceRules:
    """The rules of a replace list (a file path, or its lines): ``old => new`` replaces, a plain line removes;
    blank lines and lines starting with ``#`` are skipped. Matches are whole words/phrases, case-insensitive."""
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise ValueError(f"caption_replace {str(source)!r} cannot be read ({e}); give a text file with lines "
                             "'old => new' (replace) or 'word' (remove)") from None
    else:
        lines = list(source)
    rules: ReplaceRules = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        old, sep, new = line.partition("=>")
        old = old.strip()
        if old:
            rules.append((re.compile(r"(?<!\w)" + re.escape(old) + r"(?!\w)", re.IGNORECASE),
                          new.strip() if sep else ""))
    return rules


def apply_replace_list(text: str, rules: ReplaceRules) -> str:
    """``text`` with every rule applied in order; a removal leaves no doubled space or comma behind."""
    if not rules:
        return text
    for pattern, new in rules:
        text = pattern.sub(lambda _m: new, text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", " ".join(text.split()))  # "a , b" -> "a, b"
    text = re.sub(r"([,;])(\s*[,;])+", r"\1", text)  # "a,, b" -> "a, b"
    text = re.sub(r"[,;]+([.!?])", r"\1", text)  # "a,." -> "a."
    return text.strip(" ,;")


class CaptionStage:
    """Writes the captions of a batch with the configured caption model, from the pool."""

    def __init__(self, config: "InterrogatorConfig", pool: ModelPool) -> None:
        self.config, self.pool = config, pool
        self._rules: Optional[ReplaceRules] = None

    def replace_rules(self) -> ReplaceRules:
        """The rules of ``caption_replace`` (read once)."""
        if self._rules is None:
            src = self.config.caption_replace
            self._rules = read_replace_list(src) if src else []
        return self._rules

    def pool_keys(self, dtype) -> list:
        """The pool entry of the caption model (none without one)."""
        cfg = self.config
        return [caption_key(cfg.caption_model, dtype, cfg.trust_remote_code, self.pool.quantization())
                ] if cfg.caption_model else []

    def model(self) -> Captioner:
        """The caption model (loaded on first use)."""
        cfg = self.config
        if not cfg.caption_model:
            raise InterrogatorError("this mode needs a caption model but caption_model is None; "
                                    "set one (e.g. blip-large) or use mode 'negative'")
        return self.pool.captioner(cfg.caption_model, cfg.model_dirs, cfg.download_dir,
                                   trust_remote_code=cfg.trust_remote_code)

    def formats_tags(self) -> bool:
        """The caption model is an image tagger (its tags come formatted by ``tagger_options``)."""
        return any(isinstance(self.pool.get(k), Tagger) for k in self.pool_keys(self.pool.dtype()))

    def style(self, cap: Captioner, notes: Optional[List[str]]) -> str:
        """The style to write: the user's, else the target's where the model can write it, else short (with a
        note; a style the user set that the model cannot write is refused by the model with the list)."""
        cfg = self.config
        style = cfg.effective_caption_style
        if cfg.caption_style is None and style not in cap.styles:
            used = "short" if "short" in cap.styles else cap.styles[0]  # a tagger writes tags only
            note = (f"the caption model {cfg.caption_model} cannot write {style} captions, which target "
                    f"{cfg.target} prefers: used {used} (pick a caption model that can, or set caption_style)")
            log.warning("%s", note)
            if notes is not None:
                notes.append(note)
            style = used
        return style

    def __call__(self, batch: List[Image.Image], given: Optional[Sequence[Optional[str]]] = None,
                 notes: Optional[List[str]] = None) -> List[str]:
        """Captions of ``batch`` (``given`` ones kept; None entries written); remarks go to ``notes``."""
        given = list(given) if given is not None else [None] * len(batch)
        if len(given) != len(batch):
            raise ValueError(f"got {len(given)} captions for {len(batch)} images")
        todo = [i for i, c in enumerate(given) if c is None]
        out = [c or "" for c in given]
        if not todo or not self.config.caption_model:
            return out
        cap, host = self.model(), self.pool.host
        prose = [e.key for e in self.config.preset.encoders if not e.ranked]
        if isinstance(cap, Tagger) and prose:
            raise InterrogatorError(
                f"the caption model {self.config.caption_model} is an image tagger: it writes tags, but target "
                f"{self.config.target} reads prose in {', '.join(prose)}; pick a sentence caption model (Florence-2, "
                f"Qwen-VL, JoyCaption) for it, or a tag target (illustrious, noobai, pony, sdxl-tags)")
        self.pool.use(cap.handle)
        style = self.style(cap, notes)
        tokens = caption_tokens(self.config, style)
        prompting = "none" if isinstance(cap, Tagger) else FAMILIES[cap.family].prompting
        instruction = caption_instruction(self.config, prompting, style)
        rules = self.replace_rules()

        def run(bs: int) -> None:
            for start in range(0, len(todo), bs):
                host.check_interrupt()
                idx = todo[start:start + bs]
                extra = {"options": self.config.tagger_options} if isinstance(cap, Tagger) else {}
                texts = cap.generate([batch[i] for i in idx], tokens, style=style, instruction=instruction, **extra)
                for i, text in zip(idx, texts):
                    out[i] = apply_replace_list(text, rules)
                host.progress(min(start + bs, len(todo)), len(todo), "captions")

        retry_smaller_on_oom(run, self.config.caption_batch_size, "captioning")
        return out
