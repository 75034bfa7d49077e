"""ComfyUI nodes of Prompt Interrogator (V3 schema): host types in → one engine call → host types out.

* ``PromptInterrogator.Loader``: models, precision and memory policy → ``INTERROGATOR`` (cached per node;
  changing a widget reloads only what changed).
* ``PromptInterrogator.Interrogate``: ``IMAGE`` batch → ``positive``, ``negative``, ``caption`` (one string per
  image: list outputs that plug straight into ``CLIPTextEncode``), then ``positive_l``/``negative_l`` (SDXL's
  ViT-L/14 encoder; empty unless the loader's ``sdxl_dual`` is on), then one output per encoder key any target
  has (:data:`ENCODER_OUTPUTS`: ``clip_l``, ``clip_g``, ``t5xxl``, ``llm``, ``llama``; empty where the target has
  none), named like the inputs of ComfyUI's text-encode nodes.
* ``PromptInterrogator.InterrogateEncode`` (*Interrogate & Encode*): ``IMAGE`` + the checkpoint's ``CLIP`` →
  positive and negative ``CONDITIONING``, each encoder's prompt in that encoder's token stream
  (:func:`interrogator_core.targets.token_streams`), plus the strings.
* ``PromptInterrogator.Caption`` and ``PromptInterrogator.Analyze``: captions only; top labels per table.
* ``PromptInterrogator.RoundTripScore``: original and regenerated ``IMAGE`` (and optionally the prompt) → CLIP
  image–image and image–text cosines, one per original image.

The node ids, input names and output order are those of the first (V1) release, and new inputs are optional
and come last, so workflows saved before them load and run unchanged. Each ``execute`` only translates
between ComfyUI types and one engine call.

Models, devices, dtype, progress and interrupt go through :class:`interrogator_hosts.comfyui.ComfyHost`.
Label caches, local models and optional label lists live in ``models/clip_interrogator/`` (registered with
``folder_paths``).
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

from comfy_api.latest import ComfyExtension, io

from interrogator_core import (AUTO_STYLE, CUSTOM, NO_CAPTION, SETTINGS, TARGETS, Interrogator, InterrogatorConfig,
                               UnknownNameError, list_caption_models, list_clip_models)
from interrogator_core import tagger_options
from interrogator_core.hostapi import TAGGER_SETTINGS, all_prompt_keys, token_streams
from interrogator_hosts.comfyui import MEMORY_POLICIES, ComfyHost, encode_text, folder_paths_register, tensor_to_pil

log = logging.getLogger("prompt_interrogator.comfyui")

CATEGORY = "image/interrogate"
MODEL_FOLDER = "clip_interrogator"
#: Sub-folder of a model folder whose label lists (artists.txt, flavors.txt, mediums.txt, movements.txt,
#: negative.txt) replace the bundled ones.
LABELS_FOLDER = "labels"
#: Shown first in the CLIP list: the text encoders of SD 1.x, SD 2.x and SDXL.
PREFERRED_CLIP = ("ViT-L-14/openai", "ViT-H-14/laion2b_s32b_b79k", "ViT-bigG-14/laion2b_s39b_b160k")
DEFAULT_CAPTION = "blip-large"

#: The socket type that carries a loaded interrogator from the loader to the other nodes.
InterrogatorType = io.Custom("INTERROGATOR")


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


def label_dir(folders: Sequence[str]) -> Optional[str]:
    """The first ``labels/`` folder in the model folders (its lists replace the bundled ones), else None."""
    for folder in folders:
        path = os.path.join(folder, LABELS_FOLDER)
        if os.path.isdir(path):
            return path
    return None


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
#: Per loader node (its unique id): the interrogator it built last, least recently used first.
_LOADED: "OrderedDict[str, Interrogator]" = OrderedDict()
#: Loader nodes whose models stay cached at most (the least recently used one beyond is unloaded).
MAX_LOADERS = 4
LOADER_ID = "PromptInterrogator.Loader"


def _on_evict_for(interrogator: Interrogator):
    ref = weakref.ref(interrogator)

    def on_evict() -> None:
        it = ref()
        if it is not None:
            it.release_device_caches()

    return on_evict


def _forget(node_id: str) -> None:
    it = _LOADED.pop(node_id, None)
    if it is not None and it not in _LOADED.values():
        log.info("loader %s: gone from the workflow or least recently used; unloading its models", node_id)
        it.unload()


def prune_loaders(prompt: Optional[Dict[str, Any]] = None, keep: Optional[str] = None) -> None:
    """Forget loader nodes that are gone: those not in ``prompt`` (the running workflow, ComfyUI's hidden
    ``PROMPT``: node id → ``{"class_type": ...}``), then the least recently used beyond :data:`MAX_LOADERS`.
    A forgotten loader's models are unloaded (RAM and VRAM freed); ``keep``: the node being run."""
    if isinstance(prompt, dict):
        present = {str(k) for k, v in prompt.items() if isinstance(v, dict) and v.get("class_type") == LOADER_ID}
        for node_id in [k for k in _LOADED if k not in present and k != keep]:
            _forget(node_id)
    while len(_LOADED) > MAX_LOADERS:
        oldest = next(k for k in _LOADED if k != keep)
        _forget(oldest)


