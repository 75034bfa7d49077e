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
import errno
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from .errors import ImageError, InterrogatorError, Interrupted, OutputWriteError
from .fileio import RecordFile, atomic_write
from .images import iter_image_files, open_image
from .targets import all_prompt_keys

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: ``txt``: one sidecar per image (``photo.png`` → ``photo.txt``); ``csv``/``jsonl``: one file for the run.
OUTPUT_FORMATS = ("txt", "csv", "jsonl")
#: What to do when an image already has output: ``skip`` it, ``overwrite`` it, or ``append`` to it.
EXISTING_POLICIES = ("skip", "overwrite", "append")
#: Journal of the images done by an unfinished run (sidecar output: in the folder; file output: beside it).
JOURNAL_NAME = ".prompt_interrogator.journal"
#: csv columns: the first release's six, then SDXL-dual's ViT-L/14 negative and one column per encoder key any
#: target has (``result.prompts``; :func:`~interrogator_core.targets.all_prompt_keys`, empty where the target has
#: none). Rows appended to an existing file follow that file's header, so older files keep their shape.
CSV_V1_COLUMNS = ("file", "prompt", "negative_prompt", "caption", "mode", "similarity")
CSV_COLUMNS = CSV_V1_COLUMNS + ("negative_prompt_l",) + tuple(all_prompt_keys())


