"""Image taggers (SmilingWolf's WD v3 and models in the same layout) as a caption family, through ``timm``.

A tagger folder (the hub repositories' layout) holds a timm ``config.json`` (``architecture``, ``num_classes``,
``model_args``, ``pretrained_cfg``), ``model.safetensors`` and ``selected_tags.csv`` (``tag_id,name,category,count``;
category 0 general, 4 character, 9 rating). :func:`load_tagger` builds the architecture with
``timm.create_model(architecture, pretrained=False, num_classes=N, **model_args)`` and loads the weights from the
file (no hub access by timm, so timm 0.9 works as well as 1.x). A :class:`Tagger` quacks like a
:class:`~interrogator_core.caption.Captioner` (``handle``, ``family``, ``styles``, ``generate``), writing the
``tags`` style only; :meth:`Tagger.tag` gives the scores by category for Analyze.

What users of the WD14 tagger node, kohya's ``tag_images_by_wd14_tagger.py`` and SmilingWolf's own demo expect is
in :class:`TaggerOptions` (thresholds per category, rating, character tags first, underscores, escaping, exclude,
always-first, a maximum count).
"""
from __future__ import annotations

import csv
import json
import logging
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .errors import InterrogatorError, ModelLoadError, ModelNotFoundError, UnknownNameError
from .prompts import KAOMOJIS, format_tag  # noqa: F401  (KAOMOJIS: part of this module's API)
from .host import ModelHandle
from .images import load_images

log = logging.getLogger(__name__)

#: The caption family name of taggers (a key of ``caption.FAMILIES``).
TAGGER_FAMILY = "tagger"
#: The one caption style a tagger writes.
TAGS_STYLE = "tags"
#: The oldest timm checked to build and load the WD v3 architectures (vit, vit-large, eva02, swinv2, convnext).
MIN_TIMM = "0.9.2"
#: The files of a tagger folder.
CONFIG_FILE, WEIGHTS_FILE, TAGS_FILE = "config.json", "model.safetensors", "selected_tags.csv"

#: ``selected_tags.csv`` categories (Danbooru's numbering; WD v3 uses 0, 4 and 9).
GENERAL, ARTIST, COPYRIGHT, CHARACTER, META, RATING = 0, 1, 3, 4, 5, 9
CATEGORY_NAMES: Dict[int, str] = {GENERAL: "general", ARTIST: "artist", COPYRIGHT: "copyright",
                                  CHARACTER: "character", META: "meta", RATING: "rating"}

