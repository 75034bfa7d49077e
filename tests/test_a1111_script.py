"""scripts/prompt_interrogator.py loaded the way the webui loads it; the img2img hook on a fake ``p``."""
import importlib.util
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "a1111"))

from fixtures import registry_clips, second_tiny_clip, webui, webui_models  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "prompt_interrogator.py"


def load_script_module():
    """Like the webui's script_loading.load_module: exec the file as a fresh module."""
    spec = importlib.util.spec_from_file_location("prompt_interrogator_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeP:
    """The fields of StableDiffusionProcessingImg2Img the hook reads and writes."""

    def __init__(self, image, prompt="", negative_prompt=""):
        self.init_images = [image]
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.extra_generation_params = {}


class NoLock:
    """A queue_lock stand-in that fails the test if anyone takes it (the generation already holds it)."""

    def __enter__(self):
        raise AssertionError("img2img hook must not take queue_lock")

    acquire = __enter__

    def __exit__(self, *a):
        return False


@pytest.fixture
def script(webui):
    shared, svc = webui
    from modules import script_callbacks

    script_callbacks.clear_callbacks()
    module = load_script_module()
    from modules import scripts

    classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, scripts.Script)
               and v is not scripts.Script]
    assert len(classes) == 1, "exactly one Script subclass in the scripts/ module (the webui registers each)"
    return classes[0](), shared, svc


def test_import_only_registers_callbacks(webui):
    from modules import script_callbacks

    script_callbacks.clear_callbacks()
    load_script_module()
    registered = {k: len(v) for k, v in script_callbacks.callback_map.items()}
    assert registered == {"ui_settings": 1, "ui_tabs": 1, "app_started": 1, "script_unloaded": 1}
    from interrogator_hosts import a1111

    assert a1111.get_service()._ci is None, "no model work at import"
    assert str(ROOT) in sys.path


def test_script_is_always_visible_in_img2img_only(script):
    s, _, _ = script
    from modules import scripts

    assert s.title() == "Prompt Interrogator"
    assert s.show(True) is scripts.AlwaysVisible
    assert s.show(False) is False


def test_replace_sets_prompt_and_negative(script, images):
    s, shared, _ = script
    from modules import call_queue

    call_queue.queue_lock = NoLock()
    p = FakeP(images[0], prompt="old prompt", negative_prompt="old negative")
    s.before_process(p, "Replace prompts", "fast")
    assert p.prompt != "old prompt" and p.prompt
    assert p.negative_prompt != "old negative" and p.negative_prompt
    assert p.extra_generation_params["Interrogator"] == "fast"
    assert shared.state.events == [], "inside a generation: no state.begin/end of our own"


def test_fill_keeps_user_prompts_and_fills_empty_ones(script, images):
    s, _, _ = script
    p = FakeP(images[0], prompt="my prompt", negative_prompt="")
    s.before_process(p, "fill", "fast")
    assert p.prompt == "my prompt" and p.negative_prompt
    p = FakeP(images[0], prompt="my prompt", negative_prompt="my negative")
    s.before_process(p, "Fill empty prompts", "fast")
    assert (p.prompt, p.negative_prompt) == ("my prompt", "my negative")


def test_fill_refills_for_each_image_of_an_img2img_batch(script, images):
    """img2img batch reuses ``p``: the prompt filled for image 1 must not stick to image 2."""
    s, _, _ = script
    p = FakeP(images[0])
    s.before_process(p, "fill", "fast")
    first = (p.prompt, p.negative_prompt)
    assert all(first)
    p.init_images = [images[1]]
    s.before_process(p, "fill", "fast")
    assert p.prompt and p.prompt != first[0]


def test_off_and_api_args(script, images):
    s, _, svc = script
    p = FakeP(images[0], prompt="")
    for off in ("Off", "off", None, False):
        s.before_process(p, off, "fast")
    assert p.prompt == "" and svc._ci is None, "off: no model is even loaded"  # an inside: no interrogator built
    s.before_process(p)  # API request without args for this script
    assert p.prompt == ""
    s.before_process(p, True)  # a bool from an API client: fill
    assert p.prompt


def test_errors_leave_prompts_and_do_not_raise(script, images, caplog):
    s, shared, _ = script
    p = FakeP(images[0], prompt="", negative_prompt="keep")
    p.init_images = []
    s.before_process(p, "replace", "fast")
    assert (p.prompt, p.negative_prompt) == ("", "keep")
    p = FakeP(images[0], prompt="", negative_prompt="keep")
    s.before_process(p, "replace", "no-such-mode")
    assert (p.prompt, p.negative_prompt) == ("", "keep")
    assert "no-such-mode" in caplog.text
    s.before_process(p, "sometimes", "fast")
    assert "sometimes" in caplog.text and p.prompt == ""


def test_interrupt_during_generation_leaves_prompts(script, images):
    s, shared, svc = script
    shared.state.interrupted = True
    p = FakeP(images[0], prompt="", negative_prompt="")
    s.before_process(p, "replace", "best")
    assert (p.prompt, p.negative_prompt) == ("", "")


def test_builtin_hook_install_and_remove(webui, images):
    shared, svc = webui
    from interrogator_hosts import a1111

    class Builtin:
        calls = 0

        def interrogate(self, pil_image):
            Builtin.calls += 1
            return "builtin caption, artist"

    builtin = Builtin()
    shared.interrogator = builtin
    assert a1111.install_builtin_hook() is True
    assert a1111.install_builtin_hook() is False, "idempotent"
    assert builtin.interrogate(images[0]) == "builtin caption, artist"
    shared.opts.data["prompt_interrogator_replace_builtin"] = True
    ours = builtin.interrogate(images[0].convert("L"))
    assert ours and ours != "builtin caption, artist" and Builtin.calls == 1
    assert shared.state.events[0] == ("begin", "interrogate"), "like the built-in: its own state job"
    a1111.remove_builtin_hook()
    assert builtin.interrogate(images[0]) == "builtin caption, artist"
    assert "interrogate" not in vars(builtin)


def test_builtin_hook_does_not_deadlock_under_api_queue_lock(webui, images):
    """/sdapi/v1/interrogate calls shared.interrogator.interrogate while holding queue_lock."""
    shared, svc = webui
    from modules.call_queue import queue_lock
    from interrogator_hosts import a1111

    shared.interrogator = type("B", (), {"interrogate": lambda self, im: "builtin"})()
    a1111.install_builtin_hook()
    shared.opts.data["prompt_interrogator_replace_builtin"] = True
    out = []

    def api_call():
        with queue_lock:
            out.append(shared.interrogator.interrogate(images[0]))

    t = threading.Thread(target=api_call)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive() and out and out[0] != "builtin"


@pytest.mark.parametrize("mode", ["negative", "caption"])
def test_prompt_boxes_follow_the_result_in_every_mode(script, images, mode):
    """Replace: the positive box gets the result's prompt (the caption in caption mode) and never a negative
    prompt; the negative box gets the negative prompt (negative mode) or is left alone (caption mode)."""
    s, _, svc = script
    p = FakeP(images[0], prompt="old prompt", negative_prompt="old negative")
    result = svc.prompt(images[0], mode=mode)
    s.before_process(p, "replace", mode)
    if mode == "negative":
        assert result.negative and p.negative_prompt == result.negative == result.prompt
        assert p.prompt == "old prompt", "a negative prompt never lands in the positive box"
    else:
        assert result.caption and p.prompt == result.caption == result.prompt
        assert p.negative_prompt == "old negative"


def test_builtin_hook_returns_the_result_prompt(webui, images):
    shared, svc = webui
    from interrogator_hosts import a1111

    shared.interrogator = type("B", (), {"interrogate": lambda self, im: "builtin"})()
    a1111.install_builtin_hook()
    shared.opts.data["prompt_interrogator_replace_builtin"] = True
    for mode in ("negative", "caption"):
        shared.opts.data["prompt_interrogator_mode"] = mode
        expected = svc.prompt(images[0], mode=mode).prompt
        assert expected and shared.interrogator.interrogate(images[0]) == expected
    a1111.remove_builtin_hook()


def test_img2img_target_and_style_arguments_reach_the_engine(script, images, registry_clips):
    """API args ["replace", "fast", "flux", ""]: the flux prompt fills the prompt box; Flux has no negative."""
    s, _, svc = script
    p = FakeP(images[0], prompt="old prompt", negative_prompt="old negative")
    s.before_process(p, "replace", "fast", "flux", "")
    assert svc.interrogator(target="flux").config.target == "flux"
    result = svc.prompt(images[0], mode="fast", target="flux")
    assert p.prompt == result.prompt == result.prompts["clip_l"]
    assert p.negative_prompt == "old negative", "no negative prompt for Flux: the user's stays"
    p = FakeP(images[0])
    s.before_process(p, "fill", "fast", "", "detailed")  # BLIP cannot: generation goes on, prompts untouched
    assert (p.prompt, p.negative_prompt) == ("", "")
