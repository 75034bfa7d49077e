"""AUTOMATIC1111 / Forge host adapters (:class:`~interrogator_core.HostAdapter` implementations).

* :class:`A1111Host` — ``modules.devices`` (``device_interrogate``, half unless ``--no-half``, ``torch_gc``),
  ``lowvram.send_everything_to_cpu()`` first under ``--lowvram``/``--medvram``, ``shared.state`` for
  interrupt and progress.
* :class:`ForgeHost` — Forge's ``backend.memory_management``: models wrapped in its ``ModelPatcher`` and
  loaded with ``load_models_gpu`` (which evicts diffusion models as needed) on ``text_encoder_device()``.
* :func:`make_host` — Forge when ``backend.memory_management`` imports, else A1111.

Imports ``modules.*`` / ``backend.*`` lazily, at call time, so importing this module is cheap.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

from interrogator_core import Interrupted, ModelHandle

log = logging.getLogger(__name__)


def _cmd_flag(name: str) -> bool:
    from modules import shared

    return bool(getattr(getattr(shared, "cmd_opts", None), name, False))


def webui_low_vram() -> bool:
    """``--lowvram``/``--medvram`` (or ``--medvram-sdxl`` with an SDXL model loaded)."""
    from modules import shared

    if _cmd_flag("lowvram") or _cmd_flag("medvram"):
        return True
    model = getattr(shared, "sd_model", None)
    return _cmd_flag("medvram_sdxl") and bool(getattr(model, "is_sdxl", False))


class A1111Host:
    """:class:`~interrogator_core.HostAdapter` for AUTOMATIC1111's webui."""

    def load_device(self) -> torch.device:
        from modules import devices

        dev = getattr(devices, "device_interrogate", None) or devices.get_optimal_device()
        return torch.device(dev)

    def offload_device(self) -> torch.device:
        from modules import devices

        return torch.device(devices.cpu)

    def dtype_for(self, device: torch.device) -> torch.dtype:
        """Half like the built-in interrogator, unless ``--no-half`` or the device is the CPU (or MPS, where
        BLIP is unstable in fp16)."""
        if _cmd_flag("no_half") or device.type in ("cpu", "mps"):
            return torch.float32
        return torch.float16

    def make_room(self) -> None:
        """Under ``--lowvram``/``--medvram`` move the diffusion model's GPU-resident part to the CPU."""
        from modules import devices, lowvram

        if webui_low_vram():
            lowvram.send_everything_to_cpu()
            devices.torch_gc()

    def load(self, models: Sequence[ModelHandle]) -> None:
        device = self.load_device()
        if device.type != "cpu":
            self.make_room()
        for m in models:
            if m.device != device:
                log.debug("loading %s to %s", m.name, device)
                m.module.to(device)

    def offload(self, models: Sequence[ModelHandle]) -> None:
        from modules import devices

        target = self.offload_device()
        for m in models:
            if m.device != target:
                log.debug("offloading %s to %s", m.name, target)
                m.module.to(target)
        devices.torch_gc()

    def check_interrupt(self) -> None:
        from modules import shared

        state = getattr(shared, "state", None)
        if state is not None and getattr(state, "interrupted", False):
            raise Interrupted("interrupted (Interrupt button)")

    def progress(self, step: int, total: int, desc: str = "") -> None:
        from modules import shared

        state = getattr(shared, "state", None)
        if state is None:
            return
        state.sampling_steps = int(total)
        state.sampling_step = int(step)
        state.textinfo = desc


class _Holder(nn.Module):
    """What Forge's ``ModelPatcher`` wraps: a plain module holding ours (patchers set attributes on it)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner


class ForgeHost(A1111Host):
    """:class:`~interrogator_core.HostAdapter` for Forge: its memory manager decides devices and evictions."""

    def __init__(self) -> None:
        from backend import memory_management
        from backend.patcher.base import ModelPatcher

        self._mm = memory_management
        self._patcher_cls = ModelPatcher

    def load_device(self) -> torch.device:
        return torch.device(self._mm.text_encoder_device())

    def offload_device(self) -> torch.device:
        return torch.device(self._mm.text_encoder_offload_device())

    def dtype_for(self, device: torch.device) -> torch.dtype:
        """fp16 where Forge's own interrogator would use it (``should_use_fp16``), else fp32."""
        if device.type == "cpu":
            return torch.float32
        return torch.float16 if self._mm.should_use_fp16(device=device) else torch.float32

    def _patcher(self, handle: ModelHandle):
        patcher = handle.host_data.get("forge_patcher")
        if patcher is None:
            patcher = self._patcher_cls(_Holder(handle.module), load_device=self.load_device(),
                                        offload_device=self.offload_device())
            handle.host_data["forge_patcher"] = patcher
        return patcher

    def load(self, models: Sequence[ModelHandle]) -> None:
        if not models:
            return
        self._mm.load_models_gpu([self._patcher(m) for m in models])
        device = self.load_device()
        for m in models:
            # Forge may leave part of a module on the CPU ("swap") when VRAM is short; our modules are
            # plain torch and need all their weights on one device.
            if any(p.device != device for p in m.module.parameters()):
                log.warning("Forge kept part of %s off %s; moving it there whole", m.name, device)
                m.module.to(device)

    def offload(self, models: Sequence[ModelHandle]) -> None:
        target = self.offload_device()
        for m in models:
            patcher = m.host_data.get("forge_patcher")
            if patcher is not None:
                for loaded in list(self._mm.current_loaded_models):
                    if loaded.model is patcher:
                        self._mm.current_loaded_models.remove(loaded)
                        loaded.model_unload()
            if m.device != target:
                m.module.to(target)
        self._mm.soft_empty_cache()

    def make_room(self) -> None:  # load_models_gpu makes room itself
        return


def is_forge() -> bool:
    """True inside Forge (its ``backend.memory_management`` imports and has the manager's entry points)."""
    try:
        from backend import memory_management
    except ImportError:
        return False
    return all(hasattr(memory_management, n) for n in ("load_models_gpu", "text_encoder_device",
                                                        "current_loaded_models"))


def make_host() -> A1111Host:
    return ForgeHost() if is_forge() else A1111Host()
