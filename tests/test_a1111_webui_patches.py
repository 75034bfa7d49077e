"""Our models inside the webui's patched process (fakes emulate what A1111 1.10.1 patches; see a1111_patches)."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "a1111"))

from fixtures import webui, webui_models  # noqa: E402,F401


@pytest.fixture
def gelu_hijack(webui):
    """A1111 on a CUDA machine with --upcast-sampling: open_clip blocks built from now on get its GELU."""
    from modules import devices, sd_hijack_unet

    sd_hijack_unet.install()
    devices.unet_needs_upcast = True
    yield sd_hijack_unet
    sd_hijack_unet.uninstall()
    devices.unet_needs_upcast = False


def _fast_result(svc, image):
    r = svc.prompt(image, mode="fast", negative_count=3)
    return r.positive, r.negative, round(r.similarity, 5)


def test_webui_gelu_patch_does_not_reach_our_models(webui, gelu_hijack, images):
    """Under the webui's upcast GELU a float32 CLIP would get float16 activations (and fail); the adapter puts
    plain GELUs back, so the prompts equal those of an unpatched process and the fast text path stays on."""
    shared, svc = webui
    ci = svc.interrogator()
    ci.load(caption=False)
    clip = ci.main.clip
    assert not any(isinstance(m, gelu_hijack.GELUHijack) for m in clip.module.modules()), \
        "the adapter's load replaced the webui's activation"
    assert clip.text.fast, "the fast text encoder recognises the tower inside the webui"
    patched = _fast_result(svc, images[0])
    svc.unload()
    gelu_hijack.uninstall()
    assert _fast_result(svc, images[0]) == patched


def test_plain_activations_keeps_approximate_and_leaves_plain_gelu(gelu_hijack):
    from torch import nn

    from interrogator_hosts.a1111_patches import plain_activations

    model = nn.Sequential(nn.Linear(2, 2), gelu_hijack.GELUHijack(approximate="tanh"), nn.GELU())
    plain = model[2]
    assert plain_activations(model) == 1
    assert type(model[1]) is nn.GELU and model[1].approximate == "tanh" and model[2] is plain
    assert plain_activations(model) == 0


def test_calls_inside_an_autocast_region_run_in_the_models_dtype(webui, images):
    """An extension calling us during sampling (inside autocast) gets the same prompts as a plain call."""
    shared, svc = webui
    expected = _fast_result(svc, images[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _fast_result(svc, images[1]) == expected
        assert torch.is_autocast_cpu_enabled(), "the caller's autocast state is restored"
