"""Issue 19 item 6: quantized caption models (precision int8 / nf4 through bitsandbytes) on CUDA.

No GPU here: the tests check the one error of each unusable case (CPU/MPS, bitsandbytes missing, a transformers
without ``BitsAndBytesConfig``), raised before any weights load, and the ``quantization_config`` that would reach
``from_pretrained`` on CUDA (a fake CUDA device and a captured ``from_pretrained``), not quantized inference."""
import sys
import types

import pytest
import torch

from interrogator_core import PRECISIONS, ModelLoadError, StandaloneHost
from interrogator_core import caption as caption_mod
from interrogator_core.caption import load_captioner
from interrogator_core.host import parse_dtype, quantization_of


def test_precision_lists_the_quantized_values_and_clip_runs_unquantized():
    assert {"int8", "nf4"} <= set(PRECISIONS)
    assert quantization_of("int8") == "int8" and quantization_of("nf4") == "nf4"
    assert quantization_of("fp16") is None and quantization_of("auto") is None
    # CLIP ignores int8/nf4: its dtype is the auto one (fp16 on CUDA, fp32 on the CPU)
    assert parse_dtype("int8") is None and parse_dtype("nf4") is None
    host = StandaloneHost("cpu", "nf4")
    assert host.quantization == "nf4" and host.dtype_for(torch.device("cpu")) == torch.float32
    assert StandaloneHost("cpu", "fp16").quantization is None


def _no_weights(monkeypatch):
    """Fail the test if any weights load."""
    import transformers

    def boom(*a, **k):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(transformers.BlipForConditionalGeneration, "from_pretrained", boom)


def test_quantized_on_the_cpu_is_one_error_before_any_weights(tiny_models, monkeypatch):
    _no_weights(monkeypatch)
    for q in ("int8", "nf4"):
        with pytest.raises(ModelLoadError) as e:
            load_captioner(str(tiny_models["blip"]), quantization=q, device=torch.device("cpu"))
        text = str(e.value)
        assert f"precision {q}" in text and "CUDA" in text and "fp16" in text


def _fake_cuda_and_bnb(monkeypatch):
    """A fake installed bitsandbytes (older transformers check its version when building the 4-bit config)."""
    import importlib.machinery
    import importlib.metadata

    fake = types.ModuleType("bitsandbytes")
    fake.__spec__ = importlib.machinery.ModuleSpec("bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.45.0" if name == "bitsandbytes" else real_version(name))
    return torch.device("cuda")


def test_quantized_without_bitsandbytes_names_the_extra(tiny_models, monkeypatch):
    _no_weights(monkeypatch)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails
    with pytest.raises(ModelLoadError) as e:
        load_captioner(str(tiny_models["blip"]), quantization="int8", device=torch.device("cuda"))
    assert "bitsandbytes" in str(e.value) and "[quant]" in str(e.value)


def test_quantized_with_a_transformers_without_bitsandbytesconfig(tiny_models, monkeypatch):
    import transformers

    _no_weights(monkeypatch)
    device = _fake_cuda_and_bnb(monkeypatch)
    monkeypatch.setattr(transformers, "BitsAndBytesConfig", None, raising=False)  # (a lazy module re-imports a deleted name)
    with pytest.raises(ModelLoadError) as e:
        load_captioner(str(tiny_models["blip"]), quantization="nf4", device=device)
    assert "BitsAndBytesConfig" in str(e.value) and "transformers" in str(e.value)


@pytest.mark.parametrize("q", ["int8", "nf4"])
def test_quantization_config_reaches_from_pretrained_on_cuda(tiny_models, monkeypatch, q):
    import transformers

    device = _fake_cuda_and_bnb(monkeypatch)
    seen = {}

    class Captured(Exception):
        pass

    def capture(source, **kwargs):
        seen.update(kwargs)
        raise Captured()

    monkeypatch.setattr(transformers.BlipForConditionalGeneration, "from_pretrained", capture)
    with pytest.raises(ModelLoadError):  # the captured call stops the load (wrapped as a load error)
        load_captioner(str(tiny_models["blip"]), torch.float16, quantization=q, device=device)
    qc = seen["quantization_config"]
    assert isinstance(qc, transformers.BitsAndBytesConfig)
    if q == "int8":
        assert qc.load_in_8bit and not qc.load_in_4bit
    else:
        assert qc.load_in_4bit and qc.bnb_4bit_quant_type == "nf4" and qc.bnb_4bit_compute_dtype == torch.float16
    assert seen["device_map"] == {"": "cuda"}


def test_unquantized_load_passes_no_quantization_config(tiny_models):
    cap = load_captioner(str(tiny_models["blip"]))
    assert cap.quantization is None


def test_the_pool_passes_the_host_precision_to_the_caption_model(tiny_models, monkeypatch):
    from interrogator_core import pool as pool_mod

    seen = {}

    def fake(name, dtype, search_dirs, download_dir, **kwargs):
        seen.update(kwargs)
        raise ModelLoadError("stop")

    monkeypatch.setattr(pool_mod, "load_captioner", fake)
    p = pool_mod.ModelPool(StandaloneHost("cpu", "int8"))
    with pytest.raises(ModelLoadError):
        p.captioner(str(tiny_models["blip"]))
    assert seen["quantization"] == "int8" and seen["device"] == torch.device("cpu")
    assert pool_mod.caption_key("x", torch.float16, False, "nf4") != pool_mod.caption_key("x", torch.float16, False)
