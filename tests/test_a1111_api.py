"""The /interrogator/* API through FastAPI's TestClient (real FastAPI + pydantic; A1111 modules faked)."""
import base64
import sys
from pathlib import Path

import pytest

from interrogator_core import list_targets

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "a1111"))

from fixtures import png_b64, webui, webui_models  # noqa: E402,F401

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture
def client(webui):
    shared, svc = webui
    from interrogator_hosts import a1111_api

    app = fastapi.FastAPI()
    a1111_api.mount(app)
    return TestClient(app), shared, svc


def test_models_endpoints(client):
    c, shared, svc = client
    r = c.get("/interrogator/models")
    assert r.status_code == 200
    assert "ViT-L-14/openai" in r.json(), "a plain list of open_clip names, like clip-interrogator-ext"
    assert "blip-large" in c.get("/interrogator/caption_models").json()
    assert set(c.get("/interrogator/modes").json()) == {"best", "classic", "fast", "negative", "caption"}
    status = c.get("/interrogator/status").json()
    assert status["loaded"]["clip_model"] is None and status["defaults"]["mode"] == "best"


def test_prompt_accepts_clip_interrogator_ext_body(client, images):
    c, shared, svc = client
    body = {"image": png_b64(images[0]), "clip_model_name": shared.opts.prompt_interrogator_clip_model,
            "mode": "fast"}
    r = c.post("/interrogator/prompt", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["mode"] == "fast" and out["prompt"] and out["negative_prompt"] and out["caption"]
    assert out["prompt"].startswith(out["caption"])
    assert out["clip_model_name"] == body["clip_model_name"]
    assert shared.state.events[0] == ("begin", "interrogate") and shared.state.events[-1][0] == "end"
    # same image as a data: URL, with our extra fields
    body.update(image="data:image/png;base64," + body["image"], negative_count=0, mode="best", min_flavors=1,
                max_flavors=2)
    out = c.post("/interrogator/prompt", json=body).json()
    assert out["negative_prompt"] == "" and out["prompt"]


def test_prompt_negative_mode_returns_negative_as_prompt(client, images):
    c, _, _ = client
    out = c.post("/interrogator/prompt", json={"image": png_b64(images[1]), "mode": "negative"}).json()
    assert out["prompt"] == out["negative_prompt"] != ""


@pytest.mark.parametrize("image,status,words", [
    ("", 400, "required"),
    ("!!!not base64!!!", 400, "base64"),
    (base64.b64encode(b"definitely not an image").decode(), 400, "not a readable image"),
    ("https://example.com/cat.png", 400, "URL"),
    ("data:image/png,abc", 400, "base64"),
])
def test_prompt_bad_images_are_4xx_with_message(client, image, status, words):
    c, _, _ = client
    r = c.post("/interrogator/prompt", json={"image": image})
    assert r.status_code == status
    assert words.lower() in r.json()["detail"].lower()


def test_prompt_oversized_base64_is_413_before_decoding(client, images, monkeypatch):
    c, shared, svc = client
    shared.opts.data["prompt_interrogator_api_max_mb"] = 0.001  # ~1 KB
    decoded = []
    monkeypatch.setattr(base64, "b64decode", lambda *a, **k: decoded.append(1))
    r = c.post("/interrogator/prompt", json={"image": "A" * 200_000})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert decoded == [], "the size is checked before decoding"


def test_prompt_too_many_pixels_is_413(client, monkeypatch):
    c, _, _ = client
    from PIL import Image
    from interrogator_hosts import a1111_api

    monkeypatch.setattr(a1111_api, "MAX_PIXELS", 100)
    r = c.post("/interrogator/prompt", json={"image": png_b64(Image.new("RGB", (20, 20)))})
    assert r.status_code == 413 and "pixels" in r.json()["detail"]


def test_prompt_bad_names_and_values(client, images):
    c, _, _ = client
    img = png_b64(images[0])
    r = c.post("/interrogator/prompt", json={"image": img, "mode": "bestest"})
    assert r.status_code == 400 and "best" in r.json()["detail"]
    r = c.post("/interrogator/prompt", json={"image": img, "clip_model_name": "ViT-Nope-99/none"})
    assert 400 <= r.status_code < 500 and "ViT-Nope-99" in r.json()["detail"]
    r = c.post("/interrogator/prompt", json={"image": img, "max_flavors": -1})
    assert r.status_code == 422
    r = c.post("/interrogator/prompt", json={"image": img, "negative_count": 10_000})
    assert r.status_code == 422


def test_analyze_has_ext_keys_and_tables(client, images):
    c, _, _ = client
    r = c.post("/interrogator/analyze", json={"image": png_b64(images[2]), "top_n": 3})
    assert r.status_code == 200, r.text
    out = r.json()
    for key in ("medium", "artist", "movement", "trending", "flavor"):
        assert len(out[key]) == 3 and all(isinstance(v, float) for v in out[key].values())
    assert [e["label"] for e in out["tables"]["mediums"]] == list(out["medium"])
    r = c.post("/interrogator/analyze", json={"image": png_b64(images[2]), "tables": ["nope"]})
    assert r.status_code == 400 and "nope" in r.json()["detail"]


def test_unload(client, images):
    c, _, svc = client
    c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast"})
    assert c.get("/interrogator/status").json()["loaded"]["models"]
    assert c.post("/interrogator/unload").json() == {"unloaded": True}
    assert c.get("/interrogator/status").json()["loaded"]["models"] == []
    assert c.post("/interrogator/unload").json() == {"unloaded": False}


def test_api_auth_follows_webui_flag(webui):
    shared, _ = webui
    from interrogator_hosts import a1111_api

    shared.cmd_opts.api_auth = "alice:secret"
    app = fastapi.FastAPI()
    a1111_api.mount(app)
    c = TestClient(app)
    assert c.get("/interrogator/modes").status_code == 401
    assert c.get("/interrogator/modes", auth=("alice", "wrong")).status_code == 401
    assert c.get("/interrogator/modes", auth=("alice", "secret")).status_code == 200


def test_on_app_started_mounts_routes_and_builtin_hook(webui, images):
    shared, svc = webui
    from modules import script_callbacks
    from interrogator_hosts import a1111_api

    class Builtin:
        def interrogate(self, pil_image):
            return "builtin"

    shared.interrogator = Builtin()
    script_callbacks.on_app_started(a1111_api.on_app_started)
    app = fastapi.FastAPI()
    script_callbacks.app_started_callback(None, app)  # demo is None with --nowebui
    assert TestClient(app).get("/interrogator/modes").status_code == 200
    assert shared.interrogator.interrogate(images[0]) == "builtin", "setting off: the built-in interrogator"
    shared.opts.data["prompt_interrogator_replace_builtin"] = True
    ours = shared.interrogator.interrogate(images[0])
    assert ours != "builtin" and ours


# -- issue 7: target presets, SDXL dual prompts, beam width, round-trip score ----------------------------------

from fixtures import registry_clips, second_tiny_clip  # noqa: E402,F401


def test_score_endpoint(client, images):
    c, shared, svc = client
    img, other = png_b64(images[0]), png_b64(images[1])
    r = c.post("/interrogator/score", json={"image": img, "regenerated": img, "prompt": "a photo"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["image_similarity"] == pytest.approx(1.0, abs=1e-4) and isinstance(out["prompt_similarity"], float)
    assert out["clip_model_name"] == shared.opts.prompt_interrogator_clip_model and out["target"] == "custom"
    assert ("begin", "interrogator score") in shared.state.events and shared.state.events[-1][0] == "end"
    expected = svc.interrogator().score([images[0]], references=[images[1]], prompts=["a photo"])[0]
    out = c.post("/interrogator/score", json={"image": img, "regenerated": other, "prompt": "a photo"}).json()
    assert out["image_similarity"] == pytest.approx(expected.image_similarity, abs=1e-4)
    assert out["image_similarity"] < 0.9999
    assert out["prompt_similarity"] == pytest.approx(expected.prompt_similarity, abs=1e-4)
    only_prompt = c.post("/interrogator/score", json={"image": img, "prompt": "a photo"}).json()
    assert only_prompt["image_similarity"] is None and only_prompt["prompt_similarity"] is not None


@pytest.mark.parametrize("body,status,words", [
    ({}, 400, "nothing to score"),
    ({"regenerated": "!!!not base64!!!"}, 400, "'regenerated' is not valid base64"),
    ({"regenerated": "https://example.com/x.png"}, 400, "URL"),
    ({"prompt": "x", "target": "sdxx"}, 400, "sdxx"),
    ({"prompt": "x", "clip_model_name": "ViT-Nope-99/none"}, 400, "ViT-Nope-99"),
])
def test_score_bad_input_is_4xx(client, images, body, status, words):
    c, _, _ = client
    r = c.post("/interrogator/score", json={"image": png_b64(images[0]), **body})
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["detail"].lower()


def test_score_size_limit_applies_to_the_regenerated_image(client, images):
    c, shared, _ = client
    shared.opts.data["prompt_interrogator_api_max_mb"] = 0.05  # the original (~12 KB) passes
    r = c.post("/interrogator/score", json={"image": png_b64(images[0]), "regenerated": "A" * 200_000})
    assert r.status_code == 413 and "regenerated" in r.json()["detail"]
    r = c.post("/interrogator/score", json={"image": "A" * 200_000, "prompt": "x"})
    assert r.status_code == 413


def test_prompt_target_sdxl_dual_and_beam_width(client, images, registry_clips, monkeypatch):
    c, shared, svc = client
    from interrogator_core import Interrogator

    beams = []
    real = Interrogator.interrogate
    monkeypatch.setattr(Interrogator, "interrogate",
                        lambda self, *a, **k: beams.append(k.get("beam_width")) or real(self, *a, **k))
    body = {"image": png_b64(images[0]), "mode": "fast", "target": "sdxl", "sdxl_dual": True, "beam_width": 2}
    r = c.post("/interrogator/prompt", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert registry_clips == ["ViT-bigG-14/laion2b_s39b_b160k", "ViT-L-14/openai"]
    assert out["clip_model_name"] == "ViT-bigG-14/laion2b_s39b_b160k" and out["target"] == "sdxl"
    assert out["prompt_l"] and out["negative_prompt_l"] and out["prompt_l"].startswith(out["caption"])
    assert beams[0] == 2

    # without dual: no ViT-L prompts; the settings' beam width is the default
    shared.opts.data["prompt_interrogator_beam_width"] = 3
    out = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", "target": "sdxl"}).json()
    assert out["prompt_l"] is None and out["negative_prompt_l"] is None and beams[-1] == 3
    assert len(registry_clips) == 2, "bigG kept across the switch (only the ViT-L encoder is dropped)"

    for bad in ({"beam_width": 0}, {"beam_width": 9}):
        assert c.post("/interrogator/prompt", json={**body, **bad}).status_code == 422
    r = c.post("/interrogator/prompt", json={**body, "target": "sd15"})
    assert r.status_code == 400 and "sdxl" in r.json()["detail"]


def test_default_target_setting_applies_unless_a_clip_model_is_named(client, images, registry_clips):
    c, shared, _ = client
    shared.opts.data["prompt_interrogator_target"] = "sd2"
    status = c.get("/interrogator/status").json()
    assert status["defaults"]["target"] == "sd2" and status["targets"] == list_targets()
    out = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast"}).json()
    assert out["clip_model_name"] == "ViT-H-14/laion2b_s32b_b79k" and registry_clips == [out["clip_model_name"]]
    named = shared.opts.prompt_interrogator_clip_model
    out = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast",
                                               "clip_model_name": named}).json()
    assert out["clip_model_name"] == named and out["target"] == "custom", "an explicit CLIP model wins"


# -- issue 13: inside a real webui -----------------------------------------------------------------------------

def _huge_png_b64(side: int = 20000) -> str:
    """A valid black 1-bit PNG of side x side pixels (about 50 KB compressed; never decoded by the tests)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
           + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def test_prompt_20000_square_png_is_413_not_400(client):
    """Pillow's own decompression-bomb check fires first for this size; it is still "too many pixels"."""
    c, _, svc = client
    r = c.post("/interrogator/prompt", json={"image": _huge_png_b64()})
    assert r.status_code == 413, r.text
    assert "too many pixels" in r.json()["detail"]
    assert svc.loaded["models"] == [], "nothing loaded for a refused image"


@pytest.fixture
def broken_caption(tmp_path, webui_models):
    """A caption folder whose config is fine but whose weights are garbage: it resolves, then fails to load."""
    import shutil

    folder = tmp_path / "broken-blip"
    shutil.copytree(webui_models["blip"], folder)
    for weights in folder.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors at all")
    return folder


def test_caption_model_that_fails_to_load_is_422_naming_it(client, images, broken_caption):
    c, _, _ = client
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast",
                                             "caption_model_name": str(broken_caption)})
    assert r.status_code == 422, r.text
    assert str(broken_caption) in r.json()["detail"]


