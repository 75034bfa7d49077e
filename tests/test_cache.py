"""Label cache: clip-interrogator 0.6.0 file contract, hits, misses, corruption, mismatch, atomic writes."""
import hashlib
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import count_text_encodes
from interrogator_core import TABLE_NAMES, cache_file_name, label_hash
from interrogator_core.labels import builtin_labels


def _build(make_interrogator, **kw):
    ci = make_interrogator(**kw)
    ci.load(caption=False)
    return ci


def test_cold_build_writes_contract_files(make_interrogator, small_data_dir, tmp_path):
    ci = _build(make_interrogator)
    name = ci.main.clip.cache_name
    labels = builtin_labels(small_data_dir)
    for table in TABLE_NAMES:
        path = tmp_path / "cache" / cache_file_name(name, table)
        t = load_file(str(path))
        assert set(t) == {"embeds", "hash"}
        assert t["embeds"].dtype == torch.float16 and t["embeds"].shape == (len(labels[table]), 32)
        assert torch.allclose(t["embeds"].float().norm(dim=-1), torch.ones(len(labels[table])), atol=2e-3)
        digest = hashlib.sha256(",".join(labels[table]).encode()).hexdigest()
        assert t["hash"].dtype == torch.int8 and t["hash"].tolist() == [ord(c) for c in digest]
    assert not list((tmp_path / "cache").glob("*.tmp")), "no temp files left behind"


def test_warm_load_encodes_nothing(make_interrogator):
    _build(make_interrogator)
    ci = make_interrogator()
    calls = count_text_encodes(ci)
    ci.load(caption=False)
    assert calls[0] == 0


def test_file_names_follow_clip_interrogator():
    assert cache_file_name("ViT-L-14/openai", "flavors") == "ViT-L-14_openai_flavors.safetensors"
    assert (cache_file_name("ViT-bigG-14/laion2b_s39b_b160k", "artists")
            == "ViT-bigG-14_laion2b_s39b_b160k_artists.safetensors")
    assert cache_file_name("ViT-B-16-SigLIP/webli@x", "negative") == "ViT-B-16-SigLIP_webli_x_negative.safetensors"
    assert label_hash(["a", "b"]) == hashlib.sha256(b"a,b").hexdigest()


@pytest.mark.parametrize("name", ["hf-hub:laion/CLIP-ViT-g-14@main", 'we<ird>:na"me|?*\\x\x01y', "C:\\models\\clip"])
def test_file_names_are_safe_on_every_os(name, tmp_path):
    """No character Windows (NTFS: ':' opens an alternate data stream), macOS or Linux refuses in a file name;
    the file is written and read back under that name."""
    from interrogator_core import LabelCache

    fname = cache_file_name(name, "flavors")
    assert not set(fname) & set('<>:"/\\|?*') and all(ord(c) >= 32 for c in fname), fname
    assert fname.endswith("_flavors.safetensors")
    cache = LabelCache(tmp_path)
    emb = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    assert cache.save(name, "flavors", ["a", "b", "c"], emb)
    assert [p.name for p in tmp_path.iterdir()] == [fname]
    assert torch.equal(cache.load(name, "flavors", ["a", "b", "c"]), emb.half())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "hash", "shape", "width", "nan", "no_hash"])
def test_bad_file_is_recomputed_with_warning(make_interrogator, tmp_path, caplog, damage):
    ci = _build(make_interrogator)
    path = tmp_path / "cache" / cache_file_name(ci.main.clip.cache_name, "mediums")
    good = {k: v.clone() for k, v in load_file(str(path)).items()}
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    else:
        t = dict(good)
        if damage == "hash":
            t["hash"] = torch.tensor([ord(c) for c in "0" * 64], dtype=torch.int8)
        elif damage == "shape":
            t["embeds"] = t["embeds"][:-1].contiguous()
        elif damage == "width":
            t["embeds"] = torch.zeros(t["embeds"].shape[0], 16, dtype=torch.float16)
        elif damage == "nan":
            t["embeds"] = t["embeds"].clone()
            t["embeds"][0, 0] = float("nan")
        elif damage == "no_hash":
            del t["hash"]
        save_file(t, str(path))
    fresh = make_interrogator()
    calls = count_text_encodes(fresh)
    with caplog.at_level(logging.WARNING, logger="interrogator_core.cache"):
        fresh.load(caption=False)
    assert calls[0] > 0, "the damaged table must be re-encoded"
    assert any("mediums" in r.getMessage() and "recomputing" in r.getMessage() for r in caplog.records)
    rewritten = load_file(str(path))
    assert torch.equal(rewritten["hash"], good["hash"])
    assert torch.allclose(rewritten["embeds"].float(), good["embeds"].float(), atol=1e-3)


def test_unwritable_cache_dir_works_in_memory_and_warns_once(make_interrogator, tmp_path, caplog, images):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="interrogator_core.cache"):
        ci = make_interrogator(cache_dir=blocker / "cache")
        results = ci.interrogate(images[:1], mode="fast")
    assert results[0].positive
    warnings = [r for r in caplog.records if "cannot write label cache" in r.getMessage()]
    assert len(warnings) == 1


def test_memory_only_cache(make_interrogator, tmp_path, images):
    ci = make_interrogator(cache_dir=None)
    assert ci.interrogate(images[:1], mode="fast")[0].positive
    assert not (tmp_path / "cache").exists()


