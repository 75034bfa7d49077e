"""The model pool: where every model of a pipeline is loaded, shared and moved under the offload policy.

One :class:`ModelPool` per :class:`~interrogator_core.Interrogator`. It loads each model once — CLIP models by
(name, dtype), caption models by (name, dtype, ``trust_remote_code``), label tables by their CLIP model and
lists — so two encoders of one target that read the same CLIP model share it, and a host that changes one
setting keeps every model that would load identically (:meth:`ModelPool.keep_only`, :meth:`ModelPool.take`).
Its :attr:`~ModelPool.handles` are what the hosts' memory managers see.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, Iterable, List, Optional, Sequence, Set, Tuple, Union

import torch

from .caption import Captioner, load_captioner
from .clip import ClipModel, load_clip
from .host import HostAdapter, ModelHandle, OffloadPolicy, empty_device_cache
from .tables import LabelIndex

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class LabelTables:
    """One CLIP model's label tables: each table by name, the positive pool (every table but ``negative``) and
    the negative pool (flavors + negative), all slices of one block of memory."""

    tables: Dict[str, LabelIndex]
    pool: LabelIndex
    negative_pool: LabelIndex

    def indexes(self) -> List[LabelIndex]:
        return [*self.tables.values(), self.pool, self.negative_pool]


def clip_key(name: str, dtype: torch.dtype) -> Tuple[str, str, str]:
    """The pool's key of a CLIP model."""
    return ("clip", name, str(dtype))


def caption_key(name: str, dtype: torch.dtype, trust_remote_code: bool, quantization: Optional[str] = None
                ) -> Tuple[Any, ...]:
    """The pool's key of a caption model (``quantization``: "int8"/"nf4" or None)."""
    key: Tuple[Any, ...] = ("caption", name, str(dtype), bool(trust_remote_code))
    return key + (quantization,) if quantization else key


def tables_key(clip: Tuple[str, str, str], lists: Hashable) -> Tuple[str, Tuple[str, str, str], Hashable]:
    """The pool's key of a CLIP model's label tables built from ``lists`` (data and user folders, blocklist,
    cache folder)."""
    return ("tables", clip, lists)


