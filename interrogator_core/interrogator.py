"""The engine: caption + CLIP ranking + prompt rules, on the host's devices and memory policy."""
from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image

from . import prompts
from .cache import LabelCache, default_cache_dir
from .caption import AUTO_STYLE, NO_CAPTION, Captioner, caption_dtype, list_caption_styles, load_captioner
from .clip import ClipModel, load_clip
from .errors import InterrogatorError, UnknownNameError
from .host import HostAdapter, ModelHandle, OffloadPolicy, StandaloneHost, empty_device_cache, retry_smaller_on_oom
from .images import ImageInput, describe, load_images
from .labels import TABLE_NAMES, builtin_labels, read_blocklist, user_tables
from .result import AnalyzeResult, InterrogationResult, RoundTripScore
from .tables import LabelIndex
from .targets import CUSTOM, TargetPreset, get_target, target_clip_model
from .request import (DEFAULT_MIN_FLAVORS, MODES, Request, check_request, flag, list_modes,  # noqa: F401
                      whole_number)

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: max new tokens of a caption per style when ``caption_max_length`` is None (a paragraph needs room)
CAPTION_TOKENS: Dict[str, int] = {"short": 32, "detailed": 256, "tags": 128}
#: ... and with a free instruction (``caption_prompt``)
INSTRUCTION_TOKENS = 256


def eta_text(done: int, total: int, elapsed: float) -> str:
    """"ETA 3m05s" for work ``done`` of ``total`` after ``elapsed`` seconds at the rate so far ("" before any
    work is done or once all is)."""
    if done <= 0 or done >= total or elapsed <= 0:
        return ""
    left = int(round(elapsed * (total - done) / done))
    h, rest = divmod(left, 3600)
    m, sec = divmod(rest, 60)
    return f"ETA {h}h{m:02d}m" if h else f"ETA {m}m{sec:02d}s" if m else f"ETA {sec}s"


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
            self.caption_model = self.caption_model.strip()
            if self.caption_model.lower() in ("", NO_CAPTION):
                self.caption_model = None  # no caption model
        if isinstance(self.caption_style, str) and self.caption_style.strip().lower() in ("", AUTO_STYLE):
            self.caption_style = None  # the target's default
        if self.caption_style is not None and self.caption_style not in list_caption_styles():
            raise UnknownNameError("caption style", str(self.caption_style), list_caption_styles())
        if self.caption_prompt is not None and not isinstance(self.caption_prompt, str):
            raise ValueError(f"caption_prompt must be text, got {self.caption_prompt!r}")
        self.caption_prompt = (self.caption_prompt or "").strip() or None
        for name in ("caption_batch_size", "image_batch_size", "text_batch_size", "flavor_intermediate_count"):
            setattr(self, name, whole_number(name, getattr(self, name), 1))
        if self.caption_max_length is not None:
            self.caption_max_length = whole_number("caption_max_length", self.caption_max_length, 1)

    @property
    def preset(self) -> TargetPreset:
        """The target's profile (``targets.get_target(target)``)."""
        return get_target(self.target)

    @property
    def grammar(self) -> prompts.PromptGrammar:
        """How the prompts are joined: tags when the target joins tags or the caption style is tags."""
        return prompts.PromptGrammar(tags=self.preset.join == "tags" or self.effective_caption_style == "tags")

    @property
    def effective_caption_style(self) -> str:
        """``caption_style``, or the target's when None."""
        return self.caption_style or self.preset.caption_style


