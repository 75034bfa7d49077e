"""ComfyUI nodes of Prompt Interrogator: host types in → one engine call → host types out.

* ``PromptInterrogator.Loader``: models, precision and memory policy → ``INTERROGATOR`` (cached per node;
  changing a widget reloads only what changed).
* ``PromptInterrogator.Interrogate``: ``IMAGE`` batch → ``positive``, ``negative``, ``caption`` (one string per
  image: list outputs that plug straight into ``CLIPTextEncode``), then ``positive_l``/``negative_l`` (SDXL's
  ViT-L/14 encoder; empty unless the loader's ``sdxl_dual`` is on).
* ``PromptInterrogator.Caption`` and ``PromptInterrogator.Analyze``: captions only; top labels per table.
* ``PromptInterrogator.RoundTripScore``: original and regenerated ``IMAGE`` (and optionally the prompt) → CLIP
  image–image and image–text cosines, one per original image.

New inputs are optional and come last, so workflows saved before them load and run unchanged.

Models, devices, dtype, progress and interrupt go through :class:`interrogator_hosts.comfyui.ComfyHost`.
Label caches and local models live in ``models/clip_interrogator/`` (registered with ``folder_paths``).
"""
from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from interrogator_core import (TARGETS, Interrogator, InterrogatorConfig,
                               list_caption_models, list_clip_models, list_modes, list_targets)
from interrogator_core.targets import CUSTOM
from interrogator_hosts.comfyui import (MEMORY_POLICIES, PRECISIONS, ComfyHost, folder_paths_register,
                                        tensor_to_pil)

log = logging.getLogger("prompt_interrogator.comfyui")

CATEGORY = "image/interrogate"
MODEL_FOLDER = "clip_interrogator"
NO_CAPTION = "none"
#: Shown first in the CLIP list: the text encoders of SD 1.x, SD 2.x and SDXL.
PREFERRED_CLIP = ("ViT-L-14/openai", "ViT-H-14/laion2b_s32b_b79k", "ViT-bigG-14/laion2b_s39b_b160k")
DEFAULT_CAPTION = "blip-large"
INTERROGATOR_TYPE = "INTERROGATOR"
MAX_BEAM_WIDTH = 8


# -- model folder --------------------------------------------------------------------------------------------
def model_folders() -> List[str]:
    """``models/clip_interrogator/`` (and any extra folders the user configured under that name)."""
    return folder_paths_register(MODEL_FOLDER)


def local_models() -> Tuple[List[str], List[str]]:
    """(CLIP folders, caption-model folders) found in the model folders, by folder name.

    A CLIP folder has ``open_clip_config.json`` (an open_clip hub snapshot); a caption folder has a
    ``transformers`` ``config.json``. Weight files named ``ARCH_TAG.safetensors`` are found by the engine
    under their registry name (e.g. ``ViT-L-14/openai``), so they need no entry here.
    """
    clips: List[str] = []
    captions: List[str] = []
    for folder in model_folders():
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(os.path.join(path, "open_clip_config.json")):
                clips.append(name)
            elif os.path.isfile(os.path.join(path, "config.json")):
                captions.append(name)
    return clips, captions


def _unique(items: Sequence[str]) -> List[str]:
    return list(dict.fromkeys(items))


def clip_choices() -> List[str]:
    local, _ = local_models()
    registry = list_clip_models()
    return _unique(local + [n for n in PREFERRED_CLIP if n in registry] + registry)


def caption_choices() -> List[str]:
    _, local = local_models()
    return _unique([NO_CAPTION] + local + list_caption_models())


# -- loader cache --------------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    """What a loader node built last: the interrogator and the widget values that shaped it."""

    interrogator: Interrogator
    clip_model: str
    caption_model: Optional[str]
    precision: str
    target: str = CUSTOM
    sdxl_dual: bool = False

    def settings(self) -> Tuple[str, Optional[str], str, str, bool]:
        """What a new build depends on (not the memory policy: that is changed in place)."""
        return self.clip_model, self.caption_model, self.precision, self.target, self.sdxl_dual


#: Per loader node (its unique id): the last interrogator it built.
_LOADED: Dict[str, _Loaded] = {}


def _on_evict_for(interrogator: Interrogator):
    ref = weakref.ref(interrogator)

    def on_evict() -> None:
        it = ref()
        if it is not None:
            it.release_device_caches()

    return on_evict