def test_names_are_checked_before_any_model_loads(client, images, broken_caption, monkeypatch):
    """An unknown CLIP name is reported (4xx, named) even when the caption model would fail first, and no model
    is loaded for a request that names a bad model."""
    c, _, svc = client
    import interrogator_core.pool as loaders  # where models are loaded

    loads = []
    for name in ("load_clip", "load_captioner"):
        real = getattr(loaders, name)
        monkeypatch.setattr(loaders, name, lambda *a, _real=real, _n=name, **k: loads.append(_n) or _real(*a, **k))
    for body in ({"clip_model_name": "ViT-Nope-99/none", "caption_model_name": str(broken_caption)},
                 {"clip_model_name": "ViT-L-14/nope"},
                 {"caption_model_name": "blip-nope"},
                 {"caption_model_name": str(broken_caption.parent / "missing-folder")}):
        r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", **body})
        bad = next(v for v in body.values() if "nope" in v.lower() or "missing" in v)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert bad.split("/")[0] in r.json()["detail"] or bad in r.json()["detail"], (body, r.text)
    assert loads == [], "validation happens before any model load"


def test_webui_safe_unpickler_is_active_and_our_models_pass_it(client, images):
    """The fake webui refuses pickles as A1111 does; the test models are safetensors, so nothing is refused."""
    c, _, _ = client
    from modules import safe

    import torch

    assert torch.load is safe.load
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast"})
    assert r.status_code == 200, r.text
    assert r.json()["caption"] and safe.refused == []