class Interrogator:
    """Image → positive and negative prompt (and the other prompts the target reads).

    Models load lazily on first use, through the host adapter (device, dtype, make-room, offload).
    Calls are serialized: one interrogator can be shared between threads.

    A target with more than one CLIP encoder (sd35, sdxl with ``sdxl_dual``) runs one nested interrogator per
    extra encoder: same host, cache folder and label lists, the captions of this one. Together they form one
    tree for memory: ``models``/``offload``/``unload`` cover every encoder, and the low-VRAM policy keeps one
    model of the whole tree on the device.
    """

    def __init__(self, config: Optional[InterrogatorConfig] = None, host: Optional[HostAdapter] = None) -> None:
        self.config = config or InterrogatorConfig()
        self.host: HostAdapter = host or StandaloneHost()
        self._lock = threading.RLock()
        self._clip: Optional[ClipModel] = None
        self._captioner: Optional[Captioner] = None
        self._tables: Optional[Dict[str, LabelIndex]] = None
        self._pool: Optional[LabelIndex] = None
        self._negative_pool: Optional[LabelIndex] = None
        self._encoders: Dict[str, "Interrogator"] = {}  # extra CLIP encoders by prompt key (clip_l, ...)
        self._root: "Interrogator" = self  # the interrogator whose tree this one belongs to
        self._grammar = self.config.grammar  # an extra encoder is told its tree's grammar (see _encoder)
        self._cache = LabelCache(self.config.cache_dir)

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

        Clip prompts fit their encoder's 77-token window (the caption's head starts them); the ``t5`` prompt is
        the full caption. In caption mode every prompt is the caption as written (no CLIP runs).
        """
        if score is not None:
            warnings.warn("interrogate(score=...) is deprecated: use similarities=... (score() is the round-trip "
                          "score)", DeprecationWarning, stacklevel=2)
            if similarities is not True and bool(similarities) != bool(score):
                raise ValueError(f"similarities={similarities!r} and its old name score={score!r} disagree; "
                                 "pass similarities only")
            similarities = score
        request = Request.make(mode, min_flavors, max_flavors, negative_count, beam_width, similarities)
        mode, min_flavors, max_flavors, negative_count, beam_width = request.as_tuple()
        if mode == "caption" and not self.config.caption_model:
            raise InterrogatorError("mode 'caption' needs a caption model but caption_model is None; set one "
                                    "(e.g. blip-large) or use another mode")
        batch = self._prepare(images)
        if not batch:
            return []
        need, preset = MODES[mode], self.config.preset
        notes = list(preset.notes)
        with self._session():
            caps = self._captions(batch, captions, notes) if need["caption"] else ["" for _ in batch]
            caps = [self._grammar.caption(c) for c in caps]
            extra: Dict[str, List[InterrogationResult]] = {}
            if not need["clip"]:
                results = [InterrogationResult(mode=mode, positive=c, negative="", caption=c)
                           for c in caps]
            else:
                feats = self._image_features(batch)
                results = self._build(mode, feats, caps, min_flavors, max_flavors, negative_count, beam_width,
                                      preset.negative, request.similarities)
                own_negative = {e.key for e in preset.encoders if e.negative}
                for key, model in preset.extras(self.config.sdxl_dual):
                    if mode == "negative" and key not in own_negative:
                        continue  # extra encoders give positives only: nothing to build
                    extra[key] = self._encoder(key, model).interrogate(
                        batch, mode, min_flavors=min_flavors, max_flavors=max_flavors,
                        negative_count=negative_count if key in own_negative else 0, captions=caps,
                        beam_width=beam_width, similarities=request.similarities)
        for i, (im, r) in enumerate(zip(batch, results)):
            r.source = describe(im, i)
            r.notes = list(notes)
            mine = {key: rs[i] for key, rs in extra.items()}
            r.prompts = self._target_prompts(preset, r, caps[i], mine)
            if self.config.sdxl_dual and "clip_l" in mine:  # the fields old callers read
                r.positive_l, r.negative_l = mine["clip_l"].positive, mine["clip_l"].negative
        return results

    def score(self, images: Union[ImageInput, Sequence[ImageInput]],
              references: Optional[Sequence[ImageInput]] = None,
              prompts: Optional[Sequence[str]] = None) -> List[RoundTripScore]:
        """Round-trip scores: per image, CLIP cosine with its regenerated ``references[i]`` and with
        ``prompts[i]`` (a single reference or prompt applies to every image)."""
        batch = self._prepare(images)
        refs = self._prepare(references) if references is not None else []
        texts = [prompts] if isinstance(prompts, str) else list(prompts or [])
        for name, items in (("references", refs), ("prompts", texts)):
            if items and len(items) not in (1, len(batch)):
                raise ValueError(f"got {len(items)} {name} for {len(batch)} images (give 1 or {len(batch)})")
        if not batch:
            return []
        with self._session():
            feats = self._image_features(batch)
            img_sims = prompt_sims = None
            if refs:
                img_sims = (feats * self._image_features(refs).expand_as(feats)).sum(-1).tolist()
            if texts:
                emb = self._get_clip().text.encode_texts(texts).to(feats.device)
                prompt_sims = (feats * emb.expand_as(feats)).sum(-1).tolist()
            return [RoundTripScore(img_sims[i] if img_sims else None, prompt_sims[i] if prompt_sims else None,
                                   describe(im, i)) for i, im in enumerate(batch)]

    def caption(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[str]:
        """Captions only (no CLIP work)."""
        return [r.caption for r in self.interrogate(images, mode="caption")]

    def analyze(self, images: Union[ImageInput, Sequence[ImageInput]], top_n: int = 5,
                tables: Optional[Sequence[str]] = None, with_caption: bool = False) -> List[AnalyzeResult]:
        """Per image, the ``top_n`` labels of each table with their similarity."""
        batch = self._prepare(images)
        if not batch:
            return []
        with self._session():
            caps = self._captions(batch, None) if with_caption else ["" for _ in batch]
            feats = self._image_features(batch)
            all_tables = self._label_tables()
            names = list(tables) if tables else [n for n in all_tables if n != "negative"]
            for n in names:
                if n not in all_tables:
                    raise UnknownNameError("table", n, all_tables)
            ranked = {n: all_tables[n].top(feats, top_n) for n in names}
            return [AnalyzeResult(caption=caps[i], tables={n: ranked[n][i] for n in names},
                                  source=describe(im, i)) for i, im in enumerate(batch)]

    def load(self, caption: bool = True, clip: bool = True) -> None:
        """Load models (and label tables) now instead of on first use; the target's extra encoders too."""
        with self._session():
            if clip:
                self._label_tables()
                for key, model in self.config.preset.extras(self.config.sdxl_dual):
                    enc = self._encoder(key, model)
                    with enc._lock:
                        enc._label_tables()
            if caption and self.config.caption_model:
                self._use(self._get_captioner().handle)

    def release_device_caches(self) -> None:
        """Drop the device copies of label embeddings and the text encoder's cached prefix (no host calls),
        the extra encoders' too.

        For hosts that evict our models themselves (ComfyUI) and must not be called back while doing so.
        """
        for index in self._indexes():
            index.release()
        if self._clip is not None:
            self._clip.text.release()
        for enc in self._encoders.values():
            enc.release_device_caches()

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
        """Take over ``other``'s loaded models that this configuration would load identically (same model
        name and dtype; label tables also need the same lists and blocklist; the caption model also the same
        ``trust_remote_code``). CLIP models move between encoders of the two trees by model name (the ViT-L of
        an SDXL dual interrogator can become a flux one's main encoder). Returns what was taken; ``other`` no
        longer holds it. Lets a host change one setting without reloading everything."""
        taken: List[str] = []
        mine, theirs = self.config, other.config
        with other._lock, self._lock:
            dtype = self._dtype()
            cap = other._captioner
            if cap is not None and mine.caption_model == theirs.caption_model \
                    and mine.trust_remote_code == theirs.trust_remote_code \
                    and cap.handle.dtype == caption_dtype(cap.family, dtype):
                self._captioner, other._captioner = cap, None
                taken.append("caption model")
            donors = [other, *other._encoders.values()]
            for key, receiver in [("", self)] + [(k, self._encoder(k, m))
                                                 for k, m in mine.preset.extras(mine.sdxl_dual)]:
                donor = next((d for d in donors if d._clip is not None
                              and d.config.clip_model == receiver.config.clip_model), None)
                if donor is not None and receiver._clip is None:
                    taken += [f"{t} ({key})" if key else t for t in receiver._adopt_clip(donor, dtype)]
        return taken

    def set_offload(self, policy: Union[str, OffloadPolicy]) -> None:
        """Change the offload policy of a live interrogator (its extra encoders' too)."""
        with self._lock:
            self.config.offload = OffloadPolicy.parse(policy)
            for enc in self._encoders.values():
                enc.set_offload(policy)

    def offload(self) -> None:
        """Move every model of the tree to the offload device and drop device copies of label embeddings."""
        with self._lock:
            self.release_device_caches()
            handles = self.models
            if handles:
                self.host.offload(handles)

    def unload(self) -> None:
        """Forget models and label tables entirely, the extra encoders' too (they reload on next use)."""
        with self._lock:
            self.offload()
            self._clip = None
            self._captioner = None
            self._tables = None
            self._pool = None
            self._negative_pool = None
            for enc in self._encoders.values():
                enc.unload()
            self._encoders = {}
            empty_device_cache()

    @property
    def models(self) -> List[ModelHandle]:
        """Handles of the currently loaded models, every extra encoder's included (for hosts that track
        memory)."""
        return self._handles() + [h for enc in self._encoders.values() for h in enc.models]

    # -- internals ------------------------------------------------------------------------------------------
    def _encoder(self, key: str, clip_model: str) -> "Interrogator":
        """The nested interrogator of the extra encoder ``key`` (same host, cache folder, lists and policy; no
        caption model: captions come from this one)."""
        enc = self._encoders.get(key)
        if enc is not None and enc.config.clip_model != clip_model:
            enc.unload()
            enc = None
        if enc is None:
            cfg = replace(self.config, clip_model=clip_model, target=CUSTOM, caption_model=None, sdxl_dual=False,
                          caption_style=None, caption_prompt=None)
            enc = Interrogator(cfg, self.host)
            enc._root = self._root
            enc._grammar = self._grammar
            self._encoders[key] = enc
        return enc

    def _adopt_clip(self, donor: "Interrogator", dtype: torch.dtype) -> List[str]:
        """Take ``donor``'s CLIP model (and its label tables when built from the same lists)."""
        clip = donor._clip
        if clip is None or clip.handle.dtype != dtype:
            return []
        taken = ["CLIP model"]
        self._clip, donor._clip = clip, None
        same_lists = all(getattr(self.config, f) == getattr(donor.config, f)
                         for f in ("data_dir", "user_tables_dir", "blocklist", "cache_dir"))
        if same_lists and donor._tables is not None:
            self._tables, self._pool, self._negative_pool = donor._tables, donor._pool, donor._negative_pool
            taken.append("label tables")
        donor._tables = donor._pool = donor._negative_pool = None
        return taken

    def _target_prompts(self, preset: TargetPreset, result: InterrogationResult, caption: str,
                        extra: Dict[str, InterrogationResult]) -> Dict[str, str]:
        """``result.prompts``: the main encoder's positive, each extra encoder's, and the full caption as t5.

        Where an encoder did not run (caption mode, negative mode) its prompt is ``result.positive``: the
        caption, or empty."""
        out = {}
        prose = {e.key for e in preset.encoders if not e.ranked}
        for key in preset.prompt_keys(self.config.sdxl_dual):
            if key in prose:
                out[key] = caption
            else:
                out[key] = extra[key].positive if key in extra else result.positive
        return out

    def _indexes(self) -> List[LabelIndex]:
        return list((self._tables or {}).values()) + [p for p in (self._pool, self._negative_pool) if p is not None]

    def _handles(self) -> List[ModelHandle]:
        return [m.handle for m in (self._captioner, self._clip) if m is not None]

    @contextmanager
    def _session(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            finally:
                if self._root.config.offload is not OffloadPolicy.KEEP:
                    self.offload()

    def _prepare(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[Image.Image]:
        return load_images(images)

    def _use(self, handle: ModelHandle) -> None:
        """Put ``handle`` on the device; under LOW_VRAM first move every other model of the tree off it."""
        root = self._root
        if root.config.offload is OffloadPolicy.LOW_VRAM:
            others = [h for h in root.models if h is not handle]
            if others:
                self.host.offload(others)
        self.host.load([handle])

    def _dtype(self) -> torch.dtype:
        return self.host.dtype_for(self.host.load_device())

    def _get_clip(self) -> ClipModel:
        if self._clip is None:
            self._clip = load_clip(self.config.clip_model, self._dtype(), self.config.model_dirs,
                                   self.config.download_dir)
        self._use(self._clip.handle)
        return self._clip

    def _get_captioner(self) -> Captioner:
        if not self.config.caption_model:
            raise InterrogatorError("this mode needs a caption model but caption_model is None; "
                                    "set one (e.g. blip-large) or use mode 'negative'")
        if self._captioner is None:
            self._captioner = load_captioner(self.config.caption_model, self._dtype(), self.config.model_dirs,
                                             self.config.download_dir,
                                             trust_remote_code=self.config.trust_remote_code)
        return self._captioner

    def _caption_tokens(self, style: str) -> int:
        if self.config.caption_max_length is not None:
            return self.config.caption_max_length
        return INSTRUCTION_TOKENS if self.config.caption_prompt else CAPTION_TOKENS.get(style, INSTRUCTION_TOKENS)

    def _captions(self, batch: List[Image.Image], given: Optional[Sequence[Optional[str]]],
                  notes: Optional[List[str]] = None) -> List[str]:
        """Captions of ``batch`` in the configured style (``given`` ones kept); remarks go to ``notes``."""
        given = list(given) if given is not None else [None] * len(batch)
        if len(given) != len(batch):
            raise ValueError(f"got {len(given)} captions for {len(batch)} images")
        todo = [i for i, c in enumerate(given) if c is None]
        out = [c or "" for c in given]
        if todo and not self.config.caption_model:
            return out
        if todo:
            cap = self._get_captioner()
            self._use(cap.handle)
            style = self.config.effective_caption_style
            if self.config.caption_style is None and style not in cap.styles:
                # the target's preferred style, not the user's: fall back to short and say so (a style the user
                # set is refused by the caption model with the list of what it can write)
                note = (f"the caption model {self.config.caption_model} cannot write {style} captions, which "
                        f"target {self.config.target} prefers: used a short caption (pick a caption model that "
                        f"can, or set caption_style)")
                log.warning("%s", note)
                if notes is not None:
                    notes.append(note)
                style = "short"

            def run(bs: int) -> None:
                for start in range(0, len(todo), bs):
                    self.host.check_interrupt()
                    idx = todo[start:start + bs]
                    texts = cap.generate([batch[i] for i in idx], self._caption_tokens(style), style=style,
                                         instruction=self.config.caption_prompt)
                    for i, text in zip(idx, texts):
                        out[i] = text
                    self.host.progress(min(start + bs, len(todo)), len(todo), "captions")

            retry_smaller_on_oom(run, self.config.caption_batch_size, "captioning")
        return out

    def _image_features(self, batch: List[Image.Image]) -> torch.Tensor:
        clip = self._get_clip()

        def run(bs: int) -> torch.Tensor:
            parts = []
            for start in range(0, len(batch), bs):
                self.host.check_interrupt()
                pixels = torch.stack([clip.preprocess(im) for im in batch[start:start + bs]])
                parts.append(clip.encode_images(pixels))
            return torch.cat(parts)

        return retry_smaller_on_oom(run, self.config.image_batch_size, "encoding images")

    def _label_tables(self) -> Dict[str, LabelIndex]:
        clip = self._get_clip()
        if self._tables is None:
            raw = builtin_labels(self.config.data_dir)
            raw.update(user_tables(self.config.user_tables_dir))
            blocked = read_blocklist(self.config.blocklist)
            tables = {}
            for name, labels in raw.items():
                def compute(labels: Sequence[str], name: str = name) -> torch.Tensor:
                    started = time.monotonic()

                    def report(done: int, total: int) -> None:
                        self.host.check_interrupt()
                        eta = eta_text(done, total, time.monotonic() - started)
                        self.host.progress(done, total, f"encoding labels: {name}" + (f" ({eta})" if eta else ""))
                    return retry_smaller_on_oom(lambda bs: clip.text.encode_texts(labels, bs, report),
                                                self.config.text_batch_size, f"encoding the {name} labels")

                key = name if name in TABLE_NAMES else f"user_{name}"
                embeds = self._cache.get_or_compute(clip.cache_name, key, labels, compute, clip.embed_dim)
                tables[name] = LabelIndex.from_table(name, labels, embeds, blocked)
            # one block of memory, ordered so that both pools are contiguous slices of it:
            # [other positive tables | flavors | negative]; pool = all but negative, negative pool = the tail
            order = [n for n in tables if n not in ("flavors", "negative")] + ["flavors", "negative"]
            every = LabelIndex.concat("all", [tables[n] for n in order])
            start, bounds = 0, {}
            for n in order:
                bounds[n] = (start, start + len(tables[n]))
                start += len(tables[n])
            self._tables = {n: every.slice(n, *bounds[n]) for n in tables}
            self._pool = every.slice("pool", 0, bounds["negative"][0])
            self._negative_pool = every.slice("negative pool", bounds["flavors"][0], bounds["negative"][1])
        return self._tables

    def _build(self, mode: str, feats: torch.Tensor, captions: List[str], min_flavors: int, max_flavors: int,
               negative_count: int, beam_width: int = 1, negative: bool = True,
               similarities: bool = True) -> List[InterrogationResult]:
        """Both prompts of each image from its normalized features [B, D] (``negative`` False: no negative
        prompt; ``similarities`` False: no similarity that only the result reports). The caption's head that fits the
        window starts the positive; the caption stays whole.

        Work that is the same for every image runs once for the batch: one matrix product ranks the tables for
        all images, and one text batch scores every prompt that needs a similarity. Chains run per image."""
        self._label_tables()
        assert self._clip is not None
        text, n = self._clip.text, len(captions)
        heads = [prompts.truncate_to_fit(text, c) if c else c for c in captions]
        known: List[Dict[str, float]] = [{} for _ in range(n)]  # similarities the chains already computed
        options: List[Dict[str, str]] = [{} for _ in range(n)]  # positive candidates per image
        if mode != "negative":
            options = self._positive_options(mode, feats, heads, min_flavors, max_flavors, beam_width, known)
        count = 0 if not negative else max_flavors if mode == "negative" else negative_count
        negs = [""] * n
        if count > 0:
            negs = self._negatives(mode, feats, min(min_flavors, count), count, beam_width, known)
        # best mode picks its positive by similarity; the rest is only reported, so ``similarities`` decides
        picked = [p for o in options for p in o.values()] if mode == "best" else []
        reported = [o.get(mode, "") for o in options] + negs if similarities else []
        sim = self._scorer(feats, picked + reported, known)
        results = []
        for i in range(n):
            cands = {k: v for k, v in options[i].items() if v}
            candidates, positive, similarity = {}, options[i].get(mode, ""), None
            if mode == "best":
                candidates = {k: sim(i, v) for k, v in cands.items()}
                if candidates:
                    key = max(candidates, key=candidates.__getitem__)
                    positive, similarity = cands[key], candidates[key]
            elif positive and (similarities or positive in known[i]):
                similarity = sim(i, positive)
            results.append(InterrogationResult(
                mode=mode, positive=positive, negative=negs[i], caption=captions[i], similarity=similarity,
                negative_similarity=sim(i, negs[i]) if negs[i] and (similarities or negs[i] in known[i]) else None,
                candidates=candidates))
        return results

    def _scorer(self, feats: torch.Tensor, texts: Sequence[str], known: List[Dict[str, float]]):
        """``score(i, text)``: cosine similarity of image ``i`` with ``text`` (one of ``texts``): ``known[i]``'s
        value, else computed (the texts no image knows are encoded together, once)."""
        assert self._clip is not None
        unique = [t for t in dict.fromkeys(t for t in texts if t) if not all(t in k for k in known)]
        sims: List[List[float]] = [[] for _ in known]
        if unique:
            emb = retry_smaller_on_oom(lambda bs: self._clip.text.encode_texts(unique, bs),
                                       self.config.text_batch_size, "scoring prompts").to(feats.device)
            sims = (feats.float() @ emb.T).tolist()  # [B, texts]
        row = {t: j for j, t in enumerate(unique)}
        return lambda i, t: known[i][t] if t in known[i] else sims[i][row[t]]

    def _on_step(self, desc: str):
        def on_step(i: int, total: int) -> None:
            self.host.check_interrupt()
            self.host.progress(i, total, desc)
        return on_step

    def _chain(self, desc: str, known: Dict[str, float], **kwargs) -> str:
        """One image's chain (``prompts.chain``) with progress/Cancel, its text batch halved on a device OOM;
        its prompt's similarity goes to ``known``."""
        assert self._clip is not None
        res = retry_smaller_on_oom(
            lambda bs: prompts.chain(self._clip.text, batch_size=bs, on_step=self._on_step(desc), **kwargs),
            self.config.text_batch_size, f"building the {desc}")
        if res.prompt:
            known[res.prompt] = res.similarity
        return res.prompt

    def _positive_options(self, mode: str, feats: torch.Tensor, heads: List[str], min_flavors: int,
                          max_flavors: int, beam_width: int, known: List[Dict[str, float]]) -> List[Dict[str, str]]:
        """Per image, the candidate positives of ``mode`` by name (caption, fast, classic, chain), by
        clip-interrogator's rules: best keeps the most similar, the other modes their own."""
        assert self._clip is not None and self._tables is not None and self._pool is not None
        text, tables = self._clip.text, self._tables
        out: List[Dict[str, str]] = [{"caption": h} for h in heads]
        if mode in ("fast", "best"):
            for o, h, top in zip(out, heads, self._pool.top(feats, max_flavors)):
                o["fast"] = prompts.join_fitting(text, h, [l for l, _ in top])
        if mode in ("classic", "best"):
            top1 = {n: [prompts.argmax_label(t) for t in tables[n].top(feats, 1)]
                    for n in ("mediums", "artists", "trendings", "movements")}
            flavors = tables["flavors"].top(feats, max_flavors if mode == "best" else min(max_flavors, 3))
            for i, (o, h) in enumerate(zip(out, heads)):
                o["classic"] = prompts.truncate_to_fit(text, self._grammar.classic(
                    h, top1["mediums"][i], top1["artists"][i], top1["trendings"][i], top1["movements"][i],
                    [l for l, _ in flavors[i]]))
        if mode == "best":
            pools = self._pool.top(feats, self.config.flavor_intermediate_count)
            for i, (o, h) in enumerate(zip(out, heads)):
                self.host.check_interrupt()
                o["chain"] = self._chain("flavor chain", known[i], features=feats[i], phrases=[l for l, _ in pools[i]],
                                         start=h or None, min_count=min_flavors, max_count=max_flavors,
                                         beam_width=beam_width)
        return out

    def _negatives(self, mode: str, feats: torch.Tensor, min_count: int, count: int, beam_width: int,
                   known: List[Dict[str, float]]) -> List[str]:
        """Per image, the negative prompt: a reversed chain (best/negative) or the least similar terms
        (fast/classic)."""
        assert self._clip is not None and self._tables is not None and self._negative_pool is not None
        text, tables = self._clip.text, self._tables
        if mode not in ("best", "negative"):
            return [prompts.join_fitting(text, "", [l for l, _ in worst])
                    for worst in self._negative_pool.top(feats, count, reverse=True)]
        out = []
        for i, flavors in enumerate(tables["flavors"].top(feats, self.config.flavor_intermediate_count, reverse=True)):
            self.host.check_interrupt()
            out.append(self._chain("negative chain", known[i], features=feats[i],
                                   phrases=[l for l, _ in flavors] + tables["negative"].labels, min_count=min_count,
                                   max_count=count, reverse=True, beam_width=beam_width))
        return out
