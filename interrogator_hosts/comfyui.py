"""ComfyUI host adapter: the engine's models on ComfyUI's devices and memory manager.

* Devices and dtype come from ``comfy.model_management`` (the text-encoder device and its offload device,
  ``should_use_fp16``), so ``--cpu``, ``--gpu-only``, ``--lowvram`` and friends apply to us too.
* In the managed modes every model is wrapped in a plain ``nn.Module`` holder (ComfyUI's ``ModelPatcher``
  assigns ``model.device``, which a ``transformers`` model refuses) and registered through
  ``comfy.model_patcher.ModelPatcher``; ``load_models_gpu(..., force_full_load=True)`` then evicts diffusion
  models to make room for us, and ComfyUI evicts us (``free_memory``, "Unload models") when it needs the
  memory back. An eviction also drops the engine's label embeddings from the device.
* "keep loaded" pins the models on the device by hand: ComfyUI makes room first, but cannot evict them.
* ``check_interrupt`` is ComfyUI's ``throw_exception_if_processing_interrupted``; the exception it raises is
  both the engine's :class:`~interrogator_core.Interrupted` and ComfyUI's ``InterruptProcessingException``,
  so the engine cleans up and ComfyUI reports "interrupted", not an error.
* ``progress`` drives a ``comfy.utils.ProgressBar`` on the running node.

``comfy.*`` is imported lazily (through :func:`_mm` and friends), so this module can be imported anywhere
and the unit tests can swap in fakes.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Type

import torch
from torch import nn

from interrogator_core import Interrupted, ModelHandle
from interrogator_core.host import parse_dtype
from interrogator_core.images import to_rgb

if TYPE_CHECKING:  # PIL is imported lazily at run time
    from PIL import Image

log = logging.getLogger(__name__)

#: Loader widget value → (engine offload policy, models registered with ComfyUI's manager).
MEMORY_POLICIES = {
    "host managed": ("keep", True),
    "keep loaded": ("keep", False),
    "offload after run": ("offload", True),
}

PRECISIONS = ("auto", "fp16", "bf16", "fp32")


def _mm() -> Any:
    return importlib.import_module("comfy.model_management")


def _model_patcher() -> Any:
    return importlib.import_module("comfy.model_patcher")


def _utils() -> Any:
    return importlib.import_module("comfy.utils")


class InterrogatorModelHolder(nn.Module):
    """Plain module around an engine model, the thing ComfyUI's ``ModelPatcher`` manages.

    ``ModelPatcher`` writes ``device`` and a few bookkeeping attributes onto its model; a ``transformers``
    ``PreTrainedModel`` refuses ``device`` (a read-only property), so the patcher gets this holder instead.
    Moving the holder moves the wrapped model (it is a registered submodule).
    """

    def __init__(self, name: str, module: nn.Module) -> None:
        super().__init__()
        self.wrapped = module
        #: The engine's handle name ("clip:...", "caption:..."): lets tools and tests tell our models apart.
        self.handle_name = name

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called by ComfyUI
        return self.wrapped(*args, **kwargs)


_interrupted_classes: Dict[type, type] = {}


def interrupted_type() -> Type[Exception]:
    """An exception class that is both the engine's ``Interrupted`` and ComfyUI's interrupt exception."""
    comfy_exc = _mm().InterruptProcessingException
    cls = _interrupted_classes.get(comfy_exc)
    if cls is None:
        cls = type("ComfyInterrupted", (Interrupted, comfy_exc),
                   {"__doc__": "Interrupted in ComfyUI (engine and ComfyUI interrupt at once).",
                    "__module__": __name__})
        _interrupted_classes[comfy_exc] = cls
    return cls


class ComfyHost:
    """:class:`~interrogator_core.HostAdapter` on ComfyUI's ``model_management``.

    Args:
        precision: "auto" (fp16 where ComfyUI's ``should_use_fp16`` says so, else fp32), "fp16", "bf16", "fp32".
        managed: True: register models with ComfyUI's memory manager (it may evict them);
            False: pin them on the load device (ComfyUI makes room first but cannot evict them).
        on_evict: called (no arguments) after ComfyUI moved one of our models off the device, e.g. to drop
            label embeddings from the device too. Never call back into ComfyUI's manager from it.
    """

    def __init__(self, precision: str = "auto", managed: bool = True,
                 on_evict: Optional[Callable[[], None]] = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        self.precision = precision
        self.managed = managed
        self.on_evict = on_evict
        self._pbar: Any = None

    # -- devices ----------------------------------------------------------------------------------------------
    def load_device(self) -> torch.device:
        """ComfyUI's text-encoder device (the GPU unless --cpu, low VRAM without fp16, ...)."""
        return torch.device(_mm().text_encoder_device())

    def offload_device(self) -> torch.device:
        return torch.device(_mm().text_encoder_offload_device())

    def dtype_for(self, device: torch.device) -> torch.dtype:
        explicit = parse_dtype(self.precision)
        if explicit is not None:
            return explicit
        return torch.float16 if _mm().should_use_fp16(device, prioritize_performance=False) else torch.float32

    # -- memory -----------------------------------------------------------------------------------------------
    def patcher_for(self, handle: ModelHandle) -> Any:
        """The ``ModelPatcher`` of ``handle`` (created and remembered in ``handle.host_data`` on first use)."""
        patcher = handle.host_data.get("comfy_patcher")
        if patcher is None:
            holder = InterrogatorModelHolder(handle.name, handle.module)
            patcher = _model_patcher().ModelPatcher(holder, load_device=self.load_device(),
                                                    offload_device=self.offload_device(),
                                                    size=handle.size_bytes())
            self._watch_evictions(patcher)
            handle.host_data["comfy_patcher"] = patcher
            log.info("registered %s with ComfyUI's model manager (%.1f MB)", handle.name,
                     handle.size_bytes() / 2**20)
        return patcher

    def _watch_evictions(self, patcher: Any) -> None:
        try:
            on_detach = importlib.import_module("comfy.patcher_extension").CallbacksMP.ON_DETACH
        except (ImportError, AttributeError):  # pragma: no cover - ComfyUI before patcher_extension
            log.debug("ComfyUI has no patcher callbacks; label embeddings stay on the device after eviction")
            return
        host_ref = weakref.ref(self)

        def detached(_patcher: Any, _unpatch_all: bool = True) -> None:
            host = host_ref()
            if host is not None and host.on_evict is not None:
                host.on_evict()

        patcher.add_callback(on_detach, detached)

    def load(self, models: Sequence[ModelHandle]) -> None:
        """Managed: ``load_models_gpu(patchers, force_full_load=True)`` (ComfyUI evicts others to make room).
        Pinned: ComfyUI frees what we need, then the models move by hand."""
        if not models:
            return
        mm = _mm()
        if self.managed:
            mm.load_models_gpu([self.patcher_for(m) for m in models], force_full_load=True)
            return
        device = self.load_device()
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
        """Take ``models`` out of ComfyUI's loaded list (unloading them there) or move pinned ones back."""
        mm = _mm()
        target = self.offload_device()
        moved = False
        for m in models:
            patcher = m.host_data.get("comfy_patcher")
            if patcher is not None and self._unregister(patcher):
                moved = True
            if m.device != target:
                m.module.to(target)
                moved = True
        if moved:
            mm.soft_empty_cache()

    def forget(self, models: Sequence[ModelHandle]) -> None:
        """Offload ``models`` and drop their patchers (the models are about to be discarded)."""
        self.offload(models)
        for m in models:
            m.host_data.pop("comfy_patcher", None)

    @staticmethod
    def _unregister(patcher: Any) -> bool:
        """Unload ``patcher`` the way ComfyUI's ``free_memory`` does and drop it from the loaded list."""
        mm = _mm()
        found = False
        for i in range(len(mm.current_loaded_models) - 1, -1, -1):
            loaded = mm.current_loaded_models[i]
            if loaded.model is patcher:
                loaded.model_unload()
                mm.current_loaded_models.pop(i)
                found = True
        return found

    def is_registered(self, handle: ModelHandle) -> bool:
        """Whether ComfyUI currently lists ``handle``'s model as loaded."""
        patcher = handle.host_data.get("comfy_patcher")
        return patcher is not None and any(lm.model is patcher for lm in _mm().current_loaded_models)

    # -- interrupt and progress ---------------------------------------------------------------------------
    def check_interrupt(self) -> None:
        mm = _mm()
        try:
            mm.throw_exception_if_processing_interrupted()
        except mm.InterruptProcessingException as e:
            raise interrupted_type()("interrupted in ComfyUI") from e

    def progress(self, step: int, total: int, desc: str = "") -> None:
        if total <= 0:
            return
        if self._pbar is None or self._pbar.total != total:
            self._pbar = _utils().ProgressBar(total)
        self._pbar.update_absolute(min(step, total), total)

    @contextlib.contextmanager
    def node_run(self) -> Iterator["ComfyHost"]:
        """Scope of one node execution: a fresh progress bar, and ComfyUI's interrupt type on the way out."""
        self._pbar = None
        try:
            yield self
        except Interrupted as e:
            mm = _mm()
            if isinstance(e, mm.InterruptProcessingException):
                raise
            raise mm.InterruptProcessingException() from e
        finally:
            self._pbar = None


def tensor_to_pil(images: torch.Tensor) -> List["Image.Image"]:
    """ComfyUI ``IMAGE`` (float [B, H, W, C] in 0..1, or one [H, W, C] image) → RGB PIL images.

    Values outside 0..1 are clamped; NaN or infinite values are a ValueError naming the image.
    """
    from PIL import Image

    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise ValueError(f"expected an IMAGE tensor [batch, height, width, channels], got shape "
                         f"{tuple(images.shape)}")
    if images.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected 1 to 4 channels in the last dimension, got shape {tuple(images.shape)}")
    x = images.detach().float().cpu()
    bad = (~torch.isfinite(x)).flatten(1).sum(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"image {i} of the IMAGE batch has {int(bad[i])} NaN/inf pixel values (of "
                         f"{x[i].numel()}): the node that made it produced invalid pixels (a VAE decode in fp16 "
                         f"often does: try --fp32-vae); fix it there, an interrogation of it would be garbage")
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # values slightly out of 0..1 are clamped
    modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
    out = []
    for i, a in enumerate(arr):
        im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a, modes[a.shape[-1]])
        out.append(to_rgb(im, f"image {i} of the batch"))  # alpha flattened on white, like files
    return out


def folder_paths_register(folder_name: str = "clip_interrogator") -> List[str]:
    """Register ``models/<folder_name>/`` with ComfyUI's ``folder_paths``; returns its folders (first: default).

    Users (and ``extra_model_paths.yaml``) may add more folders under the same name.
    """
    import os

    folder_paths = importlib.import_module("folder_paths")
    # Appends the default folder unless already there (extra_model_paths.yaml entries keep their order).
    folder_paths.add_model_folder_path(folder_name, os.path.join(folder_paths.models_dir, folder_name))
    return list(folder_paths.get_folder_paths(folder_name))

