"""Prompt rules (clip-interrogator 0.6.0's, with its bugs fixed): fitting the 77-token window and the greedy
phrase chain.

Differences from the reference, all deliberate:
* a candidate that would not fit the window is never chosen, so every prompt fits (the reference could
  return an over-long prompt and scored a silently truncated one);
* phrase order is the ranking order, not a Python ``set``'s, so results are deterministic;
* the reversed (negative) chain compares like with like (the reference mixed signs on its first step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from .textenc import TextEncoder

SEPARATOR = ", "


def fits(text: TextEncoder, prompts: Sequence[str]) -> List[bool]:
    return text.tokenize(prompts)[1].tolist()


def truncate_to_fit(text: TextEncoder, prompt: str) -> str:
    """Drop trailing ", "-separated parts until the prompt fits the window (the first part always stays)."""
    parts = prompt.split(SEPARATOR)
    prefixes = [SEPARATOR.join(parts[: i + 1]) for i in range(len(parts))]
    ok = fits(text, prefixes)
    best = prefixes[0]
    for p, f in zip(prefixes, ok):
        if not f:
            break
        best = p
    if not ok[0]:  # one part alone is too long: cut it at the tokenizer's limit, by words
        words = best.split(" ")
        while len(words) > 1 and not fits(text, [" ".join(words)])[0]:
            words = words[: max(1, len(words) * 3 // 4)]
        best = " ".join(words)
    return best


def similarities(text: TextEncoder, features: torch.Tensor, prompts: Sequence[str]) -> List[float]:
    """Cosine similarity of one image's normalized features [D] with each prompt."""
    if not prompts:
        return []
    emb = text.encode_texts(prompts).to(features.device)
    return (emb @ features.float()).tolist()


@dataclass
class ChainResult:
    prompt: str
    similarity: float  # true cosine similarity (not negated for reverse chains)
    steps: int


def chain(
    text: TextEncoder,
    features: torch.Tensor,
    phrases: Sequence[str],
    start: Optional[str] = None,
    min_count: int = 8,
    max_count: int = 32,
    reverse: bool = False,
    batch_size: int = 512,
    on_step: Optional[Callable[[int, int], None]] = None,
) -> ChainResult:
    """Greedy chain: repeatedly append the phrase that most raises (``reverse``: lowers) the similarity.

    Keeps going while it improves, or for at least ``min_count`` steps, at most ``max_count`` steps, and
    never past the 77-token window. Returns the best prompt seen. Each step encodes the shared prompt
    prefix once and only the phrases' own tokens per candidate (see :mod:`textenc`).
    """
    sign = -1.0 if reverse else 1.0
    feats = features.float().reshape(-1)
    pool = list(dict.fromkeys(p for p in phrases if p))
    if start:
        curr = start
        curr_sim = sign * similarities(text, feats, [start])[0]
    else:
        if not pool:
            return ChainResult("", 0.0, 0)
        sims = [sign * s for s in similarities(text, feats, pool)]
        j = max(range(len(pool)), key=sims.__getitem__)
        curr, curr_sim = pool.pop(j), sims[j]
    best, best_sim = curr, curr_sim
    steps = 0
    for idx in range(max_count):
        if on_step is not None:
            on_step(idx, max_count)
        if not pool:
            break
        ids, ok = text.candidate_ids(curr, pool, SEPARATOR)
        if not ok.any():
            break
        keep = ok.nonzero().flatten()
        emb = text.encode_with_prefix(ids[keep], batch_size=batch_size)
        sims = sign * (emb @ feats.to(emb.device))
        k = int(sims.argmax().item())
        j, sim = int(keep[k].item()), float(sims[k].item())
        candidate = curr + SEPARATOR + pool[j]
        if sim > best_sim:
            best, best_sim = candidate, sim
        if not (sim > curr_sim or idx < min_count):
            break
        curr, curr_sim = candidate, sim
        pool.pop(j)
        steps += 1
    return ChainResult(best, sign * best_sim, steps)


def join_fitting(text: TextEncoder, head: str, parts: Sequence[str]) -> str:
    """``head, part1, part2, ...`` cut to the window."""
    return truncate_to_fit(text, SEPARATOR.join([head, *parts]) if head else SEPARATOR.join(parts))


def classic_prompt(caption: str, medium: str, artist: str, trending: str, movement: str,
                   flavors: Sequence[str]) -> str:
    """clip-interrogator's classic layout."""
    flaves = SEPARATOR.join(flavors)
    if not caption:
        return f"{medium} {artist}, {trending}, {movement}, {flaves}"
    if caption.startswith(medium):
        return f"{caption} {artist}, {trending}, {movement}, {flaves}"
    return f"{caption}, {medium} {artist}, {trending}, {movement}, {flaves}"


def argmax_label(pairs: Sequence[Tuple[str, float]]) -> str:
    return pairs[0][0] if pairs else ""
