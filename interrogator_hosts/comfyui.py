"""ComfyUI host adapter: the engine's models on ComfyUI's devices and memory manager.

* Devices, dtype, load and offload are the shared :class:`~interrogator_hosts.managed.ManagedHost` on
  ``comfy.model_management``: the text-encoder device and its offload device, ``should_use_fp16``, models
  registered through ``comfy.model_patcher.ModelPatcher`` (the plain legacy patcher: our modules are not built
  from ``comfy.ops``, so ComfyUI's dynamic-VRAM patcher does not apply to them) and loaded with
  ``load_models_gpu(..., force_full_load=True)``, which evicts diffusion models to make room; ComfyUI evicts
  us (``free_memory``, "Unload models") when it needs the memory back, and its ``ON_DETACH`` patcher callback
  tells us, so the engine's label embeddings leave the device too.
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
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Type

import torch

from interrogator_core import PRECISIONS, Interrupted, load_images
from interrogator_hosts.managed import InterrogatorModelHolder, ManagedHost, MemoryManager

if TYPE_CHECKING:  # PIL is imported lazily at run time
    from PIL import Image

log = logging.getLogger(__name__)

__all__ = ["ComfyHost", "InterrogatorModelHolder", "MEMORY_POLICIES", "PRECISIONS", "COMFY_MEMORY",
           "encode_text", "folder_paths_register", "interrupted_type", "tensor_to_pil"]

#: Loader widget value → (engine offload policy, models registered with ComfyUI's manager).
MEMORY_POLICIES = {
    "host managed": ("keep", True),
    "keep loaded": ("keep", False),
    "offload after run": ("offload", True),
}


def _mm() -> Any:
    return importlib.import_module("comfy.model_management")


def _utils() -> Any:
    return importlib.import_module("comfy.utils")


def _new_patcher(holder: Any, load_device: torch.device, offload_device: torch.device, size: int) -> Any:
    patcher_cls = importlib.import_module("comfy.model_patcher").ModelPatcher
    return patcher_cls(holder, load_device=load_device, offload_device=offload_device, size=size)


def _watch_detach(patcher: Any, callback: Callable[[], None]) -> None:
    try:
        on_detach = importlib.import_module("comfy.patcher_extension").CallbacksMP.ON_DETACH
    except (ImportError, AttributeError):  # pragma: no cover - ComfyUI before patcher_extension
        log.debug("ComfyUI has no patcher callbacks; label embeddings stay on the device after eviction")
        return
    patcher.add_callback(on_detach, lambda _patcher, _unpatch_all=True: callback())


#: ComfyUI's ``comfy.model_management`` as the shared host's memory manager.
COMFY_MEMORY = MemoryManager(
    name="ComfyUI",
    module=_mm,
    new_patcher=_new_patcher,
    load_models=lambda mm, patchers: mm.load_models_gpu(patchers, force_full_load=True),
    use_fp16=lambda mm, device: bool(mm.should_use_fp16(device, prioritize_performance=False)),
    watch_evictions=_watch_detach,
)


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


class ComfyHost(ManagedHost):
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
        super().__init__(COMFY_MEMORY, precision=precision, managed=managed, on_evict=on_evict)
        self._pbar: Any = None

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
    """ComfyUI ``IMAGE`` (float [B, H, W, C] in 0..1, or one [H, W, C] image) → the core's RGB images, through the
    core's one image edge (:func:`interrogator_core.load_images`, channels last as ComfyUI lays them out): values
    outside 0..1 clamped, alpha flattened on white, NaN or infinite values an ImageError naming the image."""
    if images.ndim not in (3, 4):
        raise ValueError(f"expected an IMAGE tensor [batch, height, width, channels], got shape "
                         f"{tuple(images.shape)}")
    return load_images(images.unsqueeze(0) if images.ndim == 3 else images, channels_last=True, name="IMAGE")


def folder_paths_register(folder_name: str = "clip_interrogator") -> List[str]:
    """Register ``models/<folder_name>/`` with ComfyUI's ``folder_paths``; returns its folders (first: default).

    Users (and ``extra_model_paths.yaml``) may add more folders under the same name.
    """
    import os

    folder_paths = importlib.import_module("folder_paths")
    # Appends the default folder unless already there (extra_model_paths.yaml entries keep their order).
    folder_paths.add_model_folder_path(folder_name, os.path.join(folder_paths.models_dir, folder_name))
    return list(folder_paths.get_folder_paths(folder_name))



#: token streams a ComfyUI CLIP encodes side by side, which must hold as many 77-token chunks each (SDXL's and
#: SD3's l and g: ``CLIPTextEncodeSDXL`` / ``CLIPTextEncodeSD3`` pad the shorter one with empty chunks)
PAIRED_STREAMS = ("l", "g")


def encode_text(clip: Any, text: str, streams: Mapping[str, str], add: Optional[Dict[str, Any]] = None) -> list:
    """A ComfyUI ``CONDITIONING`` of ``text`` with per-stream prompts, built the way ``CLIPTextEncodeFlux`` /
    ``CLIPTextEncodeSD3`` / ``CLIPTextEncodeHiDream`` build theirs.

    ``text`` is tokenized into every stream the ``clip``'s tokenizer has; each ``streams`` entry (stream name →
    prompt, see :func:`interrogator_core.targets.token_streams`) then replaces that stream's tokens where the
    tokenizer has it (a stream it lacks is skipped: that CLIP does not read it). ``l`` and ``g`` are padded to the
    same number of chunks with an empty prompt's. ``add`` goes into the conditioning's dict (``guidance``).
    ``encode_from_tokens_scheduled`` where this ComfyUI has it (hooks and schedules apply), else
    ``encode_from_tokens(..., return_pooled=True)`` as older versions encode.
    """
    if clip is None:
        raise RuntimeError("the clip input is None: the checkpoint has no text encoder; load one with a "
                           "CLIPLoader (or DualCLIPLoader / QuadrupleCLIPLoader) and connect its CLIP")
    tokens = clip.tokenize(text)
    for stream, prompt in streams.items():
        if stream in tokens:
            tokens[stream] = clip.tokenize(prompt)[stream]
    if all(isinstance(tokens.get(s), list) for s in PAIRED_STREAMS) and \
            len(tokens[PAIRED_STREAMS[0]]) != len(tokens[PAIRED_STREAMS[1]]):
        empty = clip.tokenize("")
        longest = max(len(tokens[s]) for s in PAIRED_STREAMS)
        for s in PAIRED_STREAMS:
            tokens[s] = list(tokens[s])
            while len(tokens[s]) < longest:
                tokens[s] += empty[s]
    extra = dict(add or {})
    if hasattr(clip, "encode_from_tokens_scheduled"):
        return clip.encode_from_tokens_scheduled(tokens, add_dict=extra)
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return [[cond, {"pooled_output": pooled, **extra}]]
