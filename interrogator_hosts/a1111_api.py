"""FastAPI routes of the A1111/Forge extension (pydantic 1 and 2; FastAPI 0.94 and 0.104).

Routes (mounted by ``on_app_started``; every call that uses a model runs under A1111's ``queue_lock``):

* ``GET  /interrogator/models`` — CLIP model names (a list, like clip-interrogator-ext);
* ``GET  /interrogator/caption_models``, ``GET /interrogator/caption_styles``, ``GET /interrogator/modes``,
  ``GET /interrogator/status``;
* ``POST /interrogator/prompt`` — clip-interrogator-ext's body (``image`` base64, ``clip_model_name``, ``mode``)
  plus optional fields (``target``, ``caption_style``, ``caption_prompt``, ``beam_width``, ``sdxl_dual``, ...);
  returns ``prompt`` (the target's main prompt; the negative one in negative mode), ``negative_prompt``,
  ``caption``, ``prompts`` (every prompt the target needs, by encoder: clip_l / clip_g / t5 / llm / llama) and
  ``notes`` (and
  ``prompt_l``/``negative_prompt_l`` with ``sdxl_dual``);
* ``POST /interrogator/score`` — round trip: ``image`` and a ``regenerated`` image and/or a ``prompt`` →
  ``image_similarity``, ``prompt_similarity`` (CLIP cosines);
* ``POST /interrogator/analyze`` — top labels per table (clip-interrogator-ext's ``medium``/``artist``/...
  keys, plus ``tables``; with ``with_caption`` and an image tagger as the caption model, ``tags``: its tags with
  their scores by category); prompt and analyze take the image tagger settings (``general_threshold``, ...,
  ``max_tags``) as optional fields;
* ``POST /interrogator/unload`` — free the models.

Bad input gives 4xx with a message: 400 (not base64, not an image, unknown name, bad value), 413 (image too
large), 404 (model not found), 422 (a field out of range; a model that is there but cannot be loaded, e.g. a
caption family that needs a newer transformers), 409 (interrupted), 507 (out of memory). Names are checked
before any model loads.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
from secrets import compare_digest
from typing import Any, Callable, Dict, List, Optional

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from interrogator_core import (AUTO_STYLE, MAX_PIXELS, NO_CAPTION, SETTINGS, DeviceOutOfMemoryError, InterrogatorError,
                               Interrupted, ModelLoadError, ModelNotFoundError, list_caption_models,
                               list_caption_styles, list_clip_models, list_modes, list_targets)

from interrogator_core.hostapi import TAGGER_SETTINGS

from .a1111_service import InterrogatorService, get_service
from .a1111_settings import CAPTION_CONTROLS

log = logging.getLogger(__name__)

#: clip-interrogator-ext's analyze keys → our table names.
EXT_ANALYZE_KEYS = {"medium": "mediums", "artist": "artists", "movement": "movements", "trending": "trendings",
                    "flavor": "flavors"}


def _field(name: str, description: str, default: Any = None, **kwargs: Any) -> Any:
    """The request field of the core's setting ``name``: its bounds (``ge``/``le``) from the settings table and
    the table's choices named in the description (``default`` None: the settings page's value)."""
    setting = SETTINGS[name]
    if setting.minimum is not None:
        kwargs["ge"] = setting.minimum
    if setting.maximum is not None:
        kwargs["le"] = setting.maximum
    if setting.choices is not None and not setting.open_choices:
        description += " One of: " + ", ".join(setting.options()) + "."
    return Field(default=default, description=description, **kwargs)


def _caption_models_text() -> str:
    return ", ".join(list_caption_models())


class _ImageRequest(BaseModel):
    image: str = Field(default="", title="Image",
                       description="The image as a base64 string (a data: URL is accepted).")
    clip_model_name: Optional[str] = Field(
        default=None, title="CLIP model",
        description="open_clip ARCH/TAG (see /interrogator/models); default: the settings' model.")
    caption_model_name: Optional[str] = Field(
        default=None, title="Caption model",
        description=f"{_caption_models_text()}, a Hugging Face id, a folder, or '{NO_CAPTION}'; default: the "
                    "settings' model (see /interrogator/caption_models).")


class _TargetRequest(_ImageRequest):
    target: Optional[str] = _field(
        "target", title="Target model",
        description="The diffusion model the prompt is for (see /interrogator/status 'targets'): picks the CLIP "
                    "model(s) and which prompts are returned (custom: clip_model_name). Default: custom when "
                    "clip_model_name is given, else the settings' default target.")


class _TaggerRequest(BaseModel):
    """The image tagger settings (a WD v3 tagger as the caption model); None: the settings page's value."""

    general_threshold: Optional[float] = _field("general_threshold", "Default: the settings'.")
    character_threshold: Optional[float] = _field("character_threshold", "Default: the settings'.")
    include_rating: Optional[bool] = _field("include_rating", "Default: the settings'.")
    character_first: Optional[bool] = _field("character_first", "Default: the settings'.")
    replace_underscores: Optional[bool] = _field("replace_underscores", "Default: the settings'.")
    escape_parentheses: Optional[bool] = _field("escape_parentheses", "Default: the settings'.")
    exclude: Optional[str] = _field("exclude", "Comma-separated tags never written; default: the settings'.")
    always_first: Optional[str] = _field("always_first", "Comma-separated tags put first when found; default: "
                                                         "the settings'.")
    max_tags: Optional[int] = _field("max_tags", "Most tags (0: no limit); default: the settings'.")

    def tagger(self) -> Dict[str, Any]:
        """The tagger fields by setting name (None: the settings page's)."""
        return {name: getattr(self, name) for name in TAGGER_SETTINGS}


