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
class Encoder:
    """One text encoder a target reads, and so one prompt in ``InterrogationResult.prompts``.

    Attributes:
        key: the prompt's key in ``result.prompts`` (``clip_l``, ``clip_g``, ``t5``, ``llama``, ...).
        clip_model: a 77-token CLIP encoder: the open_clip model that ranks this prompt's terms. Empty: a
            long-prose encoder (T5, an LLM): its prompt is the whole caption (see :mod:`compose`).
        negative: this CLIP encoder also builds its own negative prompt (SDXL's ``clip_l``: ``negative_l``).
        needs_dual: runs only with ``sdxl_dual`` (SDXL reads one prompt in both encoders otherwise).
        comfy_input: the input of the target's ComfyUI text-encode node this prompt goes to (``t5xxl``, ...);
            empty: the key itself.
    """

    key: str
    clip_model: str = ""
    negative: bool = False
    needs_dual: bool = False
    comfy_input: str = ""

    @property
    def ranked(self) -> bool:
        """A 77-token CLIP prompt whose terms are CLIP-ranked (else a long-prose prompt)."""
        return bool(self.clip_model)


@dataclass(frozen=True)
class TargetPreset:
    """A diffusion family and the prompts it reads.

    Attributes:
        name: the target's name (``list_targets()``).
        clip_model: the CLIP model that ranks ``positive`` and ``negative`` (open_clip name).
        description: one line for menus and tooltips.
        main_encoder: the key of the encoder whose prompt is ``positive`` (None: the target reads ``positive``
            only, and ``result.prompts`` stays empty).
        encoders: every encoder the target reads, in the order of ``result.prompts`` (the main one included).
        negative: the target uses a negative prompt (Flux does not: ``negative`` stays empty).
        caption_style: the caption style used when the user sets none (``list_caption_styles()``).
        join: how prompt terms are joined, one of ``JOIN_STYLES``.
        quality_prefix: tags put before every positive prompt (anime checkpoints' quality tags).
        negative_base: put before every CLIP-ranked negative prompt (the negative the model card prescribes).
        comfy_node: the ComfyUI text-encode node the prompts are wired to (``CLIPTextEncodeFlux``, ...).
        sources: where the facts above were checked (ComfyUI source files, model cards).
        notes: remarks copied into every result (``result.notes``).
    """

    name: str
    clip_model: str
    description: str
    main_encoder: Optional[str] = None
    encoders: Tuple[Encoder, ...] = ()
    negative: bool = True
    caption_style: str = "short"
    join: str = "prose"
    quality_prefix: str = ""
    negative_base: str = ""
    comfy_node: str = "CLIPTextEncode"
    sources: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = [e.key for e in self.encoders]
        if len(set(keys)) != len(keys) or (self.main_encoder and self.main_encoder not in keys):
            raise ValueError(f"target {self.name}: encoder keys {keys} must be unique and hold {self.main_encoder}")
        if self.join not in JOIN_STYLES:
            raise ValueError(f"target {self.name}: join {self.join!r} is not one of {JOIN_STYLES}")

    def active(self, sdxl_dual: bool = False) -> Tuple[Encoder, ...]:
        """The encoders that run (``needs_dual`` ones only with ``sdxl_dual``)."""
        return tuple(e for e in self.encoders if sdxl_dual or not e.needs_dual)

    def main(self) -> Optional[Encoder]:
        """The encoder that writes ``positive`` (None: ``positive`` only)."""
        return next((e for e in self.encoders if e.key == self.main_encoder), None)

    def extras(self, sdxl_dual: bool = False) -> Tuple[Tuple[str, str], ...]:
        """The other CLIP encoders that run, ``(key, open_clip model)``."""
        return tuple((e.key, e.clip_model) for e in self.active(sdxl_dual) if e.ranked and e.key != self.main_encoder)

    def prompt_keys(self, sdxl_dual: bool = False) -> List[str]:
        """The keys of ``result.prompts`` for this target (empty: the target reads ``positive`` only)."""
        main = [self.main_encoder] if self.main_encoder else []
        return main + [e.key for e in self.active(sdxl_dual) if e.key != self.main_encoder]

    @property
    def needs_dual(self) -> bool:
        """``sdxl_dual`` means something for this target."""
        return any(e.needs_dual for e in self.encoders)


NO_NEGATIVE_NOTE = "Flux does not use a negative prompt (negative is empty)"

TARGETS: Dict[str, TargetPreset] = {
    "sd15": TargetPreset("sd15", CLIP_L, "Stable Diffusion 1.x: CLIP ViT-L/14 (OpenAI)", main_encoder="clip_l",
                         encoders=(Encoder("clip_l", CLIP_L),)),
    "sd2": TargetPreset("sd2", CLIP_H, "Stable Diffusion 2.x: OpenCLIP ViT-H/14"),
    "sdxl": TargetPreset("sdxl", CLIP_G,
                         "SDXL: OpenCLIP ViT-bigG/14 (text_encoder_2); CLIP ViT-L/14 (text_encoder) with sdxl_dual",
                         main_encoder="clip_g",
                         encoders=(Encoder("clip_g", CLIP_G), Encoder("clip_l", CLIP_L, negative=True, needs_dual=True)),
                         comfy_node="CLIPTextEncodeSDXL"),
    "sdxl-tags": TargetPreset("sdxl-tags", CLIP_G,
                              "SDXL anime/booru checkpoints (Illustrious, Pony, NoobAI): tag caption + ranked terms "
                              "as comma-separated tags, ranked with OpenCLIP ViT-bigG/14",
                              main_encoder="clip_g", encoders=(Encoder("clip_g", CLIP_G),), caption_style="tags",
                              join="tags"),
    "flux": TargetPreset("flux", CLIP_L,
                         "Flux: clip_l prompt (CLIP ViT-L/14, 77 tokens) + t5 prompt (the detailed caption); "
                         "no negative prompt",
                         main_encoder="clip_l", encoders=(Encoder("clip_l", CLIP_L), Encoder(T5, comfy_input="t5xxl")),
                         negative=False, caption_style="detailed", comfy_node="CLIPTextEncodeFlux",
                         notes=(NO_NEGATIVE_NOTE,)),
    "sd35": TargetPreset("sd35", CLIP_G,
                         "Stable Diffusion 3.5: clip_l (ViT-L/14) + clip_g (ViT-bigG/14) prompts, t5 prompt (the "
                         "detailed caption) and a negative prompt",
                         main_encoder="clip_g",
                         encoders=(Encoder("clip_g", CLIP_G), Encoder("clip_l", CLIP_L), Encoder(T5, comfy_input="t5xxl")),
                         caption_style="detailed", comfy_node="CLIPTextEncodeSD3"),
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
