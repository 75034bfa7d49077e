"""AUTOMATIC1111 / Forge host adapters (:class:`~interrogator_core.HostAdapter` implementations).

* :class:`A1111Host` — ``modules.devices`` (``device_interrogate``, half unless ``--no-half``, ``torch_gc``),
  ``lowvram.send_everything_to_cpu()`` first under ``--lowvram``/``--medvram``, ``shared.state`` for
  interrupt and progress.
* :class:`ForgeHost` — Forge's ``backend.memory_management`` through the shared
  :class:`~interrogator_hosts.managed.ManagedHost` (the same adapter ComfyUI's host uses): models wrapped in
  its ``ModelPatcher`` and loaded with ``load_models_gpu`` (which evicts diffusion models as needed) on
  ``text_encoder_device()``.
* :func:`make_host` — Forge when ``backend.memory_management`` imports, else A1111.

Imports ``modules.*`` / ``backend.*`` lazily, at call time, so importing this module is cheap.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from interrogator_core import Interrupted, ModelHandle
from interrogator_hosts.managed import ManagedHost, MemoryManager

from .a1111_patches import plain_activations

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
        for m in models:
            plain_activations(m.module)  # undo the webui's GELU patch in our models (see a1111_patches)
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


def _forge_mm() -> Any:
    from backend import memory_management

    return memory_management


def _forge_patcher(holder: nn.Module, load_device: torch.device, offload_device: torch.device, size: int) -> Any:
    from backend.patcher.base import ModelPatcher

    return ModelPatcher(holder, load_device=load_device, offload_device=offload_device, size=size)


#: Forge's ``backend.memory_management`` as the shared host's memory manager (Forge's patcher has no eviction
#: callbacks, so evictions are not reported).
FORGE_MEMORY = MemoryManager(
    name="Forge",
    module=_forge_mm,
    new_patcher=_forge_patcher,
    load_models=lambda mm, patchers: mm.load_models_gpu(patchers),
    # fp16 where Forge's own interrogator would use it; never on the CPU
    use_fp16=lambda mm, device: device.type != "cpu" and bool(mm.should_use_fp16(device=device)),
)


class ForgeHost(ManagedHost, A1111Host):
    """:class:`~interrogator_core.HostAdapter` for Forge: its memory manager decides devices and evictions
    (the shared :class:`~interrogator_hosts.managed.ManagedHost`); interrupt and progress are A1111's."""

    def __init__(self) -> None:
        _forge_mm()  # fails here, not at first use, outside Forge
        super().__init__(FORGE_MEMORY)


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
