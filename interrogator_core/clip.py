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

import copy
import hashlib
import inspect
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import hub
from .cache import sanitize_model_name, weights_fingerprint
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


#: where an error about a CLIP name sends the user for the valid names
LIST_CLIP_MODELS = "interrogator_core.list_clip_models()"


@dataclass(frozen=True)
class ClipSource:
    """Where a CLIP model comes from. ``cache_name`` keys the label cache (clip-interrogator's naming).

    ``registry_name``: the open_clip ``ARCH/TAG`` the user asked for, whichever way its files are found (a
    download, ``ARCH_TAG.safetensors`` or a snapshot folder ``ARCH/TAG/`` in a models folder); None for a model
    that is not a registry name (a path, a weights file for an architecture, ``hf-hub:``).
    """

    name: str
    arch: str
    pretrained: Optional[str] = None  # open_clip tag, or None
    path: Optional[Path] = None  # local weights file or snapshot folder
    hub: bool = False
    registry_name: Optional[str] = None

    @property
    def cache_name(self) -> str:
        """The one naming rule of the label cache: a registry name (``ARCH/TAG``) as it is, however its weights
        are found, so clip-interrogator's caches of that model load; an ``hf-hub:`` name as given; any other
        local folder or weights file: its name plus a fingerprint of its weights (and config), so different
        weights never share a cache. (The file name made from it: :func:`cache.cache_file_name`.)"""
        if self.registry_name is not None:
            return self.registry_name
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


def registry_name(name: str) -> Optional[str]:
    """``name`` as open_clip's ``ARCH/TAG`` (e.g. ``ViT-L-14/openai``) when it is one, else None."""
    open_clip = _open_clip()
    arch, _, tag = name.strip().replace(os.sep, "/").partition("/")
    if arch in open_clip.list_models() and tag in open_clip.list_pretrained_tags_by_model(arch):
        return f"{arch}/{tag}"
    return None


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
    registry = registry_name(name)
    as_path = Path(name).expanduser()
    if as_path.is_dir() or any((d / name).is_dir() and (d / name / "open_clip_config.json").is_file() for d in dirs):
        folder = as_path if as_path.is_dir() else next(d / name for d in dirs if (d / name).is_dir())
        if not (folder / "open_clip_config.json").is_file():
            raise ModelNotFoundError(f"CLIP folder {folder} has no open_clip_config.json; give ARCH/path/to/weights instead")
        return ClipSource(name=name, arch=folder.name, path=folder, registry_name=registry)
    if "/" not in name and os.sep not in name:
        raise UnknownNameError("clip model", name, list_clip_models(), listing=LIST_CLIP_MODELS,
                               hint="Use ARCH/TAG (e.g. ViT-L-14/openai), hf-hub:ORG/REPO, or ARCH/path/to/weights.")
    arch, rest = name.replace(os.sep, "/").split("/", 1)
    if arch not in open_clip.list_models():
        if not arch or arch in (".", "..", "~") or as_path.parent.is_dir():
            raise ModelNotFoundError(
                f"CLIP folder {as_path.resolve()} does not exist. Give an existing folder holding "
                "open_clip_config.json and open_clip_model.safetensors, ARCH/path/to/weights.safetensors, or an "
                "open_clip name such as ViT-L-14/openai.")
        raise UnknownNameError("clip architecture", arch, open_clip.list_models(), listing=LIST_CLIP_MODELS,
                               hint=f"(If you meant a folder: {as_path.resolve()} does not exist.)")
    rest_path = Path(rest).expanduser()
    if rest.endswith(WEIGHT_SUFFIXES) or rest_path.is_absolute() or os.sep in rest or "/" in rest:
        for cand in [rest_path] + [d / rest for d in dirs]:
            if cand.is_file():
                return ClipSource(name=name, arch=arch, path=cand)
        looked = ", ".join(str(c) for c in [rest_path] + [d / rest for d in dirs])
        raise ModelNotFoundError(f"CLIP weights for {name!r} not found; looked at: {looked}")
    if registry is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UnknownNameError("clip model", name, [f"{arch}/{t}" for t in tags] or list_clip_models(),
                               listing=LIST_CLIP_MODELS)
    for cand in _local_candidates(_file_base(name), dirs):
        if cand.is_file() or (cand.is_dir() and any((cand / f).is_file() for f in DIR_WEIGHT_FILES)):
            weights = cand if cand.is_file() else next(cand / f for f in DIR_WEIGHT_FILES if (cand / f).is_file())
            return ClipSource(name=name, arch=arch, pretrained=rest, path=weights, registry_name=registry)
    return ClipSource(name=name, arch=arch, pretrained=rest, registry_name=registry)


