"""What a host adapter needs from the engine beyond ``interrogator_core.__all__``: the one module hosts import.

Hosts (``nodes.py``, ``interrogator_hosts/*``) import from ``interrogator_core`` (the public API) and from here,
never from the engine's other modules, so the engine's insides can move without touching a host.

* Settings: :data:`SETTINGS` / :func:`get_setting` (every user-facing setting with its default, bounds,
  choices and help; build controls from it), :func:`target_help`, :func:`caption_model_value` /
  :func:`caption_style_value` (``"none"`` / ``"auto"`` → None), :func:`list_clip_model_names`,
  :data:`TAGGER_SETTINGS` (the image tagger's settings; ``interrogator_core.tagger_options`` builds them).
* Checks before any model loads: :func:`check_request` (a request's numbers and mode),
  :func:`check_model_names` (a CLIP or caption model that cannot work), :func:`parse_dtype` /
  :data:`PRECISIONS` / :func:`quantization_of` (the precision setting).
* Batch runs over folders: :func:`collect_images`, :class:`BatchWriter`, :func:`run_batch`,
  :class:`BatchSummary`, :data:`EXISTING_POLICIES` (what to do with images that already have output).
* :data:`CUSTOM`: the target that uses the CLIP model as given; :func:`all_prompt_keys` (every encoder key, in
  the order of the ComfyUI outputs) and :func:`token_streams` (which prompt fills which ComfyUI token stream).
"""
from __future__ import annotations

from typing import Any

from .batch import EXISTING_POLICIES, BatchSummary, BatchWriter, collect_images, run_batch
from .host import PRECISIONS, parse_dtype, quantization_of
from .request import Request, check_request, flag, whole_number
from .settings import (SETTINGS, TAGGER_SETTINGS, Setting, caption_model_value, caption_style_value,
                       get_setting, list_clip_model_names, target_help)
from .targets import CUSTOM, all_prompt_keys, token_streams

__all__ = ["CUSTOM", "EXISTING_POLICIES", "PRECISIONS", "SETTINGS", "TAGGER_SETTINGS", "BatchSummary", "BatchWriter",
           "Request",
           "Setting", "caption_model_value", "caption_style_value", "check_model_names", "check_request",
           "collect_images", "flag", "get_setting", "list_clip_model_names", "parse_dtype",
           "quantization_of", "run_batch",
           "target_help", "token_streams", "all_prompt_keys", "whole_number"]


def check_model_names(config: Any) -> None:
    """Raise the engine's error for a CLIP or caption model name of ``config`` (an ``InterrogatorConfig``) that
    cannot work, before anything loads: resolving a name reads no weights; a registry name that still has to
    download passes; a caption family that needs a newer transformers than the installed one fails here with
    the version it needs."""
    from .caption import check_family_supported, resolve_caption_model
    from .clip import resolve_clip

    resolve_clip(config.clip_model, config.model_dirs)
    if config.caption_model is not None:
        _, family, _ = resolve_caption_model(config.caption_model, config.model_dirs)
        if family:  # a family newer than this transformers: the core's one version error
            check_family_supported(family, config.caption_model)
