"""Caption models through ``transformers``: a registry of known models and of architecture families, loading,
batched generation in a caption style (short / detailed / tags) or with a free instruction.

Families are data (:data:`FAMILIES`): the native transformers class, the oldest transformers that has it, whether
fp16 is safe, and how a style reaches the model -- nothing (BLIP, GIT), a task token (Florence-2) or an
instruction in the model's chat template (Qwen-VL, LLaVA/JoyCaption). Remote code (``trust_remote_code``) runs
only when the caller turns it on.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import hub
from .errors import ImageError, InterrogatorError, ModelLoadError, ModelNotFoundError, UnknownNameError
from .host import ModelHandle
from .tagger import TAGGER_FAMILY, Tagger, TaggerOptions, check_timm_supported, is_tagger_config, load_tagger

log = logging.getLogger(__name__)

#: Caption styles (``list_caption_styles()``): one sentence, a paragraph, comma-separated tags.
CAPTION_STYLES: Tuple[str, ...] = ("short", "detailed", "tags")
#: The caption style setting that means "the target's default" (``InterrogatorConfig.caption_style=None``);
#: hosts show it first in their style menus.
AUTO_STYLE = "auto"
#: The caption model setting that means "no caption model" (``InterrogatorConfig.caption_model=None``).
NO_CAPTION = "none"

#: How to turn remote code on, for error messages (the engine setting, the CLI flag, the host option).
REMOTE_CODE_HINT = ("turn on trust_remote_code (InterrogatorConfig(trust_remote_code=True), the CLI's "
                    "--trust-remote-code, or the 'trust remote code' option of the node / settings) -- only for a "
                    "model whose code you trust")


def list_caption_styles() -> List[str]:
    return list(CAPTION_STYLES)


@dataclass(frozen=True)
class CaptionModelSpec:
    """A known caption model: its hub id, architecture family and download size.

    ``styles`` narrows or widens the family's default styles for this model (e.g. only the PromptGen Florence-2
    fine-tunes know ``tags``); ``remote_code``: the repo holds the model's own code, not a native checkpoint.
    """

    repo_id: str
    family: str  # key of FAMILIES
    size: str
    styles: Optional[Tuple[str, ...]] = None
    remote_code: bool = False


@dataclass(frozen=True)
class CaptionFamily:
    """An architecture family: what loads it and how a caption style reaches it.

    prompting: "none" (the image alone; only ``short``), "task" (a Florence-2 task token as the text input),
    "chat" (an instruction rendered with the processor's chat template). ``prompts`` maps each style the family
    can do to its task token or instruction; ``default_styles`` are those a model of the family can do unless its
    spec says otherwise. ``decoder_only``: the prompt is echoed in the output (left padding, cut it off).
    """

    model_class: str  # attribute of the transformers module
    min_transformers: str
    half_ok: bool  # GIT generates garbage in fp16 (clip-interrogator loads it in fp32)
    prompting: str = "none"
    prompts: Mapping[str, str] = field(default_factory=dict)
    default_styles: Tuple[str, ...] = ("short",)
    decoder_only: bool = False
    fp16_ok: bool = True  # False: a float16 host dtype becomes bfloat16 (fp16 overflows in these LLMs)
    system: Optional[str] = None  # chat families: system message


_QWEN_PROMPTS = {
    "short": "Describe this image in one sentence.",
    "detailed": "Describe this image in one detailed paragraph: the subject, what it is doing, the setting, the "
                "composition, the lighting, the colors and the style or medium.",
    "tags": "List what is in this image as comma-separated booru-style tags, most important first. Output only "
            "the tags.",
}

#: Architecture families, keyed by our name; MODEL_TYPES maps a config.json ``model_type`` onto them.
#: min_transformers: the release that added the class (checked on the release wheels); llava: 4.47, the first
#: whose processor counts image tokens for vision towers without a CLS token (SigLIP, as in JoyCaption).
FAMILIES: Dict[str, CaptionFamily] = {
    "blip": CaptionFamily("BlipForConditionalGeneration", "4.26.0", True, prompts={"short": ""}),
    "blip2": CaptionFamily("Blip2ForConditionalGeneration", "4.27.0", True, prompts={"short": ""}),
    "git": CaptionFamily("AutoModelForCausalLM", "4.26.0", False, prompts={"short": ""}),
    "florence2": CaptionFamily(
        "Florence2ForConditionalGeneration", "4.56.0", True, prompting="task",
        prompts={"short": "<CAPTION>", "detailed": "<MORE_DETAILED_CAPTION>", "tags": "<GENERATE_TAGS>"},
        default_styles=("short", "detailed")),
    "qwen2_5_vl": CaptionFamily(
        "Qwen2_5_VLForConditionalGeneration", "4.49.0", True, prompting="chat", prompts=_QWEN_PROMPTS,
        default_styles=CAPTION_STYLES, decoder_only=True, fp16_ok=False),
    "qwen3_vl": CaptionFamily(
        "Qwen3VLForConditionalGeneration", "4.57.0", True, prompting="chat", prompts=_QWEN_PROMPTS,
        default_styles=CAPTION_STYLES, decoder_only=True, fp16_ok=False),
    "llava": CaptionFamily(
        "LlavaForConditionalGeneration", "4.47.0", True, prompting="chat",
        # JoyCaption's own prompt wordings (its "Descriptive" and "Booru tag list" modes).
        prompts={"short": "Write a short descriptive caption for this image in a formal tone.",
                 "detailed": "Write a long descriptive caption for this image in a formal tone.",
                 "tags": "Write a list of Booru tags for this image."},
        default_styles=CAPTION_STYLES, decoder_only=True, fp16_ok=False,
        system="You are a helpful image captioner."),
    # image taggers (WD v3 layout) load through timm, not transformers (see tagger.py): min_transformers does not
    # apply, check_family_supported checks timm instead
    TAGGER_FAMILY: CaptionFamily("timm", "0", True, prompts={"tags": ""}, default_styles=("tags",)),
}
MODEL_TYPES = {"blip": "blip", "blip-2": "blip2", "git": "git", "florence2": "florence2",
               "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "llava": "llava"}

_PROMPTGEN = ("short", "detailed", "tags")

#: Known caption models (BLIP/GIT names and hub ids as in clip-interrogator 0.6.0). Florence-2 base/large are
#: the transformers-native conversions of microsoft/Florence-2-* (same weights; the microsoft repos and the
#: PromptGen fine-tunes are in the original remote-code format).
CAPTION_MODELS: Dict[str, CaptionModelSpec] = {
    "blip-base": CaptionModelSpec("Salesforce/blip-image-captioning-base", "blip", "990 MB"),
    "blip-large": CaptionModelSpec("Salesforce/blip-image-captioning-large", "blip", "1.9 GB"),
    "blip2-2.7b": CaptionModelSpec("Salesforce/blip2-opt-2.7b", "blip2", "15.5 GB"),
    "blip2-flan-t5-xl": CaptionModelSpec("Salesforce/blip2-flan-t5-xl", "blip2", "15.8 GB"),
    "git-large-coco": CaptionModelSpec("microsoft/git-large-coco", "git", "1.6 GB"),
    "florence2-base": CaptionModelSpec("florence-community/Florence-2-base", "florence2", "0.5 GB"),
    "florence2-large": CaptionModelSpec("florence-community/Florence-2-large", "florence2", "1.6 GB"),
    "florence2-base-promptgen-v2": CaptionModelSpec("MiaoshouAI/Florence-2-base-PromptGen-v2.0", "florence2",
                                                    "1.1 GB", styles=_PROMPTGEN, remote_code=True),
    "florence2-large-promptgen-v2": CaptionModelSpec("MiaoshouAI/Florence-2-large-PromptGen-v2.0", "florence2",
                                                     "3.3 GB", styles=_PROMPTGEN, remote_code=True),
    "qwen2.5-vl-3b": CaptionModelSpec("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", "7.5 GB"),
    "qwen3-vl-2b": CaptionModelSpec("Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", "4.3 GB"),
    "qwen3-vl-4b": CaptionModelSpec("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", "8.9 GB"),
    "joycaption-beta-one": CaptionModelSpec("fancyfeast/llama-joycaption-beta-one-hf-llava", "llava", "17 GB"),
    # SmilingWolf's WD v3 taggers (timm layout; sizes: model.safetensors on the hub)
    "wd-eva02-large-tagger-v3": CaptionModelSpec("SmilingWolf/wd-eva02-large-tagger-v3", TAGGER_FAMILY, "1.26 GB"),
    "wd-vit-large-tagger-v3": CaptionModelSpec("SmilingWolf/wd-vit-large-tagger-v3", TAGGER_FAMILY, "1.26 GB"),
    "wd-swinv2-tagger-v3": CaptionModelSpec("SmilingWolf/wd-swinv2-tagger-v3", TAGGER_FAMILY, "392 MB"),
    "wd-convnext-tagger-v3": CaptionModelSpec("SmilingWolf/wd-convnext-tagger-v3", TAGGER_FAMILY, "395 MB"),
    "wd-vit-tagger-v3": CaptionModelSpec("SmilingWolf/wd-vit-tagger-v3", TAGGER_FAMILY, "378 MB"),
}


def list_caption_models() -> List[str]:
    return list(CAPTION_MODELS)


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def _at_least(version: str) -> bool:
    from packaging.version import Version

    return Version(transformers_version()) >= Version(version)


def _dtype_kwarg() -> str:
    """transformers renamed ``torch_dtype`` to ``dtype`` in 4.56; both hosts' versions must work."""
    return "dtype" if _at_least("4.56.0") else "torch_dtype"


def caption_dtype(family: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype a caption model of ``family`` runs in when the host offers ``dtype`` (the one place this is
    decided): fp32 for families that break in half precision, bf16 instead of fp16 where fp16 overflows."""
    fam = FAMILIES[family]
    if dtype in (torch.float16, torch.bfloat16) and not fam.half_ok:
        return torch.float32
    if dtype == torch.float16 and not fam.fp16_ok:
        return torch.bfloat16
    return dtype


def check_family_supported(family: str, name: str = "") -> None:
    """Raise ModelLoadError when the installed transformers (timm for taggers) is older than the family needs."""
    if family == TAGGER_FAMILY:
        check_timm_supported(name)
        return
    fam = FAMILIES[family]
    if not _at_least(fam.min_transformers):
        raise ModelLoadError(
            f"caption model {name or family!r} is a {family} model, which needs transformers >= "
            f"{fam.min_transformers} ({fam.model_class}); this environment has transformers "
            f"{transformers_version()}. Choose another caption model (blip-large works everywhere) or run a host "
            "with a newer transformers; we never upgrade a host's packages."
        )


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"caption model folder {folder} has no readable config.json ({e})") from e


def _family_of_config(config: dict, where: str) -> str:
    """The caption family of a config.json: a timm config (a tagger folder) or a transformers ``model_type``."""
    if is_tagger_config(config):
        return TAGGER_FAMILY
    model_type = config.get("model_type", "")
    if model_type not in MODEL_TYPES:
        raise ModelLoadError(
            f"caption model {where} is a {model_type!r} model; supported types: {', '.join(MODEL_TYPES)}, and "
            "image taggers (a timm config.json with model.safetensors and selected_tags.csv)"
        )
    return MODEL_TYPES[model_type]


def _family_of_dir(folder: Path) -> str:
    return _family_of_config(_read_config(folder), str(folder))


def needs_remote_code(config: dict) -> bool:
    """True for a checkpoint only its own (remote) code reads: Microsoft's original Florence-2 layout (DaViT
    vision config, ``florence2_language`` text config), which the native class would load as random weights."""
    if config.get("model_type") == "florence2":
        vision = (config.get("vision_config") or {}).get("model_type")
        text = (config.get("text_config") or {}).get("model_type")
        return vision == "davit" or text == "florence2_language"
    return False


#: The transformers auto classes a folder's own code may be registered under in its ``auto_map`` (in this order
#: of preference; the first the installed transformers has and the map names is used).
OWN_CODE_CLASSES = ("AutoModelForCausalLM", "AutoModelForVision2Seq", "AutoModelForImageTextToText")


def own_code(config: dict) -> Optional[Tuple[str, str]]:
    """(auto class, what it points to) of a config.json whose ``auto_map`` names a model class of its own
    (``{"AutoModelForCausalLM": "modeling_x.MyModel"}``), or None. Such a checkpoint is meant to run its own
    code even where its ``model_type`` is native, so it loads with that code or not at all."""
    auto_map = config.get("auto_map") or {}
    if not isinstance(auto_map, dict):
        return None
    for key in OWN_CODE_CLASSES:
        if auto_map.get(key):
            target = auto_map[key]
            return key, target if isinstance(target, str) else "--".join(map(str, target))
    return None


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


def _styles_for(name: str, source: str, family: str) -> Tuple[str, ...]:
    """The styles a model can do: its spec's, else the family's defaults (a Florence-2 whose name says
    PromptGen is taken for a PromptGen fine-tune, the only Florence-2 trained for tags)."""
    spec = CAPTION_MODELS.get(name)
    if spec is None:
        spec = next((s for s in CAPTION_MODELS.values() if s.repo_id == source), None)
    if spec is not None and spec.styles is not None:
        return spec.styles
    if family == "florence2" and "promptgen" in f"{name} {source}".lower():
        return _PROMPTGEN
    return FAMILIES[family].default_styles


_THINK = re.compile(r"^\s*<think>.*?</think>", re.S)

#: The channel layout images reach every image processor in, said explicitly (``input_data_format``).
CHANNELS_FIRST = "channels_first"


def channels_first(images: Sequence[Image.Image]) -> List[np.ndarray]:
    """The images as uint8 C x H x W arrays (C = 3), the layout handed to every caption image processor.

    Left to guess, transformers' processors read an H x W x 3 array whose height is 1 or 3 as channels-first (a
    1-pixel-tall image is refused, a 3-pixel-tall one read with its rows as channels). C x H x W with C = 3 is
    the layout every version's guess gets right (its first check is the first axis), so transformers versions
    that ignore ``input_data_format`` (4.30) read it right too; the newer ones are told.
    """
    return [np.asarray(im if im.mode == "RGB" else im.convert("RGB")).transpose(2, 0, 1).copy()
            for im in images]


class Captioner:
    """A loaded caption model and its processor.

    ``styles``: the caption styles this model can do; ``takes_instruction``: whether a free instruction reaches
    it (chat families; for Florence-2 the instruction is the task prompt, e.g. ``<MIXED_CAPTION>``).
    """

    def __init__(self, name: str, module: nn.Module, processor, family: str, dtype: torch.dtype,
                 styles: Optional[Sequence[str]] = None, quantization: Optional[str] = None) -> None:
        self.name = name
        #: "int8"/"nf4": loaded quantized by bitsandbytes on its GPU (``dtype`` is the compute dtype)
        self.quantization = quantization
        self.handle = ModelHandle(name=f"caption:{name}", module=module, dtype=dtype)
        self.processor = processor
        self.family = family
        fam = FAMILIES[family]
        self.styles: Tuple[str, ...] = tuple(styles) if styles is not None else fam.default_styles
        self.takes_instruction = fam.prompting != "none"

    # --- prompts ---------------------------------------------------------------------------------------------
    def prompt_for(self, style: Optional[str] = "short", instruction: Optional[str] = None) -> str:
        """The task token / instruction that reaches the model ('' for BLIP/GIT); checks the style."""
        fam = FAMILIES[self.family]
        style = style or "short"
        if style not in self.styles:
            hint = ""
            if self.family == "florence2" and style == "tags":
                hint = ("Only the PromptGen Florence-2 fine-tunes (e.g. florence2-base-promptgen-v2) are trained "
                        "for tags; use a tag-capable caption model.")
            raise UnknownNameError(f"caption style for {self.name} ({self.family})", style, self.styles, hint=hint)
        if instruction is not None and instruction.strip():
            if not self.takes_instruction:
                raise InterrogatorError(
                    f"caption model {self.name} ({self.family}) takes no instruction (caption_prompt "
                    f"{instruction[:60]!r}); instructions reach Florence-2 (as its task prompt), Qwen-VL and "
                    "LLaVA/JoyCaption models. Clear caption_prompt or choose one of those."
                )
            return " ".join(instruction.split())
        return fam.prompts[style]

    def _chat_text(self, instruction: str) -> str:
        """The instruction rendered with the processor's chat template, with exactly one image placeholder.

        Templates differ in where they put the image: some take typed-list content ({"type": "image"}), some
        insert it themselves from plain-string content; failing both, the placeholder goes before the text.
        """
        fam = FAMILIES[self.family]
        image_token = getattr(self.processor, "image_token", None) or "<image>"
        typed = [{"type": "image"}, {"type": "text", "text": instruction}]
        tried = []
        for content, system in ((instruction, fam.system),
                                (typed, [{"type": "text", "text": fam.system}] if fam.system else None),
                                (f"{image_token}\n{instruction}", fam.system)):
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": content}]
            try:
                text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception as e:  # a template that cannot take this content shape
                tried.append(f"{type(e).__name__}: {e}")
                continue
            if text.count(image_token) == 1:
                return self._strip_bos(text)
            tried.append(f"{text.count(image_token)} image placeholders")
        raise ModelLoadError(f"caption model {self.name}: its chat template does not place one image "
                             f"({'; '.join(tried)[:300]}); the processor files may be missing or broken")

    def _strip_bos(self, text: str) -> str:
        """Drop a template's leading BOS when the tokenizer adds one itself (no doubled BOS)."""
        tokenizer = getattr(self.processor, "tokenizer", None)
        bos = getattr(tokenizer, "bos_token", None)
        if bos and text.startswith(bos) and tokenizer("", add_special_tokens=True)["input_ids"][:1] == \
                [tokenizer.bos_token_id]:
            return text[len(bos):]
        return text

    def build_inputs(self, images: Sequence[Image.Image], style: Optional[str] = "short",
                     instruction: Optional[str] = None) -> Tuple[Dict[str, Any], List[str]]:
        """(model inputs on the model's device, the text each image is prompted with) for one batch."""
        prompt = self.prompt_for(style, instruction)
        fam = FAMILIES[self.family]
        module = self.handle.module
        p = next(module.parameters())
        if self.quantization:  # int8 weights: the inputs go in the compute dtype
            p = torch.empty(0, device=p.device, dtype=self.handle.dtype)
        pixels = channels_first(images)
        if fam.prompting == "none":  # the image alone: straight to the image processor
            image_processor = getattr(self.processor, "image_processor", self.processor)
            inputs = self._prepare(images, image_processor, images=pixels, return_tensors="pt",
                                   input_data_format=CHANNELS_FIRST)
            return {"pixel_values": inputs["pixel_values"].to(p.device, p.dtype)}, ["" for _ in images]
        texts = [prompt if fam.prompting == "task" else self._chat_text(prompt)] * len(images)
        kwargs = {"padding": True} if fam.decoder_only else {}
        inputs = self._prepare(images, self.processor, text=texts, images=pixels, return_tensors="pt",
                               input_data_format=CHANNELS_FIRST, **kwargs)
        moved = {k: (v.to(p.device, p.dtype) if v.is_floating_point() else v.to(p.device))
                 for k, v in inputs.items() if isinstance(v, torch.Tensor) and k != "token_type_ids"}
        return moved, texts

    def _prepare(self, originals: Sequence[Image.Image], processor: Any, **kwargs: Any) -> Any:
        """``processor(**kwargs)``; a processor that refuses the images (e.g. Qwen-VL's aspect-ratio limit) is an
        :class:`ImageError` naming their sizes and the model, not a traceback."""
        try:
            return processor(**kwargs)
        except ValueError as e:
            sizes = ", ".join(f"{im.width}x{im.height}" for im in originals)
            raise ImageError(sizes if len(originals) == 1 else f"batch ({sizes})",
                             f"cannot be prepared for caption model {self.name} ({self.family}): {e}") from e

    # --- generation ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, images: Sequence[Image.Image], max_new_tokens: int = 32, style: Optional[str] = "short",
                 instruction: Optional[str] = None) -> List[str]:
        """One caption per image, generated as one batch on the model's current device (greedy)."""
        if not images:
            self.prompt_for(style, instruction)  # still refuse a bad style
            return []
        fam = FAMILIES[self.family]
        module = self.handle.module
        inputs, _ = self.build_inputs(images, style, instruction)
        if fam.prompting == "none":  # BLIP/GIT: exactly as before
            tokens = module.generate(pixel_values=inputs["pixel_values"], max_new_tokens=max_new_tokens)
            texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
            return [" ".join(t.split()) for t in texts]
        tokens = module.generate(**inputs, max_new_tokens=self._token_budget(max_new_tokens, inputs),
                                 do_sample=False)
        if fam.decoder_only:
            tokens = tokens[:, inputs["input_ids"].shape[1]:]
        texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        return [self._clean(t) for t in texts]

    def _token_budget(self, max_new_tokens: int, inputs: Dict[str, Any]) -> int:
        """``max_new_tokens`` capped to the positions the text model has left (a long caption style must not run
        past a small model's position table): the prompt's length for decoder-only models, the start token for
        encoder-decoders."""
        config = self.handle.module.config
        limit = getattr(getattr(config, "text_config", None) or config, "max_position_embeddings", None)
        if not isinstance(limit, int) or limit <= 0:
            return max_new_tokens
        used = inputs["input_ids"].shape[1] if FAMILIES[self.family].decoder_only else 1
        budget = max(1, min(max_new_tokens, limit - used))
        if budget < max_new_tokens:
            log.debug("%s: %d new tokens capped to %d (position table of %d)", self.name, max_new_tokens, budget,
                      limit)
        return budget

    def _clean(self, text: str) -> str:
        """Plain text from a decoded answer: no reasoning block, no leftover task/sequence tokens."""
        text = _THINK.sub("", text)
        if self.family == "florence2":
            text = re.sub(r"</?s>|<pad>|<loc_\d+>", " ", text)
        return " ".join(text.split())


