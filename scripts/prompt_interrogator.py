"""Prompt Interrogator for AUTOMATIC1111 / Forge: the Interrogator tab, the img2img script, settings and API.

Thin: everything lives in ``interrogator_hosts`` (loaded from this extension's folder, which the webui does
not put on ``sys.path``). Importing this file only registers callbacks; models load on first use.
"""
import logging
import sys
from pathlib import Path

_EXT_ROOT = str(Path(__file__).resolve().parent.parent)
if _EXT_ROOT not in sys.path:
    sys.path.append(_EXT_ROOT)  # appended, so our folder never shadows the webui's own modules

from modules import script_callbacks, scripts  # noqa: E402

from interrogator_core import InterrogatorError  # noqa: E402
from interrogator_hosts import a1111, a1111_api, a1111_ui  # noqa: E402

log = logging.getLogger("prompt_interrogator")

script_callbacks.on_ui_settings(a1111.register_settings)
script_callbacks.on_ui_tabs(a1111_ui.on_ui_tabs)
script_callbacks.on_app_started(a1111_api.on_app_started)
script_callbacks.on_script_unloaded(a1111.remove_builtin_hook)


class PromptInterrogatorScript(scripts.Script):
    """img2img: "Interrogate before generating" (off / fill empty prompts / replace) from the init image.

    API: ``"alwayson_scripts": {"prompt interrogator": {"args": ["replace", "best"]}}``, optionally followed by
    a target and a caption style (``["fill", "best", "flux", "detailed"]``; "" = the settings' default).
    """

    def title(self) -> str:
        return "Prompt Interrogator"

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible if is_img2img else False

    def ui(self, is_img2img: bool):
        return a1111_ui.build_img2img_ui(self.elem_id)

    def before_process(self, p, action=None, mode=None, target=None, caption_style=None, *args) -> None:
        try:
            a1111.apply_to_processing(p, action, mode or None, target=target or None,
                                      caption_style=caption_style or None)
        except Exception as e:  # never stop the generation: it runs with the prompts the user gave
            log.error("Prompt Interrogator: prompts left unchanged: %s", e,
                      exc_info=not isinstance(e, (ValueError, InterrogatorError)))
