"""Folder batches: walk images (subfolders too), interrogate in chunks, write outputs as each chunk finishes.

Nothing finished is lost: sidecars and jsonl/csv rows are written per chunk; a bad file is reported and
skipped; ``skip_existing`` resumes an interrupted run (images with a sidecar or a jsonl/csv row are skipped).
"""
from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Set, Tuple, Union

from .errors import ImageError, InterrogatorError, Interrupted, ModelLoadError, ModelNotFoundError, UnknownNameError
from .images import iter_image_files, open_image
from .interrogator import Interrogator
from .result import InterrogationResult

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
SIDECAR_MODES = ("overwrite", "append", "skip")
CSV_FIELDS = ("source", "mode", "positive", "negative", "caption", "similarity", "negative_similarity")


@dataclass
class BatchOptions:
    """How a batch runs and where results go.

    Attributes:
        mode, min_flavors, max_flavors, negative_count: passed to :meth:`Interrogator.interrogate`.
        recursive: walk subfolders.
        sidecar: write ``<image>.txt`` with the positive prompt: "overwrite", "append", "skip" (skip
            images that already have one) or None.
        jsonl / csv: append one row per image to this file (None: off).
        skip_existing: resume — skip images already present in the jsonl/csv file.
        chunk_size: images per engine call.
    """

    mode: str = "best"
    min_flavors: int = 8
    max_flavors: int = 32
    negative_count: int = 16
    recursive: bool = True
    sidecar: Optional[str] = None
    jsonl: Optional[PathLike] = None
    csv: Optional[PathLike] = None
    skip_existing: bool = False
    chunk_size: int = 4

    def __post_init__(self) -> None:
        if self.sidecar is not None and self.sidecar not in SIDECAR_MODES:
            raise ValueError(f"sidecar must be one of {', '.join(SIDECAR_MODES)} or None, got {self.sidecar!r}")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def sidecar_path(image: Path) -> Path:
    return image.with_suffix(".txt")


def _already_done(options: BatchOptions) -> Set[str]:
    done: Set[str] = set()
    if options.jsonl and Path(options.jsonl).is_file():
        with open(options.jsonl, encoding="utf-8") as f:
            for line in f:
                try:
                    done.add(json.loads(line)["source"])
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from an interrupted run: that image is redone
    if options.csv and Path(options.csv).is_file():
        with open(options.csv, newline="", encoding="utf-8") as f:
            done.update(row.get("source", "") for row in csv.DictReader(f))
    return done


class _Writer:
    def __init__(self, options: BatchOptions) -> None:
        self.o = options

    def write(self, result: InterrogationResult) -> None:
        o = self.o
        if o.sidecar:
            path = sidecar_path(Path(result.source or ""))
            text = result.positive if o.mode != "negative" else result.negative
            if o.sidecar == "append" and path.is_file() and path.stat().st_size:
                old = path.read_text(encoding="utf-8").rstrip()
                text = f"{old}, {text}" if text else old
            _atomic_write(path, text + "\n")
        row = {k: getattr(result, k) for k in CSV_FIELDS}
        if o.jsonl:
            with open(o.jsonl, "a", encoding="utf-8") as f:
                f.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        if o.csv:
            new = not Path(o.csv).is_file() or Path(o.csv).stat().st_size == 0
            with open(o.csv, "a", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
                if new:
                    w.writeheader()
                w.writerow(row)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run_batch(
    interrogator: Interrogator,
    paths: Sequence[PathLike],
    options: Optional[BatchOptions] = None,
    on_result: Optional[Callable[[InterrogationResult], None]] = None,
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> BatchSummary:
    """Interrogate every image under ``paths``; returns counts and the failures (path, reason)."""
    o = options or BatchOptions()
    files = list(iter_image_files(paths, o.recursive))
    summary = BatchSummary()
    done_before = _already_done(o) if o.skip_existing else set()
    todo: List[Path] = []
    for f in files:
        if str(f) in done_before or (o.sidecar == "skip" and sidecar_path(f).is_file()):
            summary.skipped += 1
        else:
            todo.append(f)
    writer = _Writer(o)
    total = len(todo)
    for start in range(0, total, o.chunk_size):
        chunk = todo[start:start + o.chunk_size]
        loaded, sources = [], []
        for f in chunk:
            try:
                loaded.append(open_image(f))
                sources.append(str(f))
            except ImageError as e:
                log.error("%s", e)
                summary.failed.append((str(f), e.reason))
        try:
            results = [] if not loaded else interrogator.interrogate(loaded, mode=o.mode, min_flavors=o.min_flavors,
                                               max_flavors=o.max_flavors, negative_count=o.negative_count)
        except Interrupted:
            summary.interrupted = True
            log.warning("batch interrupted after %d images; run again with skip_existing to resume", summary.done)
            break
        except (ModelNotFoundError, ModelLoadError, UnknownNameError):
            raise  # fatal for every image: the caller shows the message once
        except InterrogatorError as e:
            # one bad image must not sink the chunk: retry each image alone
            if len(loaded) <= 1:
                summary.failed.extend((s, str(e)) for s in sources)
                results = []
            else:
                results, keep = [], []
                for im, s in zip(loaded, sources):
                    try:
                        results.extend(interrogator.interrogate([im], mode=o.mode, min_flavors=o.min_flavors,
                                                                max_flavors=o.max_flavors,
                                                                negative_count=o.negative_count))
                        keep.append(s)
                    except Interrupted:
                        summary.interrupted = True
                        break
                    except InterrogatorError as e1:
                        summary.failed.append((s, str(e1)))
                sources = keep
        for r, s in zip(results, sources):
            r.source = s
            writer.write(r)
            summary.done += 1
            if on_result is not None:
                on_result(r)
        if on_progress is not None:
            on_progress(min(start + o.chunk_size, total), total)
        if summary.interrupted:
            break
    return summary