def get_interrogator(node_id: str, clip_model: str, caption_model: Optional[str], precision: str,
                     memory: str, target: str = CUSTOM, sdxl_dual: bool = False) -> Interrogator:
    """The interrogator for a loader node: reused, reconfigured, or rebuilt reusing what did not change.

    ``target`` (``list_targets()``) picks the CLIP model; ``custom`` uses ``clip_model``. Like another
    ``clip_model``, another target or ``sdxl_dual`` rebuilds the interrogator keeping the models that stay.
    """
    if memory not in MEMORY_POLICIES:
        raise ValueError(f"unknown memory policy {memory!r}; valid: {', '.join(MEMORY_POLICIES)}")
    policy, managed = MEMORY_POLICIES[memory]
    settings = (clip_model, caption_model, precision, target, bool(sdxl_dual))
    old = _LOADED.get(node_id)
    if old is not None and old.settings() == settings:
        it = old.interrogator
        host = it.host
        assert isinstance(host, ComfyHost)
        if host.managed != managed:
            host.forget(it.models)  # out of ComfyUI's list / off the device; the next run loads the new way
            host.managed = managed
        it.set_offload(policy)
        log.info("loader %s: reusing loaded models (memory policy: %s)", node_id, memory)
        return it

    folders = model_folders()
    config = InterrogatorConfig(clip_model=clip_model, caption_model=caption_model, cache_dir=folders[0],
                                model_dirs=folders, download_dir=folders[0], offload=policy, target=target,
                                sdxl_dual=bool(sdxl_dual))
    if target != CUSTOM:
        log.info("loader %s: target %s uses CLIP %s (the clip_model widget is ignored)", node_id, target,
                 config.clip_model)
    host = ComfyHost(precision=precision, managed=managed)
    new = Interrogator(config, host)
    host.on_evict = _on_evict_for(new)
    if old is not None:
        old.interrogator.host.forget(old.interrogator.models)
        moved = new.adopt_models_from(old.interrogator)
        log.info("loader %s: new settings; reused: %s", node_id, ", ".join(moved) or "nothing")
        old.interrogator.unload()  # frees only what was not taken over
    _LOADED[node_id] = _Loaded(new, *settings)
    return new


# -- nodes ---------------------------------------------------------------------------------------------------
def _host(interrogator: Interrogator) -> ComfyHost:
    host = interrogator.host
    if not isinstance(host, ComfyHost):
        raise TypeError("this INTERROGATOR was not made by the Prompt Interrogator loader node")
    return host


def _target_tooltip() -> str:
    lines = [f"{name}: {preset.description}" for name, preset in TARGETS.items()]
    return ("the diffusion model the prompt is for; picks the CLIP model (" + "; ".join(lines)
            + f"; {CUSTOM}: the clip_model above)")


