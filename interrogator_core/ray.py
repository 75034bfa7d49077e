"""Ray Data stage: prompt millions of images with one model per actor (``pip install prompt-interrogator[ray]``).

::

    import ray
    from interrogator_core.ray import PromptStage, interrogate_dataset

    # your own pipeline: a callable class, one Interrogator per actor
    ds = ray.data.read_parquet("s3://bucket/images/")          # columns: id, image (bytes)
    rows = ds.map_batches(PromptStage, fn_constructor_kwargs={"config": {"clip_model": "ViT-L-14/openai",
                          "mode": "best"}}, batch_size=16, concurrency=4, num_gpus=1)

    # or the helper: folder tree / Parquet / WebDataset in, Parquet / JSONL / sidecars out, resumable
    interrogate_dataset("dataset/", {"mode": "best"}, output="prompts/", actors=4, gpus_per_actor=1)

Label tables are encoded once, in one task with an actor's resources, before the actor pool starts; the
cache files travel to every actor through the object store (written into its cache folder when missing),
so N actors never encode the labels N times. Importing :mod:`interrogator_core` never imports Ray.
"""
from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

try:
    import ray
    import ray.data
    import pyarrow as pa
except ImportError as _e:  # pragma: no cover - exercised where Ray is missing
    raise ImportError(
        f"interrogator_core.ray needs Ray Data and pyarrow ({_e}); install them with: "
        "pip install prompt-interrogator[ray]   (or: pip install 'ray[data]' pyarrow)"
    ) from _e

from . import dataset as _ds
from .batch import collect_images
from .dataset import (OUTPUT_COLUMNS, OUTPUT_FORMATS, SOURCE_FORMATS, LabelCacheInfo, StageConfig, config_dict,
                      existing_ids, guess_source_format, pool_problem, prepare_label_cache, sidecar_names,
                      split_config)
from .errors import InterrogatorError, UnknownNameError
from .fileio import output_problem
from .images import IMAGE_EXTENSIONS
from .interrogator import MODES
from .usage import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, ray_output

log = logging.getLogger(__name__)

__all__ = ["OUTPUT_COLUMNS", "OUTPUT_FORMATS", "PromptStage", "ROWS_PER_FILE", "interrogate_dataset",
           "prepare_label_cache", "SCHEMA", "SOURCE_FORMATS"]

#: Arrow types of the output rows.
SCHEMA = pa.schema([("id", pa.string()), ("positive", pa.string()), ("negative", pa.string()),
                    ("caption", pa.string()), ("similarity", pa.float64()), ("prompts", pa.string()),
                    ("error", pa.string())])
_DIAGNOSTICS = [("labels_encoded", pa.int64()), ("worker_pid", pa.int64())]
#: Rows a Parquet / JSON-lines part file gets (at least; the last one of a run may have fewer): few, large files
#: instead of one per block. A run killed mid-way redoes at most the rows not yet in a finished part file.
ROWS_PER_FILE = 1000

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], "ray.data.Dataset"]


class PromptStage(_ds.PromptStage):
    """:class:`interrogator_core.dataset.PromptStage` for Ray Data: returns Arrow tables (:data:`SCHEMA`) and
    accepts ``label_files`` as an object reference (``ray.put`` or a task's result)."""

    def __init__(self, config: StageConfig, *, label_files: Any = None, **kwargs: Any) -> None:
        if isinstance(label_files, ray.ObjectRef):
            label_files = ray.get(label_files)
        super().__init__(config, label_files=label_files, **kwargs)

    def __call__(self, batch: Any) -> "pa.Table":
        rows = super().__call__(batch)
        schema = SCHEMA
        if self.diagnostics:
            schema = pa.schema(list(SCHEMA) + [pa.field(n, t) for n, t in _DIAGNOSTICS])
        return pa.Table.from_pydict(rows, schema=schema)


def _prepare_task(config: Dict[str, Any]) -> tuple:
    info = prepare_label_cache(config)
    return info.encoded, info.files


def _local_items(paths: Sequence[Path], recursive: bool = True) -> List[Dict[str, str]]:
    """Rows ``{"id": path relative to the first input folder (posix), "path": absolute path}`` — the same keys
    the CLI writes as ``file`` in its jsonl/csv output."""
    first = paths[0]
    root = (first if first.is_dir() else first.parent).resolve()
    items = []
    for f in collect_images(paths, recursive=recursive):
        absolute = f.resolve()
        try:
            key = absolute.relative_to(root).as_posix()
        except ValueError:
            key = str(absolute)
        items.append({"id": key, "path": str(absolute)})
    return items


