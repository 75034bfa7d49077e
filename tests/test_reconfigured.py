"""One reconfigure path: ``Interrogator.reconfigured`` keeps what did not change (every host uses it)."""
from dataclasses import replace

from conftest import RecordingHost
from interrogator_core import Interrogator, OffloadPolicy


def test_same_settings_return_the_same_interrogator(make_interrogator, images):
    ci = make_interrogator()
    ci.interrogate(images[:1], mode="fast")
    assert ci.reconfigured(replace(ci.config)) is ci
    assert ci.models  # nothing was unloaded


def test_offload_policy_switches_in_place(make_interrogator, images):
    ci = make_interrogator(offload="keep")
    ci.interrogate(images[:1], mode="fast")
    same = ci.reconfigured(replace(ci.config, offload="offload"))
    assert same is ci and ci.config.offload is OffloadPolicy.OFFLOAD


def test_another_caption_model_keeps_clip_and_tables(make_interrogator, images, tiny_models):
    ci = make_interrogator()
    ci.interrogate(images[:1], mode="fast")
    clip, tables, captioner = ci.main.clip, ci.main.tables(), ci.captions.model()
    new = ci.reconfigured(replace(ci.config, caption_model=None))
    assert new is not ci
    assert new.pool.models("clip") == [clip] and new.pool.models("tables") == [tables]  # taken over, not reloaded
    assert new.pool.models("caption") == []
    assert ci.models == [] and ci.pool.loaded() == set()  # the old one is left empty
    assert captioner is not None  # dropped with the old interrogator
    r = new.interrogate(images[:1], mode="negative")[0]
    assert r.negative


def test_another_clip_model_keeps_the_caption_model(make_interrogator, images, tmp_path):
    from interrogator_core.testing import make_tiny_clip

    ci = make_interrogator()
    ci.interrogate(images[:1], mode="fast")
    captioner = ci.captions.model()
    other_clip = make_tiny_clip(tmp_path / "other-clip", seed=1)
    new = ci.reconfigured(replace(ci.config, clip_model=str(other_clip)))
    assert new.pool.models("caption") == [captioner] and new.pool.models("clip") == [] \
        and new.pool.models("tables") == []
    assert ci.models == []


def test_a_new_host_takes_the_models_off_the_old_one(make_interrogator, images):
    old_host, new_host = RecordingHost(), RecordingHost()
    ci = make_interrogator(host=old_host)
    ci.interrogate(images[:1], mode="fast")
    for h in ci.models:
        h.host_data["patcher"] = object()
    new = ci.reconfigured(replace(ci.config), host=new_host)
    assert new is not ci and new.host is new_host
    assert old_host.events[-1][0] == "offload"  # released by the old host first
    assert new.models and all(h.host_data == {} for h in new.models)  # no stale per-host data
    new.interrogate(images[:1], mode="fast")
    assert any(e[0] == "load" for e in new_host.events)


def test_no_caption_model_is_spelled_none_by_every_host():
    from interrogator_core import NO_CAPTION, InterrogatorConfig

    for value in (NO_CAPTION, " None ", "", None):
        assert InterrogatorConfig(caption_model=value).caption_model is None
    assert InterrogatorConfig(caption_model=" blip-base ").caption_model == "blip-base"
