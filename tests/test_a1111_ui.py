"""The Interrogator tab built with real gradio (3.41 in A1111's venv, 4.x in Forge's), its callbacks, and the
batch folder runs (sidecars, csv/jsonl, skip/overwrite/append, interrupt + resume)."""
import csv
import json
import sys
from pathlib import Path

import pytest

from interrogator_core import list_targets

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "a1111"))

from fixtures import forge_webui, webui, webui_models  # noqa: E402,F401

gr = pytest.importorskip("gradio")


@pytest.fixture
def callbacks(webui):
    from interrogator_hosts.a1111_ui import TabCallbacks

    return TabCallbacks(), webui[0], webui[1]


def _is_update(value) -> bool:
    return isinstance(value, dict) and value.get("__type__") in ("update", "generic_update")  # gradio 4 / 3


# -- building the tab -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_fixture", ["webui", "forge_webui"])
def test_tab_builds_and_binds_send_buttons(env_fixture, request):
    request.getfixturevalue(env_fixture)
    from modules import infotext_utils
    from interrogator_hosts import a1111_ui

    tabs = a1111_ui.on_ui_tabs()
    assert len(tabs) == 1
    blocks, title, elem_id = tabs[0]
    assert isinstance(blocks, gr.Blocks) and title == "Interrogator" and elem_id == "prompt_interrogator"
    bindings = infotext_utils.registered_param_bindings
    assert sorted(b.tabname for b in bindings) == ["img2img", "txt2img"]
    text = bindings[0].source_text_component
    assert isinstance(text, gr.Textbox) and text.elem_id == "prompt_interrogator_infotext"
    assert next(b for b in bindings if b.tabname == "img2img").source_image_component is not None
    fns = blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns  # gradio 4 / 3
    fns = [getattr(getattr(d, "fn", None), "__name__", "") for d in fns]
    assert {"interrogate", "analyze", "unload", "run_batch"} <= set(fns)


def test_send_buttons_fall_back_to_old_module_name(webui, monkeypatch):
    """A1111 before 1.7 only has modules.generation_parameters_copypaste."""
    import modules
    import modules.generation_parameters_copypaste as old
    from interrogator_hosts import a1111_ui

    monkeypatch.delattr(modules, "infotext_utils")
    sys.modules["modules.infotext_utils"] = None  # import now raises ImportError
    try:
        assert a1111_ui.copypaste_module() is old
        with gr.Blocks():
            buttons = a1111_ui._bind_send_buttons(gr.Image(), gr.Textbox())
        assert set(buttons) == {"txt2img", "img2img"}
    finally:
        del sys.modules["modules.infotext_utils"]


def test_img2img_controls(webui):
    from interrogator_hosts import a1111_ui

    with gr.Blocks():
        action, mode, target, style = a1111_ui.build_img2img_ui()
    assert action.value == "Off" and "Replace prompts" in [c if isinstance(c, str) else c[0] for c in action.choices]
    assert mode.value == "best" and target.value == "custom" and style.value == "auto"
    assert {"flux", "sd35", "sdxl-tags"} <= {c if isinstance(c, str) else c[0] for c in target.choices}


def test_settings_section_registers_through_callback(webui):
    shared, _ = webui
    from modules import script_callbacks
    from interrogator_hosts import a1111

    script_callbacks.on_ui_settings(a1111.register_settings)
    script_callbacks.ui_settings_callback()
    assert "prompt_interrogator_keep_loaded" in shared.opts.data_labels


# -- callbacks --------------------------------------------------------------------------------------------------

def test_interrogate_callback_fills_fields_and_infotext(callbacks, images):
    cb, shared, svc = callbacks
    from modules import infotext_utils

    s = svc.settings()
    pos, neg, cap, info, status, pos_l, neg_l, prompts = cb.interrogate(images[0], "best", s.clip_model,
                                                                        s.caption_model, 2, 4, 3)
    assert pos and neg and cap and "best mode" in status and prompts == ""
    assert pos_l == neg_l == "", "the SDXL ViT-L boxes stay empty without sdxl dual"
    parsed = infotext_utils.parse_generation_parameters(info)
    assert parsed["Prompt"] == pos and parsed["Negative prompt"] == neg, "Send-to pastes both prompts"