def test_caption_family_newer_than_the_webuis_transformers_is_422_before_loading(client, images, monkeypatch):
    """A1111 pins transformers 4.30.2: a listed family that needs more gives the core's one version error."""
    c, _, svc = client
    from interrogator_core import list_caption_models
    from interrogator_core.caption import CAPTION_MODELS, FAMILIES, transformers_version
    import interrogator_core.pool as loaders  # where models are loaded

    monkeypatch.setattr(loaders, "load_captioner", lambda *a, **k: pytest.fail("nothing may load"))
    listed = c.get("/interrogator/caption_models").json()
    assert listed == list_caption_models() and "florence2-base" in listed, "new families are in the menu"
    from packaging.version import Version

    too_new = [n for n in listed if Version(FAMILIES[CAPTION_MODELS[n].family].min_transformers)
               > Version(transformers_version())]
    if not too_new:
        pytest.skip(f"transformers {transformers_version()} has every family (the A1111 env checks this)")
    for name in too_new:
        r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast",
                                                 "caption_model_name": name})
        assert r.status_code == 422, (name, r.text)
        detail = r.json()["detail"]
        assert name in detail and transformers_version() in detail and "needs transformers >=" in detail


# -- issue 12: caption styles, instructions, targets flux / sd35 / sdxl-tags ------------------------------------

