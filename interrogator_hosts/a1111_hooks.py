"""The img2img hook (``apply_to_processing``) and the optional replacement of the built-in CLIP interrogator
(``install_builtin_hook``)."""
from __future__ import annotations

import logging
from typing import Any, Optional

from interrogator_core import InterrogationResult

from .a1111_service import InterrogatorService, get_service

log = logging.getLogger(__name__)

#: img2img "Interrogate before generating" choices: label shown → key (the API also accepts the keys).
IMG2IMG_ACTIONS = {"Off": "off", "Fill empty prompts": "fill", "Replace prompts": "replace"}
_LAST_SET_ATTR = "_prompt_interrogator_last"


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