#: How to get the bitsandbytes extra, for error messages.
QUANT_INSTALL = "pip install 'prompt-interrogator[quant]' (or pip install bitsandbytes) in this Python"


def quantization_config(quantization: str, device: Optional[torch.device], compute_dtype: torch.dtype) -> Any:
    """The ``BitsAndBytesConfig`` of precision ``quantization`` ("int8": 8-bit, "nf4": 4-bit NF4 computing in
    ``compute_dtype``) on ``device``. Every case where it cannot work is one ModelLoadError naming what to choose
    or install, raised before any weights load: a device that is not CUDA (bitsandbytes quantizes on NVIDIA GPUs),
    bitsandbytes missing, a transformers without ``BitsAndBytesConfig``."""
    from .host import QUANTIZED_PRECISIONS

    if quantization not in QUANTIZED_PRECISIONS:
        raise UnknownNameError("quantization", str(quantization), QUANTIZED_PRECISIONS)
    where = device.type if device is not None else "an unknown device"
    if device is None or device.type != "cuda":
        raise ModelLoadError(
            f"precision {quantization} quantizes the caption model with bitsandbytes, which needs a CUDA GPU; this "
            f"runs on {where}. Choose precision auto, fp16, bf16 or fp32 here (or run on a CUDA device).")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ModelLoadError(
            f"precision {quantization} needs the bitsandbytes package, which is not installed ({e}): "
            f"{QUANT_INSTALL}; or choose precision auto, fp16 or bf16.") from None
    import transformers

    cls = getattr(transformers, "BitsAndBytesConfig", None)
    if cls is None:
        raise ModelLoadError(
            f"precision {quantization} needs transformers' BitsAndBytesConfig, which transformers "
            f"{transformers_version()} does not have; choose precision auto, fp16 or bf16 on this host.")
    if quantization == "int8":
        return cls(load_in_8bit=True)
    if compute_dtype == torch.float32:
        compute_dtype = torch.float16
    return cls(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)


