"""Target profiles: the diffusion model that will read the prompt decides which prompts a result carries.

A prompt ranks best with the text encoder that will read it, so a target names its CLIP encoders (as open_clip
models), which one writes ``positive``/``negative``, whether it also reads a long T5 prompt, whether it uses a
negative prompt at all, the caption style that suits it and how prompt terms are joined. Everything here is
data; the engine (:mod:`interrogator`) reads it. ``target="custom"`` keeps ``clip_model`` as given.

Encoder names are the keys of ``InterrogationResult.prompts``: ``clip_l`` (CLIP ViT-L/14), ``clip_g``
(OpenCLIP ViT-bigG/14), ``t5`` (a T5-XXL or umT5-XXL: the full caption, never cut to CLIP's 77 tokens), ``llama``
(HiDream's Llama 3.1), ``llm`` (the one LLM text encoder of Flux.2, Qwen-Image, Z-Image, Lumina 2). In ComfyUI they
plug into ``CLIPTextEncodeFlux`` (clip_l, t5xxl), ``CLIPTextEncodeSD3`` (clip_l, clip_g, t5xxl),
``CLIPTextEncodeHiDream`` (clip_l, clip_g, t5xxl, llama), ``CLIPTextEncodeLumina2`` (user_prompt) or the plain
``CLIPTextEncode`` (text); :func:`token_streams` says which token stream of a ComfyUI ``CLIP`` each prompt fills.

Every fact in a preset (encoders, node inputs, token limits, quality prefix, negative base) was checked against the
sources in its ``sources`` (ComfyUI's own text-encode nodes and tokenizers, the model cards); the README's target
table lists them.
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
#: encoder name of the T5 prompt in ``InterrogationResult.prompts`` (T5-XXL, or Wan's umT5-XXL)
T5 = "t5"
#: encoder name of HiDream's Llama 3.1 8B prompt (``CLIPTextEncodeHiDream``'s ``llama``)
LLAMA = "llama"
#: encoder name of the prompt of a target whose one text encoder is an LLM (Flux.2, Qwen-Image, Z-Image, Lumina 2)
LLM = "llm"
#: tag categories a tag target can order (``TargetPreset.tag_order``): ``count`` (1girl, 2boys, solo, ...), then the
#: booru categories, ``quality``/``rating`` (score and rating tags) and ``meta`` (highres, absurdres, ...)
TAG_CATEGORIES = ("count", "character", "series", "artist", "general", "meta", "rating", "quality")
#: the token stream of a ComfyUI ``CLIP`` that each encoder key fills when a target reads more than one prompt
#: (the keys of ``clip.tokenize(text)``: SD1 ``l``, SDXL ``g`` + ``l``, Flux/SD3 ``t5xxl``, HiDream ``llama``)
DEFAULT_STREAMS = {"clip_l": "l", "clip_g": "g", T5: "t5xxl", LLAMA: "llama"}


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
        comfy_stream: the token stream of a ComfyUI ``CLIP`` this prompt fills in *Interrogate & Encode*: a key of
            what ``clip.tokenize(text)`` returns (``l``, ``g``, ``t5xxl``, ``llama``; see :func:`token_streams`).
            Empty: the target's one prompt, tokenized into every stream the CLIP has (as ``CLIPTextEncode``
            does).
        max_tokens: the most tokens this encoder reads, where its ComfyUI tokenizer or its model's reference
            pipeline cuts the prompt (HiDream's t5: 128; Wan's umT5 and Flux.2's LLM: 512); 0: no cut known
            beyond CLIP's 77 for a ranked encoder. The composer may use it as the long prompt's budget.
    """

    key: str
    clip_model: str = ""
    negative: bool = False
    needs_dual: bool = False
    comfy_input: str = ""
    comfy_stream: str = ""
    max_tokens: int = 0

    @property
    def ranked(self) -> bool:
        """A 77-token CLIP prompt whose terms are CLIP-ranked (else a long-prose prompt)."""
        return bool(self.clip_model)

    @property
    def stream(self) -> str:
        """The ComfyUI token stream this prompt fills (``comfy_stream``, else the default one of its key)."""
        return self.comfy_stream or DEFAULT_STREAMS.get(self.key, self.key)


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
        tag_order: with ``join="tags"``: the tag categories in the order the checkpoint was trained on (``count``
            such as 1girl/solo, ``character``, ``series``, ``artist``, ``general``, ...); empty: as ranked.
        tag_underscores: tags keep their booru underscores (``long_hair``); False: written with spaces
            (``long hair``), as Danbooru-trained SDXL checkpoints' prompts are (the quality prefix is kept as given).
        escape_parentheses: tags write ``(``/``)`` as ``\\(``/``\\)`` (``hatsune miku \\(vocaloid\\)``): A1111
            and ComfyUI read bare parentheses as prompt weights.
        encode_template: the text the target's ComfyUI node builds around the positive prompt before tokenizing
            it, ``{prompt}`` marking the prompt (Lumina 2: its system prompt + `` <Prompt Start> ``); empty: the
            prompt as it is. The string outputs stay the bare prompt (the node adds the rest); *Interrogate &
            Encode* applies it. Negative prompts are encoded bare (as the reference pipelines do).
        guidance: the model reads Flux guidance from its conditioning (``CLIPTextEncodeFlux``/``FluxGuidance``);
            *Interrogate & Encode* writes its guidance input into the conditioning only for these targets.
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
    tag_order: Tuple[str, ...] = ()
    tag_underscores: bool = False
    escape_parentheses: bool = False
    encode_template: str = ""
    guidance: bool = False

    def __post_init__(self) -> None:
        keys = [e.key for e in self.encoders]
        if len(set(keys)) != len(keys) or (self.main_encoder and self.main_encoder not in keys):
            raise ValueError(f"target {self.name}: encoder keys {keys} must be unique and hold {self.main_encoder}")
        if self.join not in JOIN_STYLES:
            raise ValueError(f"target {self.name}: join {self.join!r} is not one of {JOIN_STYLES}")
        if self.encode_template and "{prompt}" not in self.encode_template:
            raise ValueError(f"target {self.name}: encode_template must hold {{prompt}}")
        bad = [c for c in self.tag_order if c not in TAG_CATEGORIES]
        if bad:
            raise ValueError(f"target {self.name}: tag categories {bad} are not in {TAG_CATEGORIES}")

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
#: where the ComfyUI facts were read (upstream comfyanonymous/ComfyUI 0.8.0 as mirrored by pollockjj/ComfyUI 3cd7b32f)
_COMFY = "github:comfyanonymous/ComfyUI:"
#: CLIPTextEncodeLumina2's "superior" system prompt (its default; also diffusers' Lumina2Pipeline's)
LUMINA2_SYSTEM_PROMPT = ("You are an assistant designed to generate superior images with the superior degree of "
                         "image-text alignment based on textual prompts or user prompts.")
