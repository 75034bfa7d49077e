"""Fake of the part of A1111 1.10's ``modules.sd_hijack_unet`` that reaches every open_clip model in the process.

On a CUDA machine the webui swaps the activation of every ``open_clip.transformer.ResidualAttentionBlock``
created after start-up (its ``__init__`` is wrapped) for ``GELUHijack``: a ``torch.nn.GELU`` subclass that, while
``devices.unet_needs_upcast`` is on (``--upcast-sampling``), computes in float32 and returns
``devices.dtype_unet`` (float16) whatever the block's dtype. Written from that behaviour; no webui code copied.
``install()`` / ``uninstall()`` apply and undo it (the real one is applied at import and never undone).
"""
import torch

from modules import devices


class GELUHijack(torch.nn.GELU, torch.nn.Module):
    def forward(self, x):
        if devices.unet_needs_upcast:
            return torch.nn.GELU.forward(self.float(), x.float()).to(devices.dtype_unet)
        return torch.nn.GELU.forward(self, x)


_original = None


def install() -> None:
    global _original
    import open_clip.transformer as oct

    if _original is not None:
        return
    _original = oct.ResidualAttentionBlock.__init__

    def init(self, *args, **kwargs):
        if kwargs.get("act_layer") in (None, torch.nn.GELU):
            kwargs["act_layer"] = GELUHijack
        return _original(self, *args, **kwargs)

    oct.ResidualAttentionBlock.__init__ = init


def uninstall() -> None:
    global _original
    import open_clip.transformer as oct

    if _original is not None:
        oct.ResidualAttentionBlock.__init__ = _original
        _original = None