def _config_dict(source: str, download_dir: Optional[os.PathLike], local_files_only: bool = False) -> dict:
    """config.json of a folder or hub id as a plain dict (no class needed, so it works on old transformers)."""
    if Path(source).is_dir():
        return _read_config(Path(source))
    import transformers

    cfg_cls = getattr(transformers, "PretrainedConfig", None) or getattr(transformers, "PreTrainedConfig")
    config, _ = cfg_cls.get_config_dict(source, cache_dir=download_dir, local_files_only=local_files_only)
    return config


def _not_found(name: str, source: str, looked: Sequence[Path], why: str, family: Optional[str] = None
               ) -> ModelNotFoundError:
    """The one "not on this machine" error of a caption model: why it was not downloaded, where we looked, the fix."""
    where = ", ".join(dict.fromkeys(str(p) for p in looked)) or "(no local model folder configured)"
    files = ("config.json, model.safetensors, selected_tags.csv" if family == TAGGER_FAMILY
             else "config.json, weights, processor files")
    return ModelNotFoundError(
        f"caption model {name!r} ({source}) is not on this machine and could not be downloaded ({why}). "
        f"Looked in: {where} and the Hugging Face cache. Offline? Copy the model folder ({files}) to "
        f"<models folder>/{name}/ or pass the folder's path.")


