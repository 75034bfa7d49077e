"""Batch interrogation of image folders: sidecar ``.txt`` files or one csv/jsonl file, resumable.

Used by the CLI and the A1111/Forge Batch tab::

    images = collect_images(["dataset/"], recursive=True)
    with BatchWriter("dataset/", output="txt", existing="skip") as writer:
        summary = run_batch(interrogator, images, writer, mode="best")

Resume: every image whose output was written is recorded in a journal file; when a run stops (Interrupt,
error, crash) the journal stays, and the next run with ``resume=True`` skips the images it lists. A run that
finishes deletes its journal. With ``existing="skip"`` and sidecars, existing ``.txt`` files are skipped too,
so a folder can always be completed by running again.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Set, Tuple, Union

from .errors import ImageError, InterrogatorError, Interrupted
from .images import iter_image_files, open_image

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: ``txt``: one sidecar per image (``photo.png`` → ``photo.txt``); ``csv``/``jsonl``: one file for the run.
OUTPUT_FORMATS = ("txt", "csv", "jsonl")
#: What to do when an image already has output: ``skip`` it, ``overwrite`` it, or ``append`` to it.
EXISTING_POLICIES = ("skip", "overwrite", "append")
#: Journal of the images done by an unfinished run (sidecar output: in the folder; file output: beside it).
JOURNAL_NAME = ".prompt_interrogator.journal"
CSV_COLUMNS = ("file", "prompt", "negative_prompt", "caption", "mode", "similarity")


def result_text(result) -> str:
    """The text a sidecar gets: the prompt, or the negative prompt in negative mode."""
    if getattr(result, "mode", "") == "negative":
        return result.negative
    return result.positive or result.caption


def collect_images(paths: Iterable[PathLike], recursive: bool = True) -> List[Path]:
    """Image files named or inside the folders (sorted; subfolders when ``recursive``); missing paths raise."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
    return [p for p in iter_image_files(paths, recursive) if p.is_file()]


@dataclass
class BatchSummary:
    """What a batch run did. ``failed`` lists ``(file, reason)``; ``error`` is set when the run stopped on one."""

    total: int = 0
    written: int = 0
    skipped: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    error: Optional[str] = None
    output: Optional[str] = None

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.error is None

    def to_text(self) -> str:
        lines = [f"{self.written} written, {self.skipped} skipped, {len(self.failed)} failed of {self.total} images"
                 + (f" → {self.output}" if self.output else "")]
        if self.interrupted:
            lines.append("Interrupted: run again with 'resume' to continue where it stopped.")
        if self.error:
            lines.append(f"Stopped on error: {self.error}")
        lines.extend(f"  {f}: {reason}" for f, reason in self.failed[:20])
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more")
        return "\n".join(lines)