def _tag_list(value: Union[str, Sequence[str], None], what: str) -> Tuple[str, ...]:
    """A tag list from a comma-separated string or a sequence of tags (blank entries dropped)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    try:
        items = [str(v).strip() for v in value]
    except TypeError:
        raise ValueError(f"{what} must be a comma-separated string or a list of tags, not {value!r}") from None
    return tuple(v for v in items if v)


def tag_key(tag: str) -> str:
    """The form tags are compared in (exclude and always-first lists): lower case, spaces for underscores, no
    prompt escapes -- so ``long_hair``, ``Long Hair`` and an escaped ``\\(`` name the same tag."""
    return " ".join(tag.replace("\\(", "(").replace("\\)", ")").replace("_", " ").lower().split())


@dataclass(frozen=True)
class TaggerOptions:
    """How scores become a tag prompt.

    - ``general_threshold`` / ``character_threshold``: a tag is kept when its score is **at least** the threshold
      of its category (inclusive, as kohya's ``tag_images_by_wd14_tagger.py``, ``p >= thresh``; the WD14 node and
      SmilingWolf's demo use ``>``, which differs only for a score exactly on the threshold). Categories other
      than character and rating (artist, copyright, meta in taggers that have them) use the general threshold.
      Defaults 0.35 / 0.85 as those tools.
    - ``include_rating``: put the most likely rating tag (general, sensitive, questionable, explicit) first, as
      kohya's ``--use_rating_tags`` (the argmax of the rating scores, no threshold).
    - ``character_first``: character tags before the others; otherwise all tags by score.
      Within a group tags go by score, highest first (ties in the csv's order).
    - ``replace_underscores``: ``long_hair`` -> ``long hair``; kaomoji (:data:`KAOMOJIS`, e.g. ``^_^``, ``>_<``)
      keep theirs.
    - ``escape_parentheses``: ``(`` -> ``\\(`` and ``)`` -> ``\\)`` so A1111 and ComfyUI read them as text, not
      as weighting (``hatsune_miku_(cosplay)``).
    - ``exclude``: tags never written; ``always_first``: tags moved to the front in this order when the tagger
      found them (a tag it did not find is not added). Both match in :func:`tag_key` form and take a list or a
      comma-separated string.
    - ``max_tags``: at most this many tags in the prompt, counted after ordering (the rating and always-first
      tags count; the lowest-ranked go); 0 = no limit.
    """

    general_threshold: float = 0.35
    character_threshold: float = 0.85
    include_rating: bool = False
    character_first: bool = True
    replace_underscores: bool = True
    escape_parentheses: bool = True
    exclude: Tuple[str, ...] = ()
    always_first: Tuple[str, ...] = ()
    max_tags: int = 0

    def __post_init__(self) -> None:
        for name in ("general_threshold", "character_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"TaggerOptions.{name} must be a number from 0 to 1, got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.max_tags, bool) or not isinstance(self.max_tags, numbers.Integral) or self.max_tags < 0:
            raise ValueError(f"TaggerOptions.max_tags must be a whole number >= 0 (0 = no limit), got "
                             f"{self.max_tags!r}")
        object.__setattr__(self, "max_tags", int(self.max_tags))
        object.__setattr__(self, "exclude", _tag_list(self.exclude, "TaggerOptions.exclude"))
        object.__setattr__(self, "always_first", _tag_list(self.always_first, "TaggerOptions.always_first"))

    def format(self, name: str) -> str:
        """A tag name from selected_tags.csv as it is written in the prompt."""
        return format_tag(name, self.replace_underscores, self.escape_parentheses)


@dataclass(frozen=True)
class TagLabels:
    """The tags of a tagger, one per model output, from ``selected_tags.csv``."""

    names: Tuple[str, ...]
    categories: Tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def read(cls, path: Union[str, "os.PathLike[str]"]) -> "TagLabels":
        """Read a ``selected_tags.csv`` (columns ``name`` and ``category`` by header; others ignored)."""
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"cannot read the tag list {path}: {e}") from e
        if not rows:
            raise ModelLoadError(f"the tag list {path} is empty; it needs a header (tag_id,name,category,count) "
                                 "and one row per tag")
        header = [h.strip().lower() for h in rows[0]]
        if "name" not in header or "category" not in header:
            raise ModelLoadError(f"the tag list {path} has columns {rows[0]}; a tagger's selected_tags.csv needs "
                                 "'name' and 'category' (tag_id,name,category,count)")
        i_name, i_cat = header.index("name"), header.index("category")
        names, cats = [], []
        for line, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            try:
                names.append(row[i_name])
                cats.append(int(row[i_cat]))
            except (IndexError, ValueError):
                raise ModelLoadError(f"the tag list {path}, line {line}: {row!r} has no name or no whole-number "
                                     "category") from None
        return cls(tuple(names), tuple(cats))


def is_tagger_config(config: Mapping[str, Any]) -> bool:
    """True for a timm model config (``architecture`` and no transformers ``model_type``): a tagger folder's."""
    return isinstance(config.get("architecture"), str) and "model_type" not in config


# --- preprocessing ----------------------------------------------------------------------------------------------
_INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                   "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


@dataclass(frozen=True)
class TaggerPreprocess:
    """Image -> model input, as the WD v3 timm models expect.

    Read off SmilingWolf's reference timm inference code (github.com/neggles/wdv3-timm, linked from the model
    cards as "For timm"): transparency flattened on white, the image padded to a square with white (centered),
    then timm's eval transform from the config's ``pretrained_cfg`` (resize to ``input_size`` with its
    ``interpolation``, ``crop_pct`` 1.0 so no crop, scaled to 0..1, normalized with its ``mean``/``std``: 0.5, so
    -1..1), and finally the channels flipped RGB -> BGR (the models were trained in JAX on BGR input). The ONNX
    exports of the same models take BGR 0..255 without normalization instead (kohya's script, the WD14 node);
    that is a property of the ONNX graph, not of these weights.
    """

    size: Tuple[int, int]  # (height, width)
    mean: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    crop_pct: float = 1.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TaggerPreprocess":
        """From a tagger config.json's ``pretrained_cfg`` (``model_args.img_size`` when it has no input size)."""
        pcfg = config.get("pretrained_cfg") or {}
        size = pcfg.get("input_size")
        if size is not None:
            h, w = int(size[-2]), int(size[-1])
        else:
            img = (config.get("model_args") or {}).get("img_size")
            if img is None:
                raise ModelLoadError("the tagger config.json names no input size (pretrained_cfg.input_size or "
                                     "model_args.img_size)")
            h, w = (int(img), int(img)) if isinstance(img, (int, float)) else (int(img[0]), int(img[1]))
        interpolation = str(pcfg.get("interpolation") or "bicubic").lower()
        if interpolation not in _INTERPOLATIONS:
            raise UnknownNameError("tagger interpolation", interpolation, _INTERPOLATIONS)
        return cls(size=(h, w), mean=tuple(float(v) for v in pcfg.get("mean", cls.mean)),
                   std=tuple(float(v) for v in pcfg.get("std", cls.std)), interpolation=interpolation,
                   crop_pct=float(pcfg.get("crop_pct") or 1.0))

    def pad_square(self, image: Image.Image) -> Image.Image:
        """The image centered on a white square canvas of its longer side."""
        w, h = image.size
        side = max(w, h)
        if w == h:
            return image
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        return canvas

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> a float32 3 x H x W tensor in the model's channel order (BGR)."""
        image = self.pad_square(image)
        h, w = self.size
        # timm's eval transform: resize to floor(size / crop_pct), then a center crop to the input size
        sh, sw = math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)
        image = image.resize((sw, sh), _INTERPOLATIONS[self.interpolation])
        if (sh, sw) != (h, w):
            top, left = int(round((sh - h) / 2.0)), int(round((sw - w) / 2.0))
            image = image.crop((left, top, left + w, top + h))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)
        return x[[2, 1, 0]].contiguous()  # RGB -> BGR


# --- the tagger ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TagScore:
    """One tag of a result: its name as written in the prompt, its csv name, category name and score."""

    tag: str
    name: str
    category: str
    score: float


class Tagger:
    """A loaded tagger: a timm classifier, its tag list and preprocessing.

    Used by the engine like a :class:`~interrogator_core.caption.Captioner`: ``handle`` (the host's memory
    manager moves it), ``family`` (:data:`TAGGER_FAMILY`), ``styles`` (``("tags",)``), ``takes_instruction``
    (False) and :meth:`generate`. ``options`` (:class:`TaggerOptions`) is what :meth:`generate` and :meth:`tag` use
    unless a call passes its own; the engine may replace it (options change no weights).
    """

    def __init__(self, name: str, module: torch.nn.Module, labels: TagLabels, preprocess: TaggerPreprocess,
                 dtype: torch.dtype, options: Optional[TaggerOptions] = None) -> None:
        self.name = name
        self.handle = ModelHandle(name=f"caption:{name}", module=module, dtype=dtype)
        self.labels = labels
        self.preprocess = preprocess
        self.options = options if options is not None else TaggerOptions()
        self.family = TAGGER_FAMILY
        self.styles: Tuple[str, ...] = (TAGS_STYLE,)
        self.takes_instruction = False
        cats = np.asarray(labels.categories)
        self._rating = np.flatnonzero(cats == RATING)

    def prompt_for(self, style: Optional[str] = TAGS_STYLE, instruction: Optional[str] = None) -> str:
        """'' (a tagger takes no prompt); refuses any style but ``tags`` and any instruction."""
        style = style or TAGS_STYLE
        if style not in self.styles:
            raise UnknownNameError(f"caption style for {self.name} (tagger)", style, self.styles,
                                   hint="A tagger writes booru tags only; use a caption model for sentences.")
        if instruction is not None and instruction.strip():
            raise InterrogatorError(
                f"caption model {self.name} is a tagger and takes no instruction (caption_prompt "
                f"{instruction[:60]!r}); clear caption_prompt or choose a Florence-2, Qwen-VL or LLaVA model.")
        return ""

    @torch.inference_mode()
    def scores(self, images: Sequence[Any]) -> torch.Tensor:
        """Sigmoid scores, float32 [len(images), len(labels)] on the CPU: the whole batch in one forward, on the
        model's current device."""
        batch = load_images(list(images))
        if not batch:
            return torch.zeros((0, len(self.labels)))
        module = self.handle.module
        p = next(module.parameters())
        pixels = torch.stack([self.preprocess(im) for im in batch]).to(p.device, p.dtype)
        logits = module(pixels)
        return torch.sigmoid(logits.float()).cpu()

    def select(self, scores: Sequence[float], options: Optional[TaggerOptions] = None) -> List[TagScore]:
        """The tags of one image's scores, in prompt order, per ``options`` (see :class:`TaggerOptions`)."""
        opts = options if options is not None else self.options
        values = np.asarray(scores, dtype=np.float32)
        if values.shape != (len(self.labels),):
            raise ValueError(f"{values.shape} scores for {len(self.labels)} tags of {self.name}")
        excluded = {tag_key(t) for t in opts.exclude}

        def entry(i: int) -> TagScore:
            name = self.labels.names[i]
            cat = self.labels.categories[i]
            return TagScore(opts.format(name), name, CATEGORY_NAMES.get(cat, str(cat)), float(values[i]))

        chars, others = [], []
        for i, (score, cat) in enumerate(zip(values.tolist(), self.labels.categories)):
            if cat == RATING:
                continue
            threshold = opts.character_threshold if cat == CHARACTER else opts.general_threshold
            if score >= threshold and tag_key(self.labels.names[i]) not in excluded:
                (chars if cat == CHARACTER else others).append(i)
        by_score = lambda idx: sorted(idx, key=lambda i: -values[i])  # noqa: E731 - stable: csv order on ties
        order = by_score(chars) + by_score(others) if opts.character_first else by_score(chars + others)
        out = [entry(i) for i in order]
        if opts.include_rating and len(self._rating):
            best = int(self._rating[int(np.argmax(values[self._rating]))])
            if tag_key(self.labels.names[best]) not in excluded:
                out.insert(0, entry(best))
        if opts.always_first:
            front = []
            for key in (tag_key(t) for t in opts.always_first):
                found = next((t for t in out if tag_key(t.name) == key), None)
                if found is not None and found not in front:
                    front.append(found)
            out = front + [t for t in out if t not in front]
        if opts.max_tags:
            out = out[:opts.max_tags]
        return out

    def tag(self, images: Sequence[Any], options: Optional[TaggerOptions] = None) -> List[Dict[str, Dict[str, float]]]:
        """Per image, {category: {tag as written in the prompt: score}} for Analyze: the prompt's tags by
        category (in prompt order) and, under ``rating``, every rating's score (highest first) whether or not the
        prompt carries one."""
        out = []
        for row in self.scores(images):
            values = row.numpy()
            tagged: Dict[str, Dict[str, float]] = {}
            for t in self.select(values, options):
                if t.category != "rating":
                    tagged.setdefault(t.category, {})[t.tag] = t.score
            if len(self._rating):
                opts = options if options is not None else self.options
                ratings = sorted(self._rating.tolist(), key=lambda i: -values[i])
                tagged["rating"] = {opts.format(self.labels.names[i]): float(values[i]) for i in ratings}
            out.append(tagged)
        return out

    def generate(self, images: Sequence[Any], max_new_tokens: int = 0, style: Optional[str] = TAGS_STYLE,
                 instruction: Optional[str] = None, options: Optional[TaggerOptions] = None) -> List[str]:
        """One tag prompt per image (``"tag, tag, ..."``), the batch in one forward. ``max_new_tokens`` is
        accepted for the caption interface and unused (``TaggerOptions.max_tags`` limits the length)."""
        self.prompt_for(style, instruction)
        if not images:
            return []
        return [", ".join(t.tag for t in self.select(row.numpy(), options)) for row in self.scores(images)]


# --- loading ---------------------------------------------------------------------------------------------------
def timm_version() -> str:
    import timm

    return timm.__version__


def check_timm_supported(name: str = "") -> None:
    """Raise ModelLoadError when timm is missing or older than :data:`MIN_TIMM`."""
    try:
        version = timm_version()
    except ImportError as e:
        raise ModelLoadError(
            f"caption model {name or 'tagger'!r} is an image tagger, which loads through timm, and timm cannot "
            f"be imported ({e}). timm comes with open-clip-torch; reinstall it (pip install timm) in this "
            "environment.") from e
    from packaging.version import Version

    if Version(version) < Version(MIN_TIMM):
        raise ModelLoadError(
            f"caption model {name or 'tagger'!r} is an image tagger, which needs timm >= {MIN_TIMM}; this "
            f"environment has timm {version}. Choose another caption model or run a host with a newer timm; we "
            "never upgrade a host's packages.")


def _model_args(config: Mapping[str, Any]) -> Dict[str, Any]:
    """``model_args`` for timm.create_model; an activation named by string becomes timm's layer class (timm 0.9.2
    passes ``act_layer`` on as it is, so "gelu_tanh" would be called as a function)."""
    args = dict(config.get("model_args") or {})
    if isinstance(args.get("act_layer"), str):
        from timm.layers import get_act_layer

        args["act_layer"] = get_act_layer(args["act_layer"])
    return args


def tagger_files(source: str, download_dir: Optional[os.PathLike] = None) -> Dict[str, Path]:
    """{file name: local path} of a tagger folder, or of a hub repository (downloaded into the Hugging Face cache
    or ``download_dir``)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        files = {f: folder / f for f in (CONFIG_FILE, WEIGHTS_FILE, TAGS_FILE)}
        missing = [f for f, p in files.items() if not p.is_file()]
        if missing:
            raise ModelLoadError(
                f"tagger folder {folder} has no {', '.join(missing)}; a tagger folder (the WD v3 hub layout) needs "
                f"{CONFIG_FILE} (timm), {WEIGHTS_FILE} and {TAGS_FILE}")
        return files
    from huggingface_hub import hf_hub_download

    files = {}
    for f in (CONFIG_FILE, WEIGHTS_FILE, TAGS_FILE):
        try:
            files[f] = Path(hf_hub_download(source, f, cache_dir=download_dir))
        except Exception as e:  # offline, unknown repository, no such file: huggingface_hub's many error types
            raise ModelNotFoundError(
                f"tagger {source!r}: {f} is not on this machine and could not be downloaded ({type(e).__name__}: "
                f"{str(e)[:300]}). Offline? Copy the tagger folder ({CONFIG_FILE}, {WEIGHTS_FILE}, {TAGS_FILE}) "
                "to <models folder>/<name>/ or pass the folder's path.") from e
    return files


def load_tagger(name: str, source: Optional[str] = None, dtype: torch.dtype = torch.float32,
                download_dir: Optional[os.PathLike] = None, options: Optional[TaggerOptions] = None) -> Tagger:
    """Load a tagger on the CPU in ``dtype`` from a folder or hub id (``source``; default ``name``).

    Raises ModelLoadError for a folder that is not a complete tagger, a config timm cannot build, weights that
    do not fit the architecture (naming the first keys), a tag list whose length differs from the model's
    outputs, and a missing or too old timm.
    """
    source = source or name
    check_timm_supported(name)
    import timm
    from safetensors.torch import load_file

    files = tagger_files(source, download_dir)
    try:
        config = json.loads(files[CONFIG_FILE].read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"tagger {source}: unreadable {CONFIG_FILE} ({e})") from e
    if not is_tagger_config(config):
        raise ModelLoadError(f"tagger {source}: {CONFIG_FILE} is not a timm config (it needs 'architecture')")
    labels = TagLabels.read(files[TAGS_FILE])
    arch = config["architecture"]
    num_classes = int(config.get("num_classes") or (config.get("pretrained_cfg") or {}).get("num_classes")
                      or len(labels))
    if num_classes != len(labels):
        raise ModelLoadError(f"tagger {source}: the model has {num_classes} outputs but {TAGS_FILE} lists "
                             f"{len(labels)} tags; the two files are from different models")
    preprocess = TaggerPreprocess.from_config(config)
    try:
        module = timm.create_model(arch, pretrained=False, num_classes=num_classes, **_model_args(config))
    except Exception as e:  # an unknown architecture or arguments this timm does not take
        raise ModelLoadError(f"tagger {source}: timm {timm.__version__} cannot build {arch!r} with "
                             f"{config.get('model_args') or {}} ({type(e).__name__}: {e}); a newer timm may know "
                             "it") from e
    try:
        state = load_file(str(files[WEIGHTS_FILE]))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ModelLoadError(f"tagger {source}: cannot read {WEIGHTS_FILE} ({type(e).__name__}: {e}); the file "
                             "may be truncated, download it again") from e
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected),
                                              ("wrong shape", wrong)) if keys)
        raise ModelLoadError(f"tagger {source}: {WEIGHTS_FILE} does not fit timm {timm.__version__}'s {arch!r} "
                             f"({detail})")
    module.load_state_dict(state, strict=True)
    module.to(dtype).eval().requires_grad_(False)
    log.info("loaded tagger %s (%s, %d tags, %s, timm %s)", name, arch, len(labels), dtype, timm.__version__)
    return Tagger(name, module, labels, preprocess, dtype, options=options)