def collect_images(paths: Iterable[PathLike], recursive: bool = True) -> List[Path]:
    """Image files named or inside the folders (sorted per folder; subfolders when ``recursive``), each file
    once. Broken symlinks and symlink loops met in a folder are included, so the run reports them as failed
    (see :func:`~interrogator_core.images.iter_image_files`); missing paths raise."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
    return unique_paths(iter_image_files(paths, recursive))


@dataclass
class BatchSummary:
    """What a batch run did. ``failed`` lists ``(file, reason)``; ``error`` is set when the run stopped on one;
    ``renamed`` lists ``(file, sidecar name)`` of images whose sidecar was renamed (see :func:`assign_sidecars`)."""

    total: int = 0
    written: int = 0
    skipped: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    error: Optional[str] = None
    output: Optional[str] = None
    renamed: List[Tuple[str, str]] = field(default_factory=list)

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
        lines.extend(f"  {f}: shares its name with another image; prompt written to {side}"
                     for f, side in self.renamed[:20])
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

    Rows and journal lines are appended whole (see :class:`~interrogator_core.fileio.RecordFile`): a line cut
    short by a crash or a full disk is removed before the next append, and a failed write raises
    :class:`~interrogator_core.errors.OutputWriteError` naming the file. Sidecar names follow
    :func:`assign_sidecars` (``a.png`` and ``a.jpg`` in one folder never share ``a.txt``).
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
            if self.out_file.is_dir():
                raise OutputWriteError(self.out_file, IsADirectoryError(errno.EISDIR, "Is a directory"))
            self.journal = self.out_file.with_name(self.out_file.name + ".journal")
        self._journaled: Set[str] = set()
        if resume and self.journal.is_file():
            RecordFile(self.journal).close()  # opening it drops a torn last line
            self._journaled = {l for l in self.journal.read_text(encoding="utf-8").splitlines() if l}
            log.info("resuming: %d images already done according to %s", len(self._journaled), self.journal)
        elif self.journal.exists():
            self.journal.unlink()
        self._in_file: Set[str] = set()
        self._sidecars: Dict[str, Path] = {}
        #: ``(image key, sidecar name)`` of images whose sidecar was renamed to avoid a shared name
        self.renamed: List[Tuple[str, str]] = []
        self._out: Optional[RecordFile] = None
        self._journal_file: Optional[RecordFile] = None
        #: the csv columns rows are written in (an existing file's own header)
        self._columns: Tuple[str, ...] = CSV_COLUMNS
        self._open()

    # -- setup --------------------------------------------------------------------------------------------
    def _open(self) -> None:
        if self.out_file is None:
            return
        try:
            self.out_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputWriteError(self.out_file.parent, e) from e
        continuing = bool(self._journaled)
        if self.out_file.is_file() and not (self.existing == "overwrite" and not continuing):
            self._out = RecordFile(self.out_file)  # repairs a torn last row before anything is read
            self._in_file = self._read_keys(self.out_file)
        else:
            atomic_write(self.out_file, b"")
            self._out = RecordFile(self.out_file)
        if self.output == "csv" and self._out.size == 0:
            self._out.append(_csv_line(CSV_COLUMNS))
        elif self.output == "csv":
            with open(self.out_file, encoding="utf-8", errors="replace", newline="") as fh:
                header = next(csv.reader(fh), None)
            if header and header[0] == "file":
                self._columns = tuple(header)

    def _read_keys(self, path: Path) -> Set[str]:
        keys: Set[str] = set()
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            if self.output == "csv":
                for row in csv.DictReader(fh):
                    if row.get("file"):
                        keys.add(row["file"])
            else:
                for line in fh:
                    try:
                        keys.add(json.loads(line)["file"])
                    except (ValueError, KeyError, TypeError):
                        continue  # not one of our rows
        return keys

    # -- queries ------------------------------------------------------------------------------------------
    def key(self, image: PathLike) -> str:
        """The image's name in outputs and the journal: relative to ``root`` (posix), else absolute.

        The folder part is resolved (symlinks, ``..``), the file name is kept as given."""
        p = Path(os.path.realpath(Path(image).parent)) / Path(image).name
        try:
            return p.relative_to(os.path.realpath(self.root)).as_posix()
        except ValueError:
            return str(p)

    def sidecar(self, image: PathLike) -> Path:
        """The ``.txt`` an image's prompt goes to (see :func:`assign_sidecars`)."""
        return self._sidecars.get(_real(image)) or Path(image).with_suffix(".txt")

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
        """The images (each once) that still need work. With sidecar output this also fixes every image's
        sidecar name for the run, so call it with the whole run's images."""
        images = unique_paths(images)
        if self.out_file is None and not self._sidecars:
            self._sidecars, renamed = assign_sidecars(images)
            self.renamed = [(self.key(i), s.name) for i, s in renamed]
            for image, side in renamed:
                log.warning("%s shares its name with another image of the folder; its prompt goes to %s",
                            image, side.name)
        return [i for i in images if not self.is_done(i)]

    # -- writing ------------------------------------------------------------------------------------------
    def write(self, image: PathLike, result) -> None:
        """Write one image's result (an ``InterrogationResult``) and record it in the journal."""
        k = self.key(image)
        text = result.prompt
        if self.out_file is None:
            target = self.sidecar(image)
            if self.existing == "append" and target.is_file():
                old = target.read_text(encoding="utf-8", errors="replace").strip()
                text = f"{old}, {text}" if old and text else (old or text)
            atomic_write(target, text + "\n")
        elif self.output == "csv":
            assert self._out is not None
            fields = {"file": k, "prompt": result.positive, "negative_prompt": result.negative,
                      "caption": result.caption, "mode": result.mode,
                      "similarity": "" if result.similarity is None else f"{result.similarity:.4f}",
                      "negative_prompt_l": getattr(result, "negative_l", None) or "",
                      **dict(getattr(result, "prompts", None) or {})}
            self._out.append(_csv_line([fields.get(c, "") for c in self._columns]))
        else:
            assert self._out is not None
            row = {"file": k, "prompt": result.positive, "negative_prompt": result.negative,
                   "caption": result.caption, "mode": result.mode, "similarity": result.similarity,
                   "negative_similarity": result.negative_similarity}
            if getattr(result, "positive_l", None) is not None:
                row.update(prompt_l=result.positive_l, negative_prompt_l=result.negative_l)
            if getattr(result, "prompts", None):  # the target's prompts by encoder (clip_l, clip_g, t5, llm, llama)
                row.update(prompts=result.prompts)
            if getattr(result, "notes", None):
                row.update(notes=result.notes)
            self._out.append(json.dumps(row, ensure_ascii=False))
        self._in_file.add(k)
        self._record(k)

    def _record(self, key: str) -> None:
        if self._journal_file is None:
            try:
                self.journal.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputWriteError(self.journal.parent, e) from e
            self._journal_file = RecordFile(self.journal)
        self._journal_file.append(_one_line(key))
        self._journaled.add(key)

    def close(self, complete: bool = False) -> None:
        """Close files; a ``complete`` run deletes its journal (an unfinished one keeps it for resume)."""
        for f in (self._out, self._journal_file):
            if f is not None:
                f.close()
        self._out = self._journal_file = None
        if complete and self.journal.exists():
            self.journal.unlink()

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=False)