#: the negative prompt of Wan's own configs (``sample_neg_prompt``), which its ComfyUI templates ship too
WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
                "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
#: the tag order of the Danbooru-trained SDXL checkpoints (NoobAI-XL's card: count, character, series, artists,
#: special, general, other)
ANIME_TAG_ORDER = ("count", "character", "series", "artist", "general", "meta")
#: SDXL's encoders: ViT-bigG writes positive; ViT-L/14 only with sdxl_dual, with its own negative
_SDXL_ENCODERS = (Encoder("clip_g", CLIP_G), Encoder("clip_l", CLIP_L, negative=True, needs_dual=True))

TARGETS: Dict[str, TargetPreset] = {
    "sd15": TargetPreset("sd15", CLIP_L, "Stable Diffusion 1.x: CLIP ViT-L/14 (OpenAI)", main_encoder="clip_l",
                         encoders=(Encoder("clip_l", CLIP_L),)),
    "sd2": TargetPreset("sd2", CLIP_H, "Stable Diffusion 2.x: OpenCLIP ViT-H/14"),
    "sdxl": TargetPreset("sdxl", CLIP_G,
                         "SDXL: OpenCLIP ViT-bigG/14 (text_encoder_2); CLIP ViT-L/14 (text_encoder) with sdxl_dual",
                         main_encoder="clip_g",
                         encoders=(Encoder("clip_g", CLIP_G), Encoder("clip_l", CLIP_L, negative=True, needs_dual=True)),
                         comfy_node="CLIPTextEncodeSDXL",
                         sources=(_COMFY + "comfy_extras/nodes_clip_sdxl.py (CLIPTextEncodeSDXL: text_g into "
                                  "stream g, text_l into l)",)),
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
                         guidance=True, notes=(NO_NEGATIVE_NOTE,),
                         sources=(_COMFY + "comfy_extras/nodes_flux.py (CLIPTextEncodeFlux: clip_l into stream l, "
                                  "t5xxl into t5xxl, guidance 3.5)",)),
    "sd35": TargetPreset("sd35", CLIP_G,
                         "Stable Diffusion 3.5: clip_l (ViT-L/14) + clip_g (ViT-bigG/14) prompts, t5 prompt (the "
                         "detailed caption) and a negative prompt",
                         main_encoder="clip_g",
                         encoders=(Encoder("clip_g", CLIP_G), Encoder("clip_l", CLIP_L), Encoder(T5, comfy_input="t5xxl")),
                         caption_style="detailed", comfy_node="CLIPTextEncodeSD3",
                         sources=(_COMFY + "comfy_extras/nodes_sd3.py (CLIPTextEncodeSD3: clip_g, clip_l, t5xxl "
                                  "into streams g, l, t5xxl)",)),
    # -- the generators of 2025-26 (appended: the six above keep their names and order) --------------------
    "flux2": TargetPreset("flux2", CLIP_L,
                          "Flux.2 dev / Klein: one LLM text encoder (Mistral Small 3.1 for dev, Qwen3 for Klein) "
                          "reading the detailed caption as prose; no negative prompt",
                          main_encoder=LLM, encoders=(Encoder(LLM, comfy_input="text", max_tokens=512),),
                          negative=False, caption_style="detailed", guidance=True,
                          sources=(_COMFY + "comfy/text_encoders/flux.py (Flux2Tokenizer: mistral3_24b, its own "
                                   "system prompt template)",
                                   _COMFY + "comfy/model_base.py (Flux2: text padded to 512 tokens; Flux guidance)",
                                   _COMFY + "comfy_extras/nodes_flux.py (FluxGuidance)",
                                   "https://huggingface.co/blog/flux-2 (single text encoder, max_sequence_length "
                                   "512)"),
                          notes=("Flux.2 does not use a negative prompt (negative is empty)",)),
    "qwen-image": TargetPreset("qwen-image", CLIP_L,
                               "Qwen-Image / Edit: Qwen2.5-VL 7B text encoder reading the detailed caption as "
                               "prose; negative prompt used (true CFG)",
                               main_encoder=LLM, encoders=(Encoder(LLM, comfy_input="text"),),
                               caption_style="detailed",
                               negative_base="低分辨率，低画质，肢体畸形，手指畸形，画面过饱和，蜡像感，人脸无细节，"
                                             "过度光滑，画面具有AI感。构图混乱。文字模糊，扭曲。",
                               sources=(_COMFY + "comfy/text_encoders/qwen_image.py (QwenImageTokenizer: "
                                        "qwen25_7b, its own system prompt template)",
                                        _COMFY + "comfy_extras/nodes_qwen.py (TextEncodeQwenImageEdit: prompt)",
                                        "github:QwenLM/Qwen-Image:README.md (Qwen-Image-2512 quick start: this "
                                        "negative_prompt, true_cfg_scale 4.0)"),
                               notes=("Qwen-Image-Edit: wire the prompt into TextEncodeQwenImageEdit(Plus)'s "
                                      "prompt",)),
    "hidream": TargetPreset("hidream", CLIP_L,
                            "HiDream-I1: four prompts, clip_l and clip_g (77-token CLIP, ranked terms), t5xxl "
                            "(first 128 tokens) and llama (Llama 3.1 8B: the whole detailed caption)",
                            main_encoder=LLAMA,
                            encoders=(Encoder("clip_l", CLIP_L), Encoder("clip_g", CLIP_G),
                                      Encoder(T5, comfy_input="t5xxl", max_tokens=128), Encoder(LLAMA)),
                            caption_style="detailed", comfy_node="CLIPTextEncodeHiDream",
                            sources=(_COMFY + "comfy_extras/nodes_hidream.py (CLIPTextEncodeHiDream: clip_l, "
                                     "clip_g, t5xxl, llama into token streams l, g, t5xxl, llama)",
                                     _COMFY + "comfy/text_encoders/hidream.py (HiDreamTokenizer: t5xxl keeps its "
                                     "first 128 tokens)"),
                            notes=("HiDream-I1 Full uses the negative prompt; Dev and Fast run without CFG and "
                                   "ignore it",)),
    "z-image": TargetPreset("z-image", CLIP_L,
                            "Z-Image (Turbo / base): Qwen3 4B text encoder reading the detailed caption as prose",
                            main_encoder=LLM, encoders=(Encoder(LLM, comfy_input="text"),),
                            caption_style="detailed",
                            sources=(_COMFY + "comfy/text_encoders/z_image.py (ZImageTokenizer: qwen3_4b, a chat "
                                     "template)",
                                     _COMFY + "comfy/sd.py (a Qwen3 4B text encoder loads as Z-Image's)",
                                     "https://developer.civitai.com/orchestration/recipes/zimage (Turbo cfg 1; "
                                     "base cfg 4 with working negative prompts)"),
                            notes=("Z-Image-Turbo runs without CFG and ignores the negative prompt; Z-Image base "
                                   "uses it",)),
    "chroma": TargetPreset("chroma", CLIP_L,
                           "Chroma: T5-XXL only (no CLIP) reading the detailed caption; negative prompt used",
                           main_encoder=T5, encoders=(Encoder(T5, comfy_input="text"),),
                           caption_style="detailed",
                           negative_base="low quality, ugly, unfinished, out of focus, deformed, disfigure, blurry",
                           sources=(_COMFY + "comfy/sd.py (CLIPType.CHROMA: the PixArt T5 tokenizer, stream "
                                    "t5xxl)",
                                    _COMFY + "comfy/text_encoders/pixart_t5.py",
                                    "https://huggingface.co/docs/diffusers/api/pipelines/chroma (Chroma1-HD "
                                    "example: negative_prompt, guidance_scale 3.0)")),
    "lumina2": TargetPreset("lumina2", CLIP_L,
                            "Lumina-Image 2.0: Gemma 2 2B text encoder; CLIPTextEncodeLumina2's system prompt + "
                            "the detailed caption as user prompt",
                            main_encoder=LLM, encoders=(Encoder(LLM, comfy_input="user_prompt", max_tokens=256),),
                            caption_style="detailed", comfy_node="CLIPTextEncodeLumina2",
                            encode_template=LUMINA2_SYSTEM_PROMPT + " <Prompt Start> {prompt}",
                            sources=(_COMFY + "comfy_extras/nodes_lumina2.py (CLIPTextEncodeLumina2: system_prompt "
                                     "'superior' + ' <Prompt Start> ' + user_prompt)",
                                     _COMFY + "comfy/text_encoders/lumina2.py (LuminaTokenizer: gemma2_2b)",
                                     "github:huggingface/diffusers:src/diffusers/pipelines/lumina2/"
                                     "pipeline_lumina2.py (the system prompt before the positive prompt only; "
                                     "max_sequence_length 256)"),
                            notes=("In CLIPTextEncodeLumina2 pick the system prompt 'superior'; the llm prompt is "
                                   "its user_prompt",)),
    "wan": TargetPreset("wan", CLIP_L,
                        "Wan 2.1 / 2.2 (video): umT5-XXL reading the detailed caption as prose (say how things "
                        "move); the negative prompt Wan's own configs ship",
                        main_encoder=T5, encoders=(Encoder(T5, comfy_input="text", comfy_stream="umt5xxl",
                                                           max_tokens=512),),
                        caption_style="detailed", negative_base=WAN_NEGATIVE,
                        sources=(_COMFY + "comfy/text_encoders/wan.py (WanT5Tokenizer: umt5xxl)",
                                 "github:Wan-Video/Wan2.2:wan/configs/shared_config.py (sample_neg_prompt; t5 "
                                 "text_len 512)"),
                        notes=("A still image's caption has no motion: add how the scene moves to the prompt",)),
    "illustrious": TargetPreset("illustrious", CLIP_G,
                                "Illustrious XL (SDXL anime): Danbooru tags in count, character, series, artist, "
                                "general order, quality tags first, ranked with OpenCLIP ViT-bigG/14",
                                main_encoder="clip_g", encoders=_SDXL_ENCODERS, caption_style="tags", join="tags",
                                quality_prefix="masterpiece, best quality",
                                negative_base="worst quality, bad quality, low quality, lowres, displeasing, very "
                                              "displeasing, bad anatomy, bad hands, jpeg artifacts",
                                tag_order=ANIME_TAG_ORDER, escape_parentheses=True,
                                sources=("https://huggingface.co/OnomaAIResearch/Illustrious-xl-early-release-v0 "
                                         "(quality tags worst / bad / average / good / best quality, masterpiece; "
                                         "the card's example negative prompt)",
                                         "https://huggingface.co/Laxhar/noobai-XL-1.0 (the caption order of "
                                         "Illustrious' Danbooru fine-tunes)",
                                         _COMFY + "comfy/sd1_clip.py (escape_important: \\( and \\) are literal)")),
    "noobai": TargetPreset("noobai", CLIP_G,
                           "NoobAI-XL (SDXL anime, Illustrious-based): the model card's prompt prefix, tag order and "
                           "negative prompt, ranked with OpenCLIP ViT-bigG/14",
                           main_encoder="clip_g", encoders=_SDXL_ENCODERS, caption_style="tags", join="tags",
                           quality_prefix="masterpiece, best quality, newest, absurdres, highres, safe",
                           negative_base="nsfw, worst quality, old, early, low quality, lowres, signature, "
                                         "username, logo, bad hands, mutated hands, mammal, anthro, furry, "
                                         "ambiguous form, feral, semi-anthro",
                           tag_order=ANIME_TAG_ORDER, escape_parentheses=True,
                           sources=("https://huggingface.co/Laxhar/noobai-XL-1.0 (Prompt Prefix, Negative Prompt, "
                                    "Caption: <1girl/1boy/1other/...>, <character>, <series>, <artists>, <special "
                                    "tags>, <general tags>, <other tags>)",
                                    _COMFY + "comfy/sd1_clip.py (escape_important)")),
    "pony": TargetPreset("pony", CLIP_G,
                         "Pony Diffusion V6 XL (SDXL): the score_9 ... score_4_up prefix, then the caption and tags, "
                         "ranked with OpenCLIP ViT-bigG/14; load with CLIP skip 2",
                         main_encoder="clip_g", encoders=_SDXL_ENCODERS, caption_style="tags", join="tags",
                         quality_prefix="score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up",
                         tag_order=ANIME_TAG_ORDER, escape_parentheses=True,
                         sources=("https://civitai.com/models/257749 (Pony Diffusion V6 XL card: the prompt template "
                                  "'score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, just "
                                  "describe what you want, tag1, tag2'; designed to need no negative prompt; "
                                  "clip skip 2; source_* and rating_* tags)",
                                  _COMFY + "comfy/sd1_clip.py (escape_important)"),
                         notes=("Pony needs CLIP skip 2 (ComfyUI: CLIPSetLastLayer -2; A1111: Clip skip 2)",
                                "Pony's card prescribes no negative base: the negative is CLIP-ranked only")),
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


