"""Offload policies, interrupt and unload go through the host adapter."""
import gc
import weakref

import pytest

from conftest import RecordingHost
from interrogator_core import HostAdapter, Interrupted, OffloadPolicy, StandaloneHost, UnknownNameError


def test_standalone_host_satisfies_the_protocol():
    assert isinstance(StandaloneHost(device="cpu"), HostAdapter)


def test_keep_never_offloads(make_interrogator, images):
    host = RecordingHost()
    make_interrogator(host=host, offload="keep").interrogate(images[:1], mode="fast")
    assert not [e for e in host.events if e[0] == "offload"]
    assert ("load", ("caption",)) in host.events and ("load", ("clip",)) in host.events


def test_offload_after_each_call(make_interrogator, images):
    host = RecordingHost()
    make_interrogator(host=host, offload="offload").interrogate(images[:1], mode="fast")
    assert host.events[-1] == ("offload", ("caption", "clip"))


def test_lowvram_has_one_model_on_the_device_at_a_time(make_interrogator, images):
    host = RecordingHost()
    make_interrogator(host=host, offload="lowvram").interrogate(images[:1], mode="fast")
    i_caption = host.events.index(("load", ("caption",)))
    i_clip = host.events.index(("load", ("clip",)))
    assert ("offload", ("caption",)) in host.events[i_caption:i_clip]
    assert host.events[-1][0] == "offload"


def test_policy_names_are_validated():
    assert OffloadPolicy.parse("lowvram") is OffloadPolicy.LOW_VRAM
    with pytest.raises(UnknownNameError, match="keep"):
        OffloadPolicy.parse("sometimes")


def test_interrupt_mid_chain_offloads_and_next_call_works(make_interrogator, images):
    host = RecordingHost()
    ci = make_interrogator(host=host, offload="offload")
    ci.load(caption=False)
    host.checks, host.interrupt_after = 0, 10  # well inside the flavor chain (one check per step)
    with pytest.raises(Interrupted):
        ci.interrogate(images[:1], mode="best")
    assert host.events[-1] == ("offload", ("caption", "clip"))
    host.interrupt_after = -1
    assert ci.interrogate(images[:1], mode="best")[0].positive


def test_progress_is_reported_for_the_chain(make_interrogator, images):
    seen = []
    host = StandaloneHost(device="cpu", progress=lambda s, t, d: seen.append(d))
    make_interrogator(host=host).interrogate(images[:1], mode="best")
    assert "flavor chain" in seen and "negative chain" in seen and "captions" in seen


def test_unload_drops_every_model_reference(make_interrogator, images):
    ci = make_interrogator()
    ci.interrogate(images[:1], mode="fast")
    refs = [weakref.ref(h.module) for h in ci.models]
    assert len(refs) == 2
    ci.unload()
    gc.collect()
    assert ci.models == [] and all(r() is None for r in refs)
    assert ci.interrogate(images[:1], mode="fast")[0].positive  # reloads on demand


def _oom_when(module, too_big):
    """Make ``module`` raise a real CUDA OOM error when its input batch is larger than ``too_big``."""
    import torch

    def hook(_m, args):
        if args[0].shape[0] > too_big:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return module.register_forward_pre_hook(hook)


def test_oom_retries_with_smaller_batches_and_gives_the_same_result(make_interrogator, images, caplog):
    ref = make_interrogator().interrogate(images, mode="fast")
    ci = make_interrogator()
    _oom_when(ci.main.clip.module.visual, 1)
    with caplog.at_level("WARNING"):
        res = ci.interrogate(images, mode="fast")
    assert [r.positive for r in res] == [r.positive for r in ref]
    assert any("retrying with batch size" in r.getMessage() for r in caplog.records)


def test_oom_at_batch_one_is_a_clear_error_not_a_prompt(make_interrogator, images):
    from interrogator_core import DeviceOutOfMemoryError

    ci = make_interrogator(offload="offload")
    hook = _oom_when(ci.main.clip.module.visual, 0)
    with pytest.raises(DeviceOutOfMemoryError, match="lowvram"):
        ci.interrogate(images, mode="fast")
    hook.remove()
    assert ci.interrogate(images[:1], mode="fast")[0].positive  # the interrogator stays usable


def test_adopt_models_takes_only_what_would_load_identically(make_interrogator, images, small_data_dir):
    old = make_interrogator()
    old.interrogate(images[:1], mode="fast")
    clip_module = old.pool.models("clip")[0].module
    new = make_interrogator(caption_model=None)
    assert new.adopt_models_from(old) == ["CLIP model", "label tables"]
    assert new.pool.models("clip")[0].module is clip_module and old.pool.models("clip") == [] \
        and old.pool.models("caption") != []
    other = make_interrogator(blocklist=["bokeh"])
    assert other.adopt_models_from(new) == ["CLIP model"]  # another blocklist: tables are rebuilt
    assert other.analyze(images[:1], top_n=50, tables=["flavors"])[0].tables["flavors"]
    fp16 = make_interrogator(host=StandaloneHost(device="cpu", dtype="fp16"))
    assert fp16.adopt_models_from(old) == []  # another dtype: nothing fits


def test_standalone_host_refuses_a_device_this_machine_lacks(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device cuda.*use device cpu"):
        StandaloneHost(device="cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        StandaloneHost(device="gpu0")
    assert StandaloneHost(device="cpu").load_device().type == "cpu"