class ModelPool:
    """Loads, shares and offloads the models of one pipeline through its host.

    Under :attr:`OffloadPolicy.LOW_VRAM` :meth:`use` keeps one model on the device; :meth:`after_call` offloads
    everything unless the policy is KEEP.
    """

    def __init__(self, host: HostAdapter, policy: Union[str, OffloadPolicy] = OffloadPolicy.KEEP) -> None:
        self.host = host
        self.policy = OffloadPolicy.parse(policy)
        self.lock = threading.RLock()
        self._models: Dict[Hashable, Union[ClipModel, Captioner]] = {}
        self._tables: Dict[Hashable, LabelTables] = {}

    # -- loading --------------------------------------------------------------------------------------------
    def dtype(self) -> torch.dtype:
        """The dtype the host runs models in on its load device."""
        return self.host.dtype_for(self.host.load_device())

    def quantization(self) -> Optional[str]:
        """The caption model's quantization the host's precision asks for ("int8"/"nf4"; None: none). A host
        adapter without a ``quantization`` attribute quantizes nothing."""
        return getattr(self.host, "quantization", None)

    def clip(self, name: str, search_dirs: Sequence[PathLike] = (), download_dir: Optional[PathLike] = None,
             ) -> ClipModel:
        """The CLIP model ``name``, loaded once and put on the device."""
        key = clip_key(name, self.dtype())
        with self.lock:
            model = self._models.get(key)
            if model is None:
                model = self._models[key] = load_clip(name, self.dtype(), search_dirs, download_dir)
            self.use(model.handle)
            return model  # type: ignore[return-value]

    def captioner(self, name: str, search_dirs: Sequence[PathLike] = (), download_dir: Optional[PathLike] = None,
                  trust_remote_code: bool = False) -> Captioner:
        """The caption model ``name``, loaded once (put it on the device with :meth:`use` when it runs)."""
        key = caption_key(name, self.dtype(), trust_remote_code, self.quantization())
        with self.lock:
            model = self._models.get(key)
            if model is None:
                model = self._models[key] = load_captioner(name, self.dtype(), search_dirs, download_dir,
                                                           trust_remote_code=trust_remote_code,
                                                           quantization=self.quantization(),
                                                           device=self.host.load_device())
            return model  # type: ignore[return-value]

    def tables(self, key: Hashable, build: Callable[[], LabelTables]) -> LabelTables:
        """The label tables under ``key`` (see :func:`tables_key`), built once by ``build``."""
        with self.lock:
            tables = self._tables.get(key)
            if tables is None:
                tables = self._tables[key] = build()
            return tables

    # -- memory ---------------------------------------------------------------------------------------------
    def use(self, handle: ModelHandle) -> None:
        """Put ``handle`` on the device; under LOW_VRAM first move every other model off it."""
        if self.policy is OffloadPolicy.LOW_VRAM:
            others = [h for h in self.handles if h is not handle]
            if others:
                self.host.offload(others)
        self.host.load([handle])

    @property
    def handles(self) -> List[ModelHandle]:
        """Every loaded model, as the host's memory manager sees it."""
        return [m.handle for m in self._models.values()]

    def loaded(self) -> Set[Hashable]:
        """The keys of what is loaded (models and label tables)."""
        return set(self._models) | set(self._tables)

    def get(self, key: Hashable) -> Optional[Union[ClipModel, Captioner]]:
        """The loaded model under ``key`` (None: not loaded)."""
        return self._models.get(key)

    def models(self, kind: str) -> list:
        """What is loaded of ``kind``: "clip" (ClipModel), "caption" (Captioner) or "tables" (LabelTables)."""
        if kind == "tables":
            return list(self._tables.values())
        return [m for k, m in self._models.items() if k[0] == kind]  # type: ignore[index]

    def release_device_caches(self) -> None:
        """Drop device copies of label embeddings and the text encoders' cached prefixes (no host calls)."""
        for tables in self._tables.values():
            for index in tables.indexes():
                index.release()
        for model in self._models.values():
            if isinstance(model, ClipModel):
                model.text.release()

    def offload(self) -> None:
        """Every model to the offload device, device caches dropped."""
        with self.lock:
            self.release_device_caches()
            if self.handles:
                self.host.offload(self.handles)

    def after_call(self) -> None:
        """What the policy does when a call ends: offload unless KEEP."""
        if self.policy is not OffloadPolicy.KEEP:
            self.offload()

    def keep_only(self, wanted: Iterable[Hashable]) -> List[Hashable]:
        """Unload whatever is not in ``wanted``; returns the keys that stay."""
        wanted = set(wanted)
        with self.lock:
            dropped = [k for k in self._models if k not in wanted]
            if dropped:
                self.host.offload([self._models[k].handle for k in dropped])
            for k in dropped:
                del self._models[k]
            for k in [k for k in self._tables if k not in wanted]:
                for index in self._tables.pop(k).indexes():
                    index.release()
            return sorted(self.loaded(), key=str)

    def take(self, other: "ModelPool", wanted: Iterable[Hashable]) -> List[Hashable]:
        """Move ``other``'s models and tables that are in ``wanted`` into this pool (``other`` forgets them)."""
        wanted = set(wanted)
        with other.lock, self.lock:
            moved = [k for k in other._models if k in wanted and k not in self._models]
            for k in moved:
                self._models[k] = other._models.pop(k)
            tables = [k for k in other._tables if k in wanted and k not in self._tables]
            for k in tables:
                self._tables[k] = other._tables.pop(k)
            return moved + tables

    def unload(self) -> None:
        """Forget every model and table (they reload on next use)."""
        with self.lock:
            self.offload()
            self._models.clear()
            self._tables.clear()
            empty_device_cache()