def get_interrogator(node_id: str, clip_model: str, caption_model: Optional[str], precision: str,
                     memory: str, target: str = CUSTOM, sdxl_dual: bool = False,
                     caption_style: Optional[str] = None, caption_prompt: Optional[str] = None,
                     trust_remote_code: bool = False, prompt: Optional[Dict[str, Any]] = None,
                     tagger: Optional[Dict[str, Any]] = None, caption_length: Optional[str] = None,
                     trigger_prefix: str = "", trigger_suffix: str = "", caption_replace: str = "") -> Interrogator:
    """The interrogator for a loader node's widgets: the node's last one reconfigured
    (:meth:`Interrogator.reconfigured` keeps every model that stays), or a new one.

    ``target`` (``list_targets()``) picks the CLIP model(s) and the prompts a result carries; ``custom`` uses
    ``clip_model``. ``caption_style`` (None: the target's default), ``caption_prompt`` and
    ``trust_remote_code`` go to the caption stage as they are, and so do the caption controls
    (``caption_length``, ``trigger_prefix``/``trigger_suffix``, ``caption_replace``). ``precision`` and
    the memory policy's managed/pinned choice belong to the :class:`ComfyHost`: changing them hands the models
    to a new host. ``prompt``: the running workflow; loader nodes no longer in it are forgotten (see
    :func:`prune_loaders`). ``tagger``: the image tagger settings by name (``TAGGER_SETTINGS``; missing ones
    take the table's defaults).
    """
    if memory not in MEMORY_POLICIES:
        raise UnknownNameError("memory policy", memory, MEMORY_POLICIES)
    policy, managed = MEMORY_POLICIES[memory]
    folders = model_folders()
    config = InterrogatorConfig(clip_model=clip_model, caption_model=caption_model, cache_dir=folders[0],
                                model_dirs=folders, download_dir=folders[0], offload=policy, target=target,
                                sdxl_dual=bool(sdxl_dual), data_dir=label_dir(folders),
                                caption_style=caption_style, caption_prompt=caption_prompt or None,
                                trust_remote_code=bool(trust_remote_code),
                                tagger_options=tagger_options(tagger or {}),
                                caption_length=SETTINGS["caption_length"].parse(caption_length),
                                trigger_prefix=trigger_prefix or "", trigger_suffix=trigger_suffix or "",
                                caption_replace=(caption_replace or "").strip() or None)
    prune_loaders(prompt, keep=node_id)
    current = _LOADED.get(node_id)
    host = current.host if current is not None else None
    if not isinstance(host, ComfyHost) or (host.precision, host.managed) != (precision, managed):
        host = ComfyHost(precision=precision, managed=managed)
    it = Interrogator(config, host) if current is None else current.reconfigured(config, host)
    if it is current:
        log.info("loader %s: reusing loaded models (memory policy: %s)", node_id, memory)
    host.on_evict = _on_evict_for(it)
    _LOADED[node_id] = it
    _LOADED.move_to_end(node_id)
    prune_loaders(keep=node_id)
    return it


# -- nodes ---------------------------------------------------------------------------------------------------
def _host(interrogator: Interrogator) -> ComfyHost:
    host = interrogator.host
    if not isinstance(host, ComfyHost):
        raise TypeError("this INTERROGATOR was not made by the Prompt Interrogator loader node")
    return host


def _input(name: str, *, options: Optional[List[str]] = None, default: Any = None, tooltip: str = "",
           optional: bool = False, **kwargs: Any) -> Any:
    """The node input of the core's setting ``name`` (:data:`interrogator_core.SETTINGS`): its type, default,
    bounds (INT), choices (COMBO; ``options``: the list shown, e.g. with local folders first) and help as the
    tooltip (``tooltip``: added after it)."""
    setting = SETTINGS[name]
    help_text = setting.help_text() + (f". {tooltip}" if tooltip else "")
    value = setting.default_value() if default is None else default
    if setting.type is int:
        bounds = {k: int(v) for k, v in (("min", setting.minimum), ("max", setting.maximum)) if v is not None}
        return io.Int.Input(name, default=value, tooltip=help_text, optional=optional, **bounds, **kwargs)
    if setting.type is float:
        return io.Float.Input(name, default=value, min=setting.minimum, max=setting.maximum, step=0.01,
                              tooltip=help_text, optional=optional, **kwargs)
    if setting.type is bool:
        return io.Boolean.Input(name, default=value, tooltip=help_text, optional=optional, **kwargs)
    if setting.choices is not None:
        return io.Combo.Input(name, options=setting.options() if options is None else options, default=value,
                              tooltip=help_text, optional=optional, **kwargs)
    return io.String.Input(name, default=value, tooltip=help_text, optional=optional, **kwargs)


def _request_inputs() -> List[Any]:
    """The inputs of one interrogate request (mode, flavor bounds, negative terms, beam width), in this order."""
    return [_input("mode"), _input("min_flavors"), _input("max_flavors"), _input("negative_count"),
            _input("beam_width", optional=True)]


#: Other names the nodes are found by in ComfyUI's node search (where its ``io.Schema`` takes them).
SEARCH_ALIASES = ("img2prompt", "caption", "interrogate", "tagger")


def _schema_takes(option: str) -> bool:
    """Whether this ComfyUI's ``io.Schema`` has the field ``option`` (0.3.75's has no ``search_aliases``)."""
    if dataclasses.is_dataclass(io.Schema):
        return option in {f.name for f in dataclasses.fields(io.Schema)}
    try:
        return option in inspect.signature(io.Schema).parameters
    except (TypeError, ValueError):  # pragma: no cover - a Schema without a readable signature
        return False


def _schema(name: str, title: str, description: str, inputs: list, outputs: list, **options: Any) -> io.Schema:
    """A node of this pack: id ``PromptInterrogator.<name>``, shown as "<title> (Prompt Interrogator)"."""
    if _schema_takes("search_aliases"):
        options.setdefault("search_aliases", list(SEARCH_ALIASES))
    return io.Schema(node_id=f"PromptInterrogator.{name}", display_name=f"{title} (Prompt Interrogator)",
                     category=CATEGORY, description=description, inputs=inputs, outputs=outputs, **options)


def _image_input(id: str = "image", tooltip: Optional[str] = None) -> io.Image.Input:
    return io.Image.Input(id, tooltip=tooltip)


def _image_and_interrogator() -> list:
    return [_image_input(), InterrogatorType.Input("interrogator")]


#: Interrogate's outputs after the five V1 ones, by ``result.prompts`` key: one per encoder key of any target
#: (:func:`all_prompt_keys`, whose order only ever grows at the end), named like the text-encode node input it
#: plugs into (``t5`` → ``t5xxl``). Old workflows keep every output index.
OUTPUT_NAMES = {"t5": "t5xxl"}
ENCODER_OUTPUTS: Tuple[Tuple[str, str], ...] = tuple((key, OUTPUT_NAMES.get(key, key)) for key in all_prompt_keys())
#: what each encoder output holds (its tooltip)
ENCODER_TIPS = {
    "clip_l": "the prompt for CLIP ViT-L/14 when the target reads one (sd15; flux, sd35, hidream: clip_l of "
              "CLIPTextEncodeFlux / SD3 / HiDream; sdxl and the anime targets with sdxl_dual)",
    "clip_g": "the prompt for OpenCLIP ViT-bigG/14 when the target reads one (sdxl, the anime targets; sd35, "
              "hidream: clip_g of CLIPTextEncodeSD3 / HiDream)",
    "t5": "the long T5 prompt, not cut to 77 tokens (flux, sd35, hidream: t5xxl of CLIPTextEncodeFlux / SD3 / "
          "HiDream; chroma, wan: the text of CLIPTextEncode)",
    "llm": "the prompt of a target whose one text encoder is an LLM (flux2, qwen-image, z-image: the text of "
           "CLIPTextEncode; lumina2: user_prompt of CLIPTextEncodeLumina2); equals positive",
    "llama": "hidream: the Llama 3.1 prompt (llama of CLIPTextEncodeHiDream)",
}


