"""One interrogation request, validated once: mode, flavor bounds, negative size, beam width, similarities.

Hosts hand over widget values (sliders give ``8.0``, text boxes ``"8"``), so whole numbers and yes/no flags are
converted here and nowhere else; a bad value is a ValueError that names the setting and its bounds. The bounds
are the named constants below (one place for a settings table to read them from).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .errors import UnknownNameError
from .textenc import MAX_BEAM_WIDTH

#: Modes: what each needs. "caption" needs no CLIP; "negative" needs no caption model.
MODES: Dict[str, Dict[str, bool]] = {
    "best": {"caption": True, "clip": True},
    "classic": {"caption": True, "clip": True},
    "fast": {"caption": True, "clip": True},
    "negative": {"caption": False, "clip": True},
    "caption": {"caption": True, "clip": False},
}

#: ``min_flavors`` when the caller sets none (capped at ``max_flavors``)
DEFAULT_MIN_FLAVORS = 8
#: bounds of the whole-number request settings (``beam_width``: up to ``MAX_BEAM_WIDTH``); every host shows
#: these (see :mod:`interrogator_core.settings`)
MIN_FLAVORS_MIN = 0
MAX_FLAVORS_MIN = 0
#: most flavors (``min_flavors`` and ``max_flavors``): more never fit CLIP's 77-token window
FLAVORS_MAX = 64
NEGATIVE_COUNT_MIN = 0
#: most negative terms
NEGATIVE_COUNT_MAX = 64
BEAM_WIDTH_MIN = 1

__all__ = ["BEAM_WIDTH_MIN", "DEFAULT_MIN_FLAVORS", "FLAVORS_MAX", "MAX_BEAM_WIDTH", "MAX_FLAVORS_MIN",
           "MIN_FLAVORS_MIN", "MODES", "NEGATIVE_COUNT_MAX", "NEGATIVE_COUNT_MIN", "Request", "check_request", "flag",
           "list_modes", "whole_number"]


def list_modes() -> List[str]:
    return list(MODES)


def whole_number(name: str, value: Any, minimum: int = 0, maximum: Optional[int] = None) -> int:
    """``value`` of the setting ``name`` as an int within ``[minimum, maximum]``.

    Ints, whole floats (``8.0`` from a slider) and digit strings (``"8"``) are converted; anything else
    (``"eight"``, ``8.5``, ``True``, ``None``) or a value out of bounds raises a ValueError naming the setting and
    its bounds.
    """
    bounds = f"a whole number from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, str):
            number = int(value.strip())
        elif isinstance(value, float):
            if not value.is_integer():
                raise TypeError
            number = int(value)
        else:
            number = operator.index(value)  # int, numpy/torch integer scalars
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {bounds}, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return number


def flag(name: str, value: Any) -> bool:
    """A yes/no setting: a bool, 0/1, or "true"/"false"/"yes"/"no"/"on"/"off"/"1"/"0" (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ValueError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class Request:
    """What one :meth:`Interrogator.interrogate` call asks for, validated (make it with :meth:`make`).

    Attributes:
        mode: one of ``list_modes()``.
        min_flavors / max_flavors: bounds of the positive chain (best), flavor count (fast/classic).
        negative_count: most terms of the negative prompt (0: none); negative mode uses ``max_flavors``.
        beam_width: prompts kept per chain step (1: greedy).
        similarities: also compute the similarities that cost an extra text encode (fast/classic prompts).
    """

    mode: str
    min_flavors: int
    max_flavors: int
    negative_count: int
    beam_width: int = 1
    similarities: bool = True

    @classmethod
    def make(cls, mode: Any = "best", min_flavors: Any = None, max_flavors: Any = 32, negative_count: Any = 16,
             beam_width: Any = 1, similarities: Any = True, min_default: Any = DEFAULT_MIN_FLAVORS) -> "Request":
        """The validated request (the one place these arguments are checked).

        ``mode`` must be in ``list_modes()`` (else UnknownNameError); the counts are whole numbers from 0 to
        :data:`FLAVORS_MAX` / :data:`NEGATIVE_COUNT_MAX` (see :func:`whole_number`), ``min_flavors`` at most
        ``max_flavors`` (None: ``min_default`` — a host's setting, else :data:`DEFAULT_MIN_FLAVORS` — capped at
        ``max_flavors``: a default never contradicts an explicit max), ``beam_width`` from 1 to
        :data:`MAX_BEAM_WIDTH`.
        """
        if not isinstance(mode, str) or mode not in MODES:
            raise UnknownNameError("mode", mode, MODES)
        max_flavors = whole_number("max_flavors", max_flavors, MAX_FLAVORS_MIN, FLAVORS_MAX)
        if min_flavors is None:  # not set: the default, capped at max_flavors
            min_flavors = min(whole_number("min_flavors", min_default, MIN_FLAVORS_MIN, FLAVORS_MAX), max_flavors)
        min_flavors = whole_number("min_flavors", min_flavors, MIN_FLAVORS_MIN, FLAVORS_MAX)
        negative_count = whole_number("negative_count", negative_count, NEGATIVE_COUNT_MIN, NEGATIVE_COUNT_MAX)
        beam_width = whole_number("beam_width", beam_width, BEAM_WIDTH_MIN, MAX_BEAM_WIDTH)
        if min_flavors > max_flavors:
            raise ValueError(f"min_flavors ({min_flavors}) is larger than max_flavors ({max_flavors}); lower "
                             f"min_flavors to at most {max_flavors} or raise max_flavors")
        return cls(mode, min_flavors, max_flavors, negative_count, beam_width, flag("similarities", similarities))

    @property
    def needs_caption(self) -> bool:
        """The mode writes captions (every mode but negative)."""
        return MODES[self.mode]["caption"]

    @property
    def needs_clip(self) -> bool:
        """The mode ranks with CLIP (every mode but caption)."""
        return MODES[self.mode]["clip"]

    def negative_terms(self, writes_negatives: bool = True) -> int:
        """Most terms of the negative prompt an encoder builds (0: none): ``max_flavors`` in negative mode, as
        clip-interrogator does, else ``negative_count``."""
        if not writes_negatives:
            return 0
        return self.max_flavors if self.mode == "negative" else self.negative_count

    def as_tuple(self) -> Tuple[str, int, int, int, int]:
        return self.mode, self.min_flavors, self.max_flavors, self.negative_count, self.beam_width


def check_request(mode: Any, min_flavors: Any, max_flavors: Any, negative_count: Any,
                  beam_width: Any, min_default: Any = DEFAULT_MIN_FLAVORS) -> Tuple[str, int, int, int, int]:
    """``(mode, min_flavors, max_flavors, negative_count, beam_width)`` of :meth:`Request.make` (for hosts that
    check a request before any model loads)."""
    return Request.make(mode, min_flavors, max_flavors, negative_count, beam_width,
                        min_default=min_default).as_tuple()