def _webdataset_columns(batch: Dict[str, Any]) -> Dict[str, Any]:
    """WebDataset samples (``__key__`` + one column per file suffix) → ``id`` + ``image`` bytes."""
    suffixes = [s.lstrip(".") for s in IMAGE_EXTENSIONS]
    present = [c for c in suffixes if c in batch]
    if not present:
        raise KeyError(f"WebDataset sample has no image file (suffixes {', '.join(suffixes)}); has: "
                       f"{', '.join(batch)}")
    images = []
    for i in range(len(batch["__key__"])):
        images.append(next((batch[c][i] for c in present if batch[c][i] is not None), None))
    return {"id": [str(k) for k in batch["__key__"]], "image": images}


def _add_content_ids(batch: Dict[str, Any], image_column: str) -> Dict[str, Any]:
    """An ``id`` column from the image bytes (``sha256:<hex>``) for sources that have no id column."""
    import hashlib

    ids = []
    for cell in batch[image_column]:
        data = (cell.get("bytes") or (cell.get("path") or "").encode()) if isinstance(cell, dict) else cell
        ids.append("sha256:" + hashlib.sha256(bytes(data or b"")).hexdigest())
    out = dict(batch)
    out["id"] = ids
    return out


def _source_kind(source: Source, source_format: str) -> tuple:
    """(kind, paths): kind is "dataset" for a ``ray.data.Dataset``, else one of images/parquet/webdataset."""
    if isinstance(source, ray.data.Dataset):
        return "dataset", []
    paths = [str(p) for p in ([source] if isinstance(source, (str, os.PathLike)) else source)]
    if not paths:
        raise ValueError("no input given")
    kind = guess_source_format(paths) if source_format == "auto" else source_format
    if kind not in SOURCE_FORMATS[1:]:
        raise UnknownNameError("source format", kind, SOURCE_FORMATS)
    return kind, paths


def _read_source(kind: str, source: Source, paths: List[str], items: Optional[List[Dict[str, str]]], *,
                 id_column: str, image_column: str, blocks_hint: int) -> tuple:
    """(dataset with an id column and an image or path column, id column, image column)."""
    if kind == "dataset":
        return source, id_column, image_column
    if kind == "images" and items is not None:
        blocks = max(1, min(len(items), blocks_hint))
        return ray.data.from_items(items, override_num_blocks=blocks), "id", "image"
    if kind == "images":  # object storage (s3://, gs://, ...): ids are the full paths
        ds = ray.data.read_binary_files(paths, include_paths=True,
                                        file_extensions=[s.lstrip(".") for s in IMAGE_EXTENSIONS])
        return ds.rename_columns({"path": "id", "bytes": "image"}), "id", "image"
    if kind == "webdataset":
        ds = ray.data.read_webdataset(paths, decoder=None).map_batches(_webdataset_columns, batch_format="numpy")
        return ds, "id", "image"
    ds = ray.data.read_parquet(paths)
    names = ds.schema().names
    if image_column not in names:
        raise KeyError(f"Parquet input has no image column {image_column!r}; pass image_column= "
                       f"(columns: {', '.join(names)})")
    if id_column not in names:
        log.info("Parquet input has no %r column: ids are the sha256 of each image", id_column)
        ds = ds.map_batches(_add_content_ids, fn_kwargs={"image_column": image_column}, batch_format="numpy")
        id_column = "id"
    return ds, id_column, image_column


