"""The image edge: every input kind becomes the core's RGB image once, one NaN/range rule with one error, and
images of any size (1 pixel tall or wide, 2x2, 3xN) reach every caption family and CLIP read channels-last.

Issue 21 item 2: transformers' image processors guess where the channels are; left to guess, an H x W x 3 image
whose height is 1 or 3 was read channels-first (1 pixel tall: "mean must have 1 elements ... got 3"; 3 pixels
tall: its rows taken for the colour channels). Issue 18 item 3: one conversion at the edge.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FAMILY_BUILDERS, family_model
from interrogator_core import ImageError
from interrogator_core.caption import load_captioner

#: (height, width) of the tiny images every caption family and CLIP must take
TINY_SIZES = [(1, 1), (1, 7), (7, 1), (3, 5), (5, 3), (2, 2)]
ALL_FAMILIES = ["blip"] + list(FAMILY_BUILDERS)
#: one solid colour, so any resize keeps it and each channel's value is known
COLOUR = (200, 30, 90)


def _tiny(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed + 31 * h + w)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def captioner(tiny_models, family_models):
    loaded = {}

    def get(family: str):
        if family not in loaded:
            folder = tiny_models["blip"] if family == "blip" else family_model(family_models, family)
            loaded[family] = load_captioner(str(folder))
        return loaded[family]

    return get


def _styles(cap) -> list:
    return [s for s in ("short",) if s in cap.styles] or [cap.styles[0]]


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("size", TINY_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tiny_images_get_a_caption_in_every_family(captioner, family, size):
    cap = captioner(family)
    im = _tiny(*size)
    first = cap.generate([im], max_new_tokens=6, style=_styles(cap)[0])
    again = cap.generate([im], max_new_tokens=6, style=_styles(cap)[0])
    assert len(first) == 1 and isinstance(first[0], str)
    assert first == again  # deterministic


def _channel_values(pixel_values: torch.Tensor) -> torch.Tensor:
    """[3, N] values per colour channel of a processor's pixel_values: [B, 3, H, W] images, or Qwen-VL's
    flattened patches [N, 3 * temporal * patch * patch] (channel the slowest axis inside a patch)."""
    pv = pixel_values.float()
    if pv.ndim == 4:
        return pv.transpose(0, 1).reshape(3, -1)
    assert pv.ndim == 2, pv.shape
    return pv.reshape(pv.shape[0], 3, -1).transpose(0, 1).reshape(3, -1)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("size", [(3, 5), (3, 3), (1, 4), (5, 3)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_short_images_are_read_channels_last(captioner, family, size):
    """A solid-colour image: each channel of pixel_values holds that colour's channel, normalized by the
    processor's mean/std (the explicit channels-last reading of the H x W x 3 pixels). Read channels-first, a
    3-pixel-tall image's rows would be the channels and each channel would mix the colour's three values."""
    cap = captioner(family)
    h, w = size
    im = Image.new("RGB", (w, h), COLOUR)
    inputs, _ = cap.build_inputs([im], style=_styles(cap)[0])
    ip = getattr(cap.processor, "image_processor", cap.processor)
    hwc = np.asarray(im).astype(np.float32) / 255.0  # explicit channels-last
    expected = (hwc.reshape(-1, 3).mean(0) - np.array(ip.image_mean)) / np.array(ip.image_std)
    got = _channel_values(inputs["pixel_values"])
    for c in range(3):
        assert torch.allclose(got[c], torch.full_like(got[c], float(expected[c])), atol=0.03), \
            (c, float(expected[c]), got[c].unique()[:8])


@pytest.mark.parametrize("size", TINY_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tiny_images_through_clip_preprocessing_and_the_pipeline(make_interrogator, size):
    """CLIP's open_clip transforms (resize the short side, centre crop) and the whole pipeline take them."""
    ci = make_interrogator()
    im = _tiny(*size)
    pixels = ci.main.clip.preprocess(im)  # inside: the CLIP model's own transform, no public surface
    assert pixels.shape[0] == 3 and torch.isfinite(pixels).all()
    first = ci.interrogate([im], mode="fast", max_flavors=3)
    again = ci.interrogate([im], mode="fast", max_flavors=3)
    assert first[0].positive and first[0].caption is not None
    assert [r.positive for r in first] == [r.positive for r in again]


def test_an_image_a_processor_refuses_is_an_image_error_naming_its_size(captioner):
    """Qwen-VL's processor refuses an aspect ratio beyond 200:1: one ImageError naming the size and the model."""
    cap = captioner("qwen2_5_vl")
    with pytest.raises(ImageError, match=r"250x1: cannot be prepared for caption model .*aspect ratio"):
        cap.generate([_tiny(1, 250)], max_new_tokens=4)


