"""Label-embedding cache, file-compatible with clip-interrogator 0.6.0 (DESIGN.md, cache contract).

File ``{clip name with '/' and '@' replaced by '_'}_{table}.safetensors`` holds ``embeds`` (float16 [N, D],
L2-normalized) and ``hash`` (int8, ASCII codes of the sha256 hex digest of ``",".join(labels)``).
Writes are atomic (temp file + rename). A file that is unreadable or does not match is recomputed with a
warning, never a crash; an unwritable cache folder keeps embeddings in memory and warns once.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)


def sanitize_model_name(clip_name: str) -> str:
    """clip-interrogator's file-name form of a CLIP model name."""
    return clip_name.replace("/", "_").replace("@", "_")


def cache_file_name(clip_name: str, table: str) -> str:
    return f"{sanitize_model_name(clip_name)}_{table}.safetensors"


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
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
            os.close(fd)
            save_file(
                {"embeds": embeds.detach().to("cpu", torch.float16).contiguous(),
                 "hash": hash_tensor(label_hash(labels))},
                tmp,
            )
            os.replace(tmp, path)
            tmp = None
            return True
        except OSError as e:
            if not self._warned_unwritable:
                log.warning("cannot write label cache in %s (%s); embeddings are kept in memory only", path.parent, e)
                self._warned_unwritable = True
            return False
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

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
