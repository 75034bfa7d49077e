"""What AUTOMATIC1111 patches process-wide that reaches our models, and how the adapter undoes it for them.

Read off A1111 1.10.1's ``modules/`` (``sd_hijack_unet``, ``devices``, ``safe``, ``sd_disable_initialization``,
``mac_specific``): most of its patches target ``ldm``/``sgm`` classes or apply only inside its own contexts
(``devices.autocast()``/``manual_cast`` during sampling, ``DisableInitialization`` while a checkpoint loads).
Two reach an open_clip model that we build in the webui's process:

* On a CUDA machine every ``open_clip.transformer.ResidualAttentionBlock`` created after start-up gets
  A1111's ``GELUHijack`` as its activation. With ``--upcast-sampling`` it computes in float32 and returns the
  UNet's dtype (float16) whatever the model's dtype: two extra copies of the widest activation per block, and a
  float32 model (``--use-cpu interrogate``) then fails on float16 input. :func:`plain_activations` puts a plain
  ``nn.GELU`` back (same ``approximate``) in our modules only; the fast text path and ``encode_text`` both run
  through the blocks' own MLP, so they are unaffected otherwise.
* ``torch.load`` is A1111's checking loader (``modules.safe``), which returns None for pickles written by current
  torch: our models load from safetensors (see the tests' ``safetensors_only``).

Also, a call that arrives inside an autocast region (an extension running us during sampling) would compute in
half precision: :func:`no_autocast` runs our work in the model's own dtype.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import torch
from torch import nn

log = logging.getLogger(__name__)


def plain_activations(module: nn.Module) -> int:
    """Replace patched ``nn.GELU`` subclasses (A1111's ``GELUHijack``) inside ``module`` by plain ``nn.GELU``
    with the same ``approximate``; returns how many were replaced (0 outside a patched webui)."""
    replaced = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GELU) and type(child).forward is not nn.GELU.forward:
                setattr(parent, name, nn.GELU(approximate=getattr(child, "approximate", "none")))
                replaced += 1
    if replaced:
        log.info("using plain GELU in %d blocks (the webui's upcast GELU patch would change their dtype)", replaced)
    return replaced


def _autocast_on(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))  # torch >= 2.4
    except TypeError:  # torch 2.1 (A1111's): no argument, CUDA only; the CPU flag has its own function
        return bool(torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled())


@contextlib.contextmanager
def no_autocast() -> Iterator[None]:
    """Turn off CUDA and CPU autocast for the block when a caller left it on; a no-op otherwise."""
    with contextlib.ExitStack() as stack:
        for device_type in ("cuda", "cpu"):
            if _autocast_on(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield
