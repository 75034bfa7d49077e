"""Result types returned by the engine (plain data; JSON-friendly through ``to_dict``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple


def prompt_text(mode: str, positive: str, negative: str, caption: str) -> str:
    """The one prompt string of a result (text box, sidecar): the negative prompt in negative mode, else the
    positive prompt (the caption when there is none)."""
    return negative if mode == "negative" else positive or caption


@dataclass
class InterrogationResult:
    """One image's prompts.

    Attributes:
        mode: the mode that produced it.
        positive: the prompt of the target's main encoder (fits CLIP's 77-token window); empty in negative mode.
        negative: the negative prompt (fits the window); empty in caption mode, with negative_count=0, and for
            targets that use none (flux: see ``notes``).
        caption: the caption as the caption model wrote it, whole ("" without a caption model); the prompts
            start with the part of it that fits the window.
        similarity: cosine similarity of ``positive`` with the image (None if not computed).
        negative_similarity: cosine similarity of ``negative`` with the image (lower is better).
        candidates: best mode: similarity of each candidate prompt (caption, classic, fast, chain).
        source: the image's file name or index.
        positive_l / negative_l: with target "sdxl" and ``sdxl_dual``: the prompts built with SDXL's
            ViT-L/14 encoder (``positive``/``negative`` are ViT-bigG's).
        prompts: the target's prompts by encoder name (``clip_l``, ``clip_g``: fit 77 tokens; ``t5``: the whole
            caption): sd15 clip_l; sdxl and sdxl-tags clip_g (+ clip_l with ``sdxl_dual``); flux clip_l, t5; sd35
            clip_l, clip_g, t5. Empty for sd2 and custom (they read ``positive`` only). The main encoder's
            entry equals ``positive``.
        notes: remarks about the result a user should see (e.g. "Flux ignores negative prompts").
    """

    mode: str
    positive: str
    negative: str
    caption: str
    similarity: Optional[float] = None
    negative_similarity: Optional[float] = None
    candidates: Dict[str, float] = field(default_factory=dict)
    source: Optional[str] = None
    positive_l: Optional[str] = None
    negative_l: Optional[str] = None
    prompts: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        """The one prompt string of this result for a text box or sidecar: the negative prompt in negative
        mode, else the positive prompt (the caption when there is none)."""
        return prompt_text(self.mode, self.positive, self.negative, self.caption)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RoundTripScore:
    """How well a regenerated image (``image_similarity``, CLIP image–image cosine) and a prompt
    (``prompt_similarity``, image–text cosine) match an original image; None where not asked."""

    image_similarity: Optional[float] = None
    prompt_similarity: Optional[float] = None
    source: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        parts = []
        if self.image_similarity is not None:
            parts.append(f"image↔regenerated: {self.image_similarity:.4f}")
        if self.prompt_similarity is not None:
            parts.append(f"image↔prompt: {self.prompt_similarity:.4f}")
        return ", ".join(parts) or "nothing to score"


@dataclass
class AnalyzeResult:
    """Top labels per table for one image: ``tables[name] = [(label, similarity), ...]`` best first.

    ``tags``: with an image tagger as the caption model (and ``with_caption``), its tags with their scores by
    category, ``{"character": {tag: score}, "general": {...}, "rating": {...}}``: the prompt's tags in prompt
    order (as written in it) and every rating's score (see :meth:`~interrogator_core.tagger.Tagger.tag`); {}
    otherwise.
    """

    tables: Dict[str, List[Tuple[str, float]]]
    caption: str = ""
    source: Optional[str] = None
    tags: Dict[str, Dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"caption": self.caption, "source": self.source,
                "tables": {k: [{"label": l, "similarity": s} for l, s in v] for k, v in self.tables.items()},
                "tags": {k: dict(v) for k, v in self.tags.items()}}

    def to_text(self) -> str:
        lines = [f"caption: {self.caption}"] if self.caption else []
        for category, scores in self.tags.items():
            lines.append(f"tags ({category}):")
            lines.extend(f"  {s:.4f}  {t}" for t, s in scores.items())
        for name, pairs in self.tables.items():
            lines.append(f"{name}:")
            lines.extend(f"  {s:.4f}  {l}" for l, s in pairs)
        return "\n".join(lines)
