"""The A1111/Forge "Interrogator" tab and the img2img script's controls (gradio 3.41 and 4.x).

The callbacks live in :class:`TabCallbacks` as plain methods (testable without a browser); ``build_tab`` only
lays out components and wires them.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import gradio as gr

from interrogator_core import (AUTO_STYLE, CUSTOM, NO_CAPTION, SETTINGS, TABLE_NAMES, InterrogatorError, Interrupted,
                               get_target, list_modes, list_targets)
from interrogator_core.hostapi import EXISTING_POLICIES

from .a1111_hooks import IMG2IMG_ACTIONS
from .a1111_service import InterrogatorService, get_service
from .a1111_settings import caption_model_choices, caption_style_choices, clip_model_choices, target_info

log = logging.getLogger(__name__)


def takes_dual(target: str) -> bool:
    """The SDXL-dual checkbox means something for ``target`` (sdxl and the SDXL anime targets: a ViT-L/14 prompt)."""
    return target in list_targets() and get_target(target or CUSTOM).needs_dual

#: Tables shown as label widgets in the Analyze tab (user tables appear in its text output).
ANALYZE_TABLES = [t for t in TABLE_NAMES if t != "negative"]
BATCH_OUTPUTS = {"Text file beside each image (.txt)": "txt", "One CSV file": "csv", "One JSON-lines file": "jsonl"}
BATCH_EXISTING = {"Skip images that have output": "skip", "Overwrite": "overwrite", "Append": "append"}
assert set(BATCH_EXISTING.values()) == set(EXISTING_POLICIES)


def infotext(positive: str, negative: str) -> str:
    """Prompt + negative in the webui's infotext layout, for the "Send to" buttons to paste both."""
    positive = " ".join(positive.split())
    negative = " ".join(negative.split())
    return f"{positive}\nNegative prompt: {negative}" if negative else positive


def copypaste_module():
    """``modules.infotext_utils`` (A1111 ≥ 1.7, Forge), else the old ``generation_parameters_copypaste``."""
    try:
        from modules import infotext_utils as module
    except ImportError:
        try:
            from modules import generation_parameters_copypaste as module  # type: ignore[no-redef]
        except ImportError:
            return None
    return module


def _log_failure(what: str, e: BaseException) -> None:
    """Expected failures (interrupt, bad input, missing files, engine errors) as a warning; others with a
    traceback."""
    expected = isinstance(e, (Interrupted, ValueError, OSError, InterrogatorError))
    (log.warning if expected else log.exception)("%s failed: %s", what, e)


def _error_text(e: BaseException) -> str:
    if isinstance(e, Interrupted):
        return "Interrupted."
    return f"Error: {e}"