def all_prompt_keys() -> List[str]:
    """Every encoder key a target's ``result.prompts`` can hold, in the order targets first name them (new targets
    are appended, so a key's place never moves): the columns and outputs hosts give the prompts."""
    return list(dict.fromkeys(e.key for preset in TARGETS.values() for e in preset.encoders))


#: the fields of a result that hold an encoder's own negative prompt (``Encoder.negative``), by encoder key
OWN_NEGATIVE_FIELDS = {"clip_l": "negative_l"}


def token_streams(preset: TargetPreset, result, negative: bool = False,
                  sdxl_dual: bool = False) -> Tuple[str, Dict[str, str]]:
    """What a ComfyUI text-encode of ``result`` tokenizes, as ``CLIPTextEncodeFlux`` / ``SD3`` / ``HiDream`` do:
    ``(text, {stream: text})``.

    The first text is tokenized into every stream the ``CLIP`` has (the target's main prompt: ``positive``, or
    ``negative`` with ``negative=True``); each ``stream`` of the dict then gets its own prompt's tokens, where
    the ``CLIP``'s tokenizer has that stream (``l``, ``g``, ``t5xxl``, ``llama``, ...). A target with one prompt
    (or none in ``result.prompts``) gives an empty dict: its prompt fills every stream, as ``CLIPTextEncode``
    does. ``preset.encode_template`` is put around every positive text (Lumina 2's system prompt); negatives stay
    bare, and an empty prompt stays empty. Only the encoders that ran (``sdxl_dual``) are mapped; ``result`` is an
    ``InterrogationResult``.
    """
    if negative:
        streams = {e.stream: getattr(result, OWN_NEGATIVE_FIELDS[e.key])
                   for e in preset.active(sdxl_dual) if e.negative and e.key in OWN_NEGATIVE_FIELDS
                   and getattr(result, OWN_NEGATIVE_FIELDS[e.key], None) is not None}
        return result.negative, streams
    prompts = dict(result.prompts or {})
    active = [e for e in preset.active(sdxl_dual) if e.key in prompts]
    streams = {e.stream: prompts[e.key] for e in active} if len(active) > 1 else {}
    if preset.encode_template:
        def wrap(text: str) -> str:
            return preset.encode_template.format(prompt=text) if text else text

        return wrap(result.positive), {k: wrap(v) for k, v in streams.items()}
    return result.positive, streams
