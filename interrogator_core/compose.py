"""Where a target's prompts are assembled: the caption's head of a 77-token CLIP prompt, and each encoder's
prompt in ``result.prompts``.

The rule, the same for every target:

* A **77-token CLIP prompt** (``clip_l``, ``clip_g``, ``positive`` of sd2/custom) starts from the caption's
  *head* and keeps room for CLIP-ranked terms: a caption of at most :data:`HEAD_TOKENS` tokens (start and end
  token included) is the head whole — clip-interrogator's own case, whose prompts stay identical; a longer one
  (a VLM paragraph) is cut to its longest run of whole sentences (tags: whole tags) within
  :data:`HEAD_TOKENS`, the first sentence cut at a comma or word where it alone is longer. At least 37 of the
  77 tokens stay for ranked terms, and a prompt built from a cut head holds at least :data:`MIN_TERMS` of them
  (best mode drops the caption-alone candidate and the chain keeps that many terms). A quality prefix
  (anime targets) counts in the head's budget, but the head keeps at least half of what the prefix leaves
  (Pony's 33-token score prefix: a 21-token head).
* A sentence's full stop never meets a term: ``A lighthouse on a rock., by X`` is ``A lighthouse on a rock, by X``.
* A **long-prose encoder** (``t5``, an LLM encoder such as ``llama``) reads the whole caption as written. The
  ranked terms are not appended there: those encoders were trained on natural-language (VLM) captions, and a
  comma list of CLIP flavors is out of their distribution; where the target also reads a CLIP prompt, the
  ranked terms are in that one.
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

from .prompts import SEPARATOR
from .result import InterrogationResult
from .targets import TargetPreset
from .textenc import TextEncoder

#: most tokens (start/end included) of a caption's head in a 77-token CLIP prompt
HEAD_TOKENS = 40
#: fewest ranked terms in a CLIP prompt whose caption was cut to its head
MIN_TERMS = 3

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def token_counts(text: TextEncoder, texts: Sequence[str]) -> List[int]:
    """Tokens of each text as the encoder sees them (start/end included; at most the window)."""
    if not texts:
        return []
    ids, _ = text.tokenize(texts)
    return (ids != 0).sum(1).tolist()


def end_clean(text: str) -> str:
    """``text`` without a trailing full stop (or comma, colon, semicolon), so terms can follow it."""
    return text.rstrip().rstrip(".,;:").rstrip()


def _longest_within(text: TextEncoder, prefixes: Sequence[str], budget: int) -> str:
    """The longest of ``prefixes`` (shortest first) within ``budget`` tokens ("" if none)."""
    best = ""
    for prefix, n in zip(prefixes, token_counts(text, prefixes)):
        if n > budget:
            break
        best = prefix
    return best


def _joined_prefixes(parts: Sequence[str], sep: str) -> List[str]:
    return [sep.join(parts[: i + 1]) for i in range(len(parts))]


def clip_head(text: TextEncoder, caption: str, tags: bool = False, budget: int = HEAD_TOKENS) -> Tuple[str, bool]:
    """The head of ``caption`` for a 77-token prompt (see the module's rule) and whether it was cut."""
    caption = caption.strip()
    if not caption:
        return "", False
    if token_counts(text, [caption])[0] <= budget:
        return end_clean(caption), False
    if tags:
        head = _longest_within(text, _joined_prefixes(caption.split(SEPARATOR), SEPARATOR), budget)
        first = caption.split(SEPARATOR)[0]
    else:
        sentences = [s for s in _SENTENCE_END.split(caption) if s.strip()]
        head = _longest_within(text, _joined_prefixes(sentences, " "), budget)
        first = sentences[0]
        if not head:  # one long first sentence: cut at a comma, else at a word
            head = _longest_within(text, _joined_prefixes(end_clean(first).split(SEPARATOR), SEPARATOR), budget)
    if not head:
        head = _longest_within(text, _joined_prefixes(first.split(" "), " "), budget) or first.split(" ")[0]
    return end_clean(head), True


def target_prompts(preset: TargetPreset, sdxl_dual: bool, main: InterrogationResult, caption: str,
                   extra: Dict[str, InterrogationResult]) -> Dict[str, str]:
    """``result.prompts``: per encoder the target reads, its prompt: a CLIP encoder's own positive (the main
    one's is ``main.positive``), a long-prose encoder's the whole caption.

    Where an encoder did not run (caption mode, negative mode) its prompt is ``main.positive``: the caption, or
    empty."""
    prose = {e.key for e in preset.encoders if not e.ranked}
    out = {}
    for key in preset.prompt_keys(sdxl_dual):
        if key in prose:
            out[key] = caption
        else:
            out[key] = extra[key].positive if key in extra else main.positive
    return out


def with_trigger_words(result: InterrogationResult, prefix: str = "", suffix: str = "") -> None:
    """Put ``prefix`` before and ``suffix`` after every positive prompt of ``result`` (``positive``,
    ``positive_l`` and each prompt in ``prompts``, CLIP and long-prose alike), joined with ", "; the caption and
    the negatives stay as they are. Applied after the prompts are fitted: a trigger word is never cut, so a CLIP
    prompt may pass 77 tokens by the trigger words' length."""
    if not prefix and not suffix:
        return

    def wrap(text: str) -> str:
        return SEPARATOR.join(p for p in (prefix, end_clean(text) if suffix else text, suffix) if p)

    result.positive = wrap(result.positive)
    if result.positive_l is not None:
        result.positive_l = wrap(result.positive_l)
    result.prompts = {key: wrap(text) for key, text in result.prompts.items()}
