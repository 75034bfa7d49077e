"""AUTOMATIC1111 / Forge host adapters and the service shared by the tab, the img2img script and the API.

Imported only inside a running webui (it imports ``modules.*`` lazily, at call time, so importing this module
is cheap). Pieces:

* :class:`A1111Host` — ``modules.devices`` (``device_interrogate``, half unless ``--no-half``, ``torch_gc``),
  ``lowvram.send_everything_to_cpu()`` first under ``--lowvram``/``--medvram``, ``shared.state`` for
  interrupt and progress.
* :class:`ForgeHost` — Forge's ``backend.memory_management``: models wrapped in its ``ModelPatcher`` and
  loaded with ``load_models_gpu`` (which evicts diffusion models as needed) on ``text_encoder_device()``.
* :func:`make_host` — Forge when ``backend.memory_management`` imports, else A1111.
* :class:`InterrogatorService` — one engine instance configured from the settings page; ``job()`` wraps every
  call in ``queue_lock`` / ``shared.state.begin``/``end`` and offloads the models when a call fails.
* Settings (``register_settings``), the img2img hook (``apply_to_processing``) and the optional replacement of
  the built-in CLIP interrogator (``install_builtin_hook``).
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch
from torch import nn

from interrogator_core import (TARGETS, AnalyzeResult, InterrogationResult, Interrogator, InterrogatorConfig,
                               Interrupted, ModelHandle, OffloadPolicy, RoundTripScore, list_caption_models,
                               list_modes, list_targets)
from interrogator_core.errors import UnknownNameError
from interrogator_core.targets import CUSTOM, target_clip_model

from interrogator_core import batch as batch_mod

log = logging.getLogger(__name__)

OPT_PREFIX = "prompt_interrogator_"
SETTINGS_SECTION = ("prompt_interrogator", "Prompt Interrogator")
NO_CAPTION = "none"
#: Settings page defaults (keys without the ``prompt_interrogator_`` prefix).
DEFAULTS: Dict[str, Any] = {
    "clip_model": "ViT-L-14/openai",
    "caption_model": "blip-large",
    "mode": "best",
    "keep_loaded": False,
    "cache_dir": "",
    "min_flavors": 8,
    "max_flavors": 32,
    "negative_count": 16,
    "replace_builtin": False,
    "api_max_mb": 20,
    "target": CUSTOM,
    "beam_width": 1,
}
MAX_BEAM_WIDTH = 8

#: img2img "Interrogate before generating" choices: label shown → key (the API also accepts the keys).
IMG2IMG_ACTIONS = {"Off": "off", "Fill empty prompts": "fill", "Replace prompts": "replace"}
_LAST_SET_ATTR = "_prompt_interrogator_last"


# -- host adapters ------------------------------------------------------------------------------------------

def _cmd_flag(name: str) -> bool:
    from modules import shared

    return bool(getattr(getattr(shared, "cmd_opts", None), name, False))


def webui_low_vram() -> bool:
    """``--lowvram``/``--medvram`` (or ``--medvram-sdxl`` with an SDXL model loaded)."""
    from modules import shared

    if _cmd_flag("lowvram") or _cmd_flag("medvram"):
        return True
    model = getattr(shared, "sd_model", None)
    return _cmd_flag("medvram_sdxl") and bool(getattr(model, "is_sdxl", False))


class A1111Host:
    """:class:`~interrogator_core.HostAdapter` for AUTOMATIC1111's webui."""

    def load_device(self) -> torch.device:
        from modules import devices

        dev = getattr(devices, "device_interrogate", None) or devices.get_optimal_device()
        return torch.device(dev)

    def offload_device(self) -> torch.device:
        from modules import devices

        return torch.device(devices.cpu)

    def dtype_for(self, device: torch.device) -> torch.dtype:
        """Half like the built-in interrogator, unless ``--no-half`` or the device is the CPU (or MPS, where
        BLIP is unstable in fp16)."""
        if _cmd_flag("no_half") or device.type in ("cpu", "mps"):
            return torch.float32
        return torch.float16

    def make_room(self) -> None:
        """Under ``--lowvram``/``--medvram`` move the diffusion model's GPU-resident part to the CPU."""
        from modules import devices, lowvram

        if webui_low_vram():
            lowvram.send_everything_to_cpu()
            devices.torch_gc()

    def load(self, models: Sequence[ModelHandle]) -> None:
        device = self.load_device()
        if device.type != "cpu":
            self.make_room()
        for m in models:
            if m.device != device:
                log.debug("loading %s to %s", m.name, device)
                m.module.to(device)

    def offload(self, models: Sequence[ModelHandle]) -> None:
        from modules import devices

        target = self.offload_device()
        for m in models:
            if m.device != target:
                log.debug("offloading %s to %s", m.name, target)
                m.module.to(target)
        devices.torch_gc()

    def check_interrupt(self) -> None:
        from modules import shared

        state = getattr(shared, "state", None)
        if state is not None and getattr(state, "interrupted", False):
            raise Interrupted("interrupted (Interrupt button)")

    def progress(self, step: int, total: int, desc: str = "") -> None:
        from modules import shared

        state = getattr(shared, "state", None)
        if state is None:
            return
        state.sampling_steps = int(total)
        state.sampling_step = int(step)
        state.textinfo = desc


