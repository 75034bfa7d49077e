"""pytest fixtures for the A1111/Forge tests (imported by tests/test_a1111_*.py)."""
import base64
import io

import pytest

import env


def png_b64(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def safetensors_only(folder):
    """Re-save a ``save_pretrained`` model folder as safetensors when it holds a pickled ``pytorch_model.bin``
    (older transformers, e.g. A1111's 4.30.2, write .bin by default): inside the webui ``modules.safe``
    refuses pickles written by current torch, as a real install does."""
    from pathlib import Path

    folder = Path(folder)
    binary = folder / "pytorch_model.bin"
    if binary.is_file():
        import transformers

        config = transformers.AutoConfig.from_pretrained(str(folder))
        model = getattr(transformers, config.architectures[0]).from_pretrained(str(folder))
        model.save_pretrained(str(folder), safe_serialization=True)
        binary.unlink()
    assert not list(folder.glob("*.bin")) and list(folder.glob("*.safetensors")), sorted(folder.iterdir())
    return folder


@pytest.fixture(scope="session")
def webui_models(tiny_models, tmp_path_factory):
    """The tiny models as a webui can load them: safetensors only (see :func:`safetensors_only`)."""
    from interrogator_core.testing import make_tiny_blip

    blip = make_tiny_blip(tmp_path_factory.mktemp("webui-models") / "tiny-blip")
    return {**tiny_models, "blip": safetensors_only(blip)}


def _make_webui(request, tiny_models, small_data_dir, tmp_path, forge: bool):
    shared = env.install(forge=forge)
    from interrogator_hosts import a1111

    shared.models_path = str(tmp_path / "models")
    import importlib.util

    if importlib.util.find_spec("gradio") is not None:  # the settings page needs gradio; the values read the same
        a1111.register_settings()
    for key, value in {"clip_model": str(tiny_models["clip"]), "caption_model": str(tiny_models["blip"]),
                       "min_flavors": 2, "max_flavors": 4, "negative_count": 3, "mode": "best"}.items():
        shared.opts.data[a1111.OPT_PREFIX + key] = value
    svc = a1111.InterrogatorService(config_overrides={"data_dir": small_data_dir, "caption_max_length": 8})
    a1111.set_service(svc)
    request.addfinalizer(lambda: (a1111.set_service(None), env.uninstall()))
    return shared, svc


@pytest.fixture
def webui(request, webui_models, small_data_dir, tmp_path):
    """(modules.shared fake, InterrogatorService) on the A1111 fakes with the tiny models as defaults."""
    return _make_webui(request, webui_models, small_data_dir, tmp_path, forge=False)


@pytest.fixture
def forge_webui(request, webui_models, small_data_dir, tmp_path):
    """Same on the Forge fakes (backend.memory_management importable)."""
    return _make_webui(request, webui_models, small_data_dir, tmp_path, forge=True)


@pytest.fixture(scope="session")
def second_tiny_clip(tmp_path_factory):
    """A second tiny CLIP (other weights): stands in for SDXL's ViT-L/14 encoder."""
    from interrogator_core.testing import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip-l") / "tiny-clip-l", seed=1)


@pytest.fixture
def registry_clips(monkeypatch, tiny_models, second_tiny_clip):
    """Real registry names cannot be downloaded in tests: the engine's ``load_clip`` serves the target presets'
    names from tiny models (ViT-bigG and ViT-H → tiny-clip, ViT-L/14 → the second tiny CLIP). Returns the
    list of names asked for."""
    import interrogator_core.pool as loaders  # where models are loaded

    asked = []
    real = loaders.load_clip
    tiny = {"ViT-bigG-14/laion2b_s39b_b160k": tiny_models["clip"], "ViT-H-14/laion2b_s32b_b79k": tiny_models["clip"],
            "ViT-L-14/openai": second_tiny_clip}

    def load_clip(name, *args, **kwargs):
        asked.append(name)
        return real(str(tiny.get(name, name)), *args, **kwargs)

    monkeypatch.setattr(loaders, "load_clip", load_clip)
    return asked