class TabCallbacks:
    """What the tab's buttons do. Every method returns plain values (``gr.update()`` = leave unchanged)."""

    def __init__(self, service_getter: Callable[[], InterrogatorService] = get_service) -> None:
        self._svc = service_getter

    def interrogate(self, image, mode: str, clip_model: str, caption_model: str, min_flavors: float,
                    max_flavors: float, negative_count: float, target: str = CUSTOM, beam_width: float = 1,
                    sdxl_dual: bool = False, caption_style: str = AUTO_STYLE,
                    caption_prompt: str = "", caption_length: str = AUTO_STYLE, trigger_prefix: str = "",
                    trigger_suffix: str = "") -> Tuple[Any, ...]:
        """→ (positive, negative, caption, infotext for Send-to, status, positive_l, negative_l, prompts).

        ``clip_model`` counts only with target ``custom``; ``sdxl_dual`` only with target ``sdxl`` (the
        checkbox may stay ticked while another target is picked); ``positive_l``/``negative_l`` are SDXL's
        ViT-L/14 prompts (empty without ``sdxl_dual``); ``prompts``: every prompt the target needs, one
        ``encoder: prompt`` line each (clip_l, clip_g, t5, llm, llama: the target's encoders); the result's notes
        go to the status.
        """
        keep = gr.update()
        if image is None:
            return keep, keep, keep, keep, "Drop an image first.", keep, keep, keep
        target = target or CUSTOM
        dual = bool(sdxl_dual) and takes_dual(target)
        t0 = time.perf_counter()
        try:
            r = self._svc().prompt(image, mode=mode, clip_model=clip_model, caption_model=caption_model or NO_CAPTION,
                                   min_flavors=int(min_flavors), max_flavors=int(max_flavors),
                                   negative_count=int(negative_count), target=target, beam_width=int(beam_width),
                                   sdxl_dual=dual, caption_style=caption_style or AUTO_STYLE,
                                   caption_prompt=caption_prompt or "",
                                   controls={"caption_length": caption_length or AUTO_STYLE,
                                             "trigger_prefix": trigger_prefix or "",
                                             "trigger_suffix": trigger_suffix or ""})
        except Exception as e:
            _log_failure("interrogate", e)
            return keep, keep, keep, keep, _error_text(e), keep, keep, keep
        sims = []
        if r.similarity is not None:
            sims.append(f"prompt similarity {r.similarity:.3f}")
        if r.negative_similarity is not None:
            sims.append(f"negative similarity {r.negative_similarity:.3f}")
        status = f"{r.mode} mode, {time.perf_counter() - t0:.1f} s" + (f"; {', '.join(sims)}" if sims else "")
        status += "".join(f"\n\n{note}" for note in r.notes)
        prompts = "\n".join(f"{encoder}: {text}" for encoder, text in r.prompts.items())
        return (r.positive, r.negative, r.caption, infotext(r.positive, r.negative), status, r.positive_l or "",
                r.negative_l or "", prompts)

    @staticmethod
    def target_changed(target: str) -> Tuple[Any, Any]:
        """Target dropdown → (CLIP dropdown: editable only for ``custom``, SDXL-dual checkbox: only for the SDXL targets)."""
        return gr.update(interactive=target == CUSTOM), gr.update(visible=takes_dual(target))

    @staticmethod
    def dual_changed(target: str, sdxl_dual: bool) -> Tuple[Any, Any]:
        """SDXL-dual checkbox (or target) → the two ViT-L/14 prompt boxes shown or hidden."""
        show = bool(sdxl_dual) and takes_dual(target)
        return gr.update(visible=show), gr.update(visible=show)

    def score(self, image, regenerated, prompt: str, clip_model: str) -> str:
        """Analyze tab, Round trip: the image vs the regenerated image and/or a prompt → the scores as text."""
        if image is None:
            return "Drop the original image first."
        try:
            r = self._svc().score(image, regenerated=regenerated, prompt=prompt or None, clip_model=clip_model)
        except Exception as e:
            _log_failure("round-trip score", e)
            return _error_text(e)
        return r.to_text()

    def analyze(self, image, clip_model: str, top_n: float, with_caption: bool,
                caption_model: str = "") -> Tuple[Any, ...]:
        """→ one ``{label: similarity}`` per :data:`ANALYZE_TABLES`, the full text, status."""
        keep = gr.update()
        if image is None:
            return tuple([keep] * len(ANALYZE_TABLES)) + (keep, "Drop an image first.")
        try:
            r = self._svc().analyze(image, clip_model=clip_model, caption_model=caption_model or None,
                                    top_n=int(top_n), with_caption=bool(with_caption))
        except Exception as e:
            _log_failure("analyze", e)
            return tuple([keep] * len(ANALYZE_TABLES)) + (keep, _error_text(e))
        labels = tuple({label: float(sim) for label, sim in r.tables.get(t, [])} for t in ANALYZE_TABLES)
        return labels + (r.to_text(), "Done.")

    def batch(self, folder: str, recursive: bool, output_label: str, existing_label: str, resume: bool,
              mode: str, clip_model: str, caption_model: str, min_flavors: float, max_flavors: float,
              negative_count: float, progress: Optional[Callable] = None) -> str:
        """Run a folder; → a summary text (written/skipped/failed, interrupted, where the output went)."""
        if not folder or not str(folder).strip():
            return "Enter a folder."
        def on_progress(done: int, total: int, name: str) -> None:
            if progress is not None:
                progress((done, total), desc=name)
        try:
            summary = self._svc().batch(
                str(folder), recursive=bool(recursive), output=BATCH_OUTPUTS.get(output_label, output_label),
                existing=BATCH_EXISTING.get(existing_label, existing_label), resume=bool(resume), mode=mode,
                clip_model=clip_model, caption_model=caption_model or NO_CAPTION, min_flavors=int(min_flavors),
                max_flavors=int(max_flavors), negative_count=int(negative_count), on_progress=on_progress)
        except Exception as e:
            _log_failure("batch", e)
            return _error_text(e)
        return summary.to_text()

    def unload(self) -> str:
        from modules.call_queue import queue_lock

        with queue_lock:
            unloaded = self._svc().unload()
        return "Models unloaded." if unloaded else "Nothing was loaded."

    @staticmethod
    def interrupt() -> None:
        from modules import shared

        shared.state.interrupt()