def _ours_and_060(ci060, tiny_models, small_data_dir, tmp_path, monkeypatch):
    """Our interrogator and clip-interrogator 0.6.0's on the same tiny CLIP, found under a registry name
    (``pi-tiny-0/tiny``) in a models folder, the same lists and one cache folder (theirs writes it first)."""
    import open_clip

    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost
    from interrogator_core.clip import load_clip

    arch = "pi-tiny-0"  # registered by make_tiny_clip; "tiny" becomes a registry tag of it for these tests
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, arch, {"tiny": {}})
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_models["clip"] / "open_clip_model.safetensors", models / f"{arch}_tiny.safetensors")
    ours = Interrogator(InterrogatorConfig(clip_model=f"{arch}/tiny", caption_model=None, model_dirs=[models],
                                           cache_dir=tmp_path / "cache", data_dir=small_data_dir),
                        StandaloneHost(device="cpu"))
    clip = load_clip(f"{arch}/tiny", search_dirs=[models])
    cfg = ci060.Config(clip_model_name=f"{arch}/tiny", caption_model_name=None, cache_path=str(tmp_path / "cache"),
                       download_cache=False, device="cpu", data_path=str(small_data_dir), quiet=True)
    cfg.clip_model, cfg.clip_preprocess = clip.module, clip.preprocess  # class attributes, not fields
    return ours, ci060.Interrogator(cfg)


def test_cache_written_by_clip_interrogator_060_loads_with_zero_encodes(tiny_models, small_data_dir, tmp_path,
                                                                       monkeypatch):
    """clip-interrogator 0.6.0's own LabelTable code writes the cache for a registry name (ARCH/TAG); we load
    it without encoding, the weights coming from a local copy in a models folder."""
    ci060 = pytest.importorskip("clip_interrogator")
    assert ci060.__version__ == "0.6.0"
    arch = "pi-tiny-0"
    ours, _ = _ours_and_060(ci060, tiny_models, small_data_dir, tmp_path, monkeypatch)  # theirs wrote the cache
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == len(TABLE_NAMES)
    assert ours.main.clip.cache_name.replace("/", "_") == f"{arch}_tiny"
    calls = count_text_encodes(ours)
    ours.load(caption=False)
    assert calls[0] == 0
    # and the loaded embeddings are theirs
    flav = ours.main.tables().tables["flavors"]
    ref = load_file(str(tmp_path / "cache" / f"{arch}_tiny_flavors.safetensors"))["embeds"]
    labels = builtin_labels(small_data_dir)["flavors"]
    first = labels.index(flav.labels[0])
    assert torch.equal(flav.embeds[0], ref[first])


@pytest.mark.parametrize("layout", ["weights file", "snapshot folder"])
def test_registry_model_finds_clip_interrogator_cache_in_either_offline_layout(layout, tiny_models, small_data_dir,
                                                                               tmp_path, monkeypatch):
    """A registry model (ARCH/TAG) whose files are in a models folder, as ``ARCH_TAG.safetensors`` or as a hub
    snapshot folder at the name's path (``ARCH/TAG/``), caches under the registry name: clip-interrogator's
    cache files of that model load with zero encodes."""
    import open_clip

    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost

    arch = "pi-tiny-0"  # registered by make_tiny_clip; "tiny" becomes a registry tag of it for this test
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, arch, {"tiny": {}})
    # clip-interrogator's cache of this model: encoded once from the same weights, under its file names
    made = Interrogator(InterrogatorConfig(clip_model=str(tiny_models["clip"]), caption_model=None,
                                           cache_dir=tmp_path / "seed", data_dir=small_data_dir),
                        StandaloneHost(device="cpu"))
    made.load(caption=False)
    prefix = cache_file_name(made.main.clip.cache_name, "")[: -len("_.safetensors")]
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in (tmp_path / "seed").glob("*.safetensors"):
        shutil.copy(f, cache / f"{arch}_tiny_{f.name[len(prefix) + 1:]}")
    theirs = sorted(p.name for p in cache.iterdir())
    assert f"{arch}_tiny_flavors.safetensors" in theirs
    models = tmp_path / "models"
    if layout == "weights file":
        models.mkdir()
        shutil.copy(tiny_models["clip"] / "open_clip_model.safetensors", models / f"{arch}_tiny.safetensors")
    else:
        shutil.copytree(tiny_models["clip"], models / arch / "tiny")
    ours = Interrogator(InterrogatorConfig(clip_model=f"{arch}/tiny", caption_model=None, model_dirs=[models],
                                           cache_dir=cache, data_dir=small_data_dir), StandaloneHost(device="cpu"))
    calls = count_text_encodes(ours)
    ours.load(caption=False)
    assert ours.main.clip.cache_name == f"{arch}/tiny"
    assert calls[0] == 0
    assert sorted(p.name for p in cache.iterdir()) == theirs  # nothing written under another name


def test_prompts_equal_clip_interrogator_060_for_a_short_caption(tiny_models, small_data_dir, tmp_path, monkeypatch,
                                                                images):
    """The flat engine and the head rule change nothing for clip-interrogator's own case (a short caption): classic
    and fast prompts are the reference's, same model, same lists, same caption. (Best differs on these tiny lists,
    before and after the redesign alike, by the deliberate differences listed in ``prompts.py``.)"""
    ci060 = pytest.importorskip("clip_interrogator")
    ours, theirs = _ours_and_060(ci060, tiny_models, small_data_dir, tmp_path, monkeypatch)
    caption = "a painting of a red house by the sea"
    for image in images[:2]:
        mine = ours.interrogate(image, mode="classic", max_flavors=3, captions=[caption])[0].positive
        assert mine == theirs.interrogate_classic(image, max_flavors=3, caption=caption)
        mine = ours.interrogate(image, mode="fast", max_flavors=6, captions=[caption])[0].positive
        assert mine == theirs.interrogate_fast(image, max_flavors=6, caption=caption)