def _encoder_tip(key: str) -> str:
    used = [name for name, preset in TARGETS.items() if any(e.key == key for e in preset.encoders)]
    return ENCODER_TIPS.get(key, f"the {key} prompt ({', '.join(used)})") + "; else empty"


def _strings(*names_and_tips: Tuple[str, str]) -> List[io.String.Output]:
    """STRING list outputs (one string per image), named as in the V1 nodes."""
    return [io.String.Output(name, display_name=name, tooltip=tip, is_output_list=True)
            for name, tip in names_and_tips]


class InterrogatorLoader(io.ComfyNode):
    """CLIP + caption model, precision and memory policy → ``INTERROGATOR``. Models load on first use."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        clips = clip_choices()
        captions = caption_choices()
        return _schema(
            "Loader", "Interrogator Loader",
            "Loads the interrogator models (lazily, on ComfyUI's memory manager).",
            inputs=[
                _input("clip_model", options=clips,
                       default=PREFERRED_CLIP[0] if PREFERRED_CLIP[0] in clips else clips[0],
                       tooltip="Folders in models/clip_interrogator come first."),
                _input("caption_model", options=captions,
                       default=DEFAULT_CAPTION if DEFAULT_CAPTION in captions else captions[0],
                       tooltip="Folders in models/clip_interrogator come first."),
                _input("precision"),
                io.Combo.Input("memory", options=list(MEMORY_POLICIES), default="host managed",
                               tooltip="host managed: ComfyUI evicts the models when it needs the memory; keep "
                                       "loaded: pinned on the device between runs (ComfyUI cannot evict "
                                       "them); offload after run: off the device after every run"),
                _input("target", optional=True),
                _input("sdxl_dual", optional=True,
                       tooltip="Outputs positive_l / negative_l of Interrogate Image."),
                _input("caption_style", optional=True),
                _input("caption_prompt", multiline=True, optional=True),
                _input("trust_remote_code", optional=True),
                *[_input(name, optional=True) for name in TAGGER_SETTINGS],  # an image tagger's (caption model)
                # caption controls (issue 19 item 5)
                _input("caption_length", optional=True),
                _input("trigger_prefix", optional=True),
                _input("trigger_suffix", optional=True),
                _input("caption_replace", optional=True, tooltip="A path to a text file."),
            ],
            outputs=[InterrogatorType.Output("interrogator", display_name="interrogator")],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, clip_model: str, caption_model: str, precision: str, memory: str, target: str = CUSTOM,
                sdxl_dual: bool = False, caption_style: str = AUTO_STYLE, caption_prompt: str = "",
                trust_remote_code: bool = False, caption_length: str = "auto", trigger_prefix: str = "",
                trigger_suffix: str = "", caption_replace: str = "", **tagger: Any) -> io.NodeOutput:
        hidden = cls.hidden
        node_id = str(hidden.unique_id or "default") if hidden is not None else "default"
        return io.NodeOutput(get_interrogator(
            node_id, clip_model, caption_model, precision, memory, target,
            sdxl_dual, caption_style, caption_prompt, trust_remote_code,
            prompt=hidden.prompt if hidden is not None else None,
            tagger={n: v for n, v in tagger.items() if n in TAGGER_SETTINGS},
            caption_length=caption_length, trigger_prefix=trigger_prefix, trigger_suffix=trigger_suffix,
            caption_replace=caption_replace))


class Interrogate(io.ComfyNode):
    """``IMAGE`` batch → positive, negative and caption strings, one per image."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "Interrogate", "Interrogate Image",
            "Image → prompt and negative prompt (one per image in the batch).",
            inputs=[
                *_image_and_interrogator(),
                *_request_inputs(),
            ],
            outputs=_strings(
                ("positive", "prompt per image (plug into CLIP Text Encode; with sdxl_dual: for ViT-bigG, "
                             "text_g)"),
                ("negative", "negative prompt per image"),
                ("caption", "caption per image"),
                ("positive_l", "sdxl_dual: prompt for SDXL's ViT-L/14 encoder (text_l); else empty"),
                ("negative_l", "sdxl_dual: negative prompt for SDXL's ViT-L/14 encoder; else empty"),
                *((name, _encoder_tip(key)) for key, name in ENCODER_OUTPUTS),
            ),
        )

    @classmethod
    def execute(cls, image: Any, interrogator: Interrogator, mode: str, min_flavors: int, max_flavors: int,
                negative_count: int, beam_width: int = 1) -> io.NodeOutput:
        with _host(interrogator).node_run():
            results = interrogator.interrogate(tensor_to_pil(image), mode=mode, min_flavors=min_flavors,
                                               max_flavors=max_flavors, negative_count=negative_count,
                                               beam_width=int(beam_width), similarities=False)  # no output shows it
        return io.NodeOutput([r.positive for r in results], [r.negative for r in results],
                             [r.caption for r in results], [r.positive_l or "" for r in results],
                             [r.negative_l or "" for r in results],
                             *([r.prompts.get(key, "") for r in results] for key, _ in ENCODER_OUTPUTS))