class BatchWriter:
    """Writes one result per image and remembers what is done.

    Args:
        root: the folder the images come from (keys in csv/jsonl and the journal are relative to it).
        output: ``txt`` (sidecars), ``csv`` or ``jsonl``.
        existing: ``skip`` / ``overwrite`` / ``append`` (sidecars: per file, append joins with ", ";
            csv/jsonl: ``skip`` leaves out images already in the file, ``overwrite`` starts the file anew,
            ``append`` adds rows for every image).
        out_file: csv/jsonl path (default ``root/prompts.csv`` or ``root/prompts.jsonl``).
        resume: skip the images recorded in the journal of an unfinished earlier run.
    """

    def __init__(self, root: PathLike, output: str = "txt", existing: str = "skip",
                 out_file: Optional[PathLike] = None, resume: bool = True) -> None:
        if output not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUT_FORMATS)}")
        if existing not in EXISTING_POLICIES:
            raise ValueError(f"unknown existing-output policy {existing!r}; valid: {', '.join(EXISTING_POLICIES)}")
        self.root = Path(root)
        self.output = output
        self.existing = existing
        self.resume = resume
        if output == "txt":
            self.out_file: Optional[Path] = None
            self.journal = self.root / JOURNAL_NAME
        else:
            self.out_file = Path(out_file) if out_file else self.root / f"prompts.{output}"
            self.journal = self.out_file.with_name(self.out_file.name + ".journal")
        self._journaled: Set[str] = set()
        if resume and self.journal.is_file():
            self._journaled = {l for l in self.journal.read_text(encoding="utf-8").splitlines() if l}
            log.info("resuming: %d images already done according to %s", len(self._journaled), self.journal)
        elif self.journal.exists():
            self.journal.unlink()
        self._in_file: Set[str] = set()
        self._fh = None
        self._csv = None
        self._journal_fh = None
        self._open()

    # -- setup --------------------------------------------------------------------------------------------
    def _open(self) -> None:
        if self.out_file is None:
            return
        self.out_file.parent.mkdir(parents=True, exist_ok=True)
        continuing = bool(self._journaled)
        if self.out_file.is_file() and (self.existing != "overwrite" or continuing):
            self._in_file = self._read_keys(self.out_file)
            mode = "a"
        else:
            mode = "w"
        new_file = mode == "w" or self.out_file.stat().st_size == 0
        self._fh = open(self.out_file, mode, encoding="utf-8", newline="")
        if self.output == "csv":
            self._csv = csv.writer(self._fh)
            if new_file:
                self._csv.writerow(CSV_COLUMNS)
                self._fh.flush()

    def _read_keys(self, path: Path) -> Set[str]:
        keys: Set[str] = set()
        with open(path, encoding="utf-8", newline="") as fh:
            if self.output == "csv":
                for row in csv.DictReader(fh):
                    if row.get("file"):
                        keys.add(row["file"])
            else:
                for line in fh:
                    try:
                        keys.add(json.loads(line)["file"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by a crash
        return keys

    # -- queries ------------------------------------------------------------------------------------------
    def key(self, image: PathLike) -> str:
        """The image's name in outputs and the journal: relative to ``root`` (posix), else absolute."""
        p = Path(image)
        try:
            return p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(p.resolve())

    def sidecar(self, image: PathLike) -> Path:
        return Path(image).with_suffix(".txt")

    def is_done(self, image: PathLike) -> bool:
        """True when the image needs no work: in the journal, or skipped by the existing-output policy."""
        k = self.key(image)
        if k in self._journaled:
            return True
        if self.existing != "skip":
            return False
        if self.out_file is None:
            return self.sidecar(image).is_file()
        return k in self._in_file

    def pending(self, images: Iterable[PathLike]) -> List[Path]:
        return [Path(i) for i in images if not self.is_done(i)]

    # -- writing ------------------------------------------------------------------------------------------
    def write(self, image: PathLike, result) -> None:
        """Write one image's result (an ``InterrogationResult``) and record it in the journal."""
        k = self.key(image)
        text = result_text(result)
        if self.out_file is None:
            target = self.sidecar(image)
            if self.existing == "append" and target.is_file():
                old = target.read_text(encoding="utf-8").strip()
                text = f"{old}, {text}" if old and text else (old or text)
            _atomic_write(target, text + "\n")
        elif self.output == "csv":
            assert self._csv is not None and self._fh is not None
            self._csv.writerow([k, result.positive, result.negative, result.caption, result.mode,
                                "" if result.similarity is None else f"{result.similarity:.4f}"])
            self._fh.flush()
        else:
            assert self._fh is not None
            row = {"file": k, "prompt": result.positive, "negative_prompt": result.negative,
                   "caption": result.caption, "mode": result.mode, "similarity": result.similarity,
                   "negative_similarity": result.negative_similarity}
            if getattr(result, "positive_l", None) is not None:
                row.update(prompt_l=result.positive_l, negative_prompt_l=result.negative_l)
            if getattr(result, "prompts", None):  # the target's prompts by encoder name (clip_l, clip_g, t5)
                row.update(prompts=result.prompts)
            if getattr(result, "notes", None):
                row.update(notes=result.notes)
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._fh.flush()
        self._in_file.add(k)
        self._record(k)

    def _record(self, key: str) -> None:
        if self._journal_fh is None:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            self._journal_fh = open(self.journal, "a", encoding="utf-8")
        self._journal_fh.write(key + "\n")
        self._journal_fh.flush()
        self._journaled.add(key)

    def close(self, complete: bool = False) -> None:
        """Close files; a ``complete`` run deletes its journal (an unfinished one keeps it for resume)."""
        for fh in (self._fh, self._journal_fh):
            if fh is not None:
                fh.close()
        self._fh = self._journal_fh = self._csv = None
        if complete and self.journal.exists():
            self.journal.unlink()

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=False)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_batch(interrogator, images: Sequence[PathLike], writer: Optional[BatchWriter], *, mode: str = "best",
              min_flavors: int = 8, max_flavors: int = 32, negative_count: int = 16, chunk_size: int = 8,
              beam_width: int = 1, on_progress: Optional[Callable[[int, int, str], None]] = None,
              on_result: Optional[Callable[[Path, object], None]] = None) -> BatchSummary:
    """Interrogate ``images`` in chunks, writing each result as soon as its chunk is done.

    Unreadable images are listed in the summary and the run goes on; ``Interrupted`` or another engine error
    stops it (``summary.interrupted`` / ``summary.error``) with everything done so far written and journaled.
    The writer is closed, and its journal deleted when the run completed. Without a writer nothing is
    written or skipped; ``on_result(path, result)`` sees every result either way.
    """
    summary = BatchSummary(total=len(images), output=str(writer.out_file or writer.root) if writer else None)
    todo = writer.pending(images) if writer else [Path(i) for i in images]
    summary.skipped = len(images) - len(todo)
    done = 0
    try:
        for start in range(0, len(todo), max(1, chunk_size)):
            chunk = todo[start:start + max(1, chunk_size)]
            opened, paths = [], []
            for path in chunk:
                try:
                    opened.append(open_image(path))
                    paths.append(path)
                except ImageError as e:
                    log.warning("batch: skipping %s", e)
                    summary.failed.append((writer.key(path) if writer else str(path), e.reason))
            if opened:
                results = interrogator.interrogate(opened, mode=mode, min_flavors=min_flavors,
                                                   max_flavors=max_flavors, negative_count=negative_count,
                                                   beam_width=beam_width)
                for path, result in zip(paths, results):
                    result.source = str(path)
                    if writer is not None:
                        writer.write(path, result)
                    summary.written += 1
                    if on_result is not None:
                        on_result(path, result)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, len(todo), chunk[-1].name)
    except Interrupted:
        summary.interrupted = True
        log.info("batch interrupted after %d of %d images", summary.written, len(todo))
    except InterrogatorError as e:
        summary.error = str(e)
        log.error("batch stopped: %s", e)
    finally:
        if writer is not None:
            writer.close(complete=summary.complete)
    return summary
