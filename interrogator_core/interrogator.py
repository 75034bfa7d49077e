"""The engine: caption + CLIP ranking + prompt rules, on the host's devices and memory policy."""
from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Dict, Hashable, Iterator, List, Optional, Sequence, Union

from . import compose, prompts
from .cache import default_cache_dir
from .caption import list_caption_styles
from .captioning import CAPTION_LENGTHS, CAPTION_TOKENS, INSTRUCTION_TOKENS, CaptionStage  # noqa: F401
from .encoder import ClipEncoder, eta_text  # noqa: F401
from .errors import InterrogatorError, UnknownNameError
from .host import HostAdapter, ModelHandle, OffloadPolicy, StandaloneHost
from .images import ImageInput, describe, load_images
from .pool import ModelPool
from .settings import caption_model_value, caption_style_value
from .tagger import TaggerOptions
from .result import AnalyzeResult, InterrogationResult, RoundTripScore
from .targets import CUSTOM, TargetPreset, get_target, target_clip_model
from .request import (DEFAULT_MIN_FLAVORS, MODES, Request, check_request, flag, list_modes,  # noqa: F401
                      whole_number)

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

@dataclass
class InterrogatorConfig:
    """Settings of an :class:`Interrogator`. Model names: see ``list_clip_models()``/``list_caption_models()``.

    Whole-number settings also accept whole floats and digit strings (converted; see :func:`whole_number`),
    yes/no settings also "true"/"false"; anything else is a ValueError naming the setting.

    Attributes:
        clip_model: open_clip ``ARCH/TAG``, ``hf-hub:`` id, ``ARCH/path/to/weights`` or a snapshot folder.
        caption_model: a name from ``list_caption_models()``, a hub id, a local folder, or None (no captions).
        cache_dir: label-embedding cache folder (None: memory only).
        model_dirs: folders searched for local model files before any download.
        download_dir: where downloads go (None: the Hugging Face cache).
        data_dir: folder with the built-in label lists (None: the bundled ``data/``).
        user_tables_dir: folder of extra ``NAME.txt`` label lists added to the best/fast pools.
        blocklist: labels never used (a file path or a list; artist names block "by X"/"inspired by X").
        offload: :class:`OffloadPolicy` or its value ("keep", "offload", "lowvram").
        caption_max_length: max new tokens of a caption (None: by style, see ``CAPTION_TOKENS``; 256 with
            ``caption_prompt``).
        caption_batch_size / image_batch_size / text_batch_size: batch sizes (lower them for low VRAM).
        flavor_intermediate_count: how many top-ranked labels the chains choose from.
        target: the diffusion model the prompts are for, from ``list_targets()``: picks ``clip_model``, the
            extra prompts a result carries (``result.prompts``), the caption style and how terms are joined
            (see :mod:`interrogator_core.targets`); "custom" uses ``clip_model`` as given.
        sdxl_dual: with target "sdxl", also build prompts with SDXL's second encoder (ViT-L/14): ``prompts``
            gets ``clip_l`` beside ``clip_g``, and ``positive_l``/``negative_l`` are set (the bigG prompts stay
            ``positive``/``negative``).
        caption_style: "short", "detailed" or "tags" (``list_caption_styles()``); None: the target's (detailed
            for flux/sd35, tags for sdxl-tags, else short). A style the target picked that the caption model
            cannot write falls back to short, with a note in the result; one you set is an error instead.
        caption_prompt: a free instruction for chat-template caption models; overrides the style's.
        trust_remote_code: let a caption model run code from its repository (off: native transformers only).
        tagger_options: thresholds and tag formatting of an image tagger caption model (:class:`TaggerOptions`;
            other caption models ignore them).
        caption_length: a length preset from ``list_caption_lengths()`` (very_short ... very_long): the
            instruction (chat families), task token (Florence-2) and token budget (every family) of that length
            (see :data:`~interrogator_core.captioning.CAPTION_LENGTHS`); None: the style's. ``caption_prompt``
            and ``caption_max_length`` still win where set.
        trigger_prefix / trigger_suffix: text put before / after every positive prompt (``positive``,
            ``positive_l``, each of ``prompts``; not the caption nor the negatives), e.g. a LoRA's trigger word.
        caption_replace: a replace list file: lines ``old => new`` replace, plain lines remove (whole words,
            case-insensitive), applied to each written caption before the prompts are built.
    """

    clip_model: str = "ViT-L-14/openai"
    caption_model: Optional[str] = "blip-large"
    cache_dir: Optional[PathLike] = field(default_factory=default_cache_dir)
    model_dirs: Sequence[PathLike] = ()
    download_dir: Optional[PathLike] = None
    data_dir: Optional[PathLike] = None
    user_tables_dir: Optional[PathLike] = None
    blocklist: Union[None, PathLike, Sequence[str]] = None
    offload: Union[str, OffloadPolicy] = OffloadPolicy.KEEP
    caption_max_length: Optional[int] = None
    caption_batch_size: int = 8
    image_batch_size: int = 16
    text_batch_size: int = 512
    flavor_intermediate_count: int = 2048
    target: str = CUSTOM
    sdxl_dual: bool = False
    caption_style: Optional[str] = None
    caption_prompt: Optional[str] = None
    trust_remote_code: bool = False
    tagger_options: TaggerOptions = field(default_factory=TaggerOptions)
    caption_length: Optional[str] = None
    trigger_prefix: str = ""
    trigger_suffix: str = ""
    caption_replace: Optional[PathLike] = None

    def __post_init__(self) -> None:
        self.offload = OffloadPolicy.parse(self.offload)
        preset = get_target(self.target)
        self.clip_model = target_clip_model(self.target, self.clip_model)
        self.sdxl_dual = flag("sdxl_dual", self.sdxl_dual)
        self.trust_remote_code = flag("trust_remote_code", self.trust_remote_code)
        if self.sdxl_dual and not preset.needs_dual:
            raise ValueError(f"sdxl_dual needs target='sdxl' (target is {self.target!r}); "
                             "turn sdxl_dual off or pick target sdxl")
        if isinstance(self.caption_model, str):
            self.caption_model = caption_model_value(self.caption_model)  # "none"/"": no caption model
        if isinstance(self.caption_style, str):
            self.caption_style = caption_style_value(self.caption_style) or None  # "auto"/"": the target's
        if not isinstance(self.tagger_options, TaggerOptions):
            raise ValueError(f"tagger_options must be a TaggerOptions, got {self.tagger_options!r}")
        if self.caption_style is not None and self.caption_style not in list_caption_styles():
            raise UnknownNameError("caption style", str(self.caption_style), list_caption_styles())
        if self.caption_prompt is not None and not isinstance(self.caption_prompt, str):
            raise ValueError(f"caption_prompt must be text, got {self.caption_prompt!r}")
        self.caption_prompt = (self.caption_prompt or "").strip() or None
        for name in ("caption_batch_size", "image_batch_size", "text_batch_size", "flavor_intermediate_count"):
            setattr(self, name, whole_number(name, getattr(self, name), 1))
        if isinstance(self.caption_length, str):
            self.caption_length = self.caption_length.strip().lower() or None
            if self.caption_length == "auto":
                self.caption_length = None
        if self.caption_length is not None and self.caption_length not in CAPTION_LENGTHS:
            raise UnknownNameError("caption length", str(self.caption_length), list(CAPTION_LENGTHS))
        for name in ("trigger_prefix", "trigger_suffix"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be text, got {value!r}")
            setattr(self, name, (value or "").strip().strip(",").strip())
        if isinstance(self.caption_replace, str) and not self.caption_replace.strip():
            self.caption_replace = None
        if self.caption_replace is not None and not os.path.isfile(self.caption_replace):
            raise ValueError(f"caption_replace {str(self.caption_replace)!r} is not a file; give a text file with "
                             "lines 'old => new' (replace) or 'word' (remove), or leave it empty")
        if self.caption_max_length is not None:
            self.caption_max_length = whole_number("caption_max_length", self.caption_max_length, 1)

    @property
    def preset(self) -> TargetPreset:
        """The target's profile (``targets.get_target(target)``)."""
        return get_target(self.target)

    @property
    def grammar(self) -> prompts.PromptGrammar:
        """How the prompts are joined: tags when the target joins tags or the caption style is tags."""
        preset = self.preset
        tags = preset.join == "tags" or self.effective_caption_style == "tags"
        main = preset.main()
        prose = main is not None and not main.ranked  # a long-prose negative is not cut to CLIP's window
        return prompts.PromptGrammar(tags=tags, count_first=tags and preset.join == "tags",
                                     underscores=preset.tag_underscores, escape=preset.escape_parentheses,
                                     prefix=preset.quality_prefix,
                                     negative_base=preset.negative_base if preset.negative and not prose else "")

    @property
    def effective_caption_style(self) -> str:
        """``caption_style``, or the target's when None."""
        return self.caption_style or self.preset.caption_style


def _wanted(ci: "Interrogator") -> Dict[Hashable, str]:
    """What ``ci``'s configuration would load, by pool key, with a name for logs."""
    dtype = ci.pool.dtype()
    out: Dict[Hashable, str] = {k: "caption model" for k in ci.captions.pool_keys(dtype)}
    for i, enc in enumerate(ci.encoders.values()):
        suffix = f" ({enc.key})" if i else ""
        clip, tables = enc.pool_keys(dtype)
        out.setdefault(clip, "CLIP model" + suffix)
        out.setdefault(tables, "label tables" + suffix)
    return out


class Interrogator:
    """Image → positive and negative prompt (and the other prompts the target reads): the pipeline.

    images → captions (:mod:`captioning`) → for each CLIP text encoder the target reads, its ranked prompts
    (:mod:`encoder`) → the target's prompts (:mod:`compose`) → results. Every model comes from one
    :class:`~interrogator_core.pool.ModelPool` (``pool``), which loads it once, shares it between encoders and
    moves it under the offload policy through the host; ``models``/``offload``/``unload`` cover all of them.
    Models load lazily on first use. Calls are serialized: one interrogator can be shared between threads.
    """

    def __init__(self, config: Optional[InterrogatorConfig] = None, host: Optional[HostAdapter] = None) -> None:
        self.config = config or InterrogatorConfig()
        self.host: HostAdapter = host or StandaloneHost()
        self.pool = ModelPool(self.host, self.config.offload)
        self._lock = self.pool.lock
        self.captions = CaptionStage(self.config, self.pool)
        preset, grammar = self.config.preset, self.config.grammar
        main = preset.main()
        #: the CLIP encoders by prompt key; the first ranks ``positive``/``negative`` (key "" where the target
        #: reads ``positive`` only, or where its main prompt is long prose and this one ranks the negative)
        self.encoders: Dict[str, ClipEncoder] = {}
        main_key = preset.main_encoder if main is not None and main.ranked else ""
        self.encoders[main_key] = ClipEncoder(main_key, self.config.clip_model, self.config, self.pool, grammar)
        for key, model in preset.extras(self.config.sdxl_dual):
            self.encoders[key] = ClipEncoder(key, model, self.config, self.pool, grammar)

    @property
    def main(self) -> ClipEncoder:
        """The encoder that ranks ``positive`` and ``negative``."""
        return next(iter(self.encoders.values()))

    # -- public API -----------------------------------------------------------------------------------------
    def interrogate(
        self,
        images: Union[ImageInput, Sequence[ImageInput]],
        mode: str = "best",
        *,
        min_flavors: Optional[int] = None,
        max_flavors: int = 32,
        negative_count: int = 16,
        captions: Optional[Sequence[Optional[str]]] = None,
        beam_width: int = 1,
        similarities: bool = True,
        score: Optional[bool] = None,
    ) -> List[InterrogationResult]:
        """One :class:`InterrogationResult` per image (positive, negative, caption, similarities, and the
        target's prompts by encoder name in ``prompts``).

        Args:
            images: PIL images or paths (one, or a list).
            mode: best, classic, fast, negative or caption (see ``list_modes()``).
            min_flavors / max_flavors: bounds of the positive chain (best; min must not exceed max; min None:
                8, or max_flavors when that is lower), number of flavors (fast/classic).
            negative_count: most terms in the negative prompt (0: no negative prompt); negative mode uses
                ``max_flavors`` instead, as clip-interrogator does. Targets without a negative prompt (flux)
                build none.
            captions: optional captions to use instead of generating them (None entries are generated).
            beam_width: prompts kept per chain step, 1 to ``MAX_BEAM_WIDTH`` (1: greedy, clip-interrogator's
                chain); k > 1 is never worse than greedy and costs about k times the chain.
            similarities: also compute ``similarity``/``negative_similarity`` where that costs an extra text
                encode: the fast and classic prompts and their negatives (False leaves them None; best and
                negative mode know their similarities from the chain at no cost).
            score: deprecated name of ``similarities`` (not :meth:`score`, the round-trip score).

        CLIP prompts fit their encoder's 77-token window and start with the caption's head (see
        :mod:`compose`); long-prose prompts (``t5``, ``llama``, ...) are the whole caption. In caption mode every
        prompt is the caption as written (no CLIP runs).
        """
        if score is not None:
            warnings.warn("interrogate(score=...) is deprecated: use similarities=... (score() is the round-trip "
                          "score)", DeprecationWarning, stacklevel=2)
            if similarities is not True and bool(similarities) != bool(score):
                raise ValueError(f"similarities={similarities!r} and its old name score={score!r} disagree; "
                                 "pass similarities only")
            similarities = score
        request = Request.make(mode, min_flavors, max_flavors, negative_count, beam_width, similarities)
        mode = request.mode
        if mode == "caption" and not self.config.caption_model:
            raise InterrogatorError("mode 'caption' needs a caption model but caption_model is None; set one "
                                    "(e.g. blip-large) or use another mode")
        batch = load_images(images)
        if not batch:
            return []
        need, preset, grammar = MODES[mode], self.config.preset, self.config.grammar
        notes = list(preset.notes)
        with self._session():
            caps = self.captions(batch, captions, notes) if need["caption"] else ["" for _ in batch]
            caps = [grammar.caption(c, formatted=self.captions.formats_tags()) for c in caps]
            results, extra = self._ranked(mode, batch, caps, request) if need["clip"] else (
                [InterrogationResult(mode=mode, positive=c, negative="", caption=c) for c in caps], {})
        for i, (im, r) in enumerate(zip(batch, results)):
            r.source = describe(im, i)
            r.notes = list(notes)
            mine = {key: rs[i] for key, rs in extra.items()}
            r.prompts = compose.target_prompts(preset, self.config.sdxl_dual, r, caps[i], mine)
            if self.config.sdxl_dual and "clip_l" in mine:  # the fields old callers read
                r.positive_l, r.negative_l = mine["clip_l"].positive, mine["clip_l"].negative
            compose.with_trigger_words(r, self.config.trigger_prefix, self.config.trigger_suffix)
        return results

    def _ranked(self, mode: str, batch: list, caps: List[str], request: Request):
        """The main encoder's results and each other CLIP encoder's, by key."""
        preset = self.config.preset
        main_prompt = preset.main()
        prose = main_prompt is not None and not main_prompt.ranked  # positive is the caption; CLIP ranks negatives
        wants_negative = preset.negative and (mode == "negative" or request.negative_count > 0)
        if prose and not wants_negative:
            results = [InterrogationResult(mode=mode, positive="", negative="", caption=c) for c in caps]
        else:
            results = self.main.build(mode, self.main.image_features(batch), caps, request, positive=not prose,
                                      negative=preset.negative)
        for r, c in zip(results, caps) if prose else ():
            r.positive = c if mode != "negative" else ""
            if preset.negative_base and preset.negative:  # read by a long-prose encoder: whole, not cut to 77
                r.negative = prompts.SEPARATOR.join(p for p in (preset.negative_base, r.negative) if p)
        extra: Dict[str, List[InterrogationResult]] = {}
        own_negative = {e.key for e in preset.encoders if e.negative}
        for key, enc in list(self.encoders.items())[1:]:
            if mode == "negative" and key not in own_negative:
                continue  # extra encoders give positives only: nothing to build
            extra[key] = enc.build(mode, enc.image_features(batch), caps, request, negative=key in own_negative)
        return results, extra

    def score(self, images: Union[ImageInput, Sequence[ImageInput]],
              references: Optional[Sequence[ImageInput]] = None,
              prompts: Optional[Sequence[str]] = None) -> List[RoundTripScore]:
        """Round-trip scores: per image, CLIP cosine with its regenerated ``references[i]`` and with
        ``prompts[i]`` (a single reference or prompt applies to every image)."""
        batch = load_images(images)
        refs = load_images(references) if references is not None else []
        texts = [prompts] if isinstance(prompts, str) else list(prompts or [])
        for name, items in (("references", refs), ("prompts", texts)):
            if items and len(items) not in (1, len(batch)):
                raise ValueError(f"got {len(items)} {name} for {len(batch)} images (give 1 or {len(batch)})")
        if not batch:
            return []
        with self._session():
            feats = self.main.image_features(batch)
            img_sims = prompt_sims = None
            if refs:
                img_sims = (feats * self.main.image_features(refs).expand_as(feats)).sum(-1).tolist()
            if texts:
                sims = self.main.text_similarity(feats, texts)
                prompt_sims = (sims.diagonal() if len(texts) > 1 else sims[:, 0]).tolist()
            return [RoundTripScore(img_sims[i] if img_sims else None, prompt_sims[i] if prompt_sims else None,
                                   describe(im, i)) for i, im in enumerate(batch)]

    def caption(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[str]:
        """Captions only (no CLIP work)."""
        return [r.caption for r in self.interrogate(images, mode="caption")]

    def analyze(self, images: Union[ImageInput, Sequence[ImageInput]], top_n: int = 5,
                tables: Optional[Sequence[str]] = None, with_caption: bool = False) -> List[AnalyzeResult]:
        """Per image, the ``top_n`` labels of each table with their similarity (with an image tagger as the
        caption model and ``with_caption``, also its tags with their scores: ``AnalyzeResult.tags``)."""
        batch = load_images(images)
        if not batch:
            return []
        with self._session():
            caps = self.captions(batch) if with_caption else ["" for _ in batch]
            tagger = self.captions.model() if with_caption and self.captions.formats_tags() else None
            tags = tagger.tag(batch, self.config.tagger_options) if tagger else [{} for _ in batch]
            feats = self.main.image_features(batch)
            all_tables = self.main.tables().tables
            names = list(tables) if tables else [n for n in all_tables if n != "negative"]
            for n in names:
                if n not in all_tables:
                    raise UnknownNameError("table", n, all_tables)
            ranked = self.main.top(feats, names, top_n)
            return [AnalyzeResult(caption=caps[i], tables={n: ranked[n][i] for n in names},
                                  source=describe(im, i), tags=tags[i]) for i, im in enumerate(batch)]

    def load(self, caption: bool = True, clip: bool = True) -> None:
        """Load models (and label tables) now instead of on first use, every encoder's."""
        with self._session():
            if clip:
                for enc in self.encoders.values():
                    enc.tables()
            if caption and self.config.caption_model:
                self.pool.use(self.captions.model().handle)

    def release_device_caches(self) -> None:
        """Drop the device copies of label embeddings and the text encoders' cached prefix (no host calls).

        For hosts that evict our models themselves (ComfyUI) and must not be called back while doing so.
        """
        self.pool.release_device_caches()

    def reconfigured(self, config: InterrogatorConfig, host: Optional[HostAdapter] = None) -> "Interrogator":
        """The interrogator for ``config`` (and ``host``; default: this one's), keeping what did not change.

        The one way a host applies new settings: returns ``self`` when only the offload policy differs (it is
        switched in place); otherwise a new interrogator that took over every loaded model (and label tables)
        that would load identically, after which this one is unloaded and must not be used again. When the
        host changes, the models leave the old host first (offloaded, its per-model data dropped).
        """
        host = host or self.host
        with self._lock:
            if host is self.host and replace(config, offload=self.config.offload) == self.config:
                if config.offload is not self.config.offload:
                    self.set_offload(config.offload)
                return self
            if host is not self.host:
                self.offload()
                for handle in self.models:
                    handle.host_data.clear()
            new = Interrogator(config, host)
            taken = new.adopt_models_from(self)
            log.info("new interrogator settings; kept: %s", ", ".join(taken) or "nothing")
            self.unload()  # frees only what was not taken over
            return new

    def adopt_models_from(self, other: "Interrogator") -> List[str]:
        """Take over ``other``'s loaded models that this configuration would load identically (the same model
        name and dtype; label tables also the same lists, blocklist and cache folder; the caption model also the
        same ``trust_remote_code``), whichever encoder of ``other`` used them. Returns what was taken; ``other``
        no longer holds it. Lets a host change one setting without reloading everything."""
        wanted = _wanted(self)
        moved = set(self.pool.take(other.pool, wanted))
        return [name for key, name in wanted.items() if key in moved]


    def set_offload(self, policy: Union[str, OffloadPolicy]) -> None:
        """Change the offload policy of a live interrogator."""
        with self._lock:
            self.config.offload = self.pool.policy = OffloadPolicy.parse(policy)

    def offload(self) -> None:
        """Move every model to the offload device and drop device copies of label embeddings."""
        self.pool.offload()

    def unload(self) -> None:
        """Forget models and label tables entirely (they reload on next use)."""
        self.pool.unload()

    @property
    def models(self) -> List[ModelHandle]:
        """Handles of the currently loaded models (for hosts that track memory)."""
        return self.pool.handles

    @contextmanager
    def _session(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            finally:
                self.pool.after_call()
