"""Model loading by path, name resolution and the errors a user sees when something is missing."""
import shutil

import pytest
import torch

from interrogator_core import (Interrogator, InterrogatorConfig, ModelLoadError, ModelNotFoundError, StandaloneHost,
                               UnknownNameError)
from interrogator_core.caption import load_captioner, resolve_caption_model
from interrogator_core.clip import load_clip, resolve_clip


def test_clip_snapshot_folder_round_trip(tiny_models, images):
    a, b = load_clip(str(tiny_models["clip"])), load_clip(str(tiny_models["clip"]))
    pixels = torch.stack([a.preprocess(images[0])])
    fa, fb = a.encode_images(pixels), b.encode_images(pixels)
    assert fa.shape == (1, 32) and torch.equal(fa, fb)
    assert torch.allclose(fa.norm(dim=-1), torch.ones(1))
    # a local folder's cache name: its name plus a fingerprint of its weights (same weights, same name)
    assert a.cache_name.startswith("tiny-clip-") and a.cache_name == b.cache_name


def test_clip_weights_file_with_arch(tiny_models, tmp_path):
    f = tmp_path / "my-finetune.safetensors"
    shutil.copy(tiny_models["clip"] / "open_clip_model.safetensors", f)
    clip = load_clip(f"pi-tiny-0/{f}")
    ref = load_clip(str(tiny_models["clip"]))
    for (k, v), (_, w) in zip(clip.module.state_dict().items(), ref.module.state_dict().items()):
        assert torch.equal(v, w), k
    from interrogator_core.cache import weights_fingerprint

    assert clip.cache_name == f"pi-tiny-0/my-finetune-{weights_fingerprint(f)}"


def test_clip_weights_found_in_models_dir(tiny_models, tmp_path):
    f = tmp_path / "weights.safetensors"
    shutil.copy(tiny_models["clip"] / "open_clip_model.safetensors", f)
    assert load_clip("pi-tiny-0/weights.safetensors", search_dirs=[tmp_path]).source.path == f


def test_known_name_prefers_local_copy_and_keeps_cache_name(tmp_path):
    (tmp_path / "ViT-B-32_openai.safetensors").write_bytes(b"")
    src = resolve_clip("ViT-B-32/openai", [tmp_path])
    assert src.path == tmp_path / "ViT-B-32_openai.safetensors"
    assert src.cache_name == "ViT-B-32/openai"  # clip-interrogator's cache files still match


def test_unknown_clip_name_suggests_close_names():
    with pytest.raises(UnknownNameError, match="ViT-B-32/openai"):
        resolve_clip("ViT-B-32/opnai")
    with pytest.raises(UnknownNameError, match="ViT-L-14"):
        resolve_clip("ViT-L-41/openai")


def test_missing_clip_offline_names_model_and_where_to_put_it(tmp_path):
    with pytest.raises(ModelNotFoundError) as e:
        load_clip("ViT-B-32/laion2b_s34b_b79k", search_dirs=[tmp_path])
    msg = str(e.value)
    assert "ViT-B-32/laion2b_s34b_b79k" in msg and str(tmp_path) in msg
    assert "ViT-B-32_laion2b_s34b_b79k.safetensors" in msg


def test_missing_caption_model_offline(tmp_path):
    with pytest.raises(ModelNotFoundError) as e:
        load_captioner("blip-base", search_dirs=[tmp_path])
    msg = str(e.value)
    assert "blip-base" in msg and str(tmp_path / "blip-base") in msg


def test_caption_registry_name_found_in_models_dir(tiny_models, tmp_path):
    shutil.copytree(tiny_models["blip"], tmp_path / "blip-large")
    source, family, _ = resolve_caption_model("blip-large", [tmp_path])
    assert source == str(tmp_path / "blip-large") and family == "blip"


def test_unknown_caption_name():
    with pytest.raises(UnknownNameError, match="blip-large"):
        resolve_caption_model("blip-lrge")


def test_caption_folder_round_trip_and_batch(tiny_models, images):
    cap = load_captioner(str(tiny_models["blip"]))
    one = [cap.generate([im], 8)[0] for im in images]
    batched = cap.generate(images, 8)
    assert batched == one and all(isinstance(c, str) and c for c in one)


def test_half_downloaded_safetensors_is_a_clear_error(tiny_models, tmp_path):
    f = tmp_path / "broken.safetensors"
    data = (tiny_models["clip"] / "open_clip_model.safetensors").read_bytes()
    f.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="broken.safetensors"):
        load_clip(f"pi-tiny-0/{f}")


def test_wrong_file_type_is_a_clear_error(tmp_path):
    f = tmp_path / "notes.pt"
    f.write_text("hello")
    with pytest.raises(ModelLoadError, match="notes.pt"):
        load_clip(f"pi-tiny-0/{f}")


def test_pickled_code_is_never_executed(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    f = tmp_path / "evil.pt"
    with open(f, "wb") as fh:
        pickle.dump({"state_dict": Boom()}, fh)
    with pytest.raises(ModelLoadError):
        load_clip(f"pi-tiny-0/{f}")
    assert not (tmp_path / "pwned").exists()


def test_models_load_lazily(tiny_models, small_data_dir, tmp_path):
    ci = Interrogator(InterrogatorConfig(clip_model="ViT-B-32/does-not-matter-yet", cache_dir=tmp_path),
                      StandaloneHost(device="cpu"))
    assert ci.models == []  # constructing an interrogator loads (and validates) nothing


def test_loading_a_snapshot_folder_leaves_nothing_behind(tiny_models, tmp_path, monkeypatch):
    """No config file in the temp folder, nothing added to open_clip's model registry (which would grow with
    every folder loaded and outlive the process's need for it)."""
    import tempfile

    import open_clip

    folder = tmp_path / "fresh-snapshot"  # a path no earlier test has loaded
    shutil.copytree(tiny_models["clip"], folder)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # other processes share the real one
    registry = sorted(open_clip.list_models())
    clip = load_clip(str(folder))
    assert clip.encode_images(torch.zeros(1, 3, 32, 32)).shape == (1, 32)
    assert list(private_tmp.iterdir()) == []
    assert sorted(open_clip.list_models()) == registry


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_snapshot_folder_builds_the_model_open_clip_builds(tiny_models, images, dtype):
    """The folder's config builds the same model, precision and preprocessing as open_clip's own factory does
    for that config registered under a name (pi-tiny-0, registered by make_tiny_clip)."""
    weights = tiny_models["clip"] / "open_clip_model.safetensors"
    folder, named = load_clip(str(tiny_models["clip"]), dtype=dtype), load_clip(f"pi-tiny-0/{weights}", dtype=dtype)
    a, b = folder.module.state_dict(), named.module.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    pa, pb = folder.preprocess(images[1]), named.preprocess(images[1])
    assert torch.equal(pa, pb)
    if dtype == torch.float32:  # (half-precision towers run on a host's device, not in this CPU test)
        assert torch.equal(folder.encode_images(pa[None]), named.encode_images(pb[None]))
    for x, y in zip(folder.text.tokenize(["a red house"]), named.text.tokenize(["a red house"])):
        assert torch.equal(x, y)


def test_unknown_clip_architecture_points_to_a_real_listing():
    import re

    import interrogator_core

    with pytest.raises(UnknownNameError) as e:
        resolve_clip("NotAnArch-99/openai")
    calls = re.findall(r"(\w+)\(\)", str(e.value))
    assert calls and all(c in interrogator_core.__all__ for c in calls), str(e.value)


# --- offline: a model that is not on disk fails at once ----------------------------------------------------------

@pytest.fixture
def hub_calls(monkeypatch):
    """Counts every download attempt (each refused, as an unreachable hub would) and every reachability probe."""
    import huggingface_hub
    import huggingface_hub.file_download
    import open_clip

    from interrogator_core import hub

    counts = {"download": 0, "probe": 0}
    real = huggingface_hub.file_download.hf_hub_download

    def refuse(*args, **kwargs):
        if kwargs.get("local_files_only"):  # a look into the download cache, not a lookup online
            return real(*args, **kwargs)
        counts["download"] += 1
        raise OSError("download refused by the test (no network)")

    targets = [(open_clip.pretrained, "hf_hub_download"), (open_clip.pretrained, "download_pretrained_from_url"),
               (huggingface_hub, "hf_hub_download"), (huggingface_hub.file_download, "hf_hub_download"),
               (huggingface_hub, "snapshot_download")]
    try:
        import transformers.utils.hub as tf_hub

        targets += [(tf_hub, n) for n in ("hf_hub_download", "snapshot_download") if hasattr(tf_hub, n)]
    except ImportError:
        pass
    for mod, attr in targets:
        if hasattr(mod, attr):
            monkeypatch.setattr(mod, attr, refuse)
    real_probe = hub._probe

    def probe(base):
        counts["probe"] += 1
        return real_probe(base)

    monkeypatch.setattr(hub, "_probe", probe)
    hub.forget()
    yield counts
    hub.forget()


def _unreachable_hub(monkeypatch):
    """Not offline by setting, but the endpoint refuses connections (a closed port)."""
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    import transformers.utils.hub as tf_hub

    if hasattr(tf_hub, "_is_offline_mode"):  # transformers 4.x reads the variables once, at import
        monkeypatch.setattr(tf_hub, "_is_offline_mode", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")


@pytest.mark.parametrize("network", ["HF_HUB_OFFLINE=1", "unreachable endpoint"])
@pytest.mark.parametrize("kind", ["clip", "caption"])
def test_missing_models_fail_at_once_without_hub_lookups(kind, network, hub_calls, monkeypatch, tmp_path):
    """Offline (by setting, or the hub cannot be reached) a model not on disk is the clear error at once: no
    download attempt, one reachability probe at most, and a second load asks nothing again."""
    if network == "HF_HUB_OFFLINE=1":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        _unreachable_hub(monkeypatch)
    for _ in range(2):
        with pytest.raises(ModelNotFoundError) as e:
            if kind == "clip":
                load_clip("ViT-B-32/laion2b_s34b_b79k", search_dirs=[tmp_path], download_dir=tmp_path / "downloads")
            else:
                load_captioner("blip-base", search_dirs=[tmp_path], download_dir=tmp_path / "downloads")
        assert hub_calls["download"] == 0
        msg = str(e.value)
        if kind == "clip":
            assert "ViT-B-32/laion2b_s34b_b79k" in msg and str(tmp_path) in msg
            assert "ViT-B-32_laion2b_s34b_b79k.safetensors" in msg
        else:
            assert "blip-base" in msg and str(tmp_path / "blip-base") in msg and "<models folder>/blip-base/" in msg
        assert ("HF_HUB_OFFLINE" in msg) if network == "HF_HUB_OFFLINE=1" else ("127.0.0.1:9" in msg)
    assert hub_calls["probe"] == (0 if network == "HF_HUB_OFFLINE=1" else 1)


def test_unreachable_hub_still_loads_from_the_download_cache(hub_calls, monkeypatch, tmp_path, tiny_models):
    """With the hub out of reach, a caption model already in the Hugging Face cache loads from there, asking
    nothing (transformers is told local_files_only)."""
    from huggingface_hub import try_to_load_from_cache

    _unreachable_hub(monkeypatch)
    repo = "Salesforce/blip-image-captioning-base"
    snap = tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_models["blip"], snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    assert try_to_load_from_cache(repo, "config.json", cache_dir=str(tmp_path / "hf"))
    cap = load_captioner("blip-base", download_dir=tmp_path / "hf")
    assert cap.family == "blip"
    assert hub_calls["download"] == 0