def _bind_send_buttons(image, text) -> Dict[str, Any]:
    """Send to txt2img / img2img buttons: prompt and negative prompt (and the image for img2img)."""
    module = copypaste_module()
    if module is None:
        log.warning("neither modules.infotext_utils nor generation_parameters_copypaste: no Send-to buttons")
        return {}
    buttons = module.create_buttons(["txt2img", "img2img"])
    for tabname, button in buttons.items():
        module.register_paste_params_button(module.ParamBinding(
            paste_button=button, tabname=tabname, source_text_component=text,
            source_image_component=image if tabname == "img2img" else None))
    return buttons


def setting_slider(name: str, value: Any, label: str, elem_id: Optional[str] = None, **kwargs: Any) -> gr.Slider:
    """A slider of the core's whole-number setting ``name``: its bounds and help from the settings table."""
    setting = SETTINGS[name]
    return gr.Slider(setting.minimum, setting.maximum, value=value, step=1, label=label,
                     info=kwargs.pop("info", setting.help_text()), elem_id=elem_id, **kwargs)


def build_tab(callbacks: Optional[TabCallbacks] = None) -> gr.Blocks:
    """The Interrogator tab: Prompt, Analyze, Batch (and Unload)."""
    cb = callbacks or TabCallbacks()
    s = get_service().settings()
    modes = list_modes()
    clip_models = clip_model_choices()
    caption_models = caption_model_choices()

    def clip_dropdown(elem: str, interactive: bool = True) -> gr.Dropdown:
        return gr.Dropdown(clip_models, value=s.clip_model, label="CLIP model", allow_custom_value=True,
                           interactive=interactive, elem_id=f"prompt_interrogator_{elem}_clip")

    def caption_dropdown(elem: str) -> gr.Dropdown:
        return gr.Dropdown(caption_models, value=s.caption_model or NO_CAPTION, label="Caption model",
                           allow_custom_value=True, elem_id=f"prompt_interrogator_{elem}_caption")

    def style_dropdown(elem: str) -> gr.Dropdown:
        return gr.Dropdown(caption_style_choices(), value=s.caption_style or AUTO_STYLE, label="Caption style",
                           info="auto: the target's; detailed/tags need a caption model that writes them",
                           elem_id=f"prompt_interrogator_{elem}_caption_style")

    def target_dropdown() -> gr.Dropdown:
        return gr.Dropdown(list_targets(), value=s.target, label="Target model", info=target_info(),
                           elem_id="prompt_interrogator_prompt_target")

    def flavor_sliders(elem: str) -> Tuple[gr.Slider, gr.Slider, gr.Slider]:
        return (setting_slider("min_flavors", s.min_flavors, "Min flavors (best)",
                               f"prompt_interrogator_{elem}_min_flavors"),
                setting_slider("max_flavors", s.max_flavors, "Max flavors", f"prompt_interrogator_{elem}_max_flavors"),
                setting_slider("negative_count", s.negative_count, "Negative terms",
                               f"prompt_interrogator_{elem}_negative_count"))

    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Tab("Prompt"):
            with gr.Row():
                image = gr.Image(type="pil", label="Image", elem_id="prompt_interrogator_image")
                with gr.Column():
                    mode = gr.Radio(modes, value=s.mode, label="Mode")
                    target = target_dropdown()
                    sdxl_dual = gr.Checkbox(False, label="SDXL: separate prompts for both text encoders "
                                                         "(ViT-bigG and ViT-L/14; loads both)",
                                            visible=takes_dual(s.target), elem_id="prompt_interrogator_sdxl_dual")
                    clip = clip_dropdown("prompt", interactive=s.target == CUSTOM)
                    caption_model = caption_dropdown("prompt")
                    with gr.Row():
                        style = style_dropdown("prompt")
                        instruction = gr.Textbox(value=s.caption_prompt or "", label="Caption instruction",
                                                 placeholder="chat caption models only; empty: the style's own",
                                                 elem_id="prompt_interrogator_caption_prompt")
                    with gr.Row():  # caption controls (issue 19 item 5); the replace list: the settings page
                        length = gr.Dropdown(SETTINGS["caption_length"].options(),
                                             value=s.caption_length or AUTO_STYLE, label="Caption length",
                                             elem_id="prompt_interrogator_prompt_caption_length")
                        prefix = gr.Textbox(value=s.trigger_prefix, label="Trigger words (prefix)",
                                            elem_id="prompt_interrogator_trigger_prefix")
                        suffix = gr.Textbox(value=s.trigger_suffix, label="Trigger words (suffix)",
                                            elem_id="prompt_interrogator_trigger_suffix")
                    min_f, max_f, neg_n = flavor_sliders("prompt")
                    beam = setting_slider("beam_width", s.beam_width, "Beam width",
                                          "prompt_interrogator_beam_width")
            with gr.Row():
                go = gr.Button("Interrogate", variant="primary", elem_id="prompt_interrogator_go")
                unload = gr.Button("Unload models", elem_id="prompt_interrogator_unload")
            positive = gr.Textbox(label="Prompt", lines=3, show_copy_button=True)
            negative = gr.Textbox(label="Negative prompt", lines=2, show_copy_button=True)
            with gr.Row():
                positive_l = gr.Textbox(label="Prompt for SDXL's ViT-L/14 encoder", lines=3, show_copy_button=True,
                                        visible=False, elem_id="prompt_interrogator_prompt_l")
                negative_l = gr.Textbox(label="Negative prompt for SDXL's ViT-L/14 encoder", lines=2,
                                        show_copy_button=True, visible=False,
                                        elem_id="prompt_interrogator_negative_l")
            prompts = gr.Textbox(label="Prompts by text encoder (clip_l / clip_g / t5 / llm / llama: the target's "
                                       "encoders)", lines=4,
                                 show_copy_button=True, elem_id="prompt_interrogator_prompts")
            caption = gr.Textbox(label="Caption", lines=1)
            status = gr.Markdown("")
            send_text = gr.Textbox(visible=False, elem_id="prompt_interrogator_infotext")
            with gr.Row():
                _bind_send_buttons(image, send_text)
            go.click(cb.interrogate, inputs=[image, mode, clip, caption_model, min_f, max_f, neg_n, target, beam,
                                             sdxl_dual, style, instruction, length, prefix, suffix],
                     outputs=[positive, negative, caption, send_text, status, positive_l, negative_l, prompts])
            target.change(cb.target_changed, inputs=[target], outputs=[clip, sdxl_dual])
            for control in (target, sdxl_dual):
                control.change(cb.dual_changed, inputs=[target, sdxl_dual], outputs=[positive_l, negative_l])
            unload.click(cb.unload, inputs=[], outputs=[status])

        with gr.Tab("Analyze"):
            with gr.Row():
                a_image = gr.Image(type="pil", label="Image", elem_id="prompt_interrogator_analyze_image")
                with gr.Column():
                    a_clip = clip_dropdown("analyze")
                    a_top = setting_slider("top_n", SETTINGS["top_n"].default, "Top labels per table",
                                           "prompt_interrogator_analyze_top_n")
                    a_caption = gr.Checkbox(False, label="Also caption")
                    a_caption_model = caption_dropdown("analyze")
                    a_go = gr.Button("Analyze", variant="primary")
            with gr.Row():
                a_labels = [gr.Label(label=t.capitalize(), num_top_classes=int(SETTINGS["top_n"].maximum))
                            for t in ANALYZE_TABLES]
            a_text = gr.Textbox(label="All tables", lines=8, show_copy_button=True)
            a_status = gr.Markdown("")
            a_go.click(cb.analyze, inputs=[a_image, a_clip, a_top, a_caption, a_caption_model],
                       outputs=a_labels + [a_text, a_status])
            with gr.Accordion("Round trip", open=False, elem_id="prompt_interrogator_round_trip"):
                gr.Markdown("How well an image generated from the prompt matches this image, and how well a "
                            "prompt matches it (CLIP cosine similarity with the CLIP model above; higher is "
                            "closer). Compare modes, seeds or beam widths.")
                with gr.Row():
                    r_image = gr.Image(type="pil", label="Regenerated image (optional)",
                                       elem_id="prompt_interrogator_regenerated")
                    with gr.Column():
                        r_prompt = gr.Textbox(label="Prompt (optional)", lines=3,
                                              elem_id="prompt_interrogator_score_prompt")
                        r_go = gr.Button("Score", elem_id="prompt_interrogator_score")
                r_text = gr.Textbox(label="Scores", lines=2, elem_id="prompt_interrogator_scores")
                r_go.click(cb.score, inputs=[a_image, r_image, r_prompt, a_clip], outputs=[r_text])

        with gr.Tab("Batch"):
            folder = gr.Textbox(label="Image folder", placeholder="/path/to/images")
            with gr.Row():
                recursive = gr.Checkbox(True, label="Include subfolders")
                resume = gr.Checkbox(True, label="Resume an interrupted run")
            with gr.Row():
                output = gr.Radio(list(BATCH_OUTPUTS), value=next(iter(BATCH_OUTPUTS)), label="Output")
                existing = gr.Radio(list(BATCH_EXISTING), value=next(iter(BATCH_EXISTING)),
                                    label="When an image already has output")
            with gr.Row():
                b_mode = gr.Radio(modes, value=s.mode, label="Mode")
                b_clip = clip_dropdown("batch")
                b_caption = caption_dropdown("batch")
            b_min, b_max, b_neg = flavor_sliders("batch")
            with gr.Row():
                b_go = gr.Button("Start", variant="primary", elem_id="prompt_interrogator_batch_go")
                b_stop = gr.Button("Interrupt", elem_id="prompt_interrogator_batch_interrupt")
            b_status = gr.Textbox(label="Result", lines=4)

            def run_batch(folder_: str, recursive_: bool, output_: str, existing_: str, resume_: bool, mode_: str,
                          clip_: str, caption_: str, min_: float, max_: float, neg_: float,
                          progress=gr.Progress()) -> str:
                return cb.batch(folder_, recursive_, output_, existing_, resume_, mode_, clip_, caption_, min_, max_,
                                neg_, progress=progress)

            b_go.click(run_batch, inputs=[folder, recursive, output, existing, resume, b_mode, b_clip, b_caption,
                                          b_min, b_max, b_neg], outputs=[b_status])
            b_stop.click(TabCallbacks.interrupt, inputs=[], outputs=[], queue=False)
    return tab


def on_ui_tabs() -> List[Tuple[gr.Blocks, str, str]]:
    """``script_callbacks.on_ui_tabs`` callback."""
    return [(build_tab(), "Interrogator", "prompt_interrogator")]


def build_img2img_ui(elem_id: Callable[[str], str] = lambda s: s) -> List[Any]:
    """The img2img script's controls: [action radio, mode, target, caption style] (their values reach
    ``before_process`` in this order)."""
    s = get_service().settings()
    with gr.Accordion("Prompt Interrogator", open=False, elem_id=elem_id("prompt_interrogator")):
        with gr.Row():
            action = gr.Radio(list(IMG2IMG_ACTIONS), value="Off", label="Interrogate before generating",
                              elem_id=elem_id("action"))
            mode = gr.Dropdown(list_modes(), value=s.mode, label="Mode", elem_id=elem_id("mode"))
            target = gr.Dropdown(list_targets(), value=s.target, label="Target model", elem_id=elem_id("target"))
            style = gr.Dropdown(caption_style_choices(), value=s.caption_style or AUTO_STYLE, label="Caption style",
                                elem_id=elem_id("caption_style"))
    return [action, mode, target, style]