class InterrogatorPromptRequest(_TaggerRequest, _TargetRequest):
    """Body of ``/interrogator/prompt`` (a superset of clip-interrogator-ext's)."""

    mode: Optional[str] = _field("mode", "Default: the settings'.", title="Mode")
    min_flavors: Optional[int] = _field("min_flavors", "Fewest flavors (best mode); default: the settings'.")
    max_flavors: Optional[int] = _field("max_flavors", "Most flavors; default: the settings'.")
    negative_count: Optional[int] = _field("negative_count", "Most terms in the negative prompt (0: none); "
                                                             "default: the settings'.")
    caption: Optional[str] = Field(default=None, description="Use this caption instead of generating one.")
    beam_width: Optional[int] = _field("beam_width", "Prompts kept per chain step (1: greedy; k: about k times "
                                                     "slower, never worse); default: the settings'.")
    sdxl_dual: bool = _field("sdxl_dual", "Target sdxl: also return prompt_l / negative_prompt_l for SDXL's CLIP "
                                          "ViT-L/14 encoder.", default=False)
    caption_style: Optional[str] = _field(
        "caption_style", "The caption model must be able to write it (see /interrogator/caption_styles); auto: "
                         "the target's default. Default: the settings'.", title="Caption style")
    caption_prompt: Optional[str] = Field(
        default=None, title="Caption instruction",
        description="Free instruction for chat caption models (Qwen-VL, JoyCaption); replaces the style's. "
                    "Default: the settings'.")
    caption_length: Optional[str] = _field("caption_length", "Default: the settings'.", title="Caption length")
    trigger_prefix: Optional[str] = _field("trigger_prefix", "Default: the settings'.", title="Trigger prefix")
    trigger_suffix: Optional[str] = _field("trigger_suffix", "Default: the settings'.", title="Trigger suffix")
    caption_replace: Optional[str] = _field("caption_replace", "A file on the server; default: the settings'.",
                                            title="Caption replace list")


class InterrogatorScoreRequest(_TargetRequest):
    """Body of ``/interrogator/score``: the original ``image`` and a ``regenerated`` image and/or a ``prompt``."""

    regenerated: Optional[str] = Field(default=None, title="Regenerated image",
                                       description="The image generated from the prompt (base64).")
    prompt: Optional[str] = Field(default=None, description="A prompt to score against the image.")