def test_prompt_flux_returns_clip_l_and_t5_and_no_negative(client, images, registry_clips):
    c, _, svc = client
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", "target": "flux"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out["prompts"]) == {"clip_l", "t5"} and out["target"] == "flux"
    assert out["clip_model_name"] == "ViT-L-14/openai" and registry_clips == ["ViT-L-14/openai"]
    assert out["negative_prompt"] == "" and any("negative" in n.lower() for n in out["notes"])
    assert out["prompt"] == out["prompts"]["clip_l"] and out["caption"] in out["prompts"]["t5"]
    assert any("cannot write detailed" in n for n in out["notes"]), "BLIP writes short captions only: said so"


def test_prompt_sd35_returns_three_encoders_and_a_negative(client, images, registry_clips):
    c, _, _ = client
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[1]), "mode": "fast", "target": "sd35"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out["prompts"]) == {"clip_l", "clip_g", "t5"} and out["negative_prompt"]
    assert out["prompt"] == out["prompts"]["clip_g"]
    assert sorted(registry_clips) == ["ViT-L-14/openai", "ViT-bigG-14/laion2b_s39b_b160k"]


def test_prompt_sdxl_tags(client, images, registry_clips):
    c, _, _ = client
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[2]), "mode": "fast", "target": "sdxl-tags"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["target"] == "sdxl-tags" and out["prompt"] and ", " in out["prompt"]


# -- issue 19: the targets of 2025-26 return every prompt their encoders read --------------------------------------
@pytest.mark.parametrize("target, keys", [("hidream", {"clip_l", "clip_g", "t5", "llama"}), ("flux2", {"llm"}),
                                          ("wan", {"t5"}), ("pony", {"clip_g"})])
def test_prompt_new_targets_return_every_prompt_by_encoder(client, images, registry_clips, target, keys):
    c, _, _ = client
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", "target": target})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["target"] == target and set(out["prompts"]) == keys and all(out["prompts"].values())
    assert out["caption"] in out["prompts"].get("llama", out["prompts"].get("llm", out["caption"]))
    if target == "flux2":
        assert out["negative_prompt"] == "" and any("negative" in n.lower() for n in out["notes"])
    listed = c.get("/interrogator/status").json()
    assert target in listed["targets"]


@pytest.mark.parametrize("body,words", [
    ({"caption_style": "fancy"}, ["fancy", "short", "detailed", "tags"]),
    ({"caption_style": "detailed"}, ["detailed", "short"]),  # set explicitly: BLIP cannot, and says what it can
    ({"caption_prompt": "Describe the lighting."}, ["takes no instruction"]),
    ({"target": "sdxl-tagz"}, ["sdxl-tagz", "sdxl-tags"]),
])
def test_caption_style_and_instruction_errors_are_400(client, images, body, words):
    c, _, _ = client
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", **body})
    assert r.status_code == 400, r.text
    assert all(w in r.json()["detail"] for w in words), r.text


def test_caption_style_and_instruction_reach_the_engine(client, images, monkeypatch):
    """Request values win over the settings' defaults; 'auto' means the target's style."""
    c, shared, svc = client
    from interrogator_core import list_caption_styles

    assert c.get("/interrogator/caption_styles").json() == list_caption_styles()
    shared.opts.data["prompt_interrogator_caption_style"] = "tags"
    status = c.get("/interrogator/status").json()
    assert status["defaults"]["caption_style"] == "tags" and status["caption_styles"] == list_caption_styles()
    seen = []
    real = svc.config_for
    monkeypatch.setattr(svc, "config_for", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    for body, style, instruction in (({}, "tags", None), ({"caption_style": "auto"}, None, None),
                                     ({"caption_style": "short", "caption_prompt": " Be brief. "}, "short",
                                      "Be brief.")):
        c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", **body})
        assert seen and all((cfg.caption_style, cfg.caption_prompt) == (style, instruction) for cfg in seen), body
        seen.clear()


# -- issue 12 end to end: each VLM family's tiny folder through the API (runs where transformers has it) --------
from conftest import FAMILY_BUILDERS, family_model  # noqa: E402
from interrogator_core.caption import FAMILIES  # noqa: E402

FAMILY_CASES = [(f, s, "custom") for f in FAMILY_BUILDERS for s in FAMILIES[f].default_styles] + \
    [(f, None, t) for f in FAMILY_BUILDERS for t in ("flux", "sd35")]


@pytest.mark.parametrize("family,style,target", FAMILY_CASES)
def test_prompt_with_each_caption_family_style_and_target(family, style, target, client, images, registry_clips,
                                                          family_models):
    from interrogator_core.caption import load_captioner
    from interrogator_core.prompts import as_tags

    folder = family_model(family_models, family)
    c, _, _ = client
    body = {"image": png_b64(images[0]), "mode": "fast", "caption_model_name": str(folder), "target": target}
    if style:
        body["caption_style"] = style
    r = c.post("/interrogator/prompt", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    used = style or "detailed"
    direct = load_captioner(str(folder)).generate(images[:1], 8, style=used)[0]  # the fixture's caption_max_length
    assert out["caption"] == (as_tags(direct) if used == "tags" else direct), "the family's own caption, that style"
    assert set(out["prompts"]) == {"custom": set(), "flux": {"clip_l", "t5"},
                                   "sd35": {"clip_l", "clip_g", "t5"}}[target]
    assert (out["negative_prompt"] == "") == (target == "flux")



def test_settings_min_flavors_never_contradicts_a_requested_max(client, images):
    c, shared, _ = client
    shared.opts.data["prompt_interrogator_min_flavors"] = 8
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", "max_flavors": 2})
    assert r.status_code == 200, r.text
    bad = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", "max_flavors": 2,
                                               "min_flavors": 3})
    assert bad.status_code == 400 and "min_flavors" in bad.text


@pytest.mark.parametrize("target", ["flux2", "qwen-image", "hidream", "z-image", "chroma", "lumina2", "wan",
                                    "illustrious", "noobai", "pony"])
def test_each_new_target_through_the_api(target, client, images, registry_clips):
    """Issue 19: each of today's targets end to end through /interrogator/prompt: ``prompts`` holds the prompt of
    every encoder the target reads, ``prompt`` the main one."""
    from interrogator_core import get_target

    c, _, _ = client
    r = c.post("/interrogator/prompt", json={"image": png_b64(images[0]), "mode": "fast", "target": target})
    assert r.status_code == 200, r.text
    out, preset = r.json(), get_target(target)
    assert out["target"] == target and list(out["prompts"]) == preset.prompt_keys()
    assert out["prompt"] == out["prompts"][preset.main_encoder] and all(out["prompts"].values())
    assert bool(out["negative_prompt"]) == preset.negative


# -- image taggers: the settings page's tagger options, per-request fields, Analyze's tags ------------------------
@pytest.fixture
def tagger_folder(tmp_path):
    import math

    from interrogator_core.testing import TINY_TAGS, make_tiny_tagger

    scores = {"1girl": 0.95, "solo": 0.9, "long_hair": 0.6, "hatsune_miku": 0.92}
    return make_tiny_tagger(tmp_path / "tiny-tagger", head_bias=[
        math.log(p / (1 - p)) for p in (scores.get(name, 0.1) for name, _ in TINY_TAGS)])


def test_tagger_settings_page_and_request_fields_reach_the_tags(client, images, tagger_folder):
    from interrogator_hosts import a1111

    c, shared, _ = client
    body = {"image": png_b64(images[0]), "mode": "caption", "caption_model_name": str(tagger_folder)}
    r = c.post("/interrogator/prompt", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["caption"] == "hatsune miku, 1girl, solo, long hair"  # the table's defaults
    shared.opts.data[a1111.OPT_PREFIX + "exclude"] = "long_hair"  # the settings page
    shared.opts.data[a1111.OPT_PREFIX + "character_first"] = False
    assert c.post("/interrogator/prompt", json=body).json()["caption"] == "1girl, hatsune miku, solo"
    # a request's fields win over the page's
    out = c.post("/interrogator/prompt", json={**body, "exclude": "", "max_tags": 2}).json()
    assert out["caption"] == "1girl, hatsune miku"
    assert c.post("/interrogator/prompt", json={**body, "general_threshold": 1.5}).status_code == 422

    r = c.post("/interrogator/analyze", json={"image": png_b64(images[0]), "top_n": 2, "with_caption": True,
                                              "caption_model_name": str(tagger_folder)})
    assert r.status_code == 200, r.text
    tags = r.json()["tags"]
    assert list(tags["character"]) == ["hatsune miku"] and list(tags["general"]) == ["1girl", "solo"]
    assert tags["general"]["solo"] == pytest.approx(0.9, abs=1e-5) and "rating" in tags
    assert len(r.json()["medium"]) == 2  # the CLIP tables stay


def test_prompt_takes_the_caption_controls(client, images):
    """Issue 19 item 5: trigger words (and the other caption controls) as request fields."""
    c, shared, svc = client
    body = {"image": png_b64(images[0]), "clip_model_name": shared.opts.prompt_interrogator_clip_model,
            "mode": "fast", "caption": "a lighthouse.", "trigger_prefix": "ohwx", "trigger_suffix": "zyx style",
            "caption_length": "very_short"}
    out = c.post("/interrogator/prompt", json=body).json()
    assert out["caption"] == "a lighthouse." and out["prompt"].startswith("ohwx, a lighthouse, ")
    assert out["prompt"].endswith(", zyx style") and "ohwx" not in out["negative_prompt"]
    assert all(p.startswith("ohwx, ") for p in out["prompts"].values())
    bad = c.post("/interrogator/prompt", json={**body, "caption_length": "tiny"})
    assert bad.status_code in (400, 422) and "very_short" in bad.text