class _Holder(nn.Module):
    """What Forge's ``ModelPatcher`` wraps: a plain module holding ours (patchers set attributes on it)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner


class ForgeHost(A1111Host):
    """:class:`~interrogator_core.HostAdapter` for Forge: its memory manager decides devices and evictions."""

    def __init__(self) -> None:
        from backend import memory_management
        from backend.patcher.base import ModelPatcher

        self._mm = memory_management
        self._patcher_cls = ModelPatcher

    def load_device(self) -> torch.device:
        return torch.device(self._mm.text_encoder_device())

    def offload_device(self) -> torch.device:
        return torch.device(self._mm.text_encoder_offload_device())

    def dtype_for(self, device: torch.device) -> torch.dtype:
        """fp16 where Forge's own interrogator would use it (``should_use_fp16``), else fp32."""
        if device.type == "cpu":
            return torch.float32
        return torch.float16 if self._mm.should_use_fp16(device=device) else torch.float32

    def _patcher(self, handle: ModelHandle):
        patcher = handle.host_data.get("forge_patcher")
        if patcher is None:
            patcher = self._patcher_cls(_Holder(handle.module), load_device=self.load_device(),
                                        offload_device=self.offload_device())
            handle.host_data["forge_patcher"] = patcher
        return patcher

    def load(self, models: Sequence[ModelHandle]) -> None:
        if not models:
            return
        self._mm.load_models_gpu([self._patcher(m) for m in models])
        device = self.load_device()
        for m in models:
            # Forge may leave part of a module on the CPU ("swap") when VRAM is short; our modules are
            # plain torch and need all their weights on one device.
            if any(p.device != device for p in m.module.parameters()):
                log.warning("Forge kept part of %s off %s; moving it there whole", m.name, device)
                m.module.to(device)

    def offload(self, models: Sequence[ModelHandle]) -> None:
        target = self.offload_device()
        for m in models:
            patcher = m.host_data.get("forge_patcher")
            if patcher is not None:
                for loaded in list(self._mm.current_loaded_models):
                    if loaded.model is patcher:
                        self._mm.current_loaded_models.remove(loaded)
                        loaded.model_unload()
            if m.device != target:
                m.module.to(target)
        self._mm.soft_empty_cache()

    def make_room(self) -> None:  # load_models_gpu makes room itself
        return


def is_forge() -> bool:
    """True inside Forge (its ``backend.memory_management`` imports and has the manager's entry points)."""
    try:
        from backend import memory_management
    except ImportError:
        return False
    return all(hasattr(memory_management, n) for n in ("load_models_gpu", "text_encoder_device",
                                                        "current_loaded_models"))


def make_host() -> A1111Host:
    return ForgeHost() if is_forge() else A1111Host()


# -- settings -----------------------------------------------------------------------------------------------

def _models_path() -> str:
    from modules import shared

    path = getattr(shared, "models_path", None)
    if path is None:
        try:
            from modules.paths_internal import models_path as path  # type: ignore[no-redef]
        except ImportError:
            path = "models"
    return str(path)


def default_cache_dir() -> str:
    """``models/clip-interrogator``: clip-interrogator-ext's cache folder, so its caches are reused."""
    return os.path.join(_models_path(), "clip-interrogator")


