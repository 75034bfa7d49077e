"""Ranking label tables against image features: exact top-k over one matrix product."""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import torch


class LabelIndex:
    """Labels with their normalized embeddings; ranks them against image features.

    Embeddings are kept on the CPU as float16; a device copy is made on first use and dropped by
    :meth:`release` (called when models are offloaded, so no VRAM stays behind).
    """

    def __init__(self, name: str, labels: Sequence[str], embeds: torch.Tensor) -> None:
        if embeds.shape[0] != len(labels):
            raise ValueError(f"table {name}: {len(labels)} labels but {embeds.shape[0]} embeddings")
        self.name = name
        self.labels: List[str] = list(labels)
        self.embeds = embeds.to("cpu", torch.float16)
        self._on_device: Optional[torch.Tensor] = None
        self._parent: Optional[Tuple["LabelIndex", int, int]] = None

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_table(cls, name: str, labels: Sequence[str], embeds: torch.Tensor,
                   blocked: Iterable[str] = ()) -> "LabelIndex":
        """Keep each label's first occurrence, drop blanks and blocked labels (case-insensitive; for artist
        labels "by X"/"inspired by X" a blocked "X" counts)."""
        block = {b.lower() for b in blocked}
        seen, keep = set(), []
        for i, label in enumerate(labels):
            low = label.lower()
            bare = low[3:] if low.startswith("by ") else low[12:] if low.startswith("inspired by ") else low
            if not label or label in seen or low in block or bare in block:
                continue
            seen.add(label)
            keep.append(i)
        idx = torch.tensor(keep, dtype=torch.long)
        return cls(name, [labels[i] for i in keep], embeds[idx] if len(keep) else embeds[:0])

    @classmethod
    def concat(cls, name: str, parts: Sequence["LabelIndex"]) -> "LabelIndex":
        labels: List[str] = []
        for p in parts:
            labels.extend(p.labels)
        return cls(name, labels, torch.cat([p.embeds for p in parts]) if parts else torch.zeros(0, 1))

    def slice(self, name: str, start: int, end: int) -> "LabelIndex":
        """Rows ``start:end`` as an index of their own that shares this one's memory (CPU and device)."""
        child = LabelIndex(name, self.labels[start:end], self.embeds[start:end])  # embeds: a view, not a copy
        child._parent = (self, start, end)
        return child

    def release(self) -> None:
        self._on_device = None
        if self._parent is not None:
            self._parent[0].release()

    def _device_embeds(self, device: torch.device) -> torch.Tensor:
        if self._parent is not None:
            parent, start, end = self._parent
            return parent._device_embeds(device)[start:end]
        if self._on_device is None or self._on_device.device != device:
            # fp16 matmul is fast on GPUs; on the CPU float32 is both faster and exact
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            self._on_device = self.embeds.to(device, dtype)
        return self._on_device

    @torch.inference_mode()
    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine similarities [B, N] (float32) of normalized features [B, D] with every label."""
        emb = self._device_embeds(features.device)
        return (features.to(emb.dtype) @ emb.T).float()

    @torch.inference_mode()
    def top(self, features: torch.Tensor, k: int, reverse: bool = False) -> List[List[Tuple[str, float]]]:
        """Per image, the ``k`` most (or with ``reverse`` least) similar labels with their similarity."""
        k = min(k, len(self.labels))
        if k <= 0:
            return [[] for _ in range(features.shape[0])]
        sims = self.scores(features)
        vals, idx = (-sims if reverse else sims).topk(k, dim=-1)
        if reverse:
            vals = -vals
        return [[(self.labels[j], float(v)) for j, v in zip(row_i.tolist(), row_v.tolist())]
                for row_i, row_v in zip(idx.cpu(), vals.cpu())]
