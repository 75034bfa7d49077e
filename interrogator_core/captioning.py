"""The caption stage of the pipeline: which style a caption is written in, its token budget, and batched
``generate`` with Cancel, progress and a smaller batch on a device OOM. The caption families themselves (how
each model is loaded and prompted) are in :mod:`caption`."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from PIL import Image

from .caption import Captioner
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


def caption_tokens(config: "InterrogatorConfig", style: str) -> int:
    """Max new tokens of a caption in ``style`` under ``config``."""
    if config.caption_max_length is not None:
        return config.caption_max_length
    return INSTRUCTION_TOKENS if config.caption_prompt else CAPTION_TOKENS.get(style, INSTRUCTION_TOKENS)


class CaptionStage:
    """Writes the captions of a batch with the configured caption model, from the pool."""

    def __init__(self, config: "InterrogatorConfig", pool: ModelPool) -> None:
        self.config, self.pool = config, pool

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

        def run(bs: int) -> None:
            for start in range(0, len(todo), bs):
                host.check_interrupt()
                idx = todo[start:start + bs]
                extra = {"options": self.config.tagger_options} if isinstance(cap, Tagger) else {}
                texts = cap.generate([batch[i] for i in idx], tokens, style=style,
                                     instruction=self.config.caption_prompt, **extra)
                for i, text in zip(idx, texts):
                    out[i] = text
                host.progress(min(start + bs, len(todo)), len(todo), "captions")

        retry_smaller_on_oom(run, self.config.caption_batch_size, "captioning")
        return out