@dataclass
class Settings:
    """The settings page values (see :data:`DEFAULTS`)."""

    clip_model: str = DEFAULTS["clip_model"]
    caption_model: Optional[str] = DEFAULTS["caption_model"]
    mode: str = DEFAULTS["mode"]
    keep_loaded: bool = DEFAULTS["keep_loaded"]
    cache_dir: str = ""
    min_flavors: int = DEFAULTS["min_flavors"]
    max_flavors: int = DEFAULTS["max_flavors"]
    negative_count: int = DEFAULTS["negative_count"]
    replace_builtin: bool = DEFAULTS["replace_builtin"]
    api_max_mb: float = DEFAULTS["api_max_mb"]
    target: str = DEFAULTS["target"]
    beam_width: int = DEFAULTS["beam_width"]


def read_settings() -> Settings:
    """Current values from ``shared.opts`` (defaults where a key is missing, e.g. before the UI exists)."""
    from modules import shared

    opts = getattr(shared, "opts", None)

    def get(key: str) -> Any:
        value = getattr(opts, OPT_PREFIX + key, None) if opts is not None else None
        return DEFAULTS[key] if value is None else value

    caption = str(get("caption_model") or "").strip()
    return Settings(
        clip_model=str(get("clip_model")).strip() or DEFAULTS["clip_model"],
        caption_model=None if caption.lower() in ("", NO_CAPTION) else caption,
        mode=str(get("mode")),
        keep_loaded=bool(get("keep_loaded")),
        cache_dir=str(get("cache_dir") or "").strip() or default_cache_dir(),
        min_flavors=int(get("min_flavors")),
        max_flavors=int(get("max_flavors")),
        negative_count=int(get("negative_count")),
        replace_builtin=bool(get("replace_builtin")),
        api_max_mb=float(get("api_max_mb")),
        target=str(get("target")).strip() or CUSTOM,
        beam_width=int(get("beam_width")),
    )


def target_info() -> str:
    """The target presets in one line (dropdown and settings help text)."""
    return "; ".join([f"{name}: {t.description}" for name, t in TARGETS.items()]
                     + [f"{CUSTOM}: the CLIP model you pick"])


def register_settings() -> None:
    """``on_ui_settings`` callback: the "Prompt Interrogator" section of the Settings page."""
    import gradio as gr
    from modules import shared

    from interrogator_core import list_clip_models

    def clip_choices() -> dict:
        try:
            names = list_clip_models()
        except Exception as e:  # open_clip missing or broken: still let the user type a name
            log.warning("cannot list CLIP models: %s", e)
            names = []
        return {"choices": names, "allow_custom_value": True}

    options = {
        "clip_model": shared.OptionInfo(DEFAULTS["clip_model"], "Default CLIP model", gr.Dropdown, clip_choices,
                                        section=SETTINGS_SECTION),
        "caption_model": shared.OptionInfo(DEFAULTS["caption_model"], "Default caption model", gr.Dropdown,
                                           lambda: {"choices": list_caption_models() + [NO_CAPTION],
                                                    "allow_custom_value": True}, section=SETTINGS_SECTION),
        "mode": shared.OptionInfo(DEFAULTS["mode"], "Default mode", gr.Radio, lambda: {"choices": list_modes()},
                                  section=SETTINGS_SECTION),
        "min_flavors": shared.OptionInfo(DEFAULTS["min_flavors"], "Minimum flavors (best mode)", gr.Slider,
                                         {"minimum": 0, "maximum": 64, "step": 1}, section=SETTINGS_SECTION),
        "max_flavors": shared.OptionInfo(DEFAULTS["max_flavors"], "Maximum flavors", gr.Slider,
                                         {"minimum": 1, "maximum": 64, "step": 1}, section=SETTINGS_SECTION),
        "negative_count": shared.OptionInfo(DEFAULTS["negative_count"], "Terms in the negative prompt (0: none)",
                                            gr.Slider, {"minimum": 0, "maximum": 64, "step": 1},
                                            section=SETTINGS_SECTION),
        "keep_loaded": shared.OptionInfo(DEFAULTS["keep_loaded"],
                                         "Keep interrogator models in VRAM between calls (faster, uses VRAM)",
                                         onchange=_on_keep_loaded_change, section=SETTINGS_SECTION),
        "cache_dir": shared.OptionInfo("", "Label embedding cache folder (empty: models/clip-interrogator, "
                                           "shared with clip-interrogator-ext)", section=SETTINGS_SECTION),
        "replace_builtin": shared.OptionInfo(DEFAULTS["replace_builtin"],
                                             "Use Prompt Interrogator for the built-in 'Interrogate CLIP' button "
                                             "and /sdapi/v1/interrogate (model 'clip')", section=SETTINGS_SECTION),
        "api_max_mb": shared.OptionInfo(DEFAULTS["api_max_mb"], "Largest image accepted by the API (MB, decoded)",
                                        gr.Number, section=SETTINGS_SECTION),
        "target": shared.OptionInfo(DEFAULTS["target"], "Default target model (picks the CLIP model; custom: the "
                                                        "default CLIP model above)", gr.Dropdown,
                                    lambda: {"choices": list_targets()}, section=SETTINGS_SECTION).info(target_info()),
        "beam_width": shared.OptionInfo(DEFAULTS["beam_width"], "Default beam width (1: greedy chain; k > 1: never "
                                                                "worse, about k times slower)", gr.Slider,
                                        {"minimum": 1, "maximum": MAX_BEAM_WIDTH, "step": 1},
                                        section=SETTINGS_SECTION),
    }
    for key, info in options.items():
        shared.opts.add_option(OPT_PREFIX + key, info)


def _on_keep_loaded_change() -> None:
    if not read_settings().keep_loaded:
        get_service().offload()


# -- the service --------------------------------------------------------------------------------------------

def _queue_lock():
    try:
        from modules.call_queue import queue_lock
    except ImportError:  # pragma: no cover - every webui has it
        return nullcontext()
    return queue_lock


class InterrogatorService:
    """One :class:`Interrogator` for the whole webui, rebuilt when its models or cache folder change.

    Args:
        host_factory: builds the host adapter (default: :func:`make_host`).
        settings: returns the current :class:`Settings` (default: :func:`read_settings`).
        config_overrides: extra :class:`InterrogatorConfig` fields (tests: ``data_dir``, ``caption_max_length``).
    """

    def __init__(self, host_factory: Callable[[], Any] = make_host, settings: Callable[[], Settings] = read_settings,
                 config_overrides: Optional[Dict[str, Any]] = None) -> None:
        self._host_factory = host_factory
        self._settings = settings
        self._overrides = dict(config_overrides or {})
        self._lock = threading.RLock()
        self._host: Optional[Any] = None
        self._ci: Optional[Interrogator] = None
        self._key: Optional[tuple] = None

    # -- configuration ------------------------------------------------------------------------------------
    def settings(self) -> Settings:
        return self._settings()

    @property
    def host(self):
        if self._host is None:
            self._host = self._host_factory()
        return self._host

    def policy(self, settings: Settings) -> OffloadPolicy:
        if settings.keep_loaded:
            return OffloadPolicy.KEEP
        return OffloadPolicy.LOW_VRAM if webui_low_vram() else OffloadPolicy.OFFLOAD

    def target_for(self, target: Optional[str], clip_model: Optional[str] = None) -> str:
        """The target preset to use: ``target``; else ``custom`` when a CLIP model is named explicitly (it
        must win over the settings' default target); else the settings' default target."""
        if target:
            return target.strip()
        return CUSTOM if clip_model and clip_model.strip() else self.settings().target

    def clip_model_for(self, clip_model: Optional[str] = None, target: Optional[str] = None) -> str:
        """The CLIP model a call with these arguments uses (a target preset's, or the named/default one)."""
        clip = (clip_model or self.settings().clip_model).strip()
        return target_clip_model(self.target_for(target, clip_model), clip)

    def interrogator(self, clip_model: Optional[str] = None, caption_model: Optional[str] = None,
                     target: Optional[str] = None, sdxl_dual: bool = False) -> Interrogator:
        """The engine for these models (settings' defaults for None; see :meth:`target_for`). A change builds
        a new engine that takes over the models that stay (e.g. the caption model when only CLIP changes)
        and unloads the rest of the previous one."""
        s = self.settings()
        clip = (clip_model or s.clip_model).strip()
        target = self.target_for(target, clip_model)
        if caption_model is None:
            caption: Optional[str] = s.caption_model
        else:
            caption = None if caption_model.strip().lower() in ("", NO_CAPTION) else caption_model.strip()
        key = (target_clip_model(target, clip), caption, s.cache_dir, target, bool(sdxl_dual))
        with self._lock:
            if self._ci is None or self._key != key:
                cfg = dict(clip_model=clip, caption_model=caption, cache_dir=s.cache_dir,
                           model_dirs=(os.path.join(_models_path(), "clip-interrogator"),),
                           offload=self.policy(s), target=target, sdxl_dual=bool(sdxl_dual))
                cfg.update(self._overrides)
                new = Interrogator(InterrogatorConfig(**cfg), host=self.host)
                if self._ci is not None:
                    kept = new.adopt_models_from(self._ci)
                    log.info("switching models: unloading %s (kept: %s)", self._key[:2] if self._key else None,
                             ", ".join(kept) or "nothing")
                    self._ci.unload()
                self._ci = new
                self._key = key
            else:
                self._ci.set_offload(self.policy(s))
            return self._ci

    @property
    def loaded(self) -> Dict[str, Any]:
        """What is loaded now (for the models endpoint and the tab)."""
        ci = self._ci
        if ci is None:
            return {"clip_model": None, "caption_model": None, "models": []}
        return {"clip_model": ci.config.clip_model, "caption_model": ci.config.caption_model,
                "models": [{"name": h.name, "device": str(h.device)} for h in ci.models]}

    # -- jobs ---------------------------------------------------------------------------------------------
    @contextmanager
    def job(self, name: str, *, lock: bool = True, own_state: bool = True) -> Iterator[None]:
        """Run one job: under ``queue_lock`` (``lock``), between ``shared.state.begin``/``end``
        (``own_state``; False inside a generation, which owns the state), offloading models if it fails."""
        from modules import devices, shared

        with (_queue_lock() if lock else nullcontext()):
            state = getattr(shared, "state", None) if own_state else None
            if state is not None:
                state.begin(job=name)
            try:
                yield
            except BaseException:
                self.offload()
                raise
            finally:
                if state is not None:
                    state.end()
                devices.torch_gc()

    def offload(self) -> None:
        """Move the models to the offload device (never raises: used on error paths)."""
        ci = self._ci
        if ci is None:
            return
        try:
            ci.offload()
        except Exception:  # pragma: no cover - offloading is best effort on an error path
            log.exception("offloading the interrogator models failed")

    def unload(self) -> bool:
        """Forget the models (they reload on next use); True if something was loaded."""
        with self._lock:
            ci, self._ci, self._key = self._ci, None, None
        if ci is None:
            return False
        ci.unload()
        from modules import devices

        devices.torch_gc()
        return True

    # -- calls --------------------------------------------------------------------------------------------
    def prompt(self, image, mode: Optional[str] = None, *, clip_model: Optional[str] = None,
               caption_model: Optional[str] = None, min_flavors: Optional[int] = None,
               max_flavors: Optional[int] = None, negative_count: Optional[int] = None,
               caption: Optional[str] = None, target: Optional[str] = None, beam_width: Optional[int] = None,
               sdxl_dual: bool = False, lock: bool = True, own_state: bool = True) -> InterrogationResult:
        """Image → positive + negative prompt + caption (None arguments take the settings' values); with
        ``sdxl_dual`` (target sdxl) also ``positive_l``/``negative_l`` for SDXL's ViT-L/14 encoder."""
        s = self.settings()
        mode = mode or s.mode
        if mode not in list_modes():
            raise UnknownNameError("mode", mode, list_modes())
        with self.job("interrogate", lock=lock, own_state=own_state):
            ci = self.interrogator(clip_model, caption_model, target=target, sdxl_dual=sdxl_dual)
            return ci.interrogate(
                [image], mode=mode,
                min_flavors=s.min_flavors if min_flavors is None else int(min_flavors),
                max_flavors=s.max_flavors if max_flavors is None else int(max_flavors),
                negative_count=s.negative_count if negative_count is None else int(negative_count),
                captions=None if caption is None else [caption],
                beam_width=s.beam_width if beam_width is None else int(beam_width))[0]

    def score(self, image, *, regenerated=None, prompt: Optional[str] = None, clip_model: Optional[str] = None,
              target: Optional[str] = None, lock: bool = True) -> RoundTripScore:
        """Round trip: CLIP cosine of ``image`` with the ``regenerated`` image and/or with ``prompt``."""
        if regenerated is None and not (prompt and prompt.strip()):
            raise ValueError("nothing to score: give a regenerated image, a prompt, or both")
        with self.job("interrogator score", lock=lock):
            ci = self.interrogator(clip_model, target=target)
            return ci.score([image], references=None if regenerated is None else [regenerated],
                            prompts=[prompt] if prompt and prompt.strip() else None)[0]

    def analyze(self, image, *, clip_model: Optional[str] = None, caption_model: Optional[str] = None,
                top_n: int = 5, tables: Optional[Sequence[str]] = None, with_caption: bool = False,
                lock: bool = True) -> AnalyzeResult:
        """Top ``top_n`` labels of each table with their similarity."""
        with self.job("interrogator analyze", lock=lock):
            ci = self.interrogator(clip_model, caption_model if with_caption else None)
            return ci.analyze([image], top_n=int(top_n), tables=list(tables) if tables else None,
                              with_caption=with_caption)[0]

    def batch(self, folder: str, *, recursive: bool = True, output: str = "txt", existing: str = "skip",
              resume: bool = True, out_file: Optional[str] = None, mode: Optional[str] = None,
              clip_model: Optional[str] = None, caption_model: Optional[str] = None,
              min_flavors: Optional[int] = None, max_flavors: Optional[int] = None,
              negative_count: Optional[int] = None,
              on_progress: Optional[Callable[[int, int, str], None]] = None) -> batch_mod.BatchSummary:
        """Interrogate every image of ``folder`` (see :mod:`interrogator_hosts.batch`)."""
        from modules import shared

        s = self.settings()
        mode = mode or s.mode
        if mode not in list_modes():
            raise UnknownNameError("mode", mode, list_modes())
        root = Path(folder.strip().strip('"')).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a folder")
        images = batch_mod.collect_images([root], recursive=recursive)
        writer = batch_mod.BatchWriter(root, output=output, existing=existing, out_file=out_file, resume=resume)
        tqdm = getattr(shared, "total_tqdm", None)
        state = getattr(shared, "state", None)

        def progress(done: int, total: int, name: str) -> None:
            if state is not None:
                state.job_no = done
            if tqdm is not None:
                tqdm.update()
            if on_progress is not None:
                on_progress(done, total, name)

        with self.job("interrogator batch"):
            if state is not None:
                state.job_count = len(images)
            try:
                ci = self.interrogator(clip_model, caption_model)
                if tqdm is not None:
                    tqdm.updateTotal(len(writer.pending(images)))
                summary = batch_mod.run_batch(
                    ci, images, writer, mode=mode,
                    min_flavors=s.min_flavors if min_flavors is None else int(min_flavors),
                    max_flavors=s.max_flavors if max_flavors is None else int(max_flavors),
                    negative_count=s.negative_count if negative_count is None else int(negative_count),
                    chunk_size=ci.config.caption_batch_size, on_progress=progress)
            finally:
                writer.close()
                if tqdm is not None:
                    tqdm.clear()
        return summary


