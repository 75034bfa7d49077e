"""Dataset-scale building blocks that need no Ray: the per-actor stage, the label-cache warm-up, resume ids.

:mod:`interrogator_core.ray` wires these into Ray Data (``map_batches`` actors, readers, writers). Kept apart
so the stage's behaviour (rows, error rows, cache use) is testable in every environment, Ray or not.

A batch is a column mapping (Ray's default numpy batch, a pandas frame or a dict of lists) with an id column
and either an image column (encoded bytes, a ``{"bytes": ..., "path": ...}`` struct as Hugging Face datasets
store images, or a decoded HxWxC array) or a path column. Every input row gives exactly one output row
(:data:`OUTPUT_COLUMNS`); an image that cannot be read gives a row with ``error`` set and empty prompts.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
from PIL import Image

from .batch import sidecars_for
from .cache import sanitize_model_name
from .clip import resolve_clip
from .errors import ImageError, InterrogatorError, UnknownNameError
from .fileio import atomic_write
from .host import StandaloneHost
from .images import IMAGE_EXTENSIONS, load_rgb
from .interrogator import MODES, Interrogator, InterrogatorConfig
from .result import prompt_text

log = logging.getLogger(__name__)

#: Output row: id, prompts, caption, similarity of the positive prompt, the target's extra prompts by encoder
#: name as a JSON object string ("{}" when the target has none), and the error of a bad image (else None).
OUTPUT_COLUMNS = ("id", "positive", "negative", "caption", "similarity", "prompts", "error")
#: Output formats of :func:`interrogator_core.ray.interrogate_dataset`.
OUTPUT_FORMATS = ("parquet", "jsonl", "sidecars")
#: Keys of a stage config besides the :class:`InterrogatorConfig` fields: the call's arguments and the host's.
CALL_KEYS = {"mode": "best", "min_flavors": None, "max_flavors": 32, "negative_count": 16, "beam_width": 1}
HOST_KEYS = {"device": "auto", "precision": "auto"}

StageConfig = Union[Mapping[str, Any], InterrogatorConfig]


@dataclass
class SplitConfig:
    """A stage config taken apart: engine settings, ``interrogate`` arguments, host settings."""

    engine: InterrogatorConfig
    call: Dict[str, Any] = field(default_factory=lambda: dict(CALL_KEYS))
    host: Dict[str, Any] = field(default_factory=lambda: dict(HOST_KEYS))


def split_config(config: StageConfig) -> SplitConfig:
    """Parse a stage config: a dict of :class:`InterrogatorConfig` fields plus ``mode``, ``min_flavors``,
    ``max_flavors``, ``negative_count``, ``beam_width``, ``device`` and ``precision`` (or an
    :class:`InterrogatorConfig`, which takes the defaults for the rest). Unknown keys raise, naming the valid ones.
    """
    if isinstance(config, InterrogatorConfig):
        return SplitConfig(engine=config)
    engine_keys = {f.name for f in dataclasses.fields(InterrogatorConfig)}
    engine, call, host = {}, dict(CALL_KEYS), dict(HOST_KEYS)
    for key, value in dict(config).items():
        if key in engine_keys:
            engine[key] = value
        elif key in CALL_KEYS:
            call[key] = value
        elif key in HOST_KEYS:
            host[key] = value
        else:
            raise UnknownNameError("stage config key", key, [*engine_keys, *CALL_KEYS, *HOST_KEYS])
    if call["mode"] not in MODES:
        raise UnknownNameError("mode", call["mode"], MODES)
    return SplitConfig(InterrogatorConfig(**engine), call, host)


def config_dict(config: StageConfig) -> Dict[str, Any]:
    """A plain, picklable dict form of a stage config (for ``fn_constructor_kwargs``)."""
    split = split_config(config)
    out = {f.name: getattr(split.engine, f.name) for f in dataclasses.fields(InterrogatorConfig)}
    out["offload"] = split.engine.offload.value
    out.update(split.call)
    out.update(split.host)
    return out


class _LabelCounter:
    """A host progress callback that counts the labels the engine had to encode (cache misses)."""

    def __init__(self) -> None:
        self._done: Dict[str, int] = {}

    def __call__(self, step: int, total: int, desc: str) -> None:
        if desc.startswith("encoding labels"):
            table = desc.split(" (ETA", 1)[0]  # the text carries a changing ETA: count per table, not per text
            self._done[table] = max(self._done.get(table, 0), step)

    @property
    def encoded(self) -> int:
        return sum(self._done.values())


def _load_everything(ci: Interrogator, caption: bool) -> None:
    """Load the models and every label table a run will use (the target's extra encoders included)."""
    ci.load(caption=caption)


def _cache_names(engine: InterrogatorConfig) -> List[str]:
    names = [resolve_clip(engine.clip_model, engine.model_dirs).cache_name]
    names += [resolve_clip(model, engine.model_dirs).cache_name for _, model in engine.preset.extras(engine.sdxl_dual)]
    return names


@dataclass
class LabelCacheInfo:
    """What :func:`prepare_label_cache` did: labels it had to encode (0: all cached) and the cache files."""

    encoded: int
    files: Dict[str, bytes]


def prepare_label_cache(config: StageConfig, with_files: bool = True) -> LabelCacheInfo:
    """Encode every label table of ``config`` into its cache folder once (a no-op when cached).

    Returns how many labels were encoded and, with ``with_files``, the cache files' bytes by file name, so
    workers on machines that do not share the folder can be given them (:class:`PromptStage` ``label_files``).
    """
    split = split_config(config)
    if split.engine.cache_dir is None:
        raise ValueError("cache_dir is None: every worker would encode the label tables itself; give a cache "
                         "folder (cache_dir=...)")
    counter = _LabelCounter()
    ci = Interrogator(split.engine, StandaloneHost(split.host["device"], split.host["precision"], progress=counter))
    _load_everything(ci, caption=False)
    files: Dict[str, bytes] = {}
    if with_files:
        cache_dir = Path(split.engine.cache_dir)
        for name in _cache_names(split.engine):
            for path in glob.glob(str(cache_dir / glob.escape(sanitize_model_name(name) + "_")) + "*.safetensors"):
                files[os.path.basename(path)] = Path(path).read_bytes()
    ci.unload()
    log.info("label cache ready in %s: %d labels encoded, %d files", split.engine.cache_dir, counter.encoded,
             len(files))
    return LabelCacheInfo(counter.encoded, files)


def install_label_files(cache_dir: Union[str, os.PathLike], files: Mapping[str, bytes]) -> int:
    """Write cache files into ``cache_dir`` where missing or different in size (atomically); returns how many."""
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, data in files.items():
        if os.path.basename(name) != name:
            raise ValueError(f"label cache file name {name!r} must be a plain file name")
        target = folder / name
        if target.is_file() and target.stat().st_size == len(data):
            continue
        atomic_write(target, data)
        written += 1
    return written


def _column(batch: Any, name: str) -> Optional[List[Any]]:
    """A batch column as a list (numpy dict, pandas frame, pyarrow table or dict of lists), or None."""
    names = batch.column_names if hasattr(batch, "column_names") else list(batch.keys())
    if name not in names:
        return None
    col = batch[name]
    for attr in ("to_pylist", "tolist"):
        if hasattr(col, attr):
            return getattr(col, attr)()
    return list(col)


def decode_image(value: Any, source: str) -> Image.Image:
    """An image cell (bytes, an HF ``{"bytes", "path"}`` struct, an HxWxC array, or a path) as RGB, or
    :class:`ImageError` naming ``source``."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None:
        raise ImageError(source, "has no image data (empty cell)")
    if isinstance(value, (list, tuple)):  # an array cell read back as nested lists
        value = np.asarray(value)
    return load_rgb(value, source=source)


class PromptStage:
    """Callable class for ``ds.map_batches(PromptStage, fn_constructor_kwargs={"config": {...}}, ...)``.

    Each actor builds one :class:`Interrogator` from ``config`` (see :func:`split_config`) and loads its models
    and label tables once, at start-up; each call maps a batch to rows with :data:`OUTPUT_COLUMNS`.

    Args:
        config: engine settings plus ``mode`` and ``interrogate`` arguments (dict or InterrogatorConfig).
        id_column: the batch's id column.
        image_column / path_column: where the image is: encoded bytes (or an HF image struct or an array), or a
            file path. The image column wins when a batch has both.
        label_files: cache files from :func:`prepare_label_cache` (by file name), written into the actor's
            cache folder when missing there (machines that do not share the folder).
        require_label_cache: fail at start-up if this actor had to encode any label (the driver prepared them,
            so a miss means the cache folder is not shared and ``label_files`` was not given).
        diagnostics: add ``labels_encoded`` (labels this actor encoded at start-up) and ``worker_pid`` columns.

    Attributes:
        labels_encoded: labels this actor had to encode at start-up (0 when the cache served every table).
    """

    def __init__(self, config: StageConfig, *, id_column: str = "id", image_column: str = "image",
                 path_column: str = "path", label_files: Optional[Mapping[str, bytes]] = None,
                 require_label_cache: bool = False, diagnostics: bool = False) -> None:
        split = split_config(config)
        self.call = split.call
        self.id_column, self.image_column, self.path_column = id_column, image_column, path_column
        self.diagnostics = diagnostics
        if label_files:
            if split.engine.cache_dir is None:
                raise ValueError("label_files were given but cache_dir is None; give a cache folder")
            install_label_files(split.engine.cache_dir, label_files)
        counter = _LabelCounter()
        self.interrogator = Interrogator(
            split.engine, StandaloneHost(split.host["device"], split.host["precision"], progress=counter))
        needs_caption = MODES[self.call["mode"]]["caption"]
        needs_clip = MODES[self.call["mode"]]["clip"]
        self.interrogator.load(caption=needs_caption, clip=needs_clip)
        if needs_clip and split.engine.sdxl_dual:
            _load_everything(self.interrogator, caption=needs_caption)
        self.labels_encoded = counter.encoded
        if self.labels_encoded and require_label_cache:
            raise InterrogatorError(
                f"this worker (pid {os.getpid()}) had to encode {self.labels_encoded} labels although they were "
                f"prepared before the pool started: its cache folder {split.engine.cache_dir} is not the one the "
                "preparation wrote. Put cache_dir on storage every node mounts, or pass the prepared label_files.")
        if self.labels_encoded:
            log.warning("worker %d encoded %d labels itself (no prepared cache in %s)", os.getpid(),
                        self.labels_encoded, split.engine.cache_dir)

    def __call__(self, batch: Any) -> Dict[str, List[Any]]:
        ids = _column(batch, self.id_column)
        if ids is None:
            raise KeyError(f"batch has no id column {self.id_column!r}; pass id_column= (columns: "
                           f"{', '.join(_names(batch))})")
        cells = _column(batch, self.image_column)
        if cells is None:
            cells = _column(batch, self.path_column)
        if cells is None:
            raise KeyError(f"batch has neither an image column {self.image_column!r} nor a path column "
                           f"{self.path_column!r} (columns: {', '.join(_names(batch))})")
        ids = [str(i) for i in ids]
        rows: Dict[str, List[Any]] = {c: [None] * len(ids) for c in OUTPUT_COLUMNS}
        rows["id"] = ids
        good: List[Tuple[int, Image.Image]] = []
        for i, (key, cell) in enumerate(zip(ids, cells)):
            try:
                good.append((i, decode_image(cell, key)))
            except ImageError as e:
                log.warning("dataset: %s", e)
                rows["error"][i] = str(e)
        if good:
            results = self.interrogator.interrogate([im for _, im in good], **self.call)
            for (i, _), r in zip(good, results):
                rows["positive"][i], rows["negative"][i], rows["caption"][i] = r.positive, r.negative, r.caption
                rows["similarity"][i] = r.similarity
                rows["prompts"][i] = json.dumps(r.prompts, ensure_ascii=False, sort_keys=True)
        for i in range(len(ids)):
            if rows["error"][i] is not None:
                rows["positive"][i] = rows["negative"][i] = rows["caption"][i] = ""
                rows["prompts"][i] = "{}"
        if self.diagnostics:
            rows["labels_encoded"] = [self.labels_encoded] * len(ids)
            rows["worker_pid"] = [os.getpid()] * len(ids)
        return rows


def _names(batch: Any) -> List[str]:
    return list(batch.column_names if hasattr(batch, "column_names") else batch.keys())


# -- sources, the actor pool, outputs and resume -------------------------------------------------------------
#: Inputs :func:`interrogator_core.ray.interrogate_dataset` reads; "auto" picks by the path.
SOURCE_FORMATS = ("auto", "images", "parquet", "webdataset")


def guess_source_format(paths: Sequence[Union[str, os.PathLike]]) -> str:
    """The kind of input the paths are: images (files or folders of them), parquet or webdataset (``.tar``);
    mixed kinds raise ``ValueError``."""
    def kind(p: str) -> str:
        low = p.lower()
        if low.endswith((".tar", ".tar.gz", ".tgz")):
            return "webdataset"
        if low.endswith(".parquet"):
            return "parquet"
        if os.path.isdir(p):
            names = [n.lower() for _, _, files in os.walk(p) for n in files]
            if any(n.endswith(IMAGE_EXTENSIONS) for n in names):
                return "images"
            if any(n.endswith(".parquet") for n in names):
                return "parquet"
            if any(n.endswith(".tar") for n in names):
                return "webdataset"
        return "images"

    kinds = {kind(str(p)) for p in paths}
    if len(kinds) != 1:
        raise ValueError(f"cannot mix inputs of kinds {sorted(kinds)}; pass source_format= or one kind of input")
    return kinds.pop()


def pool_problem(cluster: Mapping[str, float], actors: int, cpus_per_actor: float, gpus_per_actor: float,
                 spare_cpus: float = 1) -> Optional[str]:
    """Why a pool of ``actors`` (each ``cpus_per_actor`` CPUs, ``gpus_per_actor`` GPUs) cannot run on a cluster
    with ``cluster`` resources (``ray.cluster_resources()``), or None when it can.

    Ray Data's read, filter and write tasks need a CPU of their own besides the actors (``spare_cpus``): when the
    actors hold every CPU, or ask for more GPUs than there are, the job waits forever without a word. The text
    says what to change.
    """
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    eps = 1e-9
    if gpus_per_actor and actors * gpus_per_actor > gpus + eps:
        fit = int(gpus // gpus_per_actor + eps)
        return (f"{actors} actors x {gpus_per_actor:g} GPUs need {actors * gpus_per_actor:g} GPUs; the cluster has "
                f"{gpus:g}: use " + (f"at most {fit} actor{'s' if fit != 1 else ''} (--actors {fit}), " if fit else "")
                + "fewer GPUs per actor "
                f"(--gpus-per-actor {gpus / actors:.2g}) or a cluster with more GPUs")
    if actors * cpus_per_actor + spare_cpus > cpus + eps:
        fit = int(max(0.0, cpus - spare_cpus) // cpus_per_actor + eps) if cpus_per_actor else actors
        share = max(0.0, cpus - spare_cpus) / actors
        fixes = [f"at most {fit} actor{'s' if fit != 1 else ''} (--actors {fit})"] if fit else []
        if share > 0:
            fixes.append(f"fewer CPUs per actor (cpus_per_actor={share:.2g})")
        fixes.append(f"a cluster with {actors * cpus_per_actor + spare_cpus:g} CPUs")
        return (f"{actors} actors x {cpus_per_actor:g} CPUs leave Ray's read and write tasks no CPU on a cluster "
                f"with {cpus:g} CPUs (the job would wait forever): use " + " or ".join(fixes))
    return None


def sidecar_names(output: Union[str, os.PathLike], ids: Sequence[str]) -> Dict[str, Path]:
    """Each row id's ``.txt`` sidecar under ``output`` (ids are image paths relative to it): the batch rule,
    :func:`interrogator_core.batch.sidecars_for`, over the whole run's ids, so of ``a.jpg`` and ``a.png``
    one writes ``a.txt`` and the other ``a.png.txt``, exactly as the CLI and the Batch tab name them."""
    ids = list(dict.fromkeys(str(i) for i in ids))
    return dict(zip(ids, sidecars_for([Path(output) / i for i in ids])))


def sidecar_text(row: Mapping[str, Any], mode: str) -> str:
    """A sidecar's text: :func:`~interrogator_core.result.prompt_text` of the row."""
    return prompt_text(mode, row["positive"] or "", row["negative"] or "", row["caption"] or "")


def write_sidecars(rows: Mapping[str, List[Any]], sidecars: Mapping[str, Union[str, os.PathLike]],
                   mode: str) -> List[Optional[str]]:
    """Write each row's text to its sidecar (``sidecars``: by id, see :func:`sidecar_names`), atomically (temp
    file + rename); rows with an error get none. Returns, per row, the file written (None: none)."""
    written: List[Optional[str]] = []
    for i, row_id in enumerate(rows["id"]):
        if rows["error"][i]:
            written.append(None)
            continue
        target = Path(sidecars[str(row_id)])
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, sidecar_text({k: v[i] for k, v in rows.items()}, mode) + "\n")
        written.append(str(target))
    return written