def _file_base(name: str) -> str:
    """The file/folder name a registry model's local copy has in a models folder (``ViT-L-14_openai``)."""
    return sanitize_model_name(name)


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


def _folder_tokenizer(open_clip, folder: Path, text_cfg: dict) -> Callable:
    """open_clip 2.x: the tokenizer a snapshot folder's config names (its own files first), as get_tokenizer."""
    hf_name = text_cfg.get("hf_tokenizer_name")
    if not hf_name:
        return open_clip.tokenize
    from open_clip.tokenizer import HFTokenizer

    own = any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    return HFTokenizer(str(folder) if own else hf_name)


def _build_from_config(open_clip, folder: Path, precision: str) -> Tuple[nn.Module, Callable, Callable]:
    """open_clip 2.x (no ``local-dir:``): build a snapshot folder's model from its ``open_clip_config.json`` the
    way ``open_clip.create_model`` builds a registered config, without registering it anywhere."""
    from open_clip.model import CLIP, CustomTextCLIP, convert_weights_to_lp, get_cast_dtype

    cfg = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))
    model_cfg = copy.deepcopy(cfg.get("model_cfg", cfg))
    pre = cfg.get("preprocess_cfg", {}) or {}
    text_cfg = dict(model_cfg.get("text_cfg", {}))
    is_timm = "timm_model_name" in model_cfg.get("vision_cfg", {})
    is_hf_text = "hf_model_name" in model_cfg.get("text_cfg", {})
    cast_dtype = get_cast_dtype(precision)
    if model_cfg.pop("custom_text", False) or is_hf_text:
        if is_hf_text:
            model_cfg["text_cfg"]["hf_model_pretrained"] = False  # our weights replace them right after
        if "multimodal_cfg" in model_cfg:
            from open_clip.coca_model import CoCa

            module = CoCa(**model_cfg, cast_dtype=cast_dtype)
        else:
            module = CustomTextCLIP(**model_cfg, cast_dtype=cast_dtype)
    else:
        module = CLIP(**model_cfg, cast_dtype=cast_dtype)
    if precision in ("fp16", "bf16"):
        lp = torch.float16 if precision == "fp16" else torch.bfloat16
        if is_timm:  # as open_clip: timm towers in low precision, their fp32 LayerNorms back to fp32
            from open_clip.transformer import LayerNormFp32

            module.to(dtype=lp)
            for m in module.modules():
                if isinstance(m, LayerNormFp32):
                    m.weight.data = m.weight.data.to(torch.float32)
                    m.bias.data = m.bias.data.to(torch.float32)
        else:
            convert_weights_to_lp(module, dtype=lp)
    mean = pre.get("mean") or open_clip.OPENAI_DATASET_MEAN
    std = pre.get("std") or open_clip.OPENAI_DATASET_STD
    module.visual.image_mean, module.visual.image_std = mean, std
    preprocess = open_clip.image_transform(module.visual.image_size, is_train=False, mean=mean, std=std)
    return module, preprocess, _folder_tokenizer(open_clip, folder, text_cfg)