def interrogate_dataset(
    source: Source,
    config: StageConfig,
    *,
    output: Optional[Union[str, os.PathLike]] = None,
    fmt: str = "parquet",
    actors: int = 1,
    gpus_per_actor: float = 0,
    cpus_per_actor: float = 1,
    batch_size: int = 16,
    resume: bool = True,
    source_format: str = "auto",
    id_column: str = "id",
    image_column: str = "image",
    recursive: bool = True,
    diagnostics: bool = False,
    rows_per_file: int = ROWS_PER_FILE,
) -> "ray.data.Dataset":
    """Prompts for every image of ``source`` on a pool of ``actors`` Ray actors.

    Args:
        source: a folder tree of images (walked recursively; ids are paths relative to it, as the CLI writes
            them; ``s3://``-style folders work too, ids then are full paths), image files, Parquet files or
            folders with an ``image_column`` (bytes or an HF image struct; without ``id_column`` the id is the
            image's sha256), WebDataset ``.tar`` shards (id: the sample key), or a ``ray.data.Dataset`` with
            ``id_column`` and ``image_column`` (or ``path``).
        config: engine settings + ``mode``/``interrogate`` arguments (:func:`interrogator_core.dataset.split_config`).
        output: a folder; ``fmt`` parquet/jsonl: part files written there (each run adds new part files of at
            least ``rows_per_file`` rows, the last one may have fewer; jsonl parts are named ``*.json``, one JSON
            object per line); sidecars (local image files only): a ``.txt`` per image under ``output`` named by
            the CLI's rule (:func:`interrogator_core.dataset.sidecar_names`: of ``a.jpg`` and ``a.png``, ``a.txt``
            and ``a.png.txt``; error rows get none). None: nothing is written, the lazy dataset is returned.
        actors / gpus_per_actor / cpus_per_actor: the pool (one Interrogator per actor). It must leave Ray's read
            and write tasks a CPU: a pool the cluster cannot hold raises :class:`~interrogator_core.usage.UsageError`
            (saying what to change) before anything starts, instead of waiting forever.
        batch_size: images per ``map_batches`` call.
        resume: skip ids already in ``output`` (an interrupted run loses nothing, a rerun repeats nothing;
            error rows count as done). With False an ``output`` that already has rows is refused.
        source_format: auto, images, parquet or webdataset.
        diagnostics: add ``labels_encoded`` and ``worker_pid`` columns (see :class:`PromptStage`).
        rows_per_file: the rows a Parquet / JSON-lines part file gets (:data:`ROWS_PER_FILE`).

    Raises:
        UsageError: before any work (no label step, no image), for an output that cannot be written (a file
            where a folder is needed, a folder files cannot be created in), sidecars for a source that is not local
            image files, or a pool the cluster cannot hold.

    Returns:
        With an output: parquet/jsonl: the whole output read back (this run's rows and earlier runs');
        sidecars: this run's rows, with a ``sidecar`` column (the file written; None for an error row). Without:
        the lazy dataset of rows (:data:`SCHEMA`).
    """
    if fmt not in OUTPUT_FORMATS:
        raise UnknownNameError("output format", fmt, OUTPUT_FORMATS)
    if actors < 1 or batch_size < 1 or rows_per_file < 1:
        raise ValueError(f"actors, batch_size and rows_per_file must be at least 1, got {actors}, {batch_size} and "
                         f"{rows_per_file}")
    if output is not None and "://" not in str(output):
        problem = output_problem(output, "folder")
        if problem:
            raise UsageError(f"output {output} {problem}")
    cfg = config_dict(config)
    split = split_config(cfg)
    kind, paths = _source_kind(source, source_format)
    local = kind == "images" and not any("://" in p for p in paths)
    if output is not None and fmt == "sidecars" and not local:
        raise UsageError(f"sidecars are written beside local image files; this source is {kind}"
                         f"{' in object storage' if kind == 'images' else ''}: write parquet or jsonl instead")
    items = None
    if local:
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"not found: {', '.join(missing)}")
        items = _local_items([Path(p) for p in paths], recursive)
    sidecars: Dict[str, Path] = {}
    done: set = set()
    if output is not None:
        if fmt == "sidecars":
            sidecars = sidecar_names(output, [it["id"] for it in items or ()])  # over the whole run, done or not
            done = {key for key, side in sidecars.items() if side.is_file()}
        else:
            done = existing_ids(output, fmt)
        if done and not resume:
            raise FileExistsError(f"output {output} already holds {len(done)} results; pass resume=True to add only "
                                  "the missing ones, or choose another output folder")
    if done:
        log.info("resume: %d ids already in %s are skipped", len(done), output)
    if items is not None:
        items = [it for it in items if it["id"] not in done]
        if not items:
            log.info("nothing to do: every image is already in %s", output)
            return _read_back(output, fmt)
    if not ray.is_initialized():
        ray.init()
    problem = pool_problem(ray.cluster_resources(), actors, cpus_per_actor, gpus_per_actor)
    if problem:
        raise UsageError(problem)
    ds, id_col, image_col = _read_source(kind, source, paths, items, id_column=id_column, image_column=image_column,
                                         blocks_hint=max(actors, math.ceil(len(items or ()) / batch_size)))
    if output is not None and items is None and resume:
        ds = ds.filter(_NotDone(id_col, done))

    label_files = None
    if MODES[split.call["mode"]]["clip"]:
        encoded_ref, label_files = ray.remote(_prepare_task).options(
            num_returns=2, num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None).remote(cfg)
        log.info("label tables: %d labels encoded before the actor pool started", ray.get(encoded_ref))
    stage_kwargs = dict(config=cfg, id_column=id_col, image_column=image_col, path_column="path",
                        label_files=label_files, require_label_cache=label_files is not None,
                        diagnostics=diagnostics)
    rows = ds.map_batches(PromptStage, fn_constructor_kwargs=stage_kwargs, batch_size=batch_size,
                          compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor,
                          num_gpus=gpus_per_actor or None, batch_format="numpy")
    if output is None:
        return rows
    Path(output).mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        rows.write_parquet(str(output), min_rows_per_file=rows_per_file)
    elif fmt == "jsonl":
        rows.write_json(str(output), min_rows_per_file=rows_per_file)
    else:
        pending = {it["id"]: str(sidecars[it["id"]]) for it in items or ()}
        return rows.map_batches(_write_sidecars_batch, fn_kwargs={"sidecars": pending, "mode": split.call["mode"]},
                                batch_format="pyarrow").materialize()
    return _read_back(output, fmt)


