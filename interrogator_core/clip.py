"""CLIP models through open_clip: name resolution, local checkpoints, loading and image/text encoding.

Accepted names:

* ``ARCH/TAG`` — any pair from ``open_clip.list_pretrained()`` (e.g. ``ViT-L-14/openai``); a local copy in a
  search folder (``ARCH_TAG.safetensors``, ``.bin``/``.pt``, or a folder ``ARCH_TAG/`` in Hugging Face layout)
  is used first, else open_clip downloads it;
* ``hf-hub:ORG/REPO`` — an open_clip model on the Hugging Face hub;
* ``ARCH/path/to/weights.safetensors`` — a local checkpoint for a known architecture;
* ``path/to/folder`` — a folder with ``open_clip_config.json`` and ``open_clip_model.safetensors``
  (``open_clip_pytorch_model.bin``), i.e. a downloaded hub snapshot.

Weights load only from safetensors or with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from .cache import weights_fingerprint
from .errors import ModelLoadError, ModelNotFoundError, UnknownNameError
from .host import ModelHandle
from .textenc import TextEncoder

log = logging.getLogger(__name__)

HF_HUB_PREFIX = "hf-hub:"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DIR_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_PRECISION = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def _open_clip():
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - exercised only without the dependency
        raise ModelLoadError("open_clip is not installed: pip install open-clip-torch") from e
    return open_clip


def list_clip_models() -> List[str]:
    """Every ``ARCH/TAG`` open_clip can download."""
    return ["/".join(x) for x in _open_clip().list_pretrained()]


@dataclass(frozen=True)
class ClipSource:
    """Where a CLIP model comes from. ``cache_name`` keys the label cache (clip-interrogator's naming)."""

    name: str
    arch: str
    pretrained: Optional[str] = None  # open_clip tag, or None
    path: Optional[Path] = None  # local weights file or snapshot folder
    hub: bool = False

    @property
    def cache_name(self) -> str:
        """Registry and hub names as given (clip-interrogator's cache files match); a local folder or weights
        file: its name plus a fingerprint of its weights (and config), so different weights never share a
        cache."""
        if self.path is None:
            return self.name
        if self.path.is_dir():
            weights = next((self.path / f for f in DIR_WEIGHT_FILES if (self.path / f).is_file()), None)
            config = self.path / "open_clip_config.json"
            fp = weights_fingerprint(weights) if weights is not None else "noweights"
            if config.is_file():
                fp = hashlib.sha256((fp + config.read_text(encoding="utf-8", errors="replace")).encode()).hexdigest()[:16]
            return f"{self.path.name}-{fp}"
        return f"{self.arch}/{self.path.stem}-{weights_fingerprint(self.path)}"


def _local_candidates(base: str, search_dirs: Sequence[Path]) -> List[Path]:
    out = []
    for d in search_dirs:
        out.extend(d / (base + s) for s in WEIGHT_SUFFIXES)
        out.append(d / base)
    return out


def resolve_clip(name: str, search_dirs: Sequence[os.PathLike] = ()) -> ClipSource:
    """Turn a user's CLIP name into a :class:`ClipSource`, or raise a clear error."""
    open_clip = _open_clip()
    dirs = [Path(d) for d in search_dirs]
    name = name.strip()
    if name.startswith(HF_HUB_PREFIX):
        return ClipSource(name=name, arch=name, hub=True)
    as_path = Path(name).expanduser()
    if as_path.is_dir() or any((d / name).is_dir() and (d / name / "open_clip_config.json").is_file() for d in dirs):
        folder = as_path if as_path.is_dir() else next(d / name for d in dirs if (d / name).is_dir())
        if not (folder / "open_clip_config.json").is_file():
            raise ModelNotFoundError(f"CLIP folder {folder} has no open_clip_config.json; give ARCH/path/to/weights instead")
        return ClipSource(name=name, arch=folder.name, path=folder)
    if "/" not in name and os.sep not in name:
        raise UnknownNameError("clip model", name, list_clip_models(),
                               hint="Use ARCH/TAG (e.g. ViT-L-14/openai), hf-hub:ORG/REPO, or ARCH/path/to/weights.")
    arch, rest = name.replace(os.sep, "/").split("/", 1)
    if arch not in open_clip.list_models():
        if not arch or arch in (".", "..", "~") or as_path.parent.is_dir():
            raise ModelNotFoundError(
                f"CLIP folder {as_path.resolve()} does not exist. Give an existing folder holding "
                "open_clip_config.json and open_clip_model.safetensors, ARCH/path/to/weights.safetensors, or an "
                "open_clip name such as ViT-L-14/openai.")
        raise UnknownNameError("clip architecture", arch, open_clip.list_models(),
                               hint=f"(If you meant a folder: {as_path.resolve()} does not exist.)")
    rest_path = Path(rest).expanduser()
    if rest.endswith(WEIGHT_SUFFIXES) or rest_path.is_absolute() or os.sep in rest or "/" in rest:
        for cand in [rest_path] + [d / rest for d in dirs]:
            if cand.is_file():
                return ClipSource(name=name, arch=arch, path=cand)
        looked = ", ".join(str(c) for c in [rest_path] + [d / rest for d in dirs])
        raise ModelNotFoundError(f"CLIP weights for {name!r} not found; looked at: {looked}")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if rest not in tags:
        raise UnknownNameError("clip model", name, [f"{arch}/{t}" for t in tags] or list_clip_models())
    base = name.replace("/", "_").replace("@", "_")
    for cand in _local_candidates(base, dirs):
        if cand.is_file() or (cand.is_dir() and any((cand / f).is_file() for f in DIR_WEIGHT_FILES)):
            weights = cand if cand.is_file() else next(cand / f for f in DIR_WEIGHT_FILES if (cand / f).is_file())
            # keep the registry name as cache key: caches made by clip-interrogator for ARCH/TAG still match
            return _NamedLocal(name=name, arch=arch, pretrained=rest, path=weights)
    return ClipSource(name=name, arch=arch, pretrained=rest)


@dataclass(frozen=True)
class _NamedLocal(ClipSource):
    """A known ``ARCH/TAG`` found on disk: loads locally, caches under the registry name."""

    @property
    def cache_name(self) -> str:
        return self.name


def _read_state_dict(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(
            f"cannot read CLIP weights {path}: {e}. The file may be incomplete (re-download it) or not a "
            "safetensors/PyTorch weights file."
        ) from e
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ModelLoadError(f"{path} holds no state dict")
    if next(iter(sd)).startswith("module."):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


_LOCAL_CFG_DIR: Optional[Path] = None


def _register_folder_config(folder: Path) -> tuple:
    """Register ``open_clip_config.json`` of a snapshot folder under a private name; returns (arch, preprocess)."""
    global _LOCAL_CFG_DIR
    open_clip = _open_clip()
    cfg = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))
    model_cfg = cfg.get("model_cfg", cfg)
    arch = "pi-local-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in folder.resolve().as_posix())[-80:]
    if _LOCAL_CFG_DIR is None:
        _LOCAL_CFG_DIR = Path(tempfile.mkdtemp(prefix="prompt-interrogator-cfg-"))
        open_clip.add_model_config(_LOCAL_CFG_DIR)
    (_LOCAL_CFG_DIR / f"{arch}.json").write_text(json.dumps(model_cfg), encoding="utf-8")
    open_clip.add_model_config(_LOCAL_CFG_DIR)  # rescans the folder
    return arch, cfg.get("preprocess_cfg", {})


