"""Shared fixtures: tiny random-weight models saved to disk and loaded back through the users' code path."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Tests never touch the network: a missing model must fail fast with our error, not hang on a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# remote-code test folders are copied by transformers into its modules cache (fixed at its import): a temp one,
# removed at exit, so the tests leave nothing in ~/.cache/huggingface/modules
if "HF_MODULES_CACHE" not in os.environ:
    os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="pi-hf-modules-")
    atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], True)

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost  # noqa: E402
from interrogator_core.testing import make_tiny_blip, make_tiny_clip  # noqa: E402

#: Small label lists (same file names as data/): keeps each test's table build under a second.
SMALL_LISTS = {
    "artists": ["Claude Monet", "Greg Rutkowski", "Hokusai", "Frida Kahlo", "Ansel Adams", "Alphonse Mucha"],
    "flavors": ["highly detailed", "trending on artstation", "sharp focus", "octane render", "8k", "",
                "concept art", "matte painting", "cinematic lighting", "bokeh", "pastel colors", "8k",
                "digital painting", "intricate", "volumetric light", "studio photograph", "film grain",
                "dramatic", "vibrant colors", "soft light", "wide angle", "low poly", "watercolor texture",
                "isometric", "ultra realistic", "vaporwave", "cel shaded", "golden hour", "fantasy art",
                "hyperrealism", "smooth", "elegant", "ethereal", "moody", "symmetrical", "minimalism"],
    "mediums": ["a photo", "a painting", "a 3D render", "a sketch", "a watercolor painting", "an illustration"],
    "movements": ["impressionism", "surrealism", "art nouveau", "cubism", "pop art"],
    "negative": ["blurry", "lowres", "bad anatomy", "jpeg artifacts", "watermark", "text", "ugly",
                 "deformed", "out of frame", "cropped"],
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """{"clip": snapshot folder, "blip": model folder, "root": their parent} — built once per session."""
    root = tmp_path_factory.mktemp("models")
    return {"clip": make_tiny_clip(root / "tiny-clip"), "blip": make_tiny_blip(root / "tiny-blip"), "root": root}


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    for name, labels in SMALL_LISTS.items():
        (d / f"{name}.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def tiny_clip_l(tmp_path_factory):
    """A second tiny CLIP (other weights) standing in for CLIP ViT-L/14."""
    from interrogator_core.testing import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip-l") / "tiny-clip-l", seed=1)


@pytest.fixture
def registry_to_tiny(monkeypatch, tiny_models, tiny_clip_l) -> List[str]:
    """The presets' registry names cannot be downloaded here: the engine's ``load_clip`` serves ViT-bigG and
    ViT-H from tiny-clip and ViT-L/14 from tiny-clip-l, through the real loading code. Returns the names asked."""
    asked: List[str] = []
    from interrogator_core import pool as loaders  # where models are loaded
    from interrogator_core.targets import CLIP_G, CLIP_H, CLIP_L

    real = loaders.load_clip
    tiny = {CLIP_G: tiny_models["clip"], CLIP_H: tiny_models["clip"], CLIP_L: tiny_clip_l}

    def load_clip(name, *args, **kwargs):
        asked.append(name)
        return real(str(tiny.get(name, name)), *args, **kwargs)

    monkeypatch.setattr(loaders, "load_clip", load_clip)
    return asked


#: the VLM caption families and their tiny builders (interrogator_core.testing)
FAMILY_BUILDERS = {"florence2": "make_tiny_florence2", "qwen2_5_vl": "make_tiny_qwen2_5_vl",
                   "qwen3_vl": "make_tiny_qwen3_vl", "llava": "make_tiny_llava"}


@pytest.fixture(scope="session")
def family_models(tmp_path_factory) -> dict:
    """{family: tiny model folder} for each VLM family this environment's transformers can load (built once)."""
    from interrogator_core import testing
    from interrogator_core.caption import check_family_supported
    from interrogator_core.errors import ModelLoadError

    root = tmp_path_factory.mktemp("families")
    out = {}
    for family, builder in FAMILY_BUILDERS.items():
        try:
            check_family_supported(family)
        except ModelLoadError:
            continue
        out[family] = getattr(testing, builder)(root / f"tiny-{family}")
    return out


def family_model(family_models: dict, family: str):
    """The tiny folder of ``family``, or skip (with the reason) where transformers is too old for it."""
    from interrogator_core.caption import FAMILIES, transformers_version

    if family not in family_models:
        pytest.skip(f"transformers {transformers_version()} is older than {family} needs "
                    f"({FAMILIES[family].min_transformers}); its version error is tested in test_caption_families.py")
    return family_models[family]


@pytest.fixture
def make_interrogator(tiny_models, small_data_dir, tmp_path):
    """Factory: an Interrogator on the tiny models and small lists, cache in a fresh temp dir."""

    def make(**overrides) -> Interrogator:
        host = overrides.pop("host", None) or StandaloneHost(device="cpu")
        cfg = dict(clip_model=str(tiny_models["clip"]), caption_model=str(tiny_models["blip"]),
                   cache_dir=tmp_path / "cache", data_dir=small_data_dir, caption_max_length=8)
        cfg.update(overrides)
        return Interrogator(InterrogatorConfig(**cfg), host=host)

    return make


@pytest.fixture(scope="session")
def images() -> list:
    """Three deterministic random RGB images of different sizes."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((64, 64), (48, 96), (80, 40))]


class RecordingHost(StandaloneHost):
    """A CPU host that records load/offload calls and can interrupt after N checks."""

    def __init__(self, interrupt_after: int = -1) -> None:
        super().__init__(device="cpu")
        self.events: list = []
        self.checks = 0
        self.interrupt_after = interrupt_after

    def load(self, models) -> None:
        self.events.append(("load", tuple(m.name.split(":")[0] for m in models)))
        super().load(models)

    def offload(self, models) -> None:
        self.events.append(("offload", tuple(sorted(m.name.split(":")[0] for m in models))))
        super().offload(models)

    def check_interrupt(self) -> None:
        self.checks += 1
        if 0 <= self.interrupt_after < self.checks:
            from interrogator_core import Interrupted

            raise Interrupted("test interrupt")


def count_text_encodes(interrogator: Interrogator) -> list:
    """A one-element list counting forward calls of the CLIP text token embedding (every text encode path)."""
    calls = [0]
    clip = interrogator.main.clip

    def hook(*_):
        calls[0] += 1

    tower = clip.text.tower
    emb = tower.token_embedding if tower is not None else clip.module.token_embedding
    emb.register_forward_hook(hook)
    return calls


def pytest_collection_modifyitems(config, items):
    """The A1111/Forge UI, script and host suites need the webui's gradio; the ComfyUI ("current") environment has
    none, and the a1111 and forge environments run them. The API suite needs only FastAPI, so it runs in the
    current environment too (where the newest caption families work)."""
    import importlib.util

    if importlib.util.find_spec("gradio") is not None:
        return
    skip = pytest.mark.skip(reason="needs gradio: runs in the a1111 and forge environments (./test.sh a1111|forge)")
    for item in items:
        if item.fspath.basename.startswith("test_a1111_") and item.fspath.basename != "test_a1111_api.py":
            item.add_marker(skip)
