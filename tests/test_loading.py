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
