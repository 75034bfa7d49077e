"""Fake of ``modules.safe``: like A1111 1.10, importing it replaces ``torch.load`` with a checking loader.

A1111 verifies a pickle's zip layout before unpickling: only ``<dir>/data.pkl``, ``<dir>/data/<n>`` and
``<dir>/version`` are allowed, and the loader *returns None* (after printing an error) for anything else. Files
written by current torch carry ``byteorder`` and ``.data/serialization_id`` entries, so the webui refuses every
``.bin``/``.pt`` our tests could write: a model only loads inside the webui if it is safetensors. The check here
is written from that behaviour (no webui code copied); ``--disable-safe-unpickle`` turns it off.
"""
import re
import zipfile

import torch

_ALLOWED = re.compile(r"^[^/]+/(data/\d+|version|data\.pkl)$")
refused = []  # file names this fake refused (tests assert on it)


def _accepted(filename) -> bool:
    try:
        with zipfile.ZipFile(filename) as z:
            return all(_ALLOWED.match(n) for n in z.namelist())
    except (zipfile.BadZipFile, OSError, TypeError):
        return False  # legacy pickles and file objects: the real check would unpickle them restrictedly


def load(filename, *args, **kwargs):
    from modules import shared

    if not getattr(shared.cmd_opts, "disable_safe_unpickle", False) and not _accepted(filename):
        refused.append(str(filename))
        return None
    return unsafe_torch_load(filename, *args, **kwargs)


unsafe_torch_load = torch.load
torch.load = load