def _create_from_folder(open_clip, folder: Path, precision: str) -> Tuple[nn.Module, Callable, Callable]:
    """(module without weights, preprocess, tokenizer) of a snapshot folder. Nothing is written anywhere: no
    config file, nothing added to open_clip's model registry (open_clip 3 reads the folder itself through its
    ``local-dir:`` schema; older versions build the model from the folder's config)."""
    prefix = getattr(getattr(open_clip, "factory", None), "LOCAL_DIR_PREFIX", None)
    if prefix is None:
        return _build_from_config(open_clip, folder, precision)
    ref = prefix + str(folder.resolve())
    module, _, preprocess = open_clip.create_model_and_transforms(
        ref, load_weights=False, pretrained_text=False, precision=precision, device="cpu")
    return module, preprocess, open_clip.get_tokenizer(ref)


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
    """Load a CLIP model on the CPU in ``dtype`` (the host moves it to its device).

    A model neither in ``search_dirs`` nor in the download cache is downloaded only when that can work
    (:mod:`.hub`): offline, or with the hub out of reach, it is a :class:`ModelNotFoundError` at once."""
    open_clip = _open_clip()
    source = resolve_clip(name, search_dirs)
    precision = _PRECISION.get(dtype, "fp32")
    quiet = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(quiet)
    lookup = f"clip:{source.name}:{download_dir or ''}"
    try:
        if source.path is not None and source.path.is_dir():
            weights = next((source.path / f for f in DIR_WEIGHT_FILES if (source.path / f).is_file()), None)
            if weights is None:
                raise ModelNotFoundError(f"CLIP folder {source.path} has none of {', '.join(DIR_WEIGHT_FILES)}")
            module, preprocess, tokenize = _create_from_folder(open_clip, source.path, precision)
            _load_weights(module, weights)
        elif source.path is not None:
            module, _, preprocess = open_clip.create_model_and_transforms(
                source.arch, pretrained=None, precision=precision, device="cpu")
            _load_weights(module, source.path)
            tokenize = open_clip.get_tokenizer(source.arch)
        else:
            if not _in_download_cache(open_clip, source, download_dir):
                why = hub.failed_before(lookup) or hub.unavailable(_download_url(open_clip, source))
                if why:
                    hub.remember_failure(lookup, why)
                    raise _not_found(source, search_dirs, why)
            module, _, preprocess = open_clip.create_model_and_transforms(
                source.arch, pretrained=source.pretrained, precision=precision, device="cpu",
                cache_dir=str(download_dir) if download_dir else None)
            tokenize = open_clip.get_tokenizer(source.arch)
    except (ModelLoadError, ModelNotFoundError, UnknownNameError):
        raise
    except Exception as e:
        if source.path is not None:
            raise ModelLoadError(f"cannot load CLIP model {name!r} from {source.path}: {e}") from e
        why = f"{type(e).__name__}: {str(e)[:300]}"
        hub.remember_failure(lookup, why)
        raise _not_found(source, search_dirs, why) from e
    finally:
        root.removeFilter(quiet)
    module.eval()
    module.requires_grad_(False)
    log.info("loaded CLIP %s (%s)", name, precision)
    return ClipModel(source, module, preprocess, tokenize, dtype)


def _not_found(source: ClipSource, search_dirs: Sequence[os.PathLike], why: str) -> ModelNotFoundError:
    """The one "not on this machine" error: the model, why it was not downloaded, where we looked, the fix."""
    dirs = ", ".join(str(d) for d in search_dirs) or "(no local model folder configured)"
    if source.hub:
        fix = ("Offline? Download the repository's files (open_clip_config.json and open_clip_model.safetensors) "
               "on a machine with access, copy the folder here and pass the folder's path.")
    else:
        base = _file_base(source.name)
        fix = (f"Offline? Copy the weights to <models folder>/{base}.safetensors (or the hub snapshot folder to "
               f"<models folder>/{source.name}/ or <models folder>/{base}/) or pass ARCH/path/to/weights.safetensors.")
    return ModelNotFoundError(
        f"CLIP model {source.name!r} is not on this machine and could not be downloaded ({why}). "
        f"Looked in: {dirs} and the download cache. {fix}")


def _download_url(open_clip, source: ClipSource) -> Optional[str]:
    """The URL a registry tag downloads from when it is not on the Hugging Face hub (else None: the hub)."""
    if source.hub:
        return None
    cfg = open_clip.pretrained.get_pretrained_cfg(source.arch, source.pretrained) or {}
    if not cfg.get("url"):
        return None
    # open_clip 3 takes the hub when a tag has both (download_pretrained(prefer_hf_hub=True)), 2.x the URL
    prefers_hub = "prefer_hf_hub" in inspect.signature(open_clip.pretrained.download_pretrained).parameters
    return None if cfg.get("hf_hub") and prefers_hub else cfg["url"]


def _in_download_cache(open_clip, source: ClipSource, download_dir: Optional[os.PathLike]) -> bool:
    """Whether open_clip's download of ``source`` is already on disk (found without asking any server)."""
    if source.hub:
        repo = source.name[len(HF_HUB_PREFIX):]
        return (hub.cached_hub_file(repo, "open_clip_config.json", download_dir) is not None
                and any(hub.cached_hub_file(repo, f, download_dir) for f in DIR_WEIGHT_FILES))
    cfg = open_clip.pretrained.get_pretrained_cfg(source.arch, source.pretrained) or {}
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    if cfg.get("url"):
        folder = Path(download_dir) if download_dir else Path("~/.cache/clip").expanduser()
        if (folder / os.path.basename(cfg["url"])).is_file():
            return True
    if cfg.get("hf_hub"):  # "org/repo/" (default file names) or "org/repo/file.bin"
        repo, filename = os.path.split(cfg["hf_hub"])
        names = [filename] if filename else list(DIR_WEIGHT_FILES)
        if filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")  # open_clip 3 looks for it first
        return any(hub.cached_hub_file(repo, f, download_dir) for f in names)
    return False


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