class InterrogatorLoader:
    """CLIP + caption model, precision and memory policy → ``INTERROGATOR``. Models load on first use."""

    @classmethod
    def INPUT_TYPES(cls) -> Dict[str, Any]:
        clips = clip_choices()
        captions = caption_choices()
        return {
            "required": {
                "clip_model": (clips, {"default": PREFERRED_CLIP[0] if PREFERRED_CLIP[0] in clips else clips[0],
                                       "tooltip": "open_clip model that ranks the labels; match your checkpoint "
                                                  "(ViT-L-14/openai for SD 1.x, ViT-H-14 for SD 2.x, "
                                                  "ViT-bigG-14 for SDXL). Folders in models/clip_interrogator "
                                                  "come first."}),
                "caption_model": (captions, {"default": DEFAULT_CAPTION if DEFAULT_CAPTION in captions
                                             else captions[0],
                                             "tooltip": "captioner that writes the sentence the prompt starts "
                                                        "with; none: CLIP only (negative mode, analyze)"}),
                "precision": (list(PRECISIONS), {"default": "auto",
                                                 "tooltip": "auto: fp16 where ComfyUI uses fp16, else fp32"}),
                "memory": (list(MEMORY_POLICIES), {
                    "default": "host managed",
                    "tooltip": "host managed: ComfyUI evicts the models when it needs the memory; keep loaded: "
                               "pinned on the device between runs (ComfyUI cannot evict them); offload after "
                               "run: off the device after every run"}),
            },
            "optional": {
                "target": (list_targets(), {"default": CUSTOM, "tooltip": _target_tooltip()}),
                "sdxl_dual": ("BOOLEAN", {"default": False,
                                          "tooltip": "target sdxl only: also build prompts for SDXL's CLIP "
                                                     "ViT-L/14 encoder (outputs positive_l / negative_l of "
                                                     "Interrogate Image); positive / negative are for "
                                                     "ViT-bigG. Loads a second CLIP model."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = (INTERROGATOR_TYPE,)
    RETURN_NAMES = ("interrogator",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Loads the interrogator models (lazily, on ComfyUI's memory manager)."

    def load(self, clip_model: str, caption_model: str, precision: str, memory: str, target: str = CUSTOM,
             sdxl_dual: bool = False, unique_id: Optional[str] = None) -> Tuple[Interrogator]:
        caption = None if caption_model == NO_CAPTION else caption_model
        return (get_interrogator(str(unique_id or "default"), clip_model, caption, precision, memory, target,
                                 sdxl_dual),)


class Interrogate:
    """``IMAGE`` batch → positive, negative and caption strings, one per image."""

    @classmethod
    def INPUT_TYPES(cls) -> Dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "interrogator": (INTERROGATOR_TYPE,),
                "mode": (list_modes(), {"default": "best",
                                        "tooltip": "best: chain of flavors (slowest, best); fast: top labels; "
                                                   "classic: clip-interrogator 1 style; negative: negative "
                                                   "prompt only; caption: caption only"}),
                "min_flavors": ("INT", {"default": 8, "min": 0, "max": 64}),
                "max_flavors": ("INT", {"default": 32, "min": 0, "max": 64}),
                "negative_count": ("INT", {"default": 16, "min": 0, "max": 64,
                                           "tooltip": "most terms in the negative prompt (0: none)"}),
            },
            "optional": {
                "beam_width": ("INT", {"default": 1, "min": 1, "max": MAX_BEAM_WIDTH,
                                       "tooltip": "prompts kept at each chain step: 1 = greedy (fastest); k > 1 "
                                                  "is never worse and takes about k times as long"}),
            },
        }

    RETURN_TYPES = ("STRING", "STRING", "STRING", "STRING", "STRING")
    RETURN_NAMES = ("positive", "negative", "caption", "positive_l", "negative_l")
    OUTPUT_IS_LIST = (True, True, True, True, True)
    OUTPUT_TOOLTIPS = ("prompt per image (plug into CLIP Text Encode; with sdxl_dual: for ViT-bigG, text_g)",
                       "negative prompt per image", "caption per image",
                       "sdxl_dual: prompt for SDXL's ViT-L/14 encoder (text_l); else empty",
                       "sdxl_dual: negative prompt for SDXL's ViT-L/14 encoder; else empty")
    FUNCTION = "interrogate"
    CATEGORY = CATEGORY
    DESCRIPTION = "Image → prompt and negative prompt (one per image in the batch)."

    def interrogate(self, image: Any, interrogator: Interrogator, mode: str, min_flavors: int,
                    max_flavors: int, negative_count: int, beam_width: int = 1
                    ) -> Tuple[List[str], List[str], List[str], List[str], List[str]]:
        if min_flavors > max_flavors:
            raise ValueError(f"min_flavors ({min_flavors}) is larger than max_flavors ({max_flavors})")
        with _host(interrogator).node_run():
            results = interrogator.interrogate(tensor_to_pil(image), mode=mode, min_flavors=min_flavors,
                                               max_flavors=max_flavors, negative_count=negative_count,
                                               beam_width=int(beam_width))
        for i, r in enumerate(results):
            log.info("image %d: %s | negative: %s", i, r.positive, r.negative)
            if r.positive_l is not None:
                log.info("image %d (ViT-L/14): %s | negative: %s", i, r.positive_l, r.negative_l)
        return ([r.positive for r in results], [r.negative for r in results], [r.caption for r in results],
                [r.positive_l or "" for r in results], [r.negative_l or "" for r in results])


class Caption:
    """``IMAGE`` batch → one caption per image (caption model only, no CLIP)."""

    @classmethod
    def INPUT_TYPES(cls) -> Dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "interrogator": (INTERROGATOR_TYPE,)}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("caption",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "caption"
    CATEGORY = CATEGORY
    DESCRIPTION = "Image → caption (one per image in the batch)."

    def caption(self, image: Any, interrogator: Interrogator) -> Tuple[List[str]]:
        with _host(interrogator).node_run():
            return (interrogator.caption(tensor_to_pil(image)),)


class Analyze:
    """``IMAGE`` batch → the top labels of each table with their similarity, as text (one per image)."""

    @classmethod
    def INPUT_TYPES(cls) -> Dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "interrogator": (INTERROGATOR_TYPE,),
                "top_n": ("INT", {"default": 5, "min": 1, "max": 100}),
                "with_caption": ("BOOLEAN", {"default": False}),
            },
        }

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("analysis",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "analyze"
    CATEGORY = CATEGORY
    DESCRIPTION = "Image → top mediums, artists, movements, trendings and flavors with scores."

    def analyze(self, image: Any, interrogator: Interrogator, top_n: int, with_caption: bool) -> Tuple[List[str]]:
        with _host(interrogator).node_run():
            results = interrogator.analyze(tensor_to_pil(image), top_n=top_n, with_caption=with_caption)
        return ([r.to_text() for r in results],)


class RoundTripScore:
    """Original and regenerated ``IMAGE`` (and optionally the prompt) → CLIP cosines, one per original image.

    All inputs arrive as ComfyUI lists (``INPUT_IS_LIST``): a prompt list from *Interrogate Image* pairs with
    the original batch image by image instead of re-running the node per prompt, and regenerated images
    sampled one prompt at a time (a list of 1-image batches) line up the same way. A single regenerated
    image or prompt applies to every original image.
    """

    @classmethod
    def INPUT_TYPES(cls) -> Dict[str, Any]:
        return {
            "required": {
                "original": ("IMAGE", {"tooltip": "the images that were interrogated"}),
                "regenerated": ("IMAGE", {"tooltip": "the images generated from their prompts (one, or one per "
                                                     "original image)"}),
                "interrogator": (INTERROGATOR_TYPE,),
            },
            "optional": {
                "prompt": ("STRING", {"forceInput": True,
                                      "tooltip": "prompt(s) to score against the original images (one, or one "
                                                 "per image)"}),
            },
        }

    INPUT_IS_LIST = True
    RETURN_TYPES = ("FLOAT", "FLOAT", "STRING")
    RETURN_NAMES = ("image_similarity", "prompt_similarity", "summary")
    OUTPUT_IS_LIST = (True, True, True)
    OUTPUT_TOOLTIPS = ("CLIP cosine of each original image with its regenerated image",
                       "CLIP cosine of each original image with its prompt (0.0 without a prompt)",
                       "both scores as text, per image")
    FUNCTION = "score"
    CATEGORY = CATEGORY
    DESCRIPTION = "How well regenerated images (and prompts) match the originals: CLIP cosine similarities."

    def score(self, original: List[Any], regenerated: List[Any], interrogator: List[Interrogator],
              prompt: Optional[List[str]] = None) -> Tuple[List[float], List[float], List[str]]:
        it = interrogator[0]
        originals = [im for batch in original for im in tensor_to_pil(batch)]
        references = [im for batch in regenerated for im in tensor_to_pil(batch)]
        with _host(it).node_run():
            scores = it.score(originals, references=references, prompts=list(prompt) if prompt else None)
        for i, sc in enumerate(scores):
            log.info("image %d: %s", i, sc.to_text())
        return ([float(sc.image_similarity or 0.0) for sc in scores],
                [float(sc.prompt_similarity or 0.0) for sc in scores],
                [sc.to_text() for sc in scores])


NODE_CLASS_MAPPINGS = {
    "PromptInterrogator.Loader": InterrogatorLoader,
    "PromptInterrogator.Interrogate": Interrogate,
    "PromptInterrogator.Caption": Caption,
    "PromptInterrogator.Analyze": Analyze,
    "PromptInterrogator.RoundTripScore": RoundTripScore,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "PromptInterrogator.Loader": "Interrogator Loader (Prompt Interrogator)",
    "PromptInterrogator.Interrogate": "Interrogate Image (Prompt Interrogator)",
    "PromptInterrogator.Caption": "Caption Image (Prompt Interrogator)",
    "PromptInterrogator.Analyze": "Analyze Image (Prompt Interrogator)",
    "PromptInterrogator.RoundTripScore": "Round-trip Score (Prompt Interrogator)",
}
