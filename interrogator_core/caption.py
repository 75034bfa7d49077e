"""Caption models through ``transformers``: a registry of known models, loading, batched generation."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from PIL import Image
from torch import nn

from .errors import ModelLoadError, ModelNotFoundError, UnknownNameError
from .host import ModelHandle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionModelSpec:
    """A known caption model: its hub id, architecture family and download size."""

    repo_id: str
    family: str  # key of FAMILIES
    size: str


#: Known caption models (names and hub ids as in clip-interrogator 0.6.0).
CAPTION_MODELS: Dict[str, CaptionModelSpec] = {
    "blip-base": CaptionModelSpec("Salesforce/blip-image-captioning-base", "blip", "990 MB"),
    "blip-large": CaptionModelSpec("Salesforce/blip-image-captioning-large", "blip", "1.9 GB"),
    "blip2-2.7b": CaptionModelSpec("Salesforce/blip2-opt-2.7b", "blip2", "15.5 GB"),
    "blip2-flan-t5-xl": CaptionModelSpec("Salesforce/blip2-flan-t5-xl", "blip2", "15.8 GB"),
    "git-large-coco": CaptionModelSpec("microsoft/git-large-coco", "git", "1.6 GB"),
}


@dataclass(frozen=True)
class _Family:
    model_class: str  # attribute of the transformers module
    half_ok: bool  # GIT generates garbage in fp16 (clip-interrogator loads it in fp32)


#: Architecture families, keyed by our name; MODEL_TYPES maps a config.json ``model_type`` onto them.
FAMILIES: Dict[str, _Family] = {
    "blip": _Family("BlipForConditionalGeneration", True),
    "blip2": _Family("Blip2ForConditionalGeneration", True),
    "git": _Family("AutoModelForCausalLM", False),
}
MODEL_TYPES = {"blip": "blip", "blip-2": "blip2", "git": "git"}


def list_caption_models() -> List[str]:
    return list(CAPTION_MODELS)


def _dtype_kwarg() -> str:
    """transformers renamed ``torch_dtype`` to ``dtype`` in 4.56; both hosts' versions must work."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _family_of_dir(folder: Path) -> str:
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"caption model folder {folder} has no readable config.json ({e})") from e
    if model_type not in MODEL_TYPES:
        raise ModelLoadError(
            f"caption model in {folder} is a {model_type!r} model; supported types: {', '.join(MODEL_TYPES)}"
        )
    return MODEL_TYPES[model_type]


def resolve_caption_model(name: str, search_dirs: Sequence[os.PathLike] = ()) -> tuple:
    """(source, family, looked): a local folder or a hub id, its family, and the local paths tried."""
    dirs = [Path(d) for d in search_dirs]
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), _family_of_dir(path), [path]
    spec = CAPTION_MODELS.get(name)
    if spec is not None:
        looked = []
        for d in dirs:
            for sub in (name, spec.repo_id.split("/")[-1], spec.repo_id.replace("/", "--")):
                looked.append(d / sub)
                if (d / sub / "config.json").is_file():
                    return str(d / sub), spec.family, looked
        return spec.repo_id, spec.family, looked
    for d in dirs:
        if (d / name / "config.json").is_file():
            return str(d / name), _family_of_dir(d / name), [d / name]
    if "/" in name and not name.startswith(("/", ".")):
        return name, "", []  # any hub id; its family is read from its config when loading
    raise UnknownNameError("caption model", name, CAPTION_MODELS,
                           hint="Or give a Hugging Face id (org/name) or a local model folder.")


class Captioner:
    """A loaded caption model and its processor."""

    def __init__(self, name: str, module: nn.Module, processor, family: str, dtype: torch.dtype) -> None:
        self.name = name
        self.handle = ModelHandle(name=f"caption:{name}", module=module, dtype=dtype)
        self.processor = processor
        self.family = family

    @torch.inference_mode()
    def generate(self, images: Sequence[Image.Image], max_new_tokens: int = 32) -> List[str]:
        """One caption per image, generated as one batch on the model's current device."""
        if not images:
            return []
        module = self.handle.module
        p = next(module.parameters())
        inputs = self.processor(images=list(images), return_tensors="pt")
        pixels = inputs["pixel_values"].to(p.device, p.dtype)
        tokens = module.generate(pixel_values=pixels, max_new_tokens=max_new_tokens)
        texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]


def load_captioner(name: str, dtype: torch.dtype = torch.float32, search_dirs: Sequence[os.PathLike] = (),
                   download_dir: Optional[os.PathLike] = None) -> Captioner:
    """Load a caption model on the CPU (weights in ``dtype``; GIT always fp32)."""
    import transformers

    source, family, looked = resolve_caption_model(name, search_dirs)
    local = Path(source).is_dir()
    try:
        if not family:
            model_type = transformers.AutoConfig.from_pretrained(source, cache_dir=download_dir).model_type
            if model_type not in MODEL_TYPES:
                raise ModelLoadError(f"{name} is a {model_type!r} model; supported types: {', '.join(MODEL_TYPES)}")
            family = MODEL_TYPES[model_type]
        fam = FAMILIES[family]
        if not fam.half_ok:
            dtype = torch.float32
        cls = getattr(transformers, fam.model_class)
        kwargs = {_dtype_kwarg(): dtype, "cache_dir": download_dir}
        if local and any(Path(source).glob("*.safetensors")):
            kwargs["use_safetensors"] = True
        module = cls.from_pretrained(source, **kwargs)
        processor = transformers.AutoProcessor.from_pretrained(source, cache_dir=download_dir)
    except (ModelLoadError, UnknownNameError):
        raise
    except Exception as e:
        if local:
            raise ModelLoadError(f"cannot load caption model from {source}: {type(e).__name__}: {e}") from e
        where = ", ".join(str(p) for p in looked) or "(no local model folder configured)"
        raise ModelNotFoundError(
            f"caption model {name!r} ({source}) is not on this machine and could not be downloaded "
            f"({type(e).__name__}: {str(e)[:300]}). Looked in: {where} and the Hugging Face cache. Offline? "
            f"Copy the model folder (config.json, weights, processor files) to <models folder>/{name}/ "
            "or pass the folder's path."
        ) from e
    module.eval()
    module.requires_grad_(False)
    log.info("loaded caption model %s (%s)", name, dtype)
    return Captioner(name, module, processor, family, dtype)