def _one_line(text: str) -> str:
    """Line breaks inside a field become spaces: one output row is always one line."""
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _csv_line(fields: Sequence[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([_one_line(str(f)) for f in fields])
    return buf.getvalue()


def _real(path: PathLike) -> str:
    """A file's identity: its resolved, case-normalized path (symlinks and ``..`` followed)."""
    return os.path.normcase(os.path.realpath(path))


def unique_paths(paths: Iterable[PathLike]) -> List[Path]:
    """``paths`` in order, each file once: two spellings of one file (``./a.png`` and ``a.png``, a symlink and
    its target, a folder's file also named on its own) count as one, the first spelling kept."""
    seen: Set[str] = set()
    out: List[Path] = []
    for p in paths:
        real = _real(p)
        if real not in seen:
            seen.add(real)
            out.append(Path(p))
    return out


def assign_sidecars(images: Sequence[PathLike]) -> Tuple[Dict[str, Path], List[Tuple[Path, Path]]]:
    """Each image's ``.txt`` sidecar, and the images whose sidecar had to be renamed.

    The rule (lossless, deterministic for a given set of images): images are taken in sorted path order; each
    gets ``<name without extension>.txt`` unless an earlier image already has that file, then
    ``<full name>.txt`` (``a.png`` → ``a.png.txt``), then ``<full name>.2.txt``, ``.3.txt``, ... So of
    ``a.jpg`` and ``a.png``, ``a.jpg`` writes ``a.txt`` and ``a.png`` writes ``a.png.txt``.
    Returns ``({image key (resolved path): sidecar}, [(image, renamed sidecar)])``.
    """
    taken: Set[str] = set()
    sidecars: Dict[str, Path] = {}
    renamed: List[Tuple[Path, Path]] = []
    for image in sorted((Path(i) for i in images), key=lambda p: (str(p.parent), p.name)):
        default = image.with_suffix(".txt")
        options = [default, image.with_name(image.name + ".txt")]
        options += [image.with_name(f"{image.name}.{n}.txt") for n in range(2, 1000)]
        for side in options:
            real = _real(side)
            if real not in taken:
                taken.add(real)
                break
        sidecars[_real(image)] = side
        if side != default:
            renamed.append((image, side))
    return sidecars, renamed


def sidecars_for(images: Sequence[PathLike]) -> List[Path]:
    """The ``.txt`` sidecar of each image, in the order given, by the rule of :func:`assign_sidecars` (the one
    the CLI, the Batch tab and the Ray dataset mode all follow). Give the whole run's images: a name depends on
    the other images of the folder."""
    assigned, _ = assign_sidecars(images)
    return [assigned[_real(i)] for i in images]


def run_batch(interrogator, images: Sequence[PathLike], writer: Optional[BatchWriter], *, mode: str = "best",
              min_flavors: Optional[int] = None, max_flavors: int = 32, negative_count: int = 16, chunk_size: int = 8,
              beam_width: int = 1, on_progress: Optional[Callable[[int, int, str], None]] = None,
              on_result: Optional[Callable[[Path, object], None]] = None) -> BatchSummary:
    """Interrogate ``images`` in chunks, writing each result as soon as its chunk is done.

    Each file is done once however often it is named (see :func:`unique_paths`). Unreadable images are listed
    in the summary and the run goes on; ``Interrupted``, a failed write or another engine error stops it
    (``summary.interrupted`` / ``summary.error``) with everything done so far written and journaled.
    The writer is closed, and its journal deleted when the run completed. Without a writer nothing is
    written or skipped; ``on_result(path, result)`` sees every result either way.
    """
    images = unique_paths(images)
    summary = BatchSummary(total=len(images), output=str(writer.out_file or writer.root) if writer else None)
    todo = writer.pending(images) if writer else images
    summary.skipped = len(images) - len(todo)
    summary.renamed = list(writer.renamed) if writer else []
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
