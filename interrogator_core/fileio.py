"""Crash-safe file writes, the one place the engine writes files: whole-file replacement and whole-record appends.

* :func:`atomic_write` / :func:`atomic_target`: a temp file in the same folder, fsynced, then renamed over the
  target — readers see the old file or the new one, never a mix (label caches, ``.txt`` sidecars).
* :class:`RecordFile`: appends one record (one line) at a time with a single write, then flush and fsync. A
  record cut short (a crash, a full disk) is removed before the next append, and a failed write is rolled
  back, so the file always ends with a whole record (jsonl/csv outputs and the batch journal).

A write that fails raises :class:`~interrogator_core.errors.OutputWriteError`, naming the file, the cause and
the fix.
"""
from __future__ import annotations

import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from .errors import OutputWriteError

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: the low-level write, a module attribute so tests can simulate a full disk
_write = os.write


def _fsync_path(path: PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mode_for(path: Path) -> int:
    """Permission bits for a rewritten file: the existing file's, else what ``open()`` would give (0666 less
    the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_target(path: PathLike) -> Iterator[str]:
    """Yield a temp path beside ``path``; when the block succeeds its file is fsynced and renamed onto ``path``.

    On error the temp file is removed and the old ``path`` is untouched; ``OSError`` is raised as is (callers
    decide whether a failed write is fatal, see :func:`atomic_write`).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; the result gets the file's or the usual mode
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write(path: PathLike, data: Union[str, bytes]) -> None:
    """Replace ``path`` with ``data`` (str: UTF-8) atomically; :class:`OutputWriteError` when it cannot."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with atomic_target(path) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
            try:
                _write_all(fd, raw)
            finally:
                os.close(fd)
    except OSError as e:
        raise OutputWriteError(path, e) from e


def _write_all(fd: int, raw: bytes) -> None:
    view = memoryview(raw)
    while view:
        n = _write(fd, view)
        view = view[n:]


def writable_dir_problem(folder: PathLike) -> Optional[str]:
    """Why files cannot be created in ``folder`` (by trying it), or None when they can."""
    folder = Path(folder)
    if not folder.is_dir():
        return "is not a folder"
    try:
        with tempfile.TemporaryFile(dir=str(folder)):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


#: What an output argument names: one file (the CLI's ``--jsonl``/``--csv``) or a folder of files (Ray's part
#: files, sidecar trees).
OUTPUT_KINDS = ("file", "folder")


def output_problem(path: PathLike, kind: str, example_name: str = "prompts.jsonl") -> Optional[str]:
    """Why ``path`` cannot be a run's output of ``kind`` (file or folder), or None when it can.

    The one rule for every output argument, checked before any work starts: a file output must not be a folder,
    a folder output must not be a file, and the output (or, when it does not exist yet, its nearest existing
    parent folder, where it will be created) must be a folder files can be created in, and an existing file
    output must be writable. The text names the fix (``example_name``: the file name a folder is shown with).
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; valid: {', '.join(OUTPUT_KINDS)}")
    path = Path(path)
    if kind == "file" and path.is_dir():
        return f"is a folder; give a file name (e.g. {path / example_name})"
    if kind == "file" and path.is_file() and not os.access(path, os.W_OK):
        return "is read-only; make it writable or choose another file"
    if kind == "folder" and path.exists() and not path.is_dir():
        return "is a file; give a folder (part files are written into it; a new name creates it)"
    folder = path if kind == "folder" and path.is_dir() else \
        next((d for d in path.absolute().parents if d.exists()), Path("."))
    problem = writable_dir_problem(folder)
    if problem and folder == path:
        return f"is a folder files cannot be created in ({problem}); choose a writable location"
    if problem:
        return f"cannot be created: files cannot be created in {folder} ({problem}); choose a writable location"
    return None


class RecordFile:
    """An append-only file of whole records (one line each, ``\\n``-terminated).

    Opening it removes a torn last record (bytes after the last newline, left by a crash or a full disk) with
    a warning. :meth:`append` writes one record with a single write, then fsyncs it; if the write fails the
    file is cut back to where the record started and :class:`OutputWriteError` is raised.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        try:
            self._fd: Optional[int] = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as e:
            raise OutputWriteError(self.path, e) from e
        try:
            self._repair_tail()
        except OSError as e:
            self.close()
            raise OutputWriteError(self.path, e) from e

    @property
    def size(self) -> int:
        assert self._fd is not None
        return os.fstat(self._fd).st_size

    def _repair_tail(self) -> None:
        assert self._fd is not None
        size = self.size
        if size == 0:
            return
        end, cut = size, 0
        while end > 0:
            start = max(0, end - 65536)
            os.lseek(self._fd, start, os.SEEK_SET)
            chunk = os.read(self._fd, end - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            end = start
        if cut < size:
            os.ftruncate(self._fd, cut)
            os.fsync(self._fd)
            log.warning("%s: removed an incomplete last line (%d bytes) left by an interrupted write",
                        self.path, size - cut)

    def append(self, record: Union[str, bytes]) -> None:
        """Append one record (a trailing newline is added when missing); durable when this returns."""
        assert self._fd is not None, "file is closed"
        raw = record.encode("utf-8") if isinstance(record, str) else record
        if not raw.endswith(b"\n"):
            raw += b"\n"
        if b"\n" in raw[:-1]:
            raise ValueError("a record must be one line")
        start = self.size
        try:
            _write_all(self._fd, raw)
            os.fsync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass  # the next open removes the torn tail
            raise OutputWriteError(self.path, e) from e

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RecordFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