def load_captioner(name: str, dtype: torch.dtype = torch.float32, search_dirs: Sequence[os.PathLike] = (),
                   download_dir: Optional[os.PathLike] = None, trust_remote_code: bool = False,
                   tagger_options: Optional[TaggerOptions] = None, quantization: Optional[str] = None,
                   device: Optional[torch.device] = None) -> Union[Captioner, Tagger]:
    """Load a caption model on the CPU in ``caption_dtype(family, dtype)``.

    An image tagger (a folder with a timm config.json, model.safetensors and selected_tags.csv, or a known tagger
    repository) loads as a :class:`~interrogator_core.tagger.Tagger` with ``tagger_options`` (None: the
    defaults); other models ignore them.

    Native transformers classes only, unless ``trust_remote_code`` is True and the checkpoint is in a format
    only its own code reads (original Florence-2 / PromptGen). Raises ModelLoadError for a too-old transformers
    (naming the version needed and installed) and for remote-code checkpoints when remote code is off.

    ``quantization`` ("int8"/"nf4", the precision setting): a transformers caption model loads quantized by
    bitsandbytes straight onto ``device`` (CUDA only; see :func:`quantization_config`, checked before anything
    loads) and stays there; image taggers ignore it.
    """
    import transformers

    source, family, looked = resolve_caption_model(name, search_dirs)
    local = Path(source).is_dir()
    spec = CAPTION_MODELS.get(name)
    if not local and spec is not None and spec.remote_code:  # refuse before any download
        if not trust_remote_code:
            raise ModelLoadError(_remote_code_message(name, source))
    elif not local and family:
        check_family_supported(family, name)
    lookup = f"caption:{source}:{download_dir or ''}"
    offline = False  # True: the files come from the Hugging Face cache only (the hub cannot be asked now)
    if not local:
        why = hub.unavailable() or hub.failed_before(lookup)
        if why:
            if hub.cached_hub_file(source, "config.json", download_dir) is None:
                hub.remember_failure(lookup, why)
                raise _not_found(name, source, looked, why, family)
            offline = True
    try:
        config = {} if family == TAGGER_FAMILY else _config_dict(source, download_dir, local_files_only=offline)
        if not family:
            family = _family_of_config(config, f"{name!r}")
        if family == TAGGER_FAMILY:
            return load_tagger(name, source, caption_dtype(family, dtype), download_dir, options=tagger_options)
        if quantization:
            qconfig = quantization_config(quantization, device, caption_dtype(family, dtype))
        remote = needs_remote_code(config)
        if remote and not trust_remote_code:
            raise ModelLoadError(_remote_code_message(name, source))
        own = own_code(config)
        if own is not None and not trust_remote_code:
            raise ModelLoadError(
                f"caption model {name!r} ({source}) ships its own model code: its config.json auto_map points "
                f"{own[0]} to {own[1]}, which only runs with remote code, and remote code is off (loading it as the "
                f"native class would silently ignore that code). To run it, {REMOTE_CODE_HINT}; or use a copy "
                "without auto_map.")
        remote = remote or own is not None
        if not remote:
            check_family_supported(family, name)
        fam = FAMILIES[family]
        dtype = caption_dtype(family, dtype)
        kwargs: Dict[str, Any] = {_dtype_kwarg(): dtype, "cache_dir": download_dir}
        if offline:
            kwargs["local_files_only"] = True
        if quantization:
            kwargs.update(quantization_config=qconfig, device_map={"": str(device)})
        if local and any(Path(source).glob("*.safetensors")):
            kwargs["use_safetensors"] = True
        if remote:
            kwargs["trust_remote_code"] = True
            auto = own[0] if own is not None and hasattr(transformers, own[0]) else "AutoModelForCausalLM"
            module = getattr(transformers, auto).from_pretrained(source, **kwargs)
        else:
            module = getattr(transformers, fam.model_class).from_pretrained(source, **kwargs)
        processor = transformers.AutoProcessor.from_pretrained(source, cache_dir=download_dir,
                                                               **({"trust_remote_code": True} if remote else {}),
                                                               **({"local_files_only": True} if offline else {}))
        tokenizer = getattr(processor, "tokenizer", None)
        _check_tokenizer(tokenizer, source)
        if fam.decoder_only and tokenizer is not None:
            tokenizer.padding_side = "left"
    except (ModelLoadError, ModelNotFoundError, UnknownNameError):
        raise
    except Exception as e:
        if local:
            raise ModelLoadError(f"cannot load caption model from {source}: {type(e).__name__}: {e}") from e
        why = f"{type(e).__name__}: {str(e)[:300]}"
        hub.remember_failure(lookup, why)
        raise _not_found(name, source, looked, why, family) from e
    module.eval()
    module.requires_grad_(False)
    log.info("loaded caption model %s (%s, %s%s%s)", name, family, dtype, ", remote code" if remote else "",
             f", {quantization} on {device}" if quantization else "")
    return Captioner(name, module, processor, family, dtype, styles=_styles_for(name, source, family),
                     quantization=quantization)


def _check_tokenizer(tokenizer: Any, source: str) -> None:
    """A tokenizer without a vocabulary (its files missing from a copied folder; transformers 5 then builds an
    empty one) would turn every caption into "": a clear error instead."""
    if tokenizer is None:
        return
    try:
        words = len(tokenizer.get_vocab())
    except Exception:  # noqa: BLE001 - a tokenizer that cannot list its vocabulary is left to generation
        return
    if words <= len(set(getattr(tokenizer, "all_special_tokens", []))):
        raise ModelLoadError(
            f"caption model {source} has no tokenizer vocabulary ({words} tokens): its tokenizer files "
            "(tokenizer.json / tokenizer_config.json / vocab files) are missing. Copy the whole model folder "
            "(config.json, weights, processor and tokenizer files).")


def _remote_code_message(name: str, source: str) -> str:
    return (f"caption model {name!r} ({source}) is in Microsoft's original Florence-2 format, which only the "
            "code shipped with the model can read, and remote code is off. Use a native checkpoint "
            "(florence2-base / florence2-large, converted from microsoft/Florence-2-*) or "
            f"{REMOTE_CODE_HINT}.")
