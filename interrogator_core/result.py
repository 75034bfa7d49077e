"""Result types returned by the engine (plain data; JSON-friendly through ``to_dict``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple


@dataclass
class InterrogationResult:
    """One image's prompts.

    Attributes:
        mode: the mode that produced it.
        positive: the prompt (fits CLIP's 77-token window); empty in negative mode.
        negative: the negative prompt (fits the window); empty in caption mode or with negative_count=0.
        caption: the caption model's sentence ("" without a caption model).
        similarity: cosine similarity of ``positive`` with the image (None if not computed).
        negative_similarity: cosine similarity of ``negative`` with the image (lower is better).
        candidates: best mode: similarity of each candidate prompt (caption, classic, fast, chain).
        source: the image's file name or index.
    """

    mode: str
    positive: str
    negative: str
    caption: str
    similarity: Optional[float] = None
    negative_similarity: Optional[float] = None
    candidates: Dict[str, float] = field(default_factory=dict)
    source: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AnalyzeResult:
    """Top labels per table for one image: ``tables[name] = [(label, similarity), ...]`` best first."""

    tables: Dict[str, List[Tuple[str, float]]]
    caption: str = ""
    source: Optional[str] = None

    def to_dict(self) -> dict:
        return {"caption": self.caption, "source": self.source,
                "tables": {k: [{"label": l, "similarity": s} for l, s in v] for k, v in self.tables.items()}}

    def to_text(self) -> str:
        lines = [f"caption: {self.caption}"] if self.caption else []
        for name, pairs in self.tables.items():
            lines.append(f"{name}:")
            lines.extend(f"  {s:.4f}  {l}" for l, s in pairs)
        return "\n".join(lines)
