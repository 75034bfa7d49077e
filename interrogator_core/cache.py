"""Label-embedding cache, file-compatible with clip-interrogator 0.6.0.

File ``{clip name with '/' and '@' replaced by '_'}_{table}.safetensors`` holds ``embeds`` (float16 [N, D],
L2-normalized) and ``hash`` (int8, ASCII codes of the sha256 hex digest of ``",".join(labels)``).
Writes are atomic (temp file + rename). A file that is unreadable or does not match is recomputed with a
warning, never a crash; an unwritable cache folder keeps embeddings in memory and warns once.

The clip name of a registry model (``ARCH/TAG``) is used as is, so clip-interrogator's caches load; which
name a model caches under is decided in one place, ``clip.ClipSource.cache_name``. A local model's name carries
a fingerprint of its weights (:func:`weights_fingerprint`), so two different models in folders of the same name
never share a cache. File names hold no character that some OS forbids (:func:`sanitize_model_name`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from safetensors.torch import load_file, save_file

from .fileio import atomic_target

log = logging.getLogger(__name__)


#: characters no file name may hold on some OS (Windows NTFS: <>:"/\|?* and control characters; ':' opens an
#: alternate data stream there): each becomes "_", like clip-interrogator's "/" and "@"
_UNSAFE = re.compile(r'[<>:"/\\|?*@\x00-\x1f]')


def sanitize_model_name(clip_name: str) -> str:
    """The file-name form of a CLIP cache name: clip-interrogator's ("/" and "@" become "_"), and every
    character a file name cannot hold on Windows, macOS or Linux becomes "_" too. Registry names (letters,
    digits, ``-``, ``_``, ``.``, ``/``, ``@``) come out exactly as clip-interrogator names them
    (``ViT-L-14/openai`` -> ``ViT-L-14_openai``); ``hf-hub:org/repo`` -> ``hf-hub_org_repo``."""
    return _UNSAFE.sub("_", clip_name)


def cache_file_name(clip_name: str, table: str) -> str:
    return f"{sanitize_model_name(clip_name)}_{table}.safetensors"


#: bytes read from each end of every tensor (safetensors) or of the file (other formats)
_SAMPLE = 4096
_FILE_SAMPLE = 8 << 20
_fingerprints: Dict[Tuple[str, int, int], str] = {}


def weights_fingerprint(path: Union[str, "os.PathLike[str]"]) -> str:
    """A short hex id of a weights file's content, fast on multi-GB files (read: a few MB at most).

    * safetensors: sha256 of the header (names, dtypes, shapes) and, per tensor, its first and last 4 KiB;
    * PyTorch zip checkpoints (``.bin``/``.pt``): sha256 of every entry's name, size and CRC-32 (the zip's
      own checksum of the whole entry);
    * anything else: sha256 of the size and the first and last 8 MiB.

    Two checkpoints differ in their fingerprint unless every tensor starts and ends with the same bytes (a
    fine-tune changes all values of each tensor it touches). Remembered per path, size and mtime.
    """
    p = Path(path)
    st = p.stat()
    memo = (os.path.realpath(p), st.st_size, st.st_mtime_ns)
    if memo not in _fingerprints:
        h = hashlib.sha256(str(st.st_size).encode())
        with open(p, "rb") as f:
            if not _hash_safetensors(f, st.st_size, h) and not _hash_zip(f, h):
                f.seek(0)
                h.update(f.read(_FILE_SAMPLE))
                f.seek(max(0, st.st_size - _FILE_SAMPLE))
                h.update(f.read(_FILE_SAMPLE))
        _fingerprints[memo] = h.hexdigest()[:16]
    return _fingerprints[memo]


def _hash_safetensors(f, size: int, h) -> bool:
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        return False
    n = struct.unpack("<Q", head)[0]
    if not 2 <= n <= min(size - 8, 100 << 20):
        return False
    raw = f.read(n)
    try:
        header = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(header, dict):
        return False
    h.update(raw)
    base = 8 + n
    try:
        spans = [tuple(map(int, header[k]["data_offsets"])) for k in sorted(header) if k != "__metadata__"]
    except (KeyError, TypeError, ValueError):
        return False
    for start, end in spans:
        f.seek(base + start)
        if end - start <= 2 * _SAMPLE:
            h.update(f.read(end - start))
        else:
            h.update(f.read(_SAMPLE))
            f.seek(base + end - _SAMPLE)
            h.update(f.read(_SAMPLE))
    return True


def _hash_zip(f, h) -> bool:
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                h.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return True


def label_hash(labels: Sequence[str]) -> str:
    return hashlib.sha256(",".join(labels).encode()).hexdigest()


def hash_tensor(digest: str) -> torch.Tensor:
    return torch.tensor([ord(c) for c in digest], dtype=torch.int8)


def default_cache_dir() -> Path:
    """``$PROMPT_INTERROGATOR_CACHE`` or ``~/.cache/prompt-interrogator``."""
    env = os.environ.get("PROMPT_INTERROGATOR_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prompt-interrogator"


class LabelCache:
    """Loads and stores table embeddings under ``cache_dir`` (None: memory only)."""

    def __init__(self, cache_dir: Union[None, str, "os.PathLike[str]"]) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._warned_unwritable = False

    def path_for(self, clip_name: str, table: str) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        return self.cache_dir / cache_file_name(clip_name, table)

    def load(self, clip_name: str, table: str, labels: Sequence[str], dim: Optional[int] = None) -> Optional[torch.Tensor]:
        """Cached float16 [N, D] embeddings for exactly these labels, or None (with a warning if a file was bad)."""
        path = self.path_for(clip_name, table)
        if path is None or not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types across versions
            log.warning("label cache %s is unreadable (%s); recomputing it", path, e)
            return None
        embeds, stored_hash = tensors.get("embeds"), tensors.get("hash")
        problem = None
        if embeds is None or stored_hash is None:
            problem = "it lacks the 'embeds' or 'hash' tensor"
        elif not torch.equal(stored_hash.to(torch.int8), hash_tensor(label_hash(labels))):
            problem = "its labels differ from the current list"
        elif embeds.dim() != 2 or embeds.shape[0] != len(labels):
            problem = f"its shape {tuple(embeds.shape)} does not fit {len(labels)} labels"
        elif dim is not None and embeds.shape[1] != dim:
            problem = f"its width {embeds.shape[1]} is not the model's embedding width {dim} (another CLIP model?)"
        elif not embeds.is_floating_point():
            problem = f"its dtype {embeds.dtype} is not floating point"
        elif not torch.isfinite(embeds).all():
            problem = "it contains NaN or infinite values"
        if problem:
            log.warning("label cache %s does not match (%s); recomputing it", path, problem)
            return None
        # own the memory: safetensors may map the file, which another process can rewrite or truncate
        return embeds.to(torch.float16).clone()

    def save(self, clip_name: str, table: str, labels: Sequence[str], embeds: torch.Tensor) -> bool:
        """Write atomically; False (after one warning per cache) when the folder is not writable."""
        path = self.path_for(clip_name, table)
        if path is None:
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_target(path) as tmp:
                save_file({"embeds": embeds.detach().to("cpu", torch.float16).contiguous(),
                           "hash": hash_tensor(label_hash(labels))}, tmp)
            return True
        except OSError as e:
            if not self._warned_unwritable:
                log.warning("cannot write label cache in %s (%s); embeddings are kept in memory only", path.parent, e)
                self._warned_unwritable = True
            return False

    def get_or_compute(
        self,
        clip_name: str,
        table: str,
        labels: Sequence[str],
        compute: Callable[[Sequence[str]], torch.Tensor],
        dim: Optional[int] = None,
    ) -> torch.Tensor:
        """Cached embeddings, or ``compute(labels)`` (normalized [N, D]) stored as float16 and returned."""
        cached = self.load(clip_name, table, labels, dim)
        if cached is not None:
            log.debug("label cache hit: %s/%s (%d labels)", clip_name, table, len(labels))
            return cached
        log.info("encoding %d labels of table %r for %s (cached afterwards)", len(labels), table, clip_name)
        embeds = compute(labels).detach().to("cpu", torch.float16)
        self.save(clip_name, table, labels, embeds)
        return embeds
