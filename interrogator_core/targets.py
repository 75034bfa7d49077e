"""Target-model presets: which CLIP model to rank with, given the diffusion model the prompt will feed.

A prompt ranks best with the text encoder that will read it. ``target="custom"`` keeps ``clip_model``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from .errors import UnknownNameError


@dataclass(frozen=True)
class TargetPreset:
    """A diffusion family and its text encoder(s) as open_clip names.

    ``second_clip_model``: SDXL's other text encoder (CLIP ViT-L/14), for separate per-encoder prompts.
    """

    name: str
    clip_model: str
    description: str
    second_clip_model: Optional[str] = None


TARGETS: Dict[str, TargetPreset] = {
    "sd15": TargetPreset("sd15", "ViT-L-14/openai", "Stable Diffusion 1.x: CLIP ViT-L/14 (OpenAI)"),
    "sd2": TargetPreset("sd2", "ViT-H-14/laion2b_s32b_b79k", "Stable Diffusion 2.x: OpenCLIP ViT-H/14"),
    "sdxl": TargetPreset("sdxl", "ViT-bigG-14/laion2b_s39b_b160k",
                         "SDXL: OpenCLIP ViT-bigG/14 (text_encoder_2); CLIP ViT-L/14 (text_encoder)",
                         second_clip_model="ViT-L-14/openai"),
}
CUSTOM = "custom"


def list_targets() -> List[str]:
    return [*TARGETS, CUSTOM]


def target_clip_model(target: str, clip_model: str) -> str:
    """The CLIP model for ``target`` (``custom``: ``clip_model`` itself)."""
    if target == CUSTOM:
        return clip_model
    if target not in TARGETS:
        raise UnknownNameError("target", target, list_targets())
    return TARGETS[target].clip_model
