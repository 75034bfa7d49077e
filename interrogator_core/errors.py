"""Errors raised by the engine. Every one carries a message that names the thing at fault and the fix."""
from __future__ import annotations

import difflib
import errno
import os
from typing import Iterable, Union


class InterrogatorError(Exception):
    """Base class of every error the engine raises on purpose."""


class UnknownNameError(InterrogatorError, ValueError):
    """A name (model, mode, table, ...) that is not in a registry; the message lists close valid names."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], hint: str = "", listing: str = "") -> None:
        """``listing``: the public call that lists every valid name (e.g. ``interrogator_core.list_clip_models()``),
        named in the message when the names are too many to show."""
        valid = sorted(set(valid))
        close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5) if isinstance(name, str) else []
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; did you mean: {', '.join(close)}?"
        if len(valid) <= 20:
            msg += f" Valid: {', '.join(valid)}."
        elif listing:
            msg += f" ({len(valid)} valid names; see {listing}.)"
        else:
            msg += f" ({len(valid)} valid names, e.g. {', '.join(valid[:5])}.)"
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


#: what to do about a failed write, by errno
_WRITE_FIXES = {
    errno.ENOSPC: "the disk is full: free some space or write to another disk",
    errno.EDQUOT: "the disk quota is used up: free some space or write to another disk",
    errno.EROFS: "the file system is read-only: choose an output on a writable disk",
    errno.EACCES: "permission denied: choose a folder you can write to, or fix its permissions",
    errno.EPERM: "permission denied: choose a folder you can write to, or fix its permissions",
    errno.EISDIR: "it is a folder: give a file name",
    errno.ENOENT: "its folder does not exist: create it or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
}


class OutputWriteError(InterrogatorError, OSError):
    """An output file (sidecar, jsonl/csv, journal) cannot be written. Names the file, the cause and the fix.

    Nothing half-written stays behind: rewritten files are replaced atomically and an appended row that failed
    is removed again, so running again (with resume) continues where it stopped.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        fix = _WRITE_FIXES.get(cause.errno or 0, "check the path and the disk")
        InterrogatorError.__init__(
            self, f"cannot write {os.fspath(path)}: {reason} ({fix}). Everything written before is intact; "
                  "run again with resume to continue where it stopped.")
        self.path = os.fspath(path)
        self.cause = cause
        self.errno = cause.errno