_service: Optional[InterrogatorService] = None
_service_lock = threading.Lock()


def get_service() -> InterrogatorService:
    """The webui-wide service (created on first use)."""
    global _service
    with _service_lock:
        if _service is None:
            _service = InterrogatorService()
        return _service


def set_service(service: Optional[InterrogatorService]) -> None:
    """Replace the webui-wide service (tests; None: create a fresh one on next use)."""
    global _service
    with _service_lock:
        _service = service


# -- img2img ------------------------------------------------------------------------------------------------

def normalize_action(value: Any) -> str:
    """``off`` / ``fill`` / ``replace`` from a UI label, a key, a bool (API clients) or None."""
    if value is None or value is False:
        return "off"
    if value is True:
        return "fill"
    text = str(value).strip()
    if text in IMG2IMG_ACTIONS:
        return IMG2IMG_ACTIONS[text]
    low = text.lower()
    for label, key in IMG2IMG_ACTIONS.items():
        if low in (key, label.lower()):
            return key
    raise ValueError(f"unknown img2img interrogate action {value!r}; valid: "
                     f"{', '.join(list(IMG2IMG_ACTIONS.values()) + list(IMG2IMG_ACTIONS))}")


def apply_to_processing(p: Any, action: Any, mode: Optional[str] = None,
                        service: Optional[InterrogatorService] = None) -> Optional[InterrogationResult]:
    """img2img ``before_process``: interrogate ``p.init_images[0]`` and set ``p.prompt``/``p.negative_prompt``.

    ``fill`` sets only the prompts that are empty (a prompt this hook filled for the previous image of an
    img2img batch counts as empty); ``replace`` sets both. Runs inside the generation, so it neither takes
    ``queue_lock`` nor touches ``shared.state.begin``/``end``. Returns the result, or None when it did nothing.
    """
    action = normalize_action(action)
    if action == "off":
        return None
    images = getattr(p, "init_images", None) or []
    if not images or images[0] is None:
        log.warning("img2img interrogate: no init image; prompts left as they are")
        return None
    if isinstance(p.prompt, list) or isinstance(getattr(p, "negative_prompt", ""), list):
        log.warning("img2img interrogate: prompt lists are not supported; prompts left as they are")
        return None
    last = getattr(p, _LAST_SET_ATTR, (None, None))
    prompt, negative = p.prompt or "", getattr(p, "negative_prompt", "") or ""
    fill_pos = action == "replace" or not prompt.strip() or prompt == last[0]
    fill_neg = action == "replace" or not negative.strip() or negative == last[1]
    if not (fill_pos or fill_neg):
        return None
    svc = service or get_service()
    s = svc.settings()
    mode = mode or s.mode
    result = svc.prompt(images[0], mode=mode, negative_count=s.negative_count if fill_neg else 0,
                        lock=False, own_state=False)
    new_pos = result.positive if result.mode != "caption" else result.caption
    if fill_pos and new_pos:
        p.prompt = new_pos
    if fill_neg and result.negative:
        p.negative_prompt = result.negative
    setattr(p, _LAST_SET_ATTR, (p.prompt if fill_pos else None, p.negative_prompt if fill_neg else None))
    extra = getattr(p, "extra_generation_params", None)
    if isinstance(extra, dict):
        extra["Interrogator"] = mode
    log.info("img2img interrogate (%s, %s): prompt %s, negative %s", action, mode,
             "set" if fill_pos and new_pos else "kept", "set" if fill_neg and result.negative else "kept")
    return result


