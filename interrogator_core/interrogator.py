"""The engine: caption + CLIP ranking + prompt rules, on the host's devices and memory policy."""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, List, Optional, Sequence, Union

import torch
from PIL import Image

from . import prompts
from .cache import LabelCache, default_cache_dir
from .caption import FAMILIES, Captioner, load_captioner
from .clip import ClipModel, load_clip
from .errors import InterrogatorError, UnknownNameError
from .host import HostAdapter, ModelHandle, OffloadPolicy, StandaloneHost, empty_device_cache, retry_smaller_on_oom
from .images import ImageInput, describe, load_rgb
from .labels import TABLE_NAMES, builtin_labels, read_blocklist, user_tables
from .result import AnalyzeResult, InterrogationResult, RoundTripScore
from .tables import LabelIndex
from .targets import CUSTOM, TARGETS, target_clip_model

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Modes: what each needs. "caption" needs no CLIP; "negative" needs no caption model.
MODES: Dict[str, Dict[str, bool]] = {
    "best": {"caption": True, "clip": True},
    "classic": {"caption": True, "clip": True},
    "fast": {"caption": True, "clip": True},
    "negative": {"caption": False, "clip": True},
    "caption": {"caption": True, "clip": False},
}


def list_modes() -> List[str]:
    return list(MODES)