class InterrogatorAnalyzeRequest(_TaggerRequest, _ImageRequest):
    """Body of ``/interrogator/analyze`` (a superset of clip-interrogator-ext's)."""

    top_n: int = _field("top_n", "Labels per table.", default=SETTINGS["top_n"].default)
    tables: Optional[List[str]] = Field(default=None, description="Tables to rank (default: all but negative).")
    with_caption: bool = _field("with_caption", "Also generate a caption.", default=False)


class InterrogatorPromptResponse(BaseModel):
    prompt: str = Field(description="The prompt (in negative mode: the negative prompt, as clip-interrogator-ext).")
    negative_prompt: str
    caption: str
    mode: str
    clip_model_name: str
    caption_model_name: Optional[str] = None
    similarity: Optional[float] = None
    negative_similarity: Optional[float] = None
    target: Optional[str] = None
    prompt_l: Optional[str] = Field(default=None, description="sdxl_dual: the prompt for SDXL's ViT-L/14 encoder.")
    negative_prompt_l: Optional[str] = Field(default=None, description="sdxl_dual: its negative prompt.")
    prompts: Dict[str, str] = Field(default_factory=dict,
                                    description="Every prompt the target needs, by text encoder: clip_l, clip_g "
                                                "(77-token CLIP prompts), t5, llm, llama (the whole caption); e.g. "
                                                "flux: clip_l + t5; sd35: clip_l + clip_g + t5; hidream: clip_l + "
                                                "clip_g + t5 + llama; flux2, qwen-image, z-image, lumina2: llm; "
                                                "chroma, wan: t5.")
    notes: List[str] = Field(default_factory=list,
                             description="Remarks about the result (e.g. Flux does not use a negative prompt).")


class InterrogatorScoreResponse(BaseModel):
    image_similarity: Optional[float] = Field(default=None, description="CLIP cosine image ↔ regenerated image.")
    prompt_similarity: Optional[float] = Field(default=None, description="CLIP cosine image ↔ prompt.")
    clip_model_name: str
    target: str


