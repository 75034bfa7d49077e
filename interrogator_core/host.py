"""The host adapter contract: how the engine borrows a host's devices, memory manager, progress and interrupt.

The engine never guesses which host it runs in. ComfyUI, A1111 and Forge each pass their own adapter;
scripts and the CLI use :class:`StandaloneHost` (plain torch).
"""
from __future__ import annotations

import enum
import gc
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Protocol, Sequence, Union, runtime_checkable

import torch

from .errors import Interrupted, UnknownNameError

log = logging.getLogger(__name__)


class OffloadPolicy(str, enum.Enum):
    """When the engine moves its models off the compute device.

    KEEP: load once, stay on the device until ``offload()``/``unload()`` (fastest repeated calls).
    OFFLOAD: move every model to the offload device after each call (frees VRAM for diffusion).
    LOW_VRAM: only one model on the device at a time, and everything offloaded after each call.
    """

    KEEP = "keep"
    OFFLOAD = "offload"
    LOW_VRAM = "lowvram"

    @classmethod
    def parse(cls, value: Union[str, "OffloadPolicy"]) -> "OffloadPolicy":
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise UnknownNameError("offload policy", str(value), [p.value for p in cls]) from None


@dataclass(eq=False)
class ModelHandle:
    """A model the engine owns, as the host sees it.

    ``module`` is a plain ``torch.nn.Module``; ``host_data`` is free space for an adapter (ComfyUI keeps its
    ``ModelPatcher`` there). Handles compare by identity.
    """

    name: str
    module: torch.nn.Module
    dtype: torch.dtype
    host_data: Dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")

    def size_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.module.parameters()) + sum(
            b.numel() * b.element_size() for b in self.module.buffers()
        )


@runtime_checkable
class HostAdapter(Protocol):
    """What the engine asks of its host. Implementations must be cheap to call repeatedly."""

    def load_device(self) -> torch.device:
        """Device the models compute on."""

    def offload_device(self) -> torch.device:
        """Device models rest on when offloaded (usually the CPU)."""

    def dtype_for(self, device: torch.device) -> torch.dtype:
        """Weight dtype to use on ``device``."""

    def load(self, models: Sequence[ModelHandle]) -> None:
        """Put ``models`` on the load device, making room first (e.g. evicting diffusion models)."""

    def offload(self, models: Sequence[ModelHandle]) -> None:
        """Move ``models`` to the offload device and give the memory back."""

    def check_interrupt(self) -> None:
        """Raise :class:`~interrogator_core.errors.Interrupted` when the user asked to stop."""

    def progress(self, step: int, total: int, desc: str = "") -> None:
        """Report progress of the current long operation (``step`` of ``total``)."""


def auto_device() -> torch.device:
    """cuda if available, else mps, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_problem(value: Union[str, torch.device], flag: str = "device") -> Optional[str]:
    """Why ``value`` cannot be used as a compute device on this machine (naming ``flag`` and the fix), or None.
    The one check of a device name, for the CLI's usage errors and :class:`StandaloneHost`."""
    value = str(value)
    if value == "auto":
        return None
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        return f"unknown {flag} {value!r}; use auto, cpu, cuda, cuda:N (N = GPU index) or mps"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU or driver is found"
            return f"{flag} {value}: {why} (torch {torch.__version__}); use {flag} cpu (or auto)"
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            return f"{flag} {value}: there are only {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})"
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return f"{flag} {value}: Apple MPS is not available on this machine; use {flag} cpu (or auto)"
    elif dev.type != "cpu":
        return f"unsupported {flag} {value!r}; use auto, cpu, cuda, cuda:N or mps"
    return None


_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp32": torch.float32, "float32": torch.float32, "float": torch.float32}


#: The precision values that quantize the caption model (bitsandbytes on CUDA: 8-bit, 4-bit NF4).
QUANTIZED_PRECISIONS = ("int8", "nf4")
#: The precision setting's values ("auto": decided per device by the host; int8/nf4: a quantized caption model,
#: CLIP as with auto).
PRECISIONS = ("auto", "fp16", "bf16", "fp32") + QUANTIZED_PRECISIONS


def quantization_of(precision: Union[str, torch.dtype, None]) -> Optional[str]:
    """"int8"/"nf4" for a quantized precision, else None (the one place a precision means quantization)."""
    key = str(precision).lower() if isinstance(precision, str) else None
    return key if key in QUANTIZED_PRECISIONS else None