@dataclass
class InterrogatorConfig:
    """Settings of an :class:`Interrogator`. Model names: see ``list_clip_models()``/``list_caption_models()``.

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
        caption_max_length: max new tokens of a caption.
        caption_batch_size / image_batch_size / text_batch_size: batch sizes (lower them for low VRAM).
        flavor_intermediate_count: how many top-ranked labels the chains choose from.
        target: a diffusion family from ``list_targets()`` (sd15, sd2, sdxl) that picks ``clip_model``, or
            "custom" to use ``clip_model`` as given.
        sdxl_dual: with target "sdxl", also build prompts with SDXL's second encoder (ViT-L/14) and return
            them as ``positive_l``/``negative_l`` (the bigG prompts stay ``positive``/``negative``).
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
    caption_max_length: int = 32
    caption_batch_size: int = 8
    image_batch_size: int = 16
    text_batch_size: int = 512
    flavor_intermediate_count: int = 2048
    target: str = CUSTOM
    sdxl_dual: bool = False

    def __post_init__(self) -> None:
        self.offload = OffloadPolicy.parse(self.offload)
        self.clip_model = target_clip_model(self.target, self.clip_model)
        if self.sdxl_dual and self.target != "sdxl":
            raise ValueError("sdxl_dual needs target='sdxl'")
        for name in ("caption_max_length", "caption_batch_size", "image_batch_size", "text_batch_size",
                     "flavor_intermediate_count"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")


class Interrogator:
    """Image → positive and negative prompt.

    Models load lazily on first use, through the host adapter (device, dtype, make-room, offload).
    Calls are serialized: one interrogator can be shared between threads.
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
        self._second: Optional["Interrogator"] = None
        self._cache = LabelCache(self.config.cache_dir)

    # -- public API -----------------------------------------------------------------------------------------
    def interrogate(
        self,
        images: Union[ImageInput, Sequence[ImageInput]],
        mode: str = "best",
        *,
        min_flavors: int = 8,
        max_flavors: int = 32,
        negative_count: int = 16,
        captions: Optional[Sequence[Optional[str]]] = None,
        beam_width: int = 1,
    ) -> List[InterrogationResult]:
        """One :class:`InterrogationResult` per image (positive, negative, caption, similarities).

        Args:
            images: PIL images or paths (one, or a list).
            mode: best, classic, fast, negative or caption (see ``list_modes()``).
            min_flavors / max_flavors: bounds of the positive chain (best; min is capped at max), number of
                flavors (fast/classic).
            negative_count: most terms in the negative prompt (0: no negative prompt); negative mode uses
                ``max_flavors`` instead, as clip-interrogator does.
            captions: optional captions to use instead of generating them (None entries are generated).
            beam_width: prompts kept per chain step (1: greedy, clip-interrogator's chain); k > 1 is never
                worse than greedy and costs about k times the chain.
        """
        if mode not in MODES:
            raise UnknownNameError("mode", mode, MODES)
        if beam_width < 1:
            raise ValueError(f"beam_width must be at least 1, got {beam_width}")
        if min(min_flavors, max_flavors, negative_count) < 0:
            raise ValueError(f"min_flavors, max_flavors and negative_count must be >= 0, got "
                             f"{min_flavors}, {max_flavors}, {negative_count}")
        min_flavors = min(min_flavors, max_flavors)
        batch = self._prepare(images)
        if not batch:
            return []
        need = MODES[mode]
        with self._session():
            caps = self._captions(batch, captions) if need["caption"] else ["" for _ in batch]
            if not need["clip"]:
                return [InterrogationResult(mode=mode, positive=c, negative="", caption=c, source=describe(im, i))
                        for i, (im, c) in enumerate(zip(batch, caps))]
            feats = self._image_features(batch)
            results = []
            for i, (im, cap) in enumerate(zip(batch, caps)):
                self.host.check_interrupt()
                results.append(retry_smaller_on_oom(
                    lambda bs: self._one(mode, feats[i], cap, min_flavors, max_flavors, negative_count, bs,
                                         beam_width),
                    self.config.text_batch_size, "building prompts"))
                results[-1].source = describe(im, i)
            if self.config.sdxl_dual:
                second = self._second_encoder().interrogate(
                    batch, mode, min_flavors=min_flavors, max_flavors=max_flavors, negative_count=negative_count,
                    captions=caps, beam_width=beam_width)
                for r, r2 in zip(results, second):
                    r.positive_l, r.negative_l = r2.positive, r2.negative
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
        """Load models (and label tables) now instead of on first use."""
        with self._session():
            if clip:
                self._label_tables()
            if caption and self.config.caption_model:
                self._use(self._get_captioner().handle)

    def release_device_caches(self) -> None:
        """Drop the device copies of label embeddings and the text encoder's cached prefix (no host calls).

        For hosts that evict our models themselves (ComfyUI) and must not be called back while doing so.
        """
        for index in self._indexes():
            index.release()
        if self._clip is not None:
            self._clip.text.release()
        if self._second is not None:
            self._second.release_device_caches()

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
        name and dtype; label tables also need the same lists and blocklist). Returns what was taken;
        ``other`` no longer holds it. Lets a host change one setting without reloading everything."""
        taken: List[str] = []
        mine, theirs = self.config, other.config
        with other._lock, self._lock:
            dtype = self._dtype()
            cap = other._captioner
            if cap is not None and mine.caption_model == theirs.caption_model \
                    and cap.handle.dtype == (dtype if FAMILIES[cap.family].half_ok else torch.float32):
                self._captioner, other._captioner = cap, None
                taken.append("caption model")
            clip = other._clip
            if clip is not None and mine.clip_model == theirs.clip_model and clip.handle.dtype == dtype:
                self._clip, other._clip = clip, None
                taken.append("CLIP model")
                same_lists = all(getattr(mine, f) == getattr(theirs, f)
                                 for f in ("data_dir", "user_tables_dir", "blocklist", "cache_dir"))
                if same_lists and other._tables is not None:
                    self._tables, self._pool, self._negative_pool = other._tables, other._pool, other._negative_pool
                    taken.append("label tables")
                other._tables = other._pool = other._negative_pool = None
            if mine.sdxl_dual and other._second is not None:
                taken += [f"{t} (SDXL ViT-L)" for t in self._second_encoder().adopt_models_from(other._second)]
        return taken

    def set_offload(self, policy: Union[str, OffloadPolicy]) -> None:
        """Change the offload policy of a live interrogator (its SDXL second encoder's too)."""
        with self._lock:
            self.config.offload = OffloadPolicy.parse(policy)
            if self._second is not None:
                self._second.set_offload(policy)

    def offload(self) -> None:
        """Move every model to the offload device and drop device copies of label embeddings."""
        with self._lock:
            self.release_device_caches()
            handles = self._handles()
            if handles:
                self.host.offload(handles)
            if self._second is not None:
                self._second.offload()

    def unload(self) -> None:
        """Forget models and label tables entirely (they reload on next use)."""
        with self._lock:
            self.offload()
            self._clip = None
            self._captioner = None
            self._tables = None
            self._pool = None
            self._negative_pool = None
            if self._second is not None:
                self._second.unload()
                self._second = None
            empty_device_cache()

    @property
    def models(self) -> List[ModelHandle]:
        """Handles of the currently loaded models, the SDXL second encoder's included (for hosts that track
        memory)."""
        return self._handles() + (self._second.models if self._second is not None else [])

    # -- internals ------------------------------------------------------------------------------------------
    def _second_encoder(self) -> "Interrogator":
        """SDXL's ViT-L/14 interrogator (same host, cache and lists; captions come from this one)."""
        if self._second is None:
            cfg = replace(self.config, clip_model=TARGETS["sdxl"].second_clip_model, target=CUSTOM,
                          caption_model=None, sdxl_dual=False)
            self._second = Interrogator(cfg, self.host)
        return self._second

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
                if self.config.offload is not OffloadPolicy.KEEP:
                    self.offload()

    def _prepare(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[Image.Image]:
        if isinstance(images, (Image.Image, str, os.PathLike)):
            images = [images]
        return [load_rgb(im, i) for i, im in enumerate(images)]

    def _use(self, handle: ModelHandle) -> None:
        if self.config.offload is OffloadPolicy.LOW_VRAM:
            others = [h for h in self._handles() if h is not handle]
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
                                             self.config.download_dir)
        return self._captioner

    def _captions(self, batch: List[Image.Image], given: Optional[Sequence[Optional[str]]]) -> List[str]:
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

            def run(bs: int) -> None:
                for start in range(0, len(todo), bs):
                    self.host.check_interrupt()
                    idx = todo[start:start + bs]
                    for i, text in zip(idx, cap.generate([batch[i] for i in idx], self.config.caption_max_length)):
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
                    def report(done: int, total: int) -> None:
                        self.host.check_interrupt()
                        self.host.progress(done, total, f"encoding labels: {name}")
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

    def _one(self, mode: str, feats: torch.Tensor, caption: str, min_flavors: int, max_flavors: int,
             negative_count: int, text_batch: int, beam_width: int = 1) -> InterrogationResult:
        """Both prompts of one image from its normalized features [D]."""
        self._label_tables()
        assert self._clip is not None
        text = self._clip.text
        caption = prompts.truncate_to_fit(text, caption) if caption else caption
        chain_args = dict(batch_size=text_batch, beam_width=beam_width)
        positive, candidates = "", {}
        if mode != "negative":
            positive, candidates = self._positive(mode, feats, caption, min_flavors, max_flavors, chain_args)
        count = max_flavors if mode == "negative" else negative_count
        negative = self._negative(mode, feats, min(min_flavors, count), count, chain_args) if count > 0 else ""
        sims = dict(zip(("positive", "negative"), prompts.similarities(text, feats, [positive, negative])))
        return InterrogationResult(
            mode=mode, positive=positive, negative=negative, caption=caption,
            similarity=sims["positive"] if positive else None,
            negative_similarity=sims["negative"] if negative else None,
            candidates=candidates,
        )

    def _on_step(self, desc: str):
        def on_step(i: int, total: int) -> None:
            self.host.check_interrupt()
            self.host.progress(i, total, desc)
        return on_step

    def _positive(self, mode: str, feats: torch.Tensor, caption: str, min_flavors: int, max_flavors: int,
                  chain_args: dict) -> tuple:
        """(positive prompt, candidate similarities) for best/classic/fast, clip-interrogator's rules."""
        assert self._clip is not None and self._tables is not None and self._pool is not None
        text, tables, f1 = self._clip.text, self._tables, feats.unsqueeze(0)
        options: Dict[str, str] = {"caption": caption}
        if mode in ("fast", "best"):
            options["fast"] = prompts.join_fitting(text, caption, [l for l, _ in self._pool.top(f1, max_flavors)[0]])
        if mode in ("classic", "best"):
            top1 = {n: prompts.argmax_label(tables[n].top(f1, 1)[0]) for n in ("mediums", "artists", "trendings",
                                                                                "movements")}
            flavors = [l for l, _ in tables["flavors"].top(f1, max_flavors if mode == "best" else min(max_flavors, 3))[0]]
            options["classic"] = prompts.truncate_to_fit(text, prompts.classic_prompt(
                caption, top1["mediums"], top1["artists"], top1["trendings"], top1["movements"], flavors))
        if mode != "best":
            return options[mode], {}
        phrases = [l for l, _ in self._pool.top(f1, self.config.flavor_intermediate_count)[0]]
        options["chain"] = prompts.chain(text, feats, phrases, start=caption or None, min_count=min_flavors,
                                         max_count=max_flavors, on_step=self._on_step("flavor chain"),
                                         **chain_args).prompt
        options = {k: v for k, v in options.items() if v}
        candidates = dict(zip(options, prompts.similarities(text, feats, list(options.values()))))
        return options[max(candidates, key=candidates.__getitem__)], candidates

    def _negative(self, mode: str, feats: torch.Tensor, min_count: int, count: int, chain_args: dict) -> str:
        """The negative prompt: a reversed chain (best/negative) or the least similar terms (fast/classic)."""
        assert self._clip is not None and self._tables is not None and self._negative_pool is not None
        text, tables, f1 = self._clip.text, self._tables, feats.unsqueeze(0)
        if mode not in ("best", "negative"):
            worst = [l for l, _ in self._negative_pool.top(f1, count, reverse=True)[0]]
            return prompts.join_fitting(text, "", worst)
        flavors = [l for l, _ in tables["flavors"].top(f1, self.config.flavor_intermediate_count, reverse=True)[0]]
        return prompts.chain(text, feats, flavors + tables["negative"].labels, min_count=min_count, max_count=count,
                             reverse=True, on_step=self._on_step("negative chain"), **chain_args).prompt