# -- built-in interrogator replacement ----------------------------------------------------------------------

_HOOK_ATTR = "_prompt_interrogator_original"


def install_builtin_hook(service: Optional[InterrogatorService] = None) -> bool:
    """Route ``shared.interrogator.interrogate`` (the 📎 Interrogate CLIP button, ``/sdapi/v1/interrogate``
    with model "clip") to our engine while the setting is on. Idempotent; True if installed now."""
    from modules import shared

    target = getattr(shared, "interrogator", None)
    if target is None or _HOOK_ATTR in vars(target):
        return False
    original = target.interrogate

    def interrogate(pil_image):
        svc = service or get_service()
        if not svc.settings().replace_builtin:
            return original(pil_image)
        # The API holds queue_lock around this call and the UI button does not: take neither.
        result = svc.prompt(pil_image.convert("RGB"), lock=False, own_state=True)
        return result.positive or result.caption or result.negative

    setattr(target, _HOOK_ATTR, original)
    target.interrogate = interrogate
    return True


def remove_builtin_hook() -> None:
    """Undo :func:`install_builtin_hook` (``on_script_unloaded``)."""
    from modules import shared

    target = getattr(shared, "interrogator", None)
    if target is not None and _HOOK_ATTR in vars(target):
        original = vars(target)[_HOOK_ATTR]
        delattr(target, _HOOK_ATTR)
        if getattr(original, "__self__", None) is target and getattr(type(target), "interrogate", None) is getattr(
                original, "__func__", None):
            del target.interrogate  # the class's method again
        else:
            target.interrogate = original