def test_interrogate_callback_without_image_or_with_error(callbacks, images):
    cb, shared, svc = callbacks
    out = cb.interrogate(None, "best", "x", "none", 2, 4, 3)
    assert len(out) == 8 and all(_is_update(v) for v in out[:4] + out[5:]) and "image" in out[4]
    out = cb.interrogate(images[0], "best", "ViT-Nope-99/none", "none", 2, 4, 3)
    assert len(out) == 8 and all(_is_update(v) for v in out[:4] + out[5:]), "an error never lands in a prompt box"
    assert out[4].startswith("Error") and "ViT-Nope-99" in out[4]
    assert shared.state.events[-1][0] == "end"


def test_analyze_callback(callbacks, images):
    cb, _, svc = callbacks
    from interrogator_hosts.a1111_ui import ANALYZE_TABLES

    out = cb.analyze(images[1], svc.settings().clip_model, 3, False)
    labels, text, status = out[:len(ANALYZE_TABLES)], out[-2], out[-1]
    assert [len(d) for d in labels] == [3] * len(ANALYZE_TABLES)
    assert "mediums:" in text and status == "Done."


def test_unload_and_interrupt_callbacks(callbacks, images):
    cb, shared, svc = callbacks
    assert cb.unload() == "Nothing was loaded."
    cb.interrogate(images[0], "fast", svc.settings().clip_model, "none", 2, 4, 3)
    assert cb.unload() == "Models unloaded." and svc.interrogator().models == []
    cb.interrupt()
    assert shared.state.interrupted


# -- batch ------------------------------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path, images):
    root = tmp_path / "dataset"
    (root / "sub").mkdir(parents=True)
    images[0].save(root / "a.png")
    images[1].save(root / "b.jpg")
    images[2].save(root / "sub" / "c.png")
    (root / "broken.png").write_bytes(b"not a png")
    return root


def _batch(cb, svc, folder, output="txt", existing="skip", resume=True, recursive=True, mode="fast"):
    return cb.batch(str(folder), recursive, output, existing, resume, mode, svc.settings().clip_model,
                    svc.settings().caption_model, 2, 4, 3)


def test_batch_sidecars_recursive_and_bad_files(callbacks, folder):
    cb, shared, svc = callbacks
    text = _batch(cb, svc, folder)
    assert "3 written" in text and "1 failed" in text and "broken.png" in text
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        assert (folder / name).read_text().strip()
    assert not (folder / ".prompt_interrogator.journal").exists(), "a finished run leaves no journal"
    assert shared.total_tqdm.cleared and shared.state.events[-1][0] == "end"
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        (folder / name).unlink()
    text = _batch(cb, svc, folder, recursive=False)
    assert "2 written" in text and not (folder / "sub" / "c.txt").exists()


def test_batch_skip_overwrite_append(callbacks, folder):
    cb, _, svc = callbacks
    (folder / "a.txt").write_text("hand-written")
    assert "2 written, 1 skipped" in _batch(cb, svc, folder)
    assert (folder / "a.txt").read_text() == "hand-written"
    _batch(cb, svc, folder, existing="overwrite")
    first = (folder / "a.txt").read_text().strip()
    assert first != "hand-written"
    _batch(cb, svc, folder, existing="append")
    assert (folder / "a.txt").read_text().strip() == f"{first}, {first}", "append joins on one line"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_batch_single_file_outputs(callbacks, folder, fmt):
    cb, _, svc = callbacks
    text = _batch(cb, svc, folder, output=fmt, mode="best")
    out = folder / f"prompts.{fmt}"
    assert "3 written" in text and str(out) in text
    if fmt == "csv":
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
    else:
        rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert sorted(r["file"] for r in rows) == ["a.png", "b.jpg", "sub/c.png"]
    assert all(r["prompt"] and r["negative_prompt"] and r["mode"] == "best" for r in rows)
    assert "3 skipped" in _batch(cb, svc, folder, output=fmt), "skip: images already in the file"
    _batch(cb, svc, folder, output=fmt, existing="overwrite")
    lines = out.read_text().strip().splitlines()
    assert len(lines) == (4 if fmt == "csv" else 3), "overwrite starts the file anew"


def test_batch_interrupt_then_resume(webui, folder, tiny_models, small_data_dir):
    shared, _ = webui
    from interrogator_hosts import a1111
    from interrogator_hosts.a1111_ui import TabCallbacks

    svc = a1111.InterrogatorService(config_overrides={"data_dir": small_data_dir, "caption_max_length": 8,
                                                      "caption_batch_size": 1})
    a1111.set_service(svc)
    cb = TabCallbacks()
    seen = []

    def progress(value, desc=""):
        seen.append(value)
        if len(seen) == 1:
            shared.state.interrupt()  # the Interrupt button, pressed after the first image

    text = cb.batch(str(folder), True, "txt", "overwrite", True, "fast", svc.settings().clip_model,
                    svc.settings().caption_model, 2, 4, 3, progress=progress)
    assert "Interrupted" in text and "1 written" in text
    journal = folder / ".prompt_interrogator.journal"
    assert journal.read_text().split() == ["a.png"]
    a_text = (folder / "a.txt").read_text()
    (folder / "a.txt").write_text("must stay: resume skips journaled images")
    text = cb.batch(str(folder), True, "txt", "overwrite", True, "fast", svc.settings().clip_model,
                    svc.settings().caption_model, 2, 4, 3)
    assert "2 written, 1 skipped" in text and not journal.exists()
    assert (folder / "a.txt").read_text() == "must stay: resume skips journaled images"
    assert (folder / "sub" / "c.txt").exists() and a_text


def test_batch_bad_folder_and_options(callbacks, tmp_path):
    cb, _, svc = callbacks
    assert cb.batch("", True, "txt", "skip", True, "fast", "", "", 2, 4, 3) == "Enter a folder."
    assert "not a folder" in _batch(cb, svc, tmp_path / "missing")
    assert "unknown output" in _batch(cb, svc, tmp_path, output="xml")
    assert "mode" in _batch(cb, svc, tmp_path, mode="fastest")


# -- issue 7: target presets, SDXL dual prompts, beam width, round trip ----------------------------------------

from fixtures import registry_clips, second_tiny_clip  # noqa: E402,F401


def _components(blocks) -> dict:
    return {getattr(b, "elem_id", None): b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}


@pytest.mark.parametrize("env_fixture", ["webui", "forge_webui"])
def test_tab_has_target_dual_beam_and_round_trip(env_fixture, request):
    shared, _ = request.getfixturevalue(env_fixture)
    from interrogator_core import TARGETS
    from interrogator_hosts import a1111_ui

    shared.opts.data["prompt_interrogator_target"] = "sdxl"
    shared.opts.data["prompt_interrogator_beam_width"] = 3
    blocks = a1111_ui.build_tab()
    c = _components(blocks)
    target = c["prompt_interrogator_prompt_target"]
    choices = [x if isinstance(x, str) else x[0] for x in target.choices]
    assert choices == list_targets() and target.value == "sdxl"
    assert all(t.description in target.info for t in TARGETS.values())
    assert c["prompt_interrogator_sdxl_dual"].visible, "default target sdxl: the dual checkbox shows"
    assert c["prompt_interrogator_prompt_clip"].interactive is False, "a preset target picks the CLIP model"
    assert c["prompt_interrogator_beam_width"].value == 3
    assert not c["prompt_interrogator_prompt_l"].visible and not c["prompt_interrogator_negative_l"].visible
    for elem in ("prompt_interrogator_regenerated", "prompt_interrogator_score_prompt", "prompt_interrogator_score"):
        assert elem in c
    fns = blocks.fns.values() if isinstance(blocks.fns, dict) else blocks.fns
    names = [getattr(getattr(d, "fn", None), "__name__", "") for d in fns]
    assert {"score", "target_changed", "dual_changed"} <= set(names)


def test_target_and_dual_toggle_callbacks(callbacks):
    cb = callbacks[0]

    def props(update):
        return {k: v for k, v in update.items() if k in ("interactive", "visible")}

    clip, dual = cb.target_changed("sd15")
    assert props(clip) == {"interactive": False} and props(dual) == {"visible": False}
    clip, dual = cb.target_changed("sdxl")
    assert props(clip) == {"interactive": False} and props(dual) == {"visible": True}
    clip, dual = cb.target_changed("custom")
    assert props(clip) == {"interactive": True} and props(dual) == {"visible": False}
    assert [props(u) for u in cb.dual_changed("sdxl", True)] == [{"visible": True}] * 2
    assert [props(u) for u in cb.dual_changed("sd15", True)] == [{"visible": False}] * 2
    assert [props(u) for u in cb.dual_changed("sdxl", False)] == [{"visible": False}] * 2


def test_interrogate_callback_with_target_dual_and_beam(callbacks, images, registry_clips, monkeypatch):
    cb, _, svc = callbacks
    from interrogator_core import Interrogator

    beams = []
    real = Interrogator.interrogate
    monkeypatch.setattr(Interrogator, "interrogate",
                        lambda self, *a, **k: beams.append(k.get("beam_width")) or real(self, *a, **k))
    s = svc.settings()
    out = cb.interrogate(images[0], "fast", s.clip_model, s.caption_model, 2, 4, 3, "sdxl", 2, True)
    pos, neg, cap, _, status, pos_l, neg_l, _ = out
    assert "Error" not in status and pos_l and neg_l and pos_l.startswith(cap)
    assert registry_clips == ["ViT-bigG-14/laion2b_s39b_b160k", "ViT-L-14/openai"] and beams[0] == 2
    # the checkbox left ticked while another target is picked is ignored (no error, no ViT-L prompts)
    out = cb.interrogate(images[0], "fast", s.clip_model, s.caption_model, 2, 4, 3, "custom", 1, True)
    assert "Error" not in out[4] and out[0] and out[5:7] == ("", "") and beams[-1] == 1
    assert svc.interrogator().config.clip_model == s.clip_model


def test_round_trip_score_callback(callbacks, images):
    cb, shared, svc = callbacks
    clip = svc.settings().clip_model
    assert "original" in cb.score(None, images[0], "", clip)
    assert "nothing to score" in cb.score(images[0], None, "  ", clip)
    assert shared.state.events == [], "refused before taking the queue: no job started"
    text = cb.score(images[0], images[0], "", clip)
    assert "image↔regenerated: 1.0000" in text and "prompt" not in text
    text = cb.score(images[0], images[1], "a photo", clip)
    expected = svc.interrogator().score([images[0]], references=[images[1]], prompts=["a photo"])[0]
    assert text == expected.to_text() and "image↔prompt" in text


def test_settings_default_target_and_beam_width(webui):
    shared, svc = webui
    from interrogator_core import TARGETS

    info = shared.opts.data_labels["prompt_interrogator_target"]
    assert info.default == "custom" and info.component_args()["choices"] == list_targets()
    assert all(t.description in info.comment_after for t in TARGETS.values())
    beam = shared.opts.data_labels["prompt_interrogator_beam_width"]
    assert beam.default == 1 and (beam.component_args["minimum"], beam.component_args["maximum"]) == (1, 8)
    shared.opts.data["prompt_interrogator_target"] = "sd15"
    shared.opts.data["prompt_interrogator_beam_width"] = 4
    s = svc.settings()
    assert (s.target, s.beam_width) == ("sd15", 4)
    assert svc.interrogator().config.clip_model == "ViT-L-14/openai", "the default target picks the CLIP model"


def test_interrogate_callback_flux_shows_prompts_by_encoder_and_notes(callbacks, images, registry_clips):
    cb, _, svc = callbacks
    s = svc.settings()
    pos, neg, cap, _, status, _, _, prompts = cb.interrogate(images[0], "fast", s.clip_model, s.caption_model, 2, 4,
                                                             3, "flux", 1, False, "auto", "")
    assert "Error" not in status and neg == ""
    lines = dict(line.split(": ", 1) for line in prompts.splitlines())
    assert set(lines) == {"clip_l", "t5"} and lines["clip_l"] == pos and cap in lines["t5"]
    assert "negative" in status.lower(), "the result's notes are shown"
    out = cb.interrogate(images[0], "fast", s.clip_model, s.caption_model, 2, 4, 3, "flux", 1, False, "detailed", "")
    assert out[4].startswith("Error") and "short" in out[4], "a style the caption model cannot write is refused"


