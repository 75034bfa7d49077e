"""Errors raised by the engine. Every one carries a message that names the thing at fault and the fix."""
from __future__ import annotations

import difflib
from typing import Iterable


class InterrogatorError(Exception):
    """Base class of every error the engine raises on purpose."""


class UnknownNameError(InterrogatorError, ValueError):
    """A name (model, mode, table, ...) that is not in a registry; the message lists close valid names."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], hint: str = "") -> None:
        valid = sorted(set(valid))
        close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; did you mean: {', '.join(close)}?"
        if len(valid) <= 20:
            msg += f" Valid: {', '.join(valid)}."
        else:
            msg += f" ({len(valid)} valid names; see list_{kind.replace(' ', '_')}s())."
        if hint:
            msg += " " + hint
        super().__init__(msg)
        self.name = name
        self.close_matches = close


class ModelNotFoundError(InterrogatorError, FileNotFoundError):
    """Model weights are neither on disk nor downloadable (offline, or a wrong name/path)."""


class ModelLoadError(InterrogatorError):
    """Model files exist but cannot be loaded (corrupt, truncated, wrong format)."""


class ImageError(InterrogatorError, ValueError):
    """An input image cannot be read or converted; `source` names it."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"image {source}: {reason}")
        self.source = source
        self.reason = reason


class Interrupted(InterrogatorError):
    """The host asked to stop (Interrupt button, Ctrl-C). Models are offloaded per policy."""


class DeviceOutOfMemoryError(InterrogatorError, MemoryError):
    """The device ran out of memory even at the smallest batch size."""