def parse_dtype(value: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    """'auto'/None → None (decided per device); 'fp16'/'bf16'/'fp32' or a torch dtype. 'int8'/'nf4' → None too:
    they quantize the caption model only (:func:`quantization_of`); CLIP models and the caption model's compute
    dtype follow auto (fp16 on CUDA)."""
    if value is None or isinstance(value, torch.dtype):
        return value
    key = str(value).lower()
    if key == "auto" or key in QUANTIZED_PRECISIONS:
        return None
    if key not in _DTYPES:
        raise UnknownNameError("precision", str(value), PRECISIONS)
    return _DTYPES[key]


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA, fp32 elsewhere (CPU half matmuls are slow; MPS fp16 BLIP is unstable)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def empty_device_cache(device: Optional[torch.device] = None) -> None:
    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and hasattr(mps, "empty_cache") and device is not None and device.type == "mps":
        mps.empty_cache()


class StandaloneHost:
    """Plain-torch host for scripts and the CLI.

    Args:
        device: "auto" (cuda → mps → cpu) or any torch device string.
        dtype: "auto" (fp16 on CUDA, fp32 elsewhere), "fp16", "bf16", "fp32"; "int8"/"nf4": auto, and the
            caption model quantized with bitsandbytes (CUDA only; :attr:`quantization`).
        progress: optional ``callback(step, total, desc)``.
        interrupt: optional ``callable() -> bool``; True stops the running call with ``Interrupted``.
    """

    def __init__(
        self,
        device: Union[str, torch.device] = "auto",
        dtype: Union[str, torch.dtype, None] = "auto",
        progress: Optional[Callable[[int, int, str], None]] = None,
        interrupt: Optional[Callable[[], bool]] = None,
    ) -> None:
        problem = device_problem(device)
        if problem:
            raise ValueError(problem)
        self._device = auto_device() if str(device) == "auto" else torch.device(device)
        self._dtype = parse_dtype(dtype)
        #: "int8"/"nf4": load the caption model quantized (the precision setting), else None
        self.quantization = quantization_of(dtype)
        self._progress = progress
        self._interrupt = interrupt

    def load_device(self) -> torch.device:
        return self._device

    def offload_device(self) -> torch.device:
        return torch.device("cpu")

    def dtype_for(self, device: torch.device) -> torch.dtype:
        return self._dtype or default_dtype(device)

    def load(self, models: Sequence[ModelHandle]) -> None:
        for m in models:
            if m.device != self._device and not is_quantized(m.module):
                log.debug("loading %s to %s", m.name, self._device)
                m.module.to(self._device)

    def offload(self, models: Sequence[ModelHandle]) -> None:
        target = self.offload_device()
        moved = False
        for m in models:
            if m.device != target and not is_quantized(m.module):
                log.debug("offloading %s to %s", m.name, target)
                m.module.to(target)
                moved = True
        if moved:
            empty_device_cache(self._device)

    def check_interrupt(self) -> None:
        if self._interrupt is not None and self._interrupt():
            raise Interrupted("interrupted by the caller")

    def progress(self, step: int, total: int, desc: str = "") -> None:
        if self._progress is not None:
            self._progress(step, total, desc)


def is_quantized(module: torch.nn.Module) -> bool:
    """A bitsandbytes-quantized transformers model: placed on its GPU when loaded and never moved (bitsandbytes
    weights cannot leave the device they were quantized on)."""
    return bool(getattr(module, "is_quantized", False) or getattr(module, "is_loaded_in_8bit", False)
                or getattr(module, "is_loaded_in_4bit", False))


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA, MPS, or a backend's RuntimeError saying so)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def retry_smaller_on_oom(run: Callable[[int], Any], batch_size: int, what: str) -> Any:
    """``run(batch_size)``, halving the batch on a device OOM; at batch 1 raise DeviceOutOfMemoryError."""
    from .errors import DeviceOutOfMemoryError

    bs = max(1, int(batch_size))
    while True:
        try:
            return run(bs)
        except Exception as e:  # noqa: BLE001 - filtered right below
            if not is_out_of_memory(e):
                raise
            empty_device_cache()
            if bs == 1:
                raise DeviceOutOfMemoryError(
                    f"out of device memory while {what}, even one item at a time. Free VRAM (unload other "
                    "models), use the 'lowvram' offload policy, fp16 precision, or a smaller CLIP model."
                ) from None
            bs = max(1, bs // 2)
            log.warning("out of device memory while %s; retrying with batch size %d", what, bs)