class ClipModel:
    """A loaded CLIP model: image encoder, exact fast text encoder, tokenizer and preprocessing."""

    def __init__(self, source: ClipSource, module: nn.Module, preprocess: Callable, tokenize: Callable,
                 dtype: torch.dtype) -> None:
        self.source = source
        self.handle = ModelHandle(name=f"clip:{source.name}", module=module, dtype=dtype)
        self.preprocess = preprocess
        ctx = getattr(module, "context_length", None) or getattr(getattr(module, "text", None), "context_length", 77)
        self.text = TextEncoder(module, tokenize, int(ctx))

    @property
    def module(self) -> nn.Module:
        return self.handle.module

    @property
    def cache_name(self) -> str:
        return self.source.cache_name

    @property
    def context_length(self) -> int:
        return self.text.context_length

    @property
    def embed_dim(self) -> int:
        return self.text.embed_dim

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalized float32 image features [B, D] of preprocessed pixels [B, 3, H, W]."""
        p = next(self.module.parameters())
        feats = self.module.encode_image(pixels.to(p.device, p.dtype)).float()
        return torch.nn.functional.normalize(feats, dim=-1)


class _DropRandomInitWarning(logging.Filter):
    """open_clip warns "initialized randomly" when created without weights; ours are loaded right after."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


