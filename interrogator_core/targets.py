"""Target profiles: the diffusion model that will read the prompt decides which prompts a result carries.

A prompt ranks best with the text encoder that will read it, so a target names its CLIP encoders (as open_clip
models), which one writes ``positive``/``negative``, whether it also reads a long T5 prompt, whether it uses a
negative prompt at all, the caption style that suits it and how prompt terms are joined. Everything here is
data; the engine (:mod:`interrogator`) reads it. ``target="custom"`` keeps ``clip_model`` as given.

Encoder names are the keys of ``InterrogationResult.prompts``: ``clip_l`` (CLIP ViT-L/14), ``clip_g``
(OpenCLIP ViT-bigG/14), ``t5`` (T5-XXL: the full caption, never cut to CLIP's 77 tokens). In ComfyUI they plug
into ``CLIPTextEncodeFlux`` (clip_l, t5xxl) and ``CLIPTextEncodeSD3`` (clip_l, clip_g, t5xxl).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import UnknownNameError

CLIP_L = "ViT-L-14/openai"
CLIP_G = "ViT-bigG-14/laion2b_s39b_b160k"
CLIP_H = "ViT-H-14/laion2b_s32b_b79k"

#: how prompt terms are joined: "prose" (caption sentence, then ", "-joined terms) or "tags" (booru-style tags)
JOIN_STYLES = ("prose", "tags")
#: encoder name of the T5 prompt in ``InterrogationResult.prompts``
T5 = "t5"


@dataclass(frozen=True)
class TargetPreset:
    """A diffusion family and the prompts it reads.

    Attributes:
        name: the target's name (``list_targets()``).
        clip_model: the main CLIP encoder (open_clip name): it writes ``positive`` and ``negative``.
        description: one line for menus and tooltips.
        main_encoder: the main encoder's key in ``result.prompts`` (None: the target reads ``positive`` only).
        extra_encoders: ``(key, open_clip model)`` of the other CLIP encoders; each gets its own prompt, built
            from the same caption with its own ranking.
        extras_need_dual: the extra encoders run only with ``sdxl_dual`` (SDXL reads one prompt in both).
        extra_negatives: the extra encoders also build their own negative prompt (SDXL: ``negative_l``).
        t5: the target also reads a T5 prompt (the full caption, not cut to 77 tokens).
        negative: the target uses a negative prompt (Flux does not: ``negative`` stays empty).
        caption_style: the caption style used when the user sets none (``list_caption_styles()``).
        join: how prompt terms are joined, one of ``JOIN_STYLES``.
        notes: remarks copied into every result (``result.notes``).
    """

    name: str
    clip_model: str
    description: str
    main_encoder: Optional[str] = None
    extra_encoders: Tuple[Tuple[str, str], ...] = ()
    extras_need_dual: bool = False
    extra_negatives: bool = False
    t5: bool = False
    negative: bool = True
    caption_style: str = "short"
    join: str = "prose"
    notes: Tuple[str, ...] = ()

    def extras(self, sdxl_dual: bool = False) -> Tuple[Tuple[str, str], ...]:
        """The extra encoders that run, ``(key, open_clip model)``."""
        return self.extra_encoders if sdxl_dual or not self.extras_need_dual else ()

    def prompt_keys(self, sdxl_dual: bool = False) -> List[str]:
        """The keys of ``result.prompts`` for this target (empty: the target reads ``positive`` only)."""
        keys = ([self.main_encoder] if self.main_encoder else []) + [k for k, _ in self.extras(sdxl_dual)]
        return keys + [T5] if self.t5 else keys


NO_NEGATIVE_NOTE = "Flux does not use a negative prompt (negative is empty)"

TARGETS: Dict[str, TargetPreset] = {
    "sd15": TargetPreset("sd15", CLIP_L, "Stable Diffusion 1.x: CLIP ViT-L/14 (OpenAI)", main_encoder="clip_l"),
    "sd2": TargetPreset("sd2", CLIP_H, "Stable Diffusion 2.x: OpenCLIP ViT-H/14"),
    "sdxl": TargetPreset("sdxl", CLIP_G,
                         "SDXL: OpenCLIP ViT-bigG/14 (text_encoder_2); CLIP ViT-L/14 (text_encoder) with sdxl_dual",
                         main_encoder="clip_g", extra_encoders=(("clip_l", CLIP_L),), extras_need_dual=True,
                         extra_negatives=True),
    "sdxl-tags": TargetPreset("sdxl-tags", CLIP_G,
                              "SDXL anime/booru checkpoints (Illustrious, Pony, NoobAI): tag caption + ranked terms "
                              "as comma-separated tags, ranked with OpenCLIP ViT-bigG/14",
                              main_encoder="clip_g", caption_style="tags", join="tags"),
    "flux": TargetPreset("flux", CLIP_L,
                         "Flux: clip_l prompt (CLIP ViT-L/14, 77 tokens) + t5 prompt (the detailed caption); "
                         "no negative prompt",
                         main_encoder="clip_l", t5=True, negative=False, caption_style="detailed",
                         notes=(NO_NEGATIVE_NOTE,)),
    "sd35": TargetPreset("sd35", CLIP_G,
                         "Stable Diffusion 3.5: clip_l (ViT-L/14) + clip_g (ViT-bigG/14) prompts, t5 prompt (the "
                         "detailed caption) and a negative prompt",
                         main_encoder="clip_g", extra_encoders=(("clip_l", CLIP_L),), t5=True,
                         caption_style="detailed"),
}
CUSTOM = "custom"
#: ``target="custom"``: ``clip_model`` as given, ``positive``/``negative`` only, short prose captions
CUSTOM_PRESET = TargetPreset(CUSTOM, "", "your own CLIP model (clip_model): positive and negative prompt")


def list_targets() -> List[str]:
    return [*TARGETS, CUSTOM]


def get_target(target: str) -> TargetPreset:
    """The preset of ``target`` (``custom``: :data:`CUSTOM_PRESET`); an unknown name lists the valid ones."""
    if target == CUSTOM:
        return CUSTOM_PRESET
    if target not in TARGETS:
        raise UnknownNameError("target", str(target), list_targets())
    return TARGETS[target]


def target_clip_model(target: str, clip_model: str) -> str:
    """The main CLIP model for ``target`` (``custom``: ``clip_model`` itself)."""
    return clip_model if target == CUSTOM else get_target(target).clip_model