def decode_image(data: str, max_bytes: int, field: str = "image") -> Image.Image:
    """A base64 string (or data: URL) → a decoded PIL image; HTTPException 400/413 on bad or oversized input.

    ``field``: the request field's name, used in the error messages.
    """
    if not isinstance(data, str) or not data.strip():
        raise HTTPException(status_code=400, detail=f"'{field}' is required: a base64-encoded image")
    data = data.strip()
    if data.startswith(("http://", "https://")):
        raise HTTPException(status_code=400, detail=f"'{field}': image URLs are not accepted; send the "
                                                    f"image as base64")
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if ";base64" not in header:
            raise HTTPException(status_code=400, detail=f"'{field}': data: URL must be base64-encoded")
    limit_chars = (max_bytes * 4) // 3 + 4
    if len(data) > limit_chars + len(data) // 76 + 8:  # allow MIME line breaks
        raise HTTPException(status_code=413, detail=f"'{field}': image is larger than {max_bytes / 2**20:.1f} MB "
                                                    f"(setting 'Largest image accepted by the API')")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise HTTPException(status_code=400, detail=f"'{field}' is not valid base64 ({e})") from e
    if len(raw) > max_bytes:
        raise HTTPException(status_code=413, detail=f"'{field}': image is larger than "
                                                    f"{max_bytes / 2**20:.1f} MB")
    too_many = f"'{field}': image has too many pixels (at most {MAX_PIXELS:,})"
    try:
        # Image.open reads only the header, but refuses (or warns about) a huge size itself, before we see it:
        # that is the same "too many pixels", not an unreadable image.
        im = Image.open(io.BytesIO(raw))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise HTTPException(status_code=413, detail=f"{too_many}: {e}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise HTTPException(status_code=400, detail=f"'{field}' is not a readable image ({e})") from e
    if im.width * im.height > MAX_PIXELS:  # checked before anything is decoded
        raise HTTPException(status_code=413, detail=f"{too_many}: {im.width}x{im.height}")
    try:
        im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise HTTPException(status_code=400, detail=f"'{field}' is not a readable image ({e})") from e
    return im


def http_error(e: BaseException) -> HTTPException:
    """Engine errors → the documented 4xx with the engine's message (507 for out of memory); anything else is a
    bug and stays a 500."""
    if isinstance(e, HTTPException):
        return e
    if isinstance(e, ModelNotFoundError):
        return HTTPException(status_code=404, detail=str(e))
    if isinstance(e, ModelLoadError):
        return HTTPException(status_code=422, detail=str(e))
    if isinstance(e, Interrupted):
        return HTTPException(status_code=409, detail=str(e) or "interrupted")
    if isinstance(e, DeviceOutOfMemoryError):
        return HTTPException(status_code=507, detail=str(e))
    if isinstance(e, (InterrogatorError, ValueError)):
        return HTTPException(status_code=400, detail=str(e))
    return HTTPException(status_code=500, detail=f"{type(e).__name__}: {e}")


def _auth_dependencies() -> list:
    """HTTP basic auth like A1111's own API when ``--api-auth user:pass[,user2:pass2]`` is set."""
    try:
        from modules import shared

        spec = getattr(shared.cmd_opts, "api_auth", None)
    except (ImportError, AttributeError):
        spec = None
    if not spec:
        return []
    credentials = dict(item.split(":", 1) for item in spec.strip().split(",") if ":" in item)

    def auth(creds: HTTPBasicCredentials = Depends(HTTPBasic())) -> bool:
        expected = credentials.get(creds.username)
        if expected is not None and compare_digest(creds.password, expected):
            return True
        raise HTTPException(status_code=401, detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Basic"})

    return [Depends(auth)]


def mount(app: FastAPI, service: Optional[InterrogatorService] = None,
          service_getter: Callable[[], InterrogatorService] = get_service) -> None:
    """Add the ``/interrogator/*`` routes to ``app``."""

    def svc() -> InterrogatorService:
        return service or service_getter()

    def max_bytes() -> int:
        return int(float(svc().settings().api_max_mb) * 2**20)

    deps = _auth_dependencies()

    def get_models() -> List[str]:
        try:
            return list_clip_models()
        except InterrogatorError as e:
            raise http_error(e) from e

    def get_caption_models() -> List[str]:
        return list_caption_models()

    def get_modes() -> List[str]:
        return list_modes()

    def get_caption_styles() -> List[str]:
        return list_caption_styles()

    def get_status() -> Dict[str, Any]:
        s = svc().settings()
        return {"loaded": svc().loaded, "defaults": {"clip_model_name": s.clip_model,
                                                     "caption_model_name": s.caption_model, "mode": s.mode,
                                                     "target": s.target, "beam_width": s.beam_width,
                                                     "caption_style": s.caption_style or AUTO_STYLE,
                                                     "caption_prompt": s.caption_prompt or ""},
                "targets": list_targets(), "caption_styles": list_caption_styles()}

    def post_prompt(req: InterrogatorPromptRequest) -> Dict[str, Any]:
        service_ = svc()
        try:
            controls = {name: getattr(req, name) for name in CAPTION_CONTROLS}
            cfg = service_.config_for(req.clip_model_name, req.caption_model_name, req.target, req.sdxl_dual,
                                      req.caption_style, req.caption_prompt, controls, tagger=req.tagger())
        except Exception as e:
            raise http_error(e) from e
        image = decode_image(req.image, max_bytes())
        try:
            result = service_.prompt(image, mode=req.mode, clip_model=req.clip_model_name,
                                     caption_model=req.caption_model_name, min_flavors=req.min_flavors,
                                     max_flavors=req.max_flavors, negative_count=req.negative_count,
                                     caption=req.caption, target=req.target, beam_width=req.beam_width,
                                     sdxl_dual=req.sdxl_dual, caption_style=req.caption_style,
                                     caption_prompt=req.caption_prompt, controls=controls, tagger=req.tagger())
        except Exception as e:
            log.warning("/interrogator/prompt failed: %s", e)
            raise http_error(e) from e
        caption_model = service_.settings().caption_model if req.caption_model_name is None else \
            req.caption_model_name
        body = {"prompt": result.prompt, "negative_prompt": result.negative, "caption": result.caption,
                "mode": result.mode, "clip_model_name": cfg.clip_model, "caption_model_name": caption_model,
                "similarity": result.similarity, "negative_similarity": result.negative_similarity,
                "target": cfg.target, "prompts": dict(result.prompts), "notes": list(result.notes)}
        if result.positive_l is not None:
            body.update(prompt_l=result.negative_l if result.mode == "negative" else result.positive_l,
                        negative_prompt_l=result.negative_l)
        return body

    def post_score(req: InterrogatorScoreRequest) -> Dict[str, Any]:
        service_ = svc()
        try:
            cfg = service_.config_for(req.clip_model_name, target=req.target)
        except Exception as e:
            raise http_error(e) from e
        limit = max_bytes()
        image = decode_image(req.image, limit)
        regenerated = decode_image(req.regenerated, limit, "regenerated") if req.regenerated else None
        try:
            result = service_.score(image, regenerated=regenerated, prompt=req.prompt,
                                    clip_model=req.clip_model_name, target=req.target)
        except Exception as e:
            log.warning("/interrogator/score failed: %s", e)
            raise http_error(e) from e
        return {"image_similarity": result.image_similarity, "prompt_similarity": result.prompt_similarity,
                "clip_model_name": cfg.clip_model, "target": cfg.target}

    def post_analyze(req: InterrogatorAnalyzeRequest) -> Dict[str, Any]:
        image = decode_image(req.image, max_bytes())
        try:
            result = svc().analyze(image, clip_model=req.clip_model_name, caption_model=req.caption_model_name,
                                   top_n=req.top_n, tables=req.tables, with_caption=req.with_caption,
                                   tagger=req.tagger())
        except Exception as e:
            log.warning("/interrogator/analyze failed: %s", e)
            raise http_error(e) from e
        body: Dict[str, Any] = {key: {label: sim for label, sim in result.tables[table]}
                                for key, table in EXT_ANALYZE_KEYS.items() if table in result.tables}
        body.update(result.to_dict())
        return body

    def post_unload() -> Dict[str, Any]:
        from modules.call_queue import queue_lock

        with queue_lock:
            unloaded = svc().unload()
        return {"unloaded": unloaded}

    app.add_api_route("/interrogator/models", get_models, methods=["GET"], response_model=List[str],
                      dependencies=deps)
    app.add_api_route("/interrogator/caption_models", get_caption_models, methods=["GET"],
                      response_model=List[str], dependencies=deps)
    app.add_api_route("/interrogator/modes", get_modes, methods=["GET"], response_model=List[str],
                      dependencies=deps)
    app.add_api_route("/interrogator/caption_styles", get_caption_styles, methods=["GET"],
                      response_model=List[str], dependencies=deps)
    app.add_api_route("/interrogator/status", get_status, methods=["GET"], dependencies=deps)
    app.add_api_route("/interrogator/prompt", post_prompt, methods=["POST"],
                      response_model=InterrogatorPromptResponse, dependencies=deps)
    app.add_api_route("/interrogator/score", post_score, methods=["POST"],
                      response_model=InterrogatorScoreResponse, dependencies=deps)
    app.add_api_route("/interrogator/analyze", post_analyze, methods=["POST"], dependencies=deps)
    app.add_api_route("/interrogator/unload", post_unload, methods=["POST"], dependencies=deps)


def on_app_started(demo: Any, app: FastAPI) -> None:
    """``script_callbacks.on_app_started`` callback (``demo`` is None with ``--nowebui``)."""
    mount(app)
    from .a1111_hooks import install_builtin_hook

    install_builtin_hook()
