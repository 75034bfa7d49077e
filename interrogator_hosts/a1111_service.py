"""The service shared by the tab, the img2img script and the API: one engine instance configured from the
settings page; ``job()`` wraps every call in ``queue_lock`` / ``shared.state.begin``/``end`` and offloads the
models when a call fails."""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

from interrogator_core import (CUSTOM, AnalyzeResult, InterrogationResult, Interrogator, InterrogatorConfig,
                               OffloadPolicy, RoundTripScore, tagger_options)
from interrogator_core.hostapi import (SETTINGS, BatchSummary, BatchWriter, caption_style_value, check_model_names,
                                       check_request, collect_images, run_batch)

from .a1111_host import make_host, webui_low_vram
from .a1111_patches import no_autocast
from .a1111_settings import CAPTION_CONTROLS, Settings, models_dir, read_settings

log = logging.getLogger(__name__)


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

    def config_for(self, clip_model: Optional[str] = None, caption_model: Optional[str] = None,
                   target: Optional[str] = None, sdxl_dual: bool = False, caption_style: Optional[str] = None,
                   caption_prompt: Optional[str] = None, controls: Optional[Mapping[str, Any]] = None, *,
                   tagger: Optional[Mapping[str, Any]] = None) -> InterrogatorConfig:
        """The engine configuration for a call with these arguments (None: the settings' values; a caption
        style ``auto`` or "": the target's default; an empty ``caption_prompt``: the style's own instruction;
        ``controls``: caption controls by name, :data:`CAPTION_CONTROLS`, None values take the settings';
        ``tagger``: image tagger settings by name that replace the settings page's, None values ignored).

        The only host policy here is which defaults apply: with no ``target``, a ``clip_model`` named in the
        call means target ``custom`` (an explicit CLIP model wins over the settings' default target). The core
        resolves the target to its CLIP model (``config.clip_model``) and checks every name and value.
        """
        s = self.settings()
        named_clip = (clip_model or "").strip()
        if target and target.strip():
            target = target.strip()
        else:
            target = CUSTOM if named_clip else s.target
        cfg = dict(clip_model=named_clip or s.clip_model,
                   caption_model=s.caption_model if caption_model is None else caption_model, cache_dir=s.cache_dir,
                   model_dirs=(models_dir(),), offload=self.policy(s),
                   target=target, sdxl_dual=bool(sdxl_dual),
                   caption_style=s.caption_style if caption_style is None else caption_style_value(caption_style),
                   caption_prompt=s.caption_prompt if caption_prompt is None else (caption_prompt.strip() or None),
                   trust_remote_code=s.trust_remote_code,
                   tagger_options=tagger_options({**s.tagger_values(),
                                                  **{k: v for k, v in (tagger or {}).items() if v is not None}}))
        for name in CAPTION_CONTROLS:  # the settings', or the call's where it gives one
            given = (controls or {}).get(name)
            cfg[name] = getattr(s, name) if given is None else SETTINGS[name].check(given)
        cfg.update(self._overrides)
        return InterrogatorConfig(**cfg)

    @staticmethod
    def check_names(config: InterrogatorConfig) -> None:
        """Raise the engine's error for a CLIP or caption model name that cannot work, before anything loads
        (resolving a name reads no weights; a registry name that still has to download passes; a caption
        family needing a newer transformers than the webui's fails here with the version it needs)."""
        check_model_names(config)

    def interrogator(self, clip_model: Optional[str] = None, caption_model: Optional[str] = None,
                     target: Optional[str] = None, sdxl_dual: bool = False, caption_style: Optional[str] = None,
                     caption_prompt: Optional[str] = None, controls: Optional[Mapping[str, Any]] = None, *,
                     tagger: Optional[Mapping[str, Any]] = None) -> Interrogator:
        """The engine for these models (see :meth:`config_for`). A change goes through
        :meth:`Interrogator.reconfigured`, which keeps the models that stay (e.g. the caption model when only
        CLIP changes) and unloads the rest."""
        cfg = self.config_for(clip_model, caption_model, target, sdxl_dual, caption_style, caption_prompt,
                              controls, tagger=tagger)
        self.check_names(cfg)
        with self._lock:
            self._ci = Interrogator(cfg, host=self.host) if self._ci is None else self._ci.reconfigured(cfg)
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
                with no_autocast():  # our models run in their own dtype even when called inside autocast
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
            ci, self._ci = self._ci, None
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
               sdxl_dual: bool = False, caption_style: Optional[str] = None, caption_prompt: Optional[str] = None,
               lock: bool = True, own_state: bool = True, controls: Optional[Mapping[str, Any]] = None,
               tagger: Optional[Mapping[str, Any]] = None) -> InterrogationResult:
        """Image → the target's prompts (``positive``/``negative``, ``prompts`` by encoder, ``notes``) and the
        caption; None arguments take the settings' values (see :meth:`config_for`)."""
        s = self.settings()
        mode, min_flavors, max_flavors, negative_count, beam_width = check_request(  # before any model loads
            mode or s.mode, min_flavors, s.max_flavors if max_flavors is None else max_flavors,
            s.negative_count if negative_count is None else negative_count,
            s.beam_width if beam_width is None else beam_width, min_default=s.min_flavors)
        with self.job("interrogate", lock=lock, own_state=own_state):
            ci = self.interrogator(clip_model, caption_model, target, sdxl_dual, caption_style, caption_prompt,
                                   controls, tagger=tagger)
            return ci.interrogate([image], mode=mode, min_flavors=min_flavors, max_flavors=max_flavors,
                                  negative_count=negative_count, captions=None if caption is None else [caption],
                                  beam_width=beam_width)[0]

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
                lock: bool = True, tagger: Optional[Mapping[str, Any]] = None) -> AnalyzeResult:
        """Top ``top_n`` labels of each table with their similarity (with ``with_caption`` and an image tagger
        as the caption model, also its tags with their scores)."""
        with self.job("interrogator analyze", lock=lock):
            ci = self.interrogator(clip_model, caption_model if with_caption else None, tagger=tagger)
            return ci.analyze([image], top_n=int(top_n), tables=list(tables) if tables else None,
                              with_caption=with_caption)[0]

    def batch(self, folder: str, *, recursive: bool = True, output: str = "txt", existing: str = "skip",
              resume: bool = True, out_file: Optional[str] = None, mode: Optional[str] = None,
              clip_model: Optional[str] = None, caption_model: Optional[str] = None,
              min_flavors: Optional[int] = None, max_flavors: Optional[int] = None,
              negative_count: Optional[int] = None,
              on_progress: Optional[Callable[[int, int, str], None]] = None,
              tagger: Optional[Mapping[str, Any]] = None) -> BatchSummary:
        """Interrogate every image of ``folder`` (see :func:`interrogator_core.hostapi.run_batch`)."""
        from modules import shared

        s = self.settings()
        mode, min_flavors, max_flavors, negative_count, _ = check_request(
            mode or s.mode, min_flavors, s.max_flavors if max_flavors is None else max_flavors,
            s.negative_count if negative_count is None else negative_count, 1, min_default=s.min_flavors)
        root = Path(folder.strip().strip('"')).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a folder")
        images = collect_images([root], recursive=recursive)
        writer = BatchWriter(root, output=output, existing=existing, out_file=out_file, resume=resume)
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
                ci = self.interrogator(clip_model, caption_model, tagger=tagger)
                if tqdm is not None:
                    tqdm.updateTotal(len(writer.pending(images)))
                summary = run_batch(
                    ci, images, writer, mode=mode, min_flavors=min_flavors, max_flavors=max_flavors,
                    negative_count=negative_count, chunk_size=ci.config.caption_batch_size, on_progress=progress)
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


def offload_unless_kept() -> None:
    """The settings page's keep_loaded changed: offload the models now unless it is on."""
    if not read_settings().keep_loaded:
        get_service().offload()


def set_service(service: Optional[InterrogatorService]) -> None:
    """Replace the webui-wide service (tests; None: create a fresh one on next use)."""
    global _service
    with _service_lock:
        _service = service