def existing_ids(output: Union[str, os.PathLike], fmt: str, candidates: Optional[Iterable[str]] = None) -> Set[str]:
    """Ids already written to ``output`` in format ``fmt`` (resume).

    parquet/jsonl: the ``id`` column of every part file in the folder (a part file cut short by a crash is
    renamed ``*.incomplete`` with a warning, so its rows are redone and readers skip it). sidecars: the
    ``candidates`` (the whole run's ids) whose sidecar (:func:`sidecar_names`) exists.
    """
    if fmt not in OUTPUT_FORMATS:
        raise UnknownNameError("output format", fmt, OUTPUT_FORMATS)
    out = Path(output)
    if fmt == "sidecars":
        return {c for c, side in sidecar_names(out, list(candidates or ())).items() if side.is_file()}
    if not out.exists():
        return set()
    if out.is_file():
        raise ValueError(f"output {out} is a file; {fmt} output is a folder of part files (give a folder path)")
    ids: Set[str] = set()
    suffix = ".parquet" if fmt == "parquet" else ".json"
    for part in sorted(p for p in out.rglob(f"*{suffix}") if p.is_file()):
        try:
            ids.update(_part_ids(part, fmt))
        except Exception as e:  # noqa: BLE001 - any reader error means a damaged part file
            aside = part.with_name(part.name + ".incomplete")
            log.warning("output part %s is unreadable (%s); moving it to %s and redoing its rows", part, e, aside)
            os.replace(part, aside)
    return ids


def _part_ids(part: Path, fmt: str) -> List[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return [str(i) for i in pq.read_table(str(part), columns=["id"]).column("id").to_pylist()]
    with open(part, encoding="utf-8") as fh:
        return [str(json.loads(line)["id"]) for line in fh if line.strip()]