# --- the one image edge (issue 18 item 3) -----------------------------------------------------------------------
def _png(im: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_every_host_input_kind_becomes_the_same_core_image(tmp_path):
    from interrogator_core import is_rgb_image, load_images, load_rgb
    from interrogator_hosts.comfyui import tensor_to_pil

    rgb = np.random.default_rng(5).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    (tmp_path / "a.png").write_bytes(_png(Image.fromarray(rgb)))
    comfy = torch.from_numpy(rgb.astype(np.float32) / 255.0)[None]  # ComfyUI IMAGE [B, H, W, C] in 0..1
    kinds = {"pil": Image.fromarray(rgb).convert("RGBA"), "path": tmp_path / "a.png", "str": str(tmp_path / "a.png"),
             "bytes": _png(Image.fromarray(rgb)), "numpy": rgb, "numpy_float": rgb / 255.0,
             "torch_chw": torch.from_numpy(rgb).permute(2, 0, 1)}
    out = {k: load_rgb(v) for k, v in kinds.items()}
    out["comfy_edge"] = load_images(comfy, channels_last=True, name="IMAGE")[0]
    out["comfy_host"] = tensor_to_pil(comfy)[0]
    for kind, im in out.items():
        assert is_rgb_image(im) and np.array_equal(np.asarray(im), rgb), kind


def test_an_image_already_converted_is_passed_through_not_copied(tmp_path):
    from interrogator_core import is_rgb_image, load_images, load_rgb

    path = tmp_path / "a.png"
    Image.new("RGB", (5, 4), (10, 20, 30)).save(path)
    opened = Image.open(path)  # an RGB file, read lazily: not the core's image yet
    assert not is_rgb_image(opened)
    core = load_rgb(opened)
    assert core is not opened and is_rgb_image(core)
    assert load_rgb(core) is core
    assert all(a is b for a, b in zip(load_images([core, core]), [core, core]))
    made = Image.new("RGB", (3, 2))  # an in-memory RGB image already is one
    assert load_rgb(made) is made
    for not_yet in (Image.new("RGBA", (3, 2)), Image.new("L", (3, 2))):
        assert load_rgb(not_yet) is not not_yet
    rotated = Image.new("RGB", (4, 2), (1, 2, 3))  # EXIF orientation 6 (rotate 90 degrees) still to apply
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.info["exif"] = exif.tobytes()
    upright = load_rgb(rotated)
    assert upright is not rotated and upright.size == (2, 4) and is_rgb_image(upright)


def test_the_pipeline_does_not_convert_a_core_image_again(make_interrogator, monkeypatch):
    """What reaches the caption model is the caller's core image itself (one conversion, at the edge).
    Inside: the caption stage's input is not public, so the test spies on Captioner.generate."""
    from interrogator_core import caption as caption_module, load_rgb

    seen = []
    real = caption_module.Captioner.generate

    def spy(self, images, *args, **kwargs):
        seen.extend(images)
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(caption_module.Captioner, "generate", spy)
    core = load_rgb(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    make_interrogator().caption([core])
    assert len(seen) == 1 and seen[0] is core


@pytest.mark.parametrize("size", [(1, 7), (3, 5), (3, 3), (2, 2), (4, 4)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_comfyui_images_are_read_channels_last_whatever_their_height(size):
    """A ComfyUI IMAGE says its layout ([B, H, W, C]): a 3-pixel-tall one is not guessed channels-first."""
    from interrogator_hosts.comfyui import tensor_to_pil

    h, w = size
    rgb = np.random.default_rng(h * 10 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    (im,) = tensor_to_pil(torch.from_numpy(rgb.astype(np.float32) / 255.0)[None])
    assert im.size == (w, h) and np.array_equal(np.asarray(im), rgb)


def test_one_nan_rule_and_one_error_for_every_input_kind():
    from interrogator_core import load_images
    from interrogator_hosts.comfyui import tensor_to_pil

    values = np.full((4, 5, 3), 0.5, np.float32)
    values[1, 1, 0] = np.nan
    values[2, 3, 2] = np.inf
    messages = set()
    for convert in (lambda: load_images(values), lambda: load_images(torch.from_numpy(values), channels_last=True),
                    lambda: load_images(torch.from_numpy(values).half(), channels_last=True),
                    lambda: tensor_to_pil(torch.from_numpy(values)[None]),
                    lambda: load_images(Image.fromarray(values[..., 0]))):  # a float ("F") PIL image
        with pytest.raises(ImageError) as e:
            convert()
        messages.add(e.value.reason.split(" (of")[0])
    assert messages == {"has 2 NaN or infinite pixel values", "has 1 NaN or infinite pixel values"}