class InterrogateEncode(io.ComfyNode):
    """``IMAGE`` batch + the checkpoint's ``CLIP`` → positive and negative ``CONDITIONING`` (one per image).

    Each encoder's prompt goes into that encoder's own token stream of the ``CLIP`` (as ``CLIPTextEncodeFlux`` /
    ``CLIPTextEncodeSD3`` / ``CLIPTextEncodeHiDream`` put theirs), so one node serves every target; which prompt
    fills which stream is the target's data (:func:`interrogator_core.targets.token_streams`).
    """

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "InterrogateEncode", "Interrogate & Encode",
            "Image → positive and negative conditioning for the checkpoint's CLIP, each text encoder getting the "
            "prompt the loader's target writes for it (one per image in the batch).",
            inputs=[
                *_image_and_interrogator(),
                io.Clip.Input("clip", tooltip="the checkpoint's (or a CLIP loader's) text encoders; pick the "
                                              "loader's target to match them"),
                *_request_inputs(),
                io.Float.Input("guidance", default=3.5, min=0.0, max=100.0, step=0.1, optional=True,
                               tooltip="Flux guidance written into the conditioning, as CLIPTextEncodeFlux does; "
                                       "only for targets that read it (flux, flux2)"),
            ],
            outputs=[
                io.Conditioning.Output("positive", display_name="positive", is_output_list=True,
                                       tooltip="positive conditioning per image"),
                io.Conditioning.Output("negative", display_name="negative", is_output_list=True,
                                       tooltip="negative conditioning per image (an empty prompt's for targets "
                                               "that read none)"),
                *_strings(("positive_text", "the positive prompt per image (the target's main prompt)"),
                          ("negative_text", "the negative prompt per image"),
                          ("caption", "caption per image")),
            ],
        )

    @classmethod
    def execute(cls, image: Any, interrogator: Interrogator, clip: Any, mode: str, min_flavors: int,
                max_flavors: int, negative_count: int, beam_width: int = 1, guidance: float = 3.5) -> io.NodeOutput:
        with _host(interrogator).node_run():
            results = interrogator.interrogate(tensor_to_pil(image), mode=mode, min_flavors=min_flavors,
                                               max_flavors=max_flavors, negative_count=negative_count,
                                               beam_width=int(beam_width), similarities=False)
        preset, dual = interrogator.config.preset, interrogator.config.sdxl_dual
        add = {"guidance": float(guidance)} if preset.guidance else None
        positive = [encode_text(clip, *token_streams(preset, r, sdxl_dual=dual), add) for r in results]
        negative = [encode_text(clip, *token_streams(preset, r, negative=True, sdxl_dual=dual), add)
                    for r in results]
        return io.NodeOutput(positive, negative, [r.positive for r in results], [r.negative for r in results],
                             [r.caption for r in results])