class _NotDone:
    """Row filter for sources whose ids are known only while reading: drop ids already in the output."""

    def __init__(self, id_column: str, done: Iterable[str]) -> None:
        self.id_column, self.done = id_column, frozenset(done)

    def __call__(self, row: Dict[str, Any]) -> bool:
        return str(row[self.id_column]) not in self.done


def _write_sidecars_batch(batch: "pa.Table", sidecars: Mapping[str, str], mode: str) -> "pa.Table":
    written = _ds.write_sidecars(batch.to_pydict(), sidecars, mode)
    return batch.append_column("sidecar", pa.array(written, type=pa.string()))


def _read_back(output: Optional[Union[str, os.PathLike]], fmt: str) -> "ray.data.Dataset":
    if output is None or fmt == "sidecars" or not any(Path(output).rglob("*.parquet" if fmt == "parquet" else "*.json")):
        return ray.data.from_items([])
    if fmt == "parquet":
        return ray.data.read_parquet(str(output))
    return ray.data.read_json(str(output), lines=True, file_extensions=["json"])


def run_cli(args: Any, config: Any) -> int:
    """``python -m interrogator_core SRC --ray ...``: the CLI's Ray path (Ray's own progress bars show).

    The arguments were checked by :func:`interrogator_core.cli.usage_problems` (outputs included); what only the
    cluster can tell (does the pool fit?) is checked here, before any work, and exits :data:`EXIT_USAGE`."""
    fmt, output = ray_output(args)
    cfg = config_dict(config)
    cfg.update(mode=args.mode, min_flavors=args.min_flavors, max_flavors=args.max_flavors,
               negative_count=args.negative_count, beam_width=args.beam_width, device=args.device,
               precision=args.precision)
    if not ray.is_initialized():
        ray.init(address=args.ray_address, logging_level=logging.WARNING, include_dashboard=False)
    try:
        before = len(existing_ids(output, fmt)) if fmt != "sidecars" else 0
        out = interrogate_dataset(args.inputs, cfg, output=output, fmt=fmt, actors=args.actors,
                                  gpus_per_actor=args.gpus_per_actor, batch_size=args.batch_size,
                                  recursive=not args.no_recursive)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (InterrogatorError, ValueError, KeyError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    total = out.count()
    columns = ["id", "error"] + (["sidecar"] if fmt == "sidecars" else [])
    rows = list(out.select_columns(columns).iter_rows()) if total else []
    errors = [(r["id"], r["error"]) for r in rows if r["error"]]
    for key, reason in errors:
        print(f"failed: {key}: {reason}", file=sys.stderr)
    if fmt == "sidecars":
        written = sum(1 for r in rows if r["sidecar"])
        print(f"{written} sidecars written, {len(errors)} failed", file=sys.stderr)
    else:
        print(f"{total - before} new rows, {total} rows in {output}, {len(errors)} failed", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK
