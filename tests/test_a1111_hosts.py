"""A1111 / Forge host adapters and the service's job wrapper, on hand-written fakes of the webui modules."""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "a1111"))

from fixtures import forge_webui, webui, webui_models  # noqa: E402,F401

from interrogator_core import Interrupted, ModelHandle, OffloadPolicy  # noqa: E402


def _handle(name="m") -> ModelHandle:
    return ModelHandle(name, nn.Linear(2, 2), torch.float32)


class RecordingHost:
    """Wraps a host adapter and records load/offload calls (with the models' names)."""

    def __init__(self, inner, interrupt_after=None):
        self.inner = inner
        self.loads, self.offloads = [], []
        self.interrupt_after = interrupt_after
        self.checks = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def load(self, models):
        self.loads.append([m.name for m in models])
        self.inner.load(models)

    def offload(self, models):
        self.offloads.append([m.name for m in models])
        self.inner.offload(models)

    def check_interrupt(self):
        self.checks += 1
        if self.interrupt_after is not None and self.checks > self.interrupt_after:
            raise Interrupted("test interrupt")
        self.inner.check_interrupt()


# -- A1111Host ------------------------------------------------------------------------------------------------

def test_a1111_device_dtype_and_no_half(webui):
    shared, _ = webui
    from modules import devices
    from interrogator_hosts.a1111 import A1111Host

    host = A1111Host()
    assert host.load_device() == devices.device_interrogate
    assert host.offload_device() == torch.device("cpu")
    assert host.dtype_for(torch.device("cuda")) == torch.float16
    assert host.dtype_for(torch.device("cpu")) == torch.float32
    shared.cmd_opts.no_half = True
    assert host.dtype_for(torch.device("cuda")) == torch.float32
    devices.device_interrogate = None  # before the webui initialised it
    assert host.load_device() == devices.get_optimal_device()


def test_a1111_lowvram_sends_everything_to_cpu_before_load(webui, monkeypatch):
    shared, _ = webui
    from modules import devices, lowvram
    from interrogator_hosts.a1111 import A1111Host

    host = A1111Host()
    monkeypatch.setattr(host, "load_device", lambda: torch.device("meta"))  # a non-CPU device
    h = _handle()
    host.load([h])
    assert lowvram.calls == 0, "without --lowvram/--medvram the diffusion model stays"
    shared.cmd_opts.medvram = True
    gc_before = devices.gc_calls
    host.load([_handle()])
    assert lowvram.calls == 1 and devices.gc_calls > gc_before
    shared.cmd_opts.medvram = False
    shared.cmd_opts.medvram_sdxl = True
    shared.sd_model = type("M", (), {"is_sdxl": True})()
    host.load([_handle()])
    assert lowvram.calls == 2


def test_a1111_offload_moves_to_cpu_and_collects(webui, monkeypatch):
    from modules import devices
    from interrogator_hosts.a1111 import A1111Host

    host = A1111Host()
    h = _handle()
    h.module.to("meta")
    moved = []
    monkeypatch.setattr(h.module, "to", lambda d: moved.append(torch.device(d)))
    before = devices.gc_calls
    host.offload([h])
    assert moved == [torch.device("cpu")] and devices.gc_calls == before + 1


def test_a1111_interrupt_and_progress_use_shared_state(webui):
    shared, _ = webui
    from interrogator_hosts.a1111 import A1111Host

    host = A1111Host()
    host.check_interrupt()
    host.progress(3, 7, "captions")
    assert (shared.state.sampling_step, shared.state.sampling_steps, shared.state.textinfo) == (3, 7, "captions")
    shared.state.interrupt()
    with pytest.raises(Interrupted):
        host.check_interrupt()


def test_make_host_picks_a1111_without_backend(webui):
    from interrogator_hosts import a1111

    assert not a1111.is_forge()
    assert type(a1111.make_host()) is a1111.A1111Host


# -- ForgeHost ------------------------------------------------------------------------------------------------

def test_make_host_detects_forge(forge_webui):
    from interrogator_hosts import a1111

    assert a1111.is_forge()
    assert isinstance(a1111.make_host(), a1111.ForgeHost)


def test_forge_load_goes_through_model_patcher_and_load_models_gpu(forge_webui):
    from backend import memory_management as mm
    from backend.patcher.base import ModelPatcher
    from interrogator_hosts.a1111 import ForgeHost

    host = ForgeHost()
    assert host.load_device() == mm.text_encoder_device()
    assert host.dtype_for(torch.device("cpu")) == torch.float32
    h = _handle("clip")
    host.load([h])
    patcher = h.host_data["patcher"]
    assert isinstance(patcher, ModelPatcher)
    assert patcher.model.wrapped is h.module, "the patcher wraps a holder, not the transformers/open_clip module"
    assert type(patcher.model).__name__ == "InterrogatorModelHolder" and patcher.model.handle_name == h.name
    assert mm.calls[-1] == ("load_models_gpu", [patcher])
    assert [lm.model for lm in mm.current_loaded_models] == [patcher]
    host.load([h])  # second load reuses the same patcher
    assert h.host_data["patcher"] is patcher and len(mm.current_loaded_models) == 1


def test_forge_offload_unloads_from_manager(forge_webui):
    from backend import memory_management as mm
    from interrogator_hosts.a1111 import ForgeHost

    host = ForgeHost()
    a, b = _handle("a"), _handle("b")
    host.load([a])
    host.load([b])
    mm.calls.clear()
    host.offload([a])
    assert [lm.model for lm in mm.current_loaded_models] == [b.host_data["patcher"]]
    assert ("model_unload", a.host_data["patcher"]) in mm.calls
    assert mm.calls[-1] == ("soft_empty_cache",)


def test_forge_model_left_partly_off_the_device_is_moved_whole(forge_webui, monkeypatch, caplog):
    """Forge may keep part of a module on the CPU when VRAM is short ("swap"); our plain torch modules need
    all weights on one device, so the shared managed host moves such a module there whole, with a warning."""
    from backend import memory_management as mm
    from interrogator_hosts.a1111 import ForgeHost

    monkeypatch.setattr(mm, "load_device", torch.device("meta"))
    monkeypatch.setattr(mm.LoadedModel, "model_load", lambda self, *a, **k: None)  # leaves it on the CPU
    h = _handle("clip")
    with caplog.at_level("WARNING"):
        ForgeHost().load([h])
    assert all(p.device.type == "meta" for p in h.module.parameters())
    assert any("kept part of clip off meta" in r.getMessage() for r in caplog.records)


def test_forge_and_comfy_hosts_are_one_implementation(forge_webui):
    """ForgeHost is the shared ManagedHost with Forge's calls injected (and A1111's interrupt/progress)."""
    from interrogator_hosts.a1111 import A1111Host, ForgeHost
    from interrogator_hosts.managed import ManagedHost

    host = ForgeHost()
    assert isinstance(host, ManagedHost) and isinstance(host, A1111Host)
    assert host.manager.name == "Forge" and host.manager.watch_evictions is None
    for name in ("load", "offload", "load_device", "offload_device", "dtype_for", "make_room"):
        assert getattr(ForgeHost, name) is getattr(ManagedHost, name), name
    assert ForgeHost.check_interrupt is A1111Host.check_interrupt


def test_forge_engine_runs_through_memory_manager(forge_webui, images):
    """A real (tiny) interrogation on Forge loads both models through load_models_gpu and unloads them after."""
    shared, svc = forge_webui
    from backend import memory_management as mm

    r = svc.prompt(images[0], mode="fast")
    assert r.positive and r.negative
    loaded = [c for c in mm.calls if c[0] == "load_models_gpu"]
    assert len(loaded) >= 2
    assert mm.current_loaded_models == [], "offload policy: nothing left in Forge's loaded list"


# -- the service's job wrapper ----------------------------------------------------------------------------------

def test_job_begins_and_ends_state_and_takes_queue_lock(webui, images):
    shared, svc = webui
    from modules.call_queue import queue_lock

    seen = []
    host = RecordingHost(svc.host)
    orig_load = host.load

    def load(models):
        seen.append(queue_lock.locked())
        orig_load(models)

    host.load = load
    svc._host = host  # an inside: the service builds its host lazily; this test hands it one that records loads
    r = svc.prompt(images[0])
    assert r.mode == "best" and r.positive
    assert seen and all(seen), "models are used under queue_lock"
    assert shared.state.events[0] == ("begin", "interrogate") and shared.state.events[-1][0] == "end"
    assert host.offloads, "default policy (keep models loaded: off) offloads after the call"


def test_offload_and_state_end_happen_on_error(webui, images):
    shared, svc = webui
    from modules.call_queue import queue_lock

    shared.opts.data["prompt_interrogator_keep_loaded"] = True  # KEEP: only the error path offloads
    host = RecordingHost(svc.host)
    svc._host = host  # an inside: the service builds its host lazily; this test hands it one that records loads
    svc.prompt(images[0], mode="fast")
    assert svc.interrogator().config.offload is OffloadPolicy.KEEP
    assert host.offloads == [], "KEEP keeps models loaded after a successful call"
    host.interrupt_after = host.checks  # the next check raises
    shared.state.events.clear()
    with pytest.raises(Interrupted):
        svc.prompt(images[0], mode="best")
    assert host.offloads and set(host.offloads[-1]) >= {m.name for m in svc.interrogator().models}
    assert shared.state.events[-1][0] == "end", "state.end() runs on error"
    assert not queue_lock.locked(), "queue_lock released on error"


def test_model_switch_unloads_previous(webui, images, tiny_models, tmp_path):
    shared, svc = webui
    from interrogator_core.testing import make_tiny_clip

    first = svc.interrogator()
    first.load(caption=False)
    other = make_tiny_clip(tmp_path / "other-clip", seed=1)
    second = svc.interrogator(clip_model=str(other))
    assert second is not first and first.models == [], "switching CLIP model unloads the old engine"
    assert svc.interrogator(clip_model=str(other)) is second
    assert svc.unload() is True and svc.unload() is False


def test_policy_from_settings_and_lowvram(webui):
    shared, svc = webui
    s = svc.settings()
    assert svc.policy(s) is OffloadPolicy.OFFLOAD
    shared.cmd_opts.lowvram = True
    assert svc.policy(s) is OffloadPolicy.LOW_VRAM
    shared.opts.data["prompt_interrogator_keep_loaded"] = True
    assert svc.policy(svc.settings()) is OffloadPolicy.KEEP


def test_settings_registered_with_defaults(webui, tmp_path):
    shared, svc = webui
    from interrogator_hosts import a1111

    for key in a1111.DEFAULTS:
        info = shared.opts.data_labels[a1111.OPT_PREFIX + key]
        assert info.section == a1111.SETTINGS_SECTION
    shared.opts.data["prompt_interrogator_caption_model"] = "none"
    s = a1111.read_settings()
    assert s.caption_model is None
    assert s.cache_dir == str(tmp_path / "models" / "clip-interrogator"), "clip-interrogator-ext's cache folder"
    choices = shared.opts.data_labels["prompt_interrogator_caption_model"].component_args()
    assert "blip-large" in choices["choices"] and "none" in choices["choices"]


def test_every_setting_is_registered_and_read_back_typed(webui):
    """One table: each Settings field is an option on the page, and a value stored there reaches read_settings
    converted to the field's type (the webui stores slider values as floats)."""
    shared, _ = webui
    from dataclasses import fields

    from interrogator_hosts import a1111

    names = [f.name for f in fields(a1111.Settings)]
    assert set(names) == set(a1111.DEFAULTS)
    assert {k[len(a1111.OPT_PREFIX):] for k in shared.opts.data_labels if k.startswith(a1111.OPT_PREFIX)} == \
        set(names)
    stored = {"clip_model": " ViT-B-32/openai ", "caption_model": "blip-base", "mode": "fast", "min_flavors": 3.0,
              "max_flavors": 5.0, "negative_count": 2.0, "keep_loaded": True, "cache_dir": "/tmp/x",
              "replace_builtin": True, "api_max_mb": 7, "target": "sd15", "beam_width": 2.0,
              "caption_style": "tags", "caption_prompt": "  List the objects.  ", "trust_remote_code": True,
              # the image tagger's (Number and Slider values come back as floats)
              "general_threshold": 0.5, "character_threshold": 0.9, "include_rating": True, "character_first": False,
              "replace_underscores": False, "escape_parentheses": False, "exclude": " a_b, c ", "always_first": "x",
              "max_tags": 3.0,
              # the caption controls
              "caption_length": "very_short", "trigger_prefix": " ohwx ", "trigger_suffix": "zyx", "caption_replace": ""}
    assert set(stored) == set(names), "extend this test when a setting is added"
    for key, value in stored.items():
        shared.opts.data[a1111.OPT_PREFIX + key] = value
    s = a1111.read_settings()
    assert s.clip_model == "ViT-B-32/openai" and s.caption_model == "blip-base" and s.mode == "fast"
    assert (s.min_flavors, s.max_flavors, s.negative_count, s.beam_width) == (3, 5, 2, 2)
    assert all(type(v) is int for v in (s.min_flavors, s.max_flavors, s.negative_count, s.beam_width))
    assert s.keep_loaded is True and s.replace_builtin is True and s.api_max_mb == 7.0
    assert s.cache_dir == "/tmp/x" and s.target == "sd15"
    assert (s.caption_style, s.caption_prompt, s.trust_remote_code) == ("tags", "List the objects.", True)
    assert (s.caption_length, s.trigger_prefix, s.trigger_suffix, s.caption_replace) == \
        ("very_short", "ohwx", "zyx", None)
    from interrogator_core import TaggerOptions, tagger_options

    assert type(s.max_tags) is int and tagger_options(s.tagger_values()) == TaggerOptions(
        general_threshold=0.5, character_threshold=0.9, include_rating=True, character_first=False,
        replace_underscores=False, escape_parentheses=False, exclude=("a_b", "c"), always_first=("x",), max_tags=3)
    shared.opts.data.update({a1111.OPT_PREFIX + "caption_style": "auto", a1111.OPT_PREFIX + "caption_prompt": ""})
    s = a1111.read_settings()
    assert (s.caption_style, s.caption_prompt) == (None, None), "auto / empty: the target's own style"


def test_service_switches_through_reconfigured_keeping_what_stays(webui, tmp_path, monkeypatch):
    """One reconfigure path: a settings change goes through Interrogator.reconfigured (the caption model is
    kept when only CLIP changes); the same settings give the same engine; a named CLIP model means target
    custom even when the settings' default target is another one."""
    shared, svc = webui
    from interrogator_core import Interrogator
    from interrogator_core.testing import make_tiny_clip

    calls = []
    real = Interrogator.reconfigured
    monkeypatch.setattr(Interrogator, "reconfigured", lambda self, cfg, *a: calls.append(cfg) or real(self, cfg, *a))
    first = svc.interrogator()
    first.load()
    caption = next(h for h in first.models if h.name.startswith("caption:"))
    assert svc.interrogator() is first and len(calls) == 1, "same settings: same engine"
    other = make_tiny_clip(tmp_path / "other-clip", seed=1)
    shared.opts.data["prompt_interrogator_target"] = "sd15"
    second = svc.interrogator(clip_model=str(other))
    assert second is not first and calls[-1].clip_model == str(other) and calls[-1].target == "custom"
    assert any(h is caption for h in second.models), "the caption model is taken over, not reloaded"


def test_trust_remote_code_setting_reaches_the_engine_and_is_off_by_default(webui):
    shared, svc = webui
    assert svc.config_for().trust_remote_code is False
    shared.opts.data["prompt_interrogator_trust_remote_code"] = True
    assert svc.config_for().trust_remote_code is True


def test_caption_controls_from_the_settings_page_and_per_call(webui, tmp_path):
    """Issue 19 item 5: the caption controls are settings page options; a call (the API) may override them."""
    shared, svc = webui
    cfg = svc.config_for()
    assert (cfg.caption_length, cfg.trigger_prefix, cfg.trigger_suffix, cfg.caption_replace) == (None, "", "", None)
    f = tmp_path / "replace.txt"
    f.write_text("blurry\n", encoding="utf-8")
    for key, value in (("caption_length", "long"), ("trigger_prefix", "ohwx"), ("caption_replace", str(f))):
        shared.opts.data["prompt_interrogator_" + key] = value
    try:
        cfg = svc.config_for()
        assert (cfg.caption_length, cfg.trigger_prefix, cfg.caption_replace) == ("long", "ohwx", str(f))
        cfg = svc.config_for(controls={"caption_length": "very_short", "trigger_suffix": "zyx"})
        assert (cfg.caption_length, cfg.trigger_prefix, cfg.trigger_suffix) == ("very_short", "ohwx", "zyx")
    finally:
        for key in ("caption_length", "trigger_prefix", "caption_replace"):
            shared.opts.data.pop("prompt_interrogator_" + key, None)