class Caption(io.ComfyNode):
    """``IMAGE`` batch → one caption per image (caption model only, no CLIP)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "Caption", "Caption Image",
            "Image → caption (one per image in the batch).",
            inputs=_image_and_interrogator(),
            outputs=_strings(("caption", "caption per image")),
        )

    @classmethod
    def execute(cls, image: Any, interrogator: Interrogator) -> io.NodeOutput:
        with _host(interrogator).node_run():
            return io.NodeOutput(interrogator.caption(tensor_to_pil(image)))


class Analyze(io.ComfyNode):
    """``IMAGE`` batch → the top labels of each table with their similarity, as text (one per image)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "Analyze", "Analyze Image",
            "Image → top mediums, artists, movements, trendings and flavors with scores.",
            inputs=[
                *_image_and_interrogator(),
                _input("top_n"),
                _input("with_caption"),
            ],
            outputs=_strings(("analysis", "top labels per table with their similarity, per image")),
        )

    @classmethod
    def execute(cls, image: Any, interrogator: Interrogator, top_n: int, with_caption: bool) -> io.NodeOutput:
        with _host(interrogator).node_run():
            results = interrogator.analyze(tensor_to_pil(image), top_n=top_n, with_caption=with_caption)
        return io.NodeOutput([r.to_text() for r in results])


class RoundTripScore(io.ComfyNode):
    """Original and regenerated ``IMAGE`` (and optionally the prompt) → CLIP cosines, one per original image.

    All inputs arrive as ComfyUI lists (``is_input_list``): a prompt list from *Interrogate Image* pairs with
    the original batch image by image instead of re-running the node per prompt, and regenerated images
    sampled one prompt at a time (a list of 1-image batches) line up the same way. A single regenerated
    image or prompt applies to every original image.
    """

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "RoundTripScore", "Round-trip Score",
            "How well regenerated images (and prompts) match the originals: CLIP cosine similarities.",
            is_input_list=True,
            inputs=[
                _image_input("original", "the images that were interrogated"),
                _image_input("regenerated", "the images generated from their prompts (one, or one per "
                                            "original image)"),
                InterrogatorType.Input("interrogator"),
                io.String.Input("prompt", force_input=True, optional=True,
                                tooltip="prompt(s) to score against the original images (one, or one per "
                                        "image)"),
            ],
            outputs=[
                io.Float.Output("image_similarity", display_name="image_similarity", is_output_list=True,
                                tooltip="CLIP cosine of each original image with its regenerated image"),
                io.Float.Output("prompt_similarity", display_name="prompt_similarity", is_output_list=True,
                                tooltip="CLIP cosine of each original image with its prompt (0.0 without a "
                                        "prompt)"),
                io.String.Output("summary", display_name="summary", is_output_list=True,
                                 tooltip="both scores as text, per image"),
            ],
        )

    @classmethod
    def execute(cls, original: List[Any], regenerated: List[Any], interrogator: List[Interrogator],
                prompt: Optional[List[str]] = None) -> io.NodeOutput:
        it = interrogator[0]
        originals = [im for batch in original for im in tensor_to_pil(batch)]
        references = [im for batch in regenerated for im in tensor_to_pil(batch)]
        with _host(it).node_run():
            scores = it.score(originals, references=references, prompts=list(prompt) if prompt else None)
        return io.NodeOutput([float(sc.image_similarity or 0.0) for sc in scores],
                             [float(sc.prompt_similarity or 0.0) for sc in scores],
                             [sc.to_text() for sc in scores])


NODES: List[Type[io.ComfyNode]] = [InterrogatorLoader, Interrogate, Caption, Analyze, RoundTripScore,
                                   InterrogateEncode]


class PromptInterrogatorExtension(ComfyExtension):
    """The pack as ComfyUI's V3 extension: its six nodes."""

    async def get_node_list(self) -> List[Type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> PromptInterrogatorExtension:
    """What ComfyUI calls to load the pack (V3)."""
    return PromptInterrogatorExtension()