def test_interrogate_callback_shows_hidreams_four_prompts_and_anime_dual(callbacks, images, registry_clips):
    """Issue 19: every prompt the target's encoders read is shown (HiDream: four); the SDXL anime targets take the
    SDXL-dual checkbox like sdxl."""
    cb, _, svc = callbacks
    s = svc.settings()
    out = cb.interrogate(images[0], "fast", s.clip_model, s.caption_model, 2, 4, 3, "hidream", 1, False, "auto", "")
    assert "Error" not in out[4]
    lines = dict(line.split(": ", 1) for line in out[7].splitlines())
    assert set(lines) == {"llama", "clip_l", "clip_g", "t5"} and out[2] in lines["llama"]
    out = cb.interrogate(images[0], "fast", s.clip_model, s.caption_model, 2, 4, 3, "pony", 1, True, "auto", "")
    assert "Error" not in out[4] and out[5] and out[6], "pony with the checkbox: ViT-L/14 prompts"
    for target, shown in (("pony", True), ("noobai", True), ("illustrious", True), ("hidream", False)):
        _, dual = cb.target_changed(target)
        assert dual["visible"] is shown, target


def test_tab_has_caption_style_instruction_and_prompts_box(webui):
    shared, _ = webui
    from interrogator_core import list_caption_models
    from interrogator_hosts import a1111_ui

    shared.opts.data["prompt_interrogator_caption_style"] = "detailed"
    c = _components(a1111_ui.build_tab())
    style = c["prompt_interrogator_prompt_caption_style"]
    assert style.value == "detailed" and [x if isinstance(x, str) else x[0] for x in style.choices] == \
        ["auto", "short", "detailed", "tags"]
    caption_choices = [x if isinstance(x, str) else x[0] for x in c["prompt_interrogator_prompt_caption"].choices]
    assert caption_choices == list_caption_models() + ["none"] and "qwen3-vl-2b" in caption_choices
    assert "prompt_interrogator_caption_prompt" in c and "prompt_interrogator_prompts" in c


# -- image taggers: the Batch tab and the Analyze tab with a tagger folder as the caption model --------------------
def test_batch_and_analyze_tabs_with_a_tagger(callbacks, folder, images, tmp_path):
    import math

    from interrogator_hosts import a1111
    from interrogator_core.testing import TINY_TAGS, make_tiny_tagger

    cb, shared, svc = callbacks
    scores = {"1girl": 0.95, "solo": 0.9, "long_hair": 0.6, "hatsune_miku": 0.92}
    tagger = make_tiny_tagger(tmp_path / "tiny-tagger", head_bias=[
        math.log(p / (1 - p)) for p in (scores.get(name, 0.1) for name, _ in TINY_TAGS)])
    shared.opts.data[a1111.OPT_PREFIX + "exclude"] = "long hair"  # the settings page's tagger options apply
    text = cb.batch(str(folder), True, "txt", "overwrite", True, "caption", svc.settings().clip_model, str(tagger),
                    2, 4, 3)
    assert text.startswith("3 written, 0 skipped, 1 failed of 4 images"), text
    for sidecar in (folder / "a.txt", folder / "b.txt", folder / "sub" / "c.txt"):
        assert sidecar.read_text().strip() == "hatsune miku, 1girl, solo"
    out = cb.analyze(images[1], svc.settings().clip_model, 2, True, str(tagger))
    text, status = out[-2], out[-1]
    assert status == "Done." and "tags (character):\n  0.9200  hatsune miku" in text and "long hair" not in text


def test_interrogate_callback_takes_the_caption_controls(callbacks, images):
    """Issue 19 item 5: the tab's caption length and trigger words reach the engine."""
    cb, shared, svc = callbacks
    s = svc.settings()
    pos, neg, cap, *_ = cb.interrogate(images[0], "fast", s.clip_model, s.caption_model, 2, 4, 3, "custom", 1, False,
                                       "auto", "", "very_short", "ohwx", "zyx style")
    assert pos.startswith("ohwx, ") and pos.endswith(", zyx style") and "ohwx" not in cap + neg
    assert svc._ci.config.caption_length == "very_short"
