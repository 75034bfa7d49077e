"""One host adapter for ModelPatcher-style memory managers (ComfyUI's ``comfy.model_management``, Forge's
``backend.memory_management``): the engine's models on the host's devices, loaded and evicted by its manager.

Both managers keep a list of loaded models (``current_loaded_models``, entries whose ``.model`` is a
``ModelPatcher`` and that unload with ``model_unload()``), load with ``load_models_gpu`` (evicting others to
make room), and name the text-encoder devices. What differs is injected as :class:`MemoryManager`: how to
import the module, build a patcher, call ``load_models_gpu``, pick fp16, and (where the host has patcher
callbacks) hear about evictions.

* In managed mode every model is wrapped in a plain ``nn.Module`` holder (a ``ModelPatcher`` assigns
  attributes such as ``model.device``, which a ``transformers`` model refuses) and registered with the manager.
  The manager may leave part of a module on the CPU when VRAM is short; our modules are plain torch and need
  all their weights on one device, so such a module is moved there whole (with a warning).
* Pinned mode (``managed=False``): the manager frees the memory we need, then the models move by hand and
  stay; the manager cannot evict them.
* An eviction (where the host reports it) calls ``on_evict``, e.g. to drop label embeddings from the device.

Interrupt and progress are not here: the host classes add them (ComfyUI's interrupt flag and progress bar,
A1111/Forge's ``shared.state``).
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

import torch
from torch import nn

from interrogator_core import PRECISIONS, ModelHandle, UnknownNameError
from interrogator_core.hostapi import parse_dtype, quantization_of

log = logging.getLogger(__name__)

#: ``ModelHandle.host_data`` key of a model's patcher.
PATCHER_KEY = "patcher"


@dataclass(frozen=True)
class MemoryManager:
    """The host-specific calls of a ModelPatcher-style memory manager (everything else is shared).

    Attributes:
        name: the host's name, for log messages ("ComfyUI", "Forge").
        module: returns the model-management module (imported lazily, at call time).
        new_patcher: ``(holder, load_device, offload_device, size_bytes) -> ModelPatcher``.
        load_models: ``(module, patchers) -> None``: the host's ``load_models_gpu`` call.
        use_fp16: ``(module, device) -> bool``: whether "auto" precision means fp16 on ``device``.
        watch_evictions: ``(patcher, callback) -> None``: have ``callback()`` called when the manager unloads
            ``patcher``; None where the host has no such hook.
    """

    name: str
    module: Callable[[], Any]
    new_patcher: Callable[[nn.Module, torch.device, torch.device, int], Any]
    load_models: Callable[[Any, List[Any]], None]
    use_fp16: Callable[[Any, torch.device], bool]
    watch_evictions: Optional[Callable[[Any, Callable[[], None]], None]] = None


class InterrogatorModelHolder(nn.Module):
    """Plain module around an engine model: what the host's ``ModelPatcher`` manages.

    A ``ModelPatcher`` writes ``device`` and bookkeeping attributes onto its model; a ``transformers``
    ``PreTrainedModel`` refuses ``device`` (a read-only property), so the patcher gets this holder instead.
    Moving the holder moves the wrapped model (a registered submodule).
    """

    def __init__(self, name: str, module: nn.Module) -> None:
        super().__init__()
        self.wrapped = module
        #: The engine's handle name ("clip:...", "caption:..."): lets tools and tests tell our models apart.
        self.handle_name = name

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called by the host
        return self.wrapped(*args, **kwargs)


class ManagedHost:
    """Devices, dtype, load and offload of a :class:`~interrogator_core.HostAdapter` on a ModelPatcher-style
    memory manager.

    Args:
        manager: the host-specific calls.
        precision: "auto" (fp16 where the host says so, else fp32), "fp16", "bf16" or "fp32"; "int8"/"nf4":
            auto, with the caption model quantized by bitsandbytes (CUDA only).
        managed: True: register models with the manager (it may evict them); False: pin them on the load
            device (the manager makes room first but cannot evict them).
        on_evict: called (no arguments) after the manager moved one of our models off the device. Never call
            back into the manager from it.
    """

    def __init__(self, manager: MemoryManager, precision: str = "auto", managed: bool = True,
                 on_evict: Optional[Callable[[], None]] = None) -> None:
        if precision not in PRECISIONS:
            raise UnknownNameError("precision", str(precision), PRECISIONS)
        self.manager = manager
        self.precision = precision
        self.managed = managed
        self.on_evict = on_evict

    @property
    def quantization(self) -> Optional[str]:
        """"int8"/"nf4": the caption model loads quantized (the precision setting; CLIP as with auto)."""
        return quantization_of(self.precision)

    @property
    def mm(self) -> Any:
        """The host's model-management module."""
        return self.manager.module()

    # -- devices ----------------------------------------------------------------------------------------------
    def load_device(self) -> torch.device:
        """The host's text-encoder device (the GPU unless the host runs on the CPU, ...)."""
        return torch.device(self.mm.text_encoder_device())

    def offload_device(self) -> torch.device:
        return torch.device(self.mm.text_encoder_offload_device())

    def dtype_for(self, device: torch.device) -> torch.dtype:
        explicit = parse_dtype(self.precision)
        if explicit is not None:
            return explicit
        return torch.float16 if self.manager.use_fp16(self.mm, device) else torch.float32

    # -- memory -----------------------------------------------------------------------------------------------
    def patcher_for(self, handle: ModelHandle) -> Any:
        """The ``ModelPatcher`` of ``handle`` (created and remembered in ``handle.host_data`` on first use)."""
        patcher = handle.host_data.get(PATCHER_KEY)
        if patcher is None:
            holder = InterrogatorModelHolder(handle.name, handle.module)
            patcher = self.manager.new_patcher(holder, self.load_device(), self.offload_device(),
                                               handle.size_bytes())
            if self.manager.watch_evictions is not None:
                self.manager.watch_evictions(patcher, self._evicted_callback())
            handle.host_data[PATCHER_KEY] = patcher
            log.info("registered %s with %s's model manager (%.1f MB)", handle.name, self.manager.name,
                     handle.size_bytes() / 2**20)
        return patcher

    def _evicted_callback(self) -> Callable[[], None]:
        host_ref = weakref.ref(self)  # the patcher outlives neither the host nor the models

        def evicted() -> None:
            host = host_ref()
            if host is not None and host.on_evict is not None:
                host.on_evict()

        return evicted

    def make_room(self) -> None:
        """Nothing to do ahead: ``load`` makes room (the manager's ``load_models_gpu`` or ``free_memory``)."""

    def load(self, models: Sequence[ModelHandle]) -> None:
        """Managed: through the manager's ``load_models_gpu`` (it evicts others to make room); any model it
        left partly off the device is then moved there whole. Pinned: the manager frees what we need, then
        the models move by hand."""
        if not models:
            return
        mm = self.mm
        device = self.load_device()
        if self.managed:
            self.manager.load_models(mm, [self.patcher_for(m) for m in models])
            for m in models:
                if any(p.device != device for p in m.module.parameters()):
                    log.warning("%s kept part of %s off %s; moving it there whole", self.manager.name, m.name,
                                device)
                    m.module.to(device)
            return
        todo = [m for m in models if m.device != device]
        if not todo:
            return
        if device.type != "cpu":
            need = sum(m.size_bytes() for m in todo)
            mm.free_memory(need * 1.1 + mm.minimum_inference_memory(), device)
        for m in todo:
            log.debug("pinning %s on %s", m.name, device)
            m.module.to(device)

    def offload(self, models: Sequence[ModelHandle]) -> None:
        """Take ``models`` out of the manager's loaded list (unloading them there) or move pinned ones back."""
        target = self.offload_device()
        moved = False
        for m in models:
            patcher = m.host_data.get(PATCHER_KEY)
            if patcher is not None and self._unregister(patcher):
                moved = True
            if m.device != target:
                m.module.to(target)
                moved = True
        if moved:
            self.mm.soft_empty_cache()

    def _unregister(self, patcher: Any) -> bool:
        """Unload ``patcher`` the way the manager's ``free_memory`` does and drop it from the loaded list."""
        loaded_models = self.mm.current_loaded_models
        found = False
        for i in range(len(loaded_models) - 1, -1, -1):
            loaded = loaded_models[i]
            if loaded.model is patcher:
                loaded_models.pop(i)
                loaded.model_unload()
                found = True
        return found

    def is_registered(self, handle: ModelHandle) -> bool:
        """Whether the manager currently lists ``handle``'s model as loaded."""
        patcher = handle.host_data.get(PATCHER_KEY)
        return patcher is not None and any(lm.model is patcher for lm in self.mm.current_loaded_models)