def load_clip(name: str, dtype: torch.dtype = torch.float32, search_dirs: Sequence[os.PathLike] = (),
              download_dir: Optional[os.PathLike] = None) -> ClipModel:
    """Load a CLIP model on the CPU in ``dtype`` (the host moves it to its device)."""
    open_clip = _open_clip()
    source = resolve_clip(name, search_dirs)
    precision = _PRECISION.get(dtype, "fp32")
    quiet = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        if source.path is not None and source.path.is_dir():
            arch, pre = _register_folder_config(source.path)
            weights = next((source.path / f for f in DIR_WEIGHT_FILES if (source.path / f).is_file()), None)
            if weights is None:
                raise ModelNotFoundError(f"CLIP folder {source.path} has none of {', '.join(DIR_WEIGHT_FILES)}")
            extra = {k: pre[k] for k in ("mean", "std") if k in pre}
            module, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=None, precision=precision, device="cpu",
                **({"image_mean": extra["mean"]} if "mean" in extra else {}),
                **({"image_std": extra["std"]} if "std" in extra else {}))
            _load_weights(module, weights)
            tokenize = open_clip.get_tokenizer(arch)
        elif source.path is not None:
            module, _, preprocess = open_clip.create_model_and_transforms(
                source.arch, pretrained=None, precision=precision, device="cpu")
            _load_weights(module, source.path)
            tokenize = open_clip.get_tokenizer(source.arch)
        else:
            module, _, preprocess = open_clip.create_model_and_transforms(
                source.arch, pretrained=source.pretrained, precision=precision, device="cpu",
                cache_dir=str(download_dir) if download_dir else None)
            tokenize = open_clip.get_tokenizer(source.arch)
    except (ModelLoadError, ModelNotFoundError, UnknownNameError):
        raise
    except Exception as e:
        if source.path is not None:
            raise ModelLoadError(f"cannot load CLIP model {name!r} from {source.path}: {e}") from e
        dirs = ", ".join(str(d) for d in search_dirs) or "(no local model folder configured)"
        base = name.replace("/", "_").replace("@", "_")
        raise ModelNotFoundError(
            f"CLIP model {name!r} is not on this machine and could not be downloaded ({type(e).__name__}: {e}). "
            f"Looked in: {dirs} and the Hugging Face cache. Offline? Copy the weights to "
            f"<models folder>/{base}.safetensors (or the hub snapshot folder to <models folder>/{base}/) "
            "or pass ARCH/path/to/weights.safetensors."
        ) from e
    finally:
        root.removeFilter(quiet)
    module.eval()
    module.requires_grad_(False)
    log.info("loaded CLIP %s (%s)", name, precision)
    return ClipModel(source, module, preprocess, tokenize, dtype)


def _load_weights(module: nn.Module, path: Path) -> None:
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed

    sd = _read_state_dict(path)
    if "positional_embedding" in sd and not hasattr(module, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
    resize_pos_embed(sd, module)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"CLIP weights {path} do not fit the architecture: {str(e)[:500]}") from e
