"""Prompt rules (clip-interrogator 0.6.0's, with its bugs fixed): fitting the 77-token window and the greedy
phrase chain.

Differences from the reference, all deliberate:
* a candidate that would not fit the window is never chosen, so every prompt fits (the reference could
  return an over-long prompt and scored a silently truncated one);
* phrase order is the ranking order, not a Python ``set``'s, so results are deterministic;
* the reversed (negative) chain compares like with like (the reference mixed signs on its first step).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from .textenc import MAX_BEAM_WIDTH, TextEncoder

SEPARATOR = ", "
__all__ = ["MAX_BEAM_WIDTH", "SEPARATOR", "COUNT_TAG", "ChainResult", "PromptGrammar", "argmax_label", "as_tags", "chain", "classic_prompt",
           "count_tags_first", "format_tag", "KAOMOJIS",
           "fits", "join_fitting", "similarities", "truncate_to_fit"]


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


@dataclass
class _Beam:
    prompt: str
    sim: float  # signed: higher is better
    pool: List[str]


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
    beam_width: int = 1,
    min_terms: int = 0,
) -> ChainResult:
    """Greedy (``beam_width`` 1) or beam chain: append the phrase that most raises (``reverse``: lowers) the
    similarity.

    A prompt is extended while that improves it, or for at least ``min_count`` steps, at most ``max_count``
    steps, and never past the 77-token window. Returns the best prompt seen. Each step encodes a prompt's
    prefix once and only the phrases' own tokens per candidate (see :mod:`textenc`).

    With ``beam_width`` k > 1, k prompts are extended per step: slot 0 always follows the greedy chain, the
    other k-1 hold the best other extensions, so the result is never worse than greedy's and the cost grows
    about linearly in k.

    ``min_terms`` > 0: the prompt returned holds at least that many phrases after ``start`` where that many fit
    (the best prompt seen among those; 0: the best prompt seen, ``start`` included, as clip-interrogator).
    """
    sign = -1.0 if reverse else 1.0
    feats = features.float().reshape(-1)
    width = max(1, int(beam_width))
    pool = list(dict.fromkeys(p for p in phrases if p))
    if start:
        beams = [_Beam(start, sign * similarities(text, feats, [start])[0], pool)]
    else:
        if not pool:
            return ChainResult("", 0.0, 0)
        sims = [sign * s for s in similarities(text, feats, pool)]
        order = sorted(range(len(pool)), key=lambda j: -sims[j])[:width]  # stable: ties keep list order
        beams = [_Beam(pool[j], sims[j], [p for i, p in enumerate(pool) if i != j]) for j in order]
    best = max(beams, key=lambda b: b.sim)
    best_prompt, best_sim = best.prompt, best.sim
    need = int(min_terms) if start else max(0, int(min_terms) - 1)  # without start, the first phrase is a term
    if need > 0:
        best_sim = float("-inf")
    steps = 0
    for idx in range(max_count):
        if on_step is not None:
            on_step(idx, max_count)
        accepted = []  # (sim, parent, phrase index) per beam, best first
        for b in beams:
            if not b.pool:
                accepted.append([])
                continue
            ids, ok = text.candidate_ids(b.prompt, b.pool, SEPARATOR)
            if not ok.any():
                accepted.append([])
                continue
            keep = ok.nonzero().flatten()
            emb = text.encode_with_prefix(ids[keep], batch_size=batch_size)
            sims = sign * (emb @ feats.to(emb.device))
            vals, top = sims.topk(min(width, len(keep)))
            accepted.append([(float(v), b, int(keep[t])) for v, t in zip(vals.tolist(), top.tolist())
                             if float(v) > b.sim or idx < min_count])
        greedy = accepted[0][:1]  # slot 0: exactly what the greedy chain does next
        others = sorted((e for row in accepted for e in row if not greedy or e is not greedy[0]),
                        key=lambda e: -e[0])
        chosen, seen = [], set()
        for sim, parent, j in greedy + others:
            prompt = parent.prompt + SEPARATOR + parent.pool[j]
            if prompt in seen:
                continue
            seen.add(prompt)
            chosen.append(_Beam(prompt, sim, parent.pool[:j] + parent.pool[j + 1:]))
            if len(chosen) == width:
                break
        if not chosen:
            break
        for b in chosen:
            if b.sim > best_sim and steps + 1 >= need:
                best_prompt, best_sim = b.prompt, b.sim
        beams = chosen
        steps += 1
    if best_sim == float("-inf"):  # fewer than min_terms phrases fit: the longest prompt there is
        best_prompt, best_sim = beams[0].prompt, beams[0].sim
    return ChainResult(best_prompt, sign * best_sim, steps)


def join_fitting(text: TextEncoder, head: str, parts: Sequence[str]) -> str:
    """``head, part1, part2, ...`` cut to the window."""
    return truncate_to_fit(text, SEPARATOR.join([head, *parts]) if head else SEPARATOR.join(parts))


#: Tags whose underscores are part of the face, kept as they are when underscores become spaces: the list of
#: toriato's stable-diffusion-webui-wd14-tagger (tagger/ui.py), which SmilingWolf's wd-tagger demo uses too.
KAOMOJIS = frozenset({"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
                      ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"})
_UNESCAPED_PAREN = re.compile(r"(?<!\\)([()])")


def format_tag(tag: str, spaces: bool = True, escape: bool = False) -> str:
    """One booru tag as a prompt writes it: ``spaces``: ``long_hair`` → ``long hair`` (kaomoji such as ``^_^``
    keep theirs); ``escape``: ``(``/``)`` → ``\\(``/``\\)`` for A1111/ComfyUI prompt weighting (already escaped
    ones stay)."""
    if spaces and tag not in KAOMOJIS:
        tag = tag.replace("_", " ")
    return _UNESCAPED_PAREN.sub(r"\\\1", tag) if escape else tag


def as_tags(text: str, spaces: bool = True, escape: bool = False) -> str:
    """A caption as booru-style tags, the way SDXL anime checkpoints are prompted: split on commas and line
    breaks, each tag through :func:`format_tag`, trailing periods dropped, duplicates (case-insensitive) and
    empty tags removed, joined with ", "."""
    tags, seen = [], set()
    for part in re.split(r"[,\n]", text):
        tag = format_tag(" ".join(part.split()).rstrip(".").strip(), spaces, escape)
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            tags.append(tag)
    return SEPARATOR.join(tags)


def classic_prompt(caption: str, medium: str, artist: str, trending: str, movement: str,
                   flavors: Sequence[str], tags: bool = False) -> str:
    """clip-interrogator's classic layout (``tags``: every term its own tag, ``medium, artist, ...``); empty
    parts (a table emptied by the blocklist) are left out."""
    if tags:
        head = [caption, medium, artist]
    elif caption and caption.startswith(medium):
        head = [f"{caption} {artist}"]
    else:
        head = [caption, f"{medium} {artist}"]
    return SEPARATOR.join(p for p in (*(h.strip() for h in head), trending, movement, *flavors) if p)


#: booru count tags, which anime checkpoints read first (``1girl``, ``2boys``, ``solo``, ``no humans``, ...)
COUNT_TAG = re.compile(r"^(\d+\+?\s?(girl|boy|other)s?|solo|multiple (girls|boys|others)|no humans)$", re.I)


def count_tags_first(tags: str) -> str:
    """``tags`` (", "-joined) with the count tags moved to the front, every other tag in its order."""
    parts = [t for t in tags.split(SEPARATOR) if t]
    return SEPARATOR.join([t for t in parts if COUNT_TAG.match(t)] + [t for t in parts if not COUNT_TAG.match(t)])


@dataclass(frozen=True)
class PromptGrammar:
    """How a target's prompts join caption, ranked terms and tags; each CLIP encoder is told it (it never reads
    the target itself).

    Attributes:
        tags: booru-style tags (the caption as tags, classic terms each a tag of its own).
        count_first: tags: the count tags (``1girl``, ``solo``) first, as anime checkpoints were trained.
        underscores: tags keep booru underscores (``long_hair``; False: spaces, kaomoji kept).
        escape: tags write parentheses escaped (``\\(``), as A1111/ComfyUI prompt weighting needs.
        prefix: put before every positive CLIP prompt (a quality prefix such as ``masterpiece, best quality``).
        negative_base: put before every negative prompt (the negative a model card prescribes).
    """

    tags: bool = False
    count_first: bool = False
    underscores: bool = False
    escape: bool = False
    prefix: str = ""
    negative_base: str = ""

    def caption(self, text: str, formatted: bool = False) -> str:
        """A caption as the prompts start from it (``formatted``: an image tagger wrote it, whose options
        already decided underscores and escaping)."""
        if not self.tags:
            return text
        if formatted:
            tags = as_tags(text, spaces=False)
        else:
            tags = as_tags(text, spaces=not self.underscores, escape=self.escape)
        return count_tags_first(tags) if self.count_first else tags

    def start(self, head: str) -> str:
        """The start of a positive CLIP prompt: the prefix, then the caption's head."""
        return SEPARATOR.join(p for p in (self.prefix, head) if p)

    def classic(self, caption: str, medium: str, artist: str, trending: str, movement: str,
                flavors: Sequence[str]) -> str:
        """clip-interrogator's classic layout in this grammar (see :func:`classic_prompt`)."""
        return classic_prompt(caption, medium, artist, trending, movement, flavors, tags=self.tags)


def argmax_label(pairs: Sequence[Tuple[str, float]]) -> str:
    return pairs[0][0] if pairs else ""
