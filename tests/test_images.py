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
    pixels = ci._get_clip().preprocess(im)  # inside: the CLIP model's own transform, no public surface
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
