"""Unit tests of the ComfyUI pack against hand-written fakes of ComfyUI (tests/fakes/), tiny random models.

The pack is imported the way ComfyUI imports a custom node folder (``spec_from_file_location`` of the root
``__init__.py`` as a package). The real-server test is tests/integration/test_comfyui_server.py.
"""
from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Iterator, List

import numpy as np
import pytest
import torch


import interrogator_core.pool as loaders  # where models are loaded
from interrogator_core import Interrogator, InterrogatorConfig, Interrupted, StandaloneHost, labels
from interrogator_core.testing import make_tiny_clip

from comfyui_v1_interface import V1_INTERFACE

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"
PACK = "prompt_interrogator_pack_under_test"


def _drop_modules(*prefixes: str) -> None:
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            del sys.modules[name]


def load_pack() -> ModuleType:
    """Import the repo root as ComfyUI does with a folder in custom_nodes/."""
    _drop_modules(PACK)
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def second_clip(tmp_path_factory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("clip-b") / "tiny-clip-b", seed=1)


@pytest.fixture
def comfy(monkeypatch, tmp_path, tiny_models, second_clip, small_data_dir) -> Iterator[SimpleNamespace]:
    """Fake ComfyUI modules on sys.path, a models folder with the tiny models, the pack freshly imported."""
    _drop_modules("comfy", "comfy_api", "folder_paths")
    monkeypatch.syspath_prepend(str(FAKES))
    import comfy.model_management as mm
    import comfy.utils as utils
    import folder_paths

    mm.reset()
    utils.UPDATES.clear()
    models = tmp_path / "models"
    folder = models / "clip_interrogator"
    folder.mkdir(parents=True)
    os.symlink(tiny_models["clip"], folder / "tiny-clip")
    os.symlink(tiny_models["blip"], folder / "tiny-blip")
    os.symlink(second_clip, folder / "tiny-clip-b")
    monkeypatch.setattr(folder_paths, "models_dir", str(models))
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", {})
    # the bundled label lists take ~20 s to encode; the small lists keep each test around a second
    monkeypatch.setattr(labels, "DATA_DIR", small_data_dir)
    pack = load_pack()
    nodes = sys.modules[PACK + ".nodes"]
    # short captions keep the tiny BLIP fast (not a widget: every loader call gets the same value)
    monkeypatch.setattr(nodes, "InterrogatorConfig", functools.partial(InterrogatorConfig, caption_max_length=8))
    yield SimpleNamespace(mm=mm, utils=utils, folder_paths=folder_paths, pack=pack, nodes=nodes, folder=folder)
    _drop_modules("comfy", "comfy_api", "folder_paths", PACK)


def run(node_cls, node_id: str = "1", workflow=None, **inputs) -> tuple:
    """Execute a V3 node the way ComfyUI does: a class clone carrying the hidden inputs (``workflow``: the
    hidden PROMPT, node id → {"class_type": ...}), then its FUNCTION."""
    from comfy_api.latest import io

    clone = node_cls.PREPARE_CLASS_CLONE({io.Hidden.unique_id: node_id, io.Hidden.prompt: workflow})
    out = getattr(clone, clone.FUNCTION)(**inputs)
    assert isinstance(out, io.NodeOutput)
    return out.args


def image_batch(n: int = 3, h: int = 40, w: int = 56, seed: int = 0) -> torch.Tensor:
    """A ComfyUI IMAGE: float [B, H, W, 3] in 0..1."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, h, w, 3), generator=g)


def load(comfy, clip: str = "tiny-clip", caption: str = "tiny-blip", precision: str = "auto",
         memory: str = "host managed", node_id: str = "1", **new_widgets) -> Interrogator:
    """Run the loader node; ``new_widgets``: the optional ``target`` / ``sdxl_dual`` (absent in old workflows)."""
    (it,) = run(comfy.nodes.InterrogatorLoader, node_id, clip_model=clip, caption_model=caption,
                precision=precision, memory=memory, **new_widgets)
    return it


def interrogate(comfy, image, interrogator, mode, min_flavors, max_flavors, negative_count, **optional) -> tuple:
    return run(comfy.nodes.Interrogate, image=image, interrogator=interrogator, mode=mode,
               min_flavors=min_flavors, max_flavors=max_flavors, negative_count=negative_count, **optional)


def caption(comfy, image, interrogator) -> tuple:
    return run(comfy.nodes.Caption, image=image, interrogator=interrogator)


def analyze(comfy, image, interrogator, top_n, with_caption) -> tuple:
    return run(comfy.nodes.Analyze, image=image, interrogator=interrogator, top_n=top_n,
               with_caption=with_caption)


def score(comfy, original, regenerated, interrogator, **optional) -> tuple:
    return run(comfy.nodes.RoundTripScore, original=original, regenerated=regenerated, interrogator=interrogator,
               **optional)


def ours(mm, it: Interrogator) -> List:
    """The entries of ComfyUI's loaded list that hold this interrogator's models."""
    mods = {id(h.module) for h in it.models}
    return [lm for lm in mm.current_loaded_models if id(getattr(lm.model.model, "wrapped", None)) in mods]




def options(spec: tuple) -> list:
    """The choices of a combo input in the V1 view."""
    kind, opts = spec
    assert kind == "COMBO", spec
    return opts["options"]


def registered_nodes(pack) -> dict:
    """What ComfyUI registers from the pack: node id → class, through ``comfy_entrypoint`` (V3)."""
    extension = asyncio.run(pack.comfy_entrypoint())
    from comfy_api.latest import ComfyExtension

    assert isinstance(extension, ComfyExtension)
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(extension.get_node_list())}


# -- entry point ---------------------------------------------------------------------------------------------
def test_entry_exports_the_v3_extension_with_the_v1_node_interface(comfy):
    pack = comfy.pack
    assert pack.__all__ == ["comfy_entrypoint"]
    # ComfyUI takes NODE_CLASS_MAPPINGS first when present: the V3 pack must not export it
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    nodes = registered_nodes(pack)
    assert set(nodes) == set(V1_INTERFACE)
    from comfy_api.latest import io

    for node_id, cls in nodes.items():
        assert issubclass(cls, io.ComfyNode)
        required, optional, types, names, is_list = V1_INTERFACE[node_id]
        spec = cls.INPUT_TYPES()
        # required inputs never change; optional inputs and outputs may only grow at the end
        assert list(spec["required"]) == required, node_id
        assert list(spec.get("optional", {}))[:len(optional)] == optional, node_id
        n = len(types)
        assert (list(cls.RETURN_TYPES)[:n], list(cls.RETURN_NAMES)[:n], list(cls.OUTPUT_IS_LIST)[:n]) == \
            (types, names, is_list), node_id
        assert cls.CATEGORY == "image/interrogate" and cls.GET_SCHEMA().display_name.endswith("(Prompt Interrogator)")
    assert nodes["PromptInterrogator.Interrogate"].INPUT_TYPES()["required"]["interrogator"][0] == "INTERROGATOR"
    assert nodes["PromptInterrogator.Loader"].INPUT_TYPES()["hidden"] == {"unique_id": ("UNIQUE_ID",), "prompt": ("PROMPT",)}
    assert nodes["PromptInterrogator.RoundTripScore"].INPUT_IS_LIST is True
    assert not any(nodes[n].INPUT_IS_LIST for n in nodes if n != "PromptInterrogator.RoundTripScore")


def test_import_does_no_heavy_work(tmp_path):
    code = (
        "import sys, asyncio, importlib.util\n"
        f"sys.path.insert(0, {str(FAKES)!r})\n"
        f"spec = importlib.util.spec_from_file_location('pack', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pack'] = m; spec.loader.exec_module(m)\n"
        "nodes = asyncio.run(asyncio.run(m.comfy_entrypoint()).get_node_list())\n"
        "assert len(nodes) == 6, nodes\n"
        "heavy = [n for n in ('open_clip', 'transformers', 'comfy.model_management', 'folder_paths') "
        "if n in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        # appended, never prepended: our nodes.py must not shadow ComfyUI's top-level `nodes`
        f"print('LAST', sys.path[-1] == {str(ROOT)!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "LAST True" in out.stdout


def _only_error(caplog) -> str:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    return errors[0].getMessage()


def test_missing_dependency_logs_one_error_and_registers_nothing(comfy, monkeypatch, caplog):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "open_clip" else real_find_spec(name, *a, **k))
    with caplog.at_level(logging.ERROR):
        pack = load_pack()
    assert pack.NODE_CLASS_MAPPINGS == {} and pack.NODE_DISPLAY_NAME_MAPPINGS == {}
    assert not hasattr(pack, "comfy_entrypoint")
    message = _only_error(caplog)
    assert "open-clip-torch" in message and "requirements.txt" in message


@pytest.mark.parametrize("old_comfy", ["no comfy_api", "comfy_api without io.Custom"])
def test_comfyui_without_the_v3_api_logs_one_error_and_registers_nothing(comfy, monkeypatch, caplog, old_comfy):
    """A ComfyUI from before the V3 node API: one error saying to update ComfyUI, no nodes, no crash."""
    if old_comfy == "no comfy_api":
        monkeypatch.setitem(sys.modules, "comfy_api", None)  # import comfy_api → ImportError
        monkeypatch.setitem(sys.modules, "comfy_api.latest", None)
    else:
        import comfy_api.latest as latest

        monkeypatch.delattr(latest.io, "Custom")
    with caplog.at_level(logging.ERROR):
        pack = load_pack()
    assert pack.NODE_CLASS_MAPPINGS == {} and not hasattr(pack, "comfy_entrypoint")
    message = _only_error(caplog)
    assert "comfy_api.latest" in message and "update ComfyUI" in message
    if old_comfy != "no comfy_api":
        assert "Custom" in message


# -- model folder --------------------------------------------------------------------------------------------
def test_model_folder_registered_and_local_models_listed_first(comfy):
    req = comfy.nodes.InterrogatorLoader.INPUT_TYPES()["required"]
    folder = os.path.join(comfy.folder_paths.models_dir, "clip_interrogator")
    assert comfy.folder_paths.get_folder_paths("clip_interrogator") == [folder]
    assert req["clip_model"][0] == "COMBO"  # V3 combos: ("COMBO", {"options": [...], ...})
    clips, captions = options(req["clip_model"]), options(req["caption_model"])
    assert clips[:2] == ["tiny-clip", "tiny-clip-b"] and "ViT-L-14/openai" in clips
    assert captions[:2] == ["none", "tiny-blip"] and "blip-large" in captions
    assert req["caption_model"][1]["default"] == "blip-large"
    assert set(options(req["memory"])) == {"host managed", "keep loaded", "offload after run"}


def test_label_cache_goes_to_the_model_folder(comfy):
    it = load(comfy)
    interrogate(comfy, image_batch(1), it, "fast", 2, 4, 2)
    assert it.config.cache_dir == str(comfy.folder)
    assert any(p.name.startswith("tiny-clip-") and p.suffix == ".safetensors" for p in comfy.folder.iterdir())


def test_label_lists_in_the_models_folder_replace_the_bundled_ones(comfy, small_data_dir):
    it = load(comfy)
    assert it.config.data_dir is None, "no labels/ folder: the bundled lists"
    labels_dir = comfy.folder / "labels"
    labels_dir.mkdir()
    mine = {"artists": ["Nobody Known"], "flavors": ["glowing moss", "tiny robots"], "mediums": ["a mosaic"],
            "movements": ["brutalism"], "negative": ["smudge"]}
    for name, items in mine.items():
        (labels_dir / f"{name}.txt").write_text("\n".join(items) + "\n")
    it = load(comfy)
    assert it.config.data_dir == str(labels_dir)
    (text,) = analyze(comfy, image_batch(1), it, 3, False)[0]
    ranked = {line.split(None, 1)[1] for line in text.splitlines() if line.startswith("  ")}
    assert {"glowing moss", "tiny robots", "a mosaic", "brutalism", "by Nobody Known"} <= ranked


# -- interrogate -----------------------------------------------------------------------------------------------
def test_interrogate_batch_gives_one_string_per_image_same_as_the_engine(comfy, tiny_models, small_data_dir,
                                                                         tmp_path):
    images = image_batch(3)
    it = load(comfy)
    pos, neg, cap, pos_l, neg_l, clip_l, clip_g, t5, llm, llama = interrogate(comfy, images, it, "best", 2, 6, 4)
    assert len(pos) == len(neg) == len(cap) == 3 and llm == llama == ["", "", ""]
    assert all(p.strip() for p in pos) and all(n.strip() for n in neg)

    reference = Interrogator(InterrogatorConfig(clip_model=str(tiny_models["clip"]),
                                                caption_model=str(tiny_models["blip"]), cache_dir=tmp_path / "ref",
                                                data_dir=small_data_dir, caption_max_length=8),
                             StandaloneHost(device="cpu", dtype="fp32"))
    from interrogator_hosts.comfyui import tensor_to_pil
    pil = tensor_to_pil(images)
    expected = reference.interrogate(pil, mode="best", min_flavors=2, max_flavors=6, negative_count=4)
    assert pos == [r.positive for r in expected]
    assert neg == [r.negative for r in expected]
    assert cap == [r.caption for r in expected]
    assert pos_l == neg_l == ["", "", ""]  # the SDXL ViT-L outputs stay empty without sdxl_dual


def test_models_go_through_model_patcher_and_load_models_gpu(comfy):
    mm = comfy.mm
    it = load(comfy)
    interrogate(comfy, image_batch(2), it, "fast", 2, 4, 2)
    loads = [args for name, args in mm.CALLS if name == "load_models_gpu"]
    assert loads and all(force_full_load for _, force_full_load in loads)
    patchers = {id(p) for models, _ in loads for p in models}
    handles = it.models
    assert len(handles) == 2
    for h in handles:
        patcher = h.host_data["patcher"]
        assert id(patcher) in patchers
        assert type(patcher.model).__name__ == "InterrogatorModelHolder"
        assert patcher.model.wrapped is h.module  # the holder, not the transformers model, gets `.device`
        assert patcher.model.handle_name == h.name
        assert patcher.load_device == mm.text_encoder_device()
        assert patcher.offload_device == mm.text_encoder_offload_device()
    # host managed: they stay in ComfyUI's loaded list after the run, for ComfyUI to evict
    assert len(ours(mm, it)) == 2


def test_comfy_eviction_unloads_us_and_drops_label_embeddings_then_reloads(comfy, monkeypatch):
    mm = comfy.mm
    it = load(comfy)
    interrogate(comfy, image_batch(1), it, "fast", 2, 4, 2)
    patchers = [h.host_data["patcher"] for h in it.models]
    released = []
    from interrogator_core.tables import LabelIndex
    monkeypatch.setattr(LabelIndex, "release", lambda self: released.append(self.name))

    mm.unload_all_models()  # what ComfyUI's "Unload models" / POST /free does
    assert ours(mm, it) == []
    assert all(p.loaded_size() == 0 for p in patchers)
    assert "flavors" in released  # label embeddings left the device with the models

    interrogate(comfy, image_batch(1), it, "fast", 2, 4, 2)
    assert len(ours(mm, it)) == 2
    assert [h.host_data["patcher"] for h in it.models] == patchers  # same registrations reused


def test_comfy_host_is_the_shared_managed_host_and_moves_a_split_model_whole(comfy, monkeypatch, caplog):
    """ComfyHost is the shared ManagedHost with ComfyUI's calls injected; like on Forge, a model the manager
    left partly off the device (a partial low-VRAM load) is moved there whole."""
    from interrogator_hosts.comfyui import COMFY_MEMORY, ComfyHost
    from interrogator_hosts.managed import ManagedHost
    from comfy.model_patcher import ModelPatcher

    host = ComfyHost()
    assert isinstance(host, ManagedHost) and host.manager is COMFY_MEMORY
    for name in ("load", "offload", "load_device", "dtype_for", "patcher_for"):
        assert getattr(ComfyHost, name) is getattr(ManagedHost, name), name
    mm = comfy.mm
    mm.DEVICE = torch.device("meta")
    monkeypatch.setattr(ModelPatcher, "load", lambda self, *a, **k: None)  # nothing moved by the manager
    from interrogator_core import ModelHandle

    h = ModelHandle("clip:x", torch.nn.Linear(2, 2), torch.float32)
    with caplog.at_level(logging.WARNING):
        host.load([h])
    assert all(p.device.type == "meta" for p in h.module.parameters())
    assert any("ComfyUI kept part of clip:x off meta" in r.getMessage() for r in caplog.records)


def test_precision_change_hands_the_models_to_a_new_host_keeping_what_loads_the_same(comfy):
    mm = comfy.mm
    it = load(comfy, caption="none", precision="fp32")
    interrogate(comfy, image_batch(1), it, "negative", 2, 4, 2)
    clip = it.models[0].module
    same_dtype = load(comfy, caption="none", precision="auto")  # auto is fp32 on this (fake) CPU
    assert same_dtype is not it and same_dtype.host is not it.host and it.models == []
    interrogate(comfy, image_batch(1), same_dtype, "negative", 2, 4, 2)
    assert same_dtype.models[0].module is clip, "same dtype: taken over, not reloaded"
    assert len(ours(mm, same_dtype)) == 1 and len(mm.current_loaded_models) == 1, "old registration gone"
    half = load(comfy, caption="none", precision="bf16")
    assert half.models == [] and same_dtype.models == [], "another dtype: nothing taken over, the old one freed"
    assert mm.current_loaded_models == []


def test_offload_after_run_leaves_comfys_loaded_list(comfy):
    mm = comfy.mm
    it = load(comfy, memory="offload after run")
    interrogate(comfy, image_batch(2), it, "fast", 2, 4, 2)
    assert any(name == "load_models_gpu" for name, _ in mm.CALLS)
    assert ours(mm, it) == []
    assert all(h.host_data["patcher"].loaded_size() == 0 for h in it.models)
    assert ("soft_empty_cache", ()) in mm.CALLS


def test_keep_loaded_pins_models_outside_comfys_list(comfy):
    mm = comfy.mm
    it = load(comfy, memory="keep loaded")
    interrogate(comfy, image_batch(1), it, "fast", 2, 4, 2)
    assert not any(name == "load_models_gpu" for name, _ in mm.CALLS)
    assert ours(mm, it) == [] and len(it.models) == 2
    mm.unload_all_models()
    assert all(h.device == mm.text_encoder_device() for h in it.models)

    # switching the widget to host managed hands the same models to a managed host: ComfyUI gets them on the
    # next run, nothing reloads
    modules = {h.name: h.module for h in it.models}
    again = load(comfy, memory="host managed")
    assert again.host is not it.host and again.host.managed and it.models == []
    assert {h.name: h.module for h in again.models} == modules
    interrogate(comfy, image_batch(1), again, "fast", 2, 4, 2)
    assert len(ours(mm, again)) == 2 and {h.name: h.module for h in again.models} == modules


def test_interrupt_uses_comfys_flag_and_exception(comfy):
    mm = comfy.mm
    it = load(comfy)
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException) as info:
        interrogate(comfy, image_batch(2), it, "best", 2, 6, 4)
    assert isinstance(info.value, Interrupted)  # the engine saw its own Interrupted too
    assert mm.processing_interrupted() is False  # ComfyUI's flag is consumed, like the real one
    pos = interrogate(comfy, image_batch(2), it, "best", 2, 6, 4)[0]
    assert len(pos) == 2


def test_interrupt_is_checked_inside_the_chain(comfy, monkeypatch):
    mm = comfy.mm
    it = load(comfy)
    interrogate(comfy, image_batch(1), it, "fast", 2, 4, 2)  # load models and tables first
    mm.CALLS.clear()
    interrogate(comfy, image_batch(1), it, "best", 6, 6, 6)
    checks = sum(1 for name, _ in mm.CALLS if name == "throw_exception_if_processing_interrupted")
    assert checks >= 12  # every step of both chains (6 + 6), not only once per image

    # an interrupt raised mid-chain stops the run
    calls = {"n": 0}
    real = mm.throw_exception_if_processing_interrupted

    def interrupt_on_fifth() -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            mm.interrupt_current_processing(True)
        real()

    monkeypatch.setattr(mm, "throw_exception_if_processing_interrupted", interrupt_on_fifth)
    with pytest.raises(mm.InterruptProcessingException):
        interrogate(comfy, image_batch(1), it, "best", 6, 6, 6)
    assert calls["n"] == 5


def test_progress_bar_reports_on_the_node(comfy):
    it = load(comfy)
    interrogate(comfy, image_batch(2), it, "best", 2, 4, 2)
    updates = comfy.utils.UPDATES
    assert updates, "no ProgressBar update"
    assert all(0 <= value <= total for _, value, total in updates)
    assert any(value == total for _, value, total in updates)


def test_precision_and_devices_come_from_comfy(comfy):
    from interrogator_hosts.comfyui import ComfyHost

    mm = comfy.mm
    cpu = torch.device("cpu")
    mm.FP16 = True
    assert ComfyHost("auto").dtype_for(cpu) == torch.float16
    assert ("should_use_fp16", (cpu, False)) in mm.CALLS
    mm.FP16 = False
    assert ComfyHost("auto").dtype_for(cpu) == torch.float32
    assert ComfyHost("bf16").dtype_for(cpu) == torch.bfloat16
    mm.DEVICE, mm.OFFLOAD_DEVICE = torch.device("meta"), torch.device("cpu")
    host = ComfyHost("fp32")
    assert host.load_device() == torch.device("meta") and host.offload_device() == cpu
    with pytest.raises(ValueError, match="precision"):
        ComfyHost("fp8")


def test_loaded_models_are_in_the_chosen_precision(comfy):
    it = load(comfy, precision="bf16")
    caption(comfy, image_batch(1), it)
    assert all(h.dtype == torch.bfloat16 for h in it.models)
    assert all(p.dtype == torch.bfloat16 for h in it.models for p in h.module.parameters())


# -- loader cache ----------------------------------------------------------------------------------------------
def test_changing_a_widget_reloads_only_what_changed(comfy, monkeypatch):
    counts = {"clip": 0, "caption": 0}
    real_clip, real_caption = loaders.load_clip, loaders.load_captioner

    def counting_clip(*a, **k):
        counts["clip"] += 1
        return real_clip(*a, **k)

    def counting_caption(*a, **k):
        counts["caption"] += 1
        return real_caption(*a, **k)

    monkeypatch.setattr(loaders, "load_clip", counting_clip)
    monkeypatch.setattr(loaders, "load_captioner", counting_caption)
    mm = comfy.mm

    first = load(comfy)
    interrogate(comfy, image_batch(1), first, "fast", 2, 4, 2)
    assert counts == {"clip": 1, "caption": 1}

    # memory policy only: the same interrogator, nothing reloads
    same = load(comfy, memory="offload after run")
    assert same is first
    interrogate(comfy, image_batch(1), same, "fast", 2, 4, 2)
    assert counts == {"clip": 1, "caption": 1} and ours(mm, same) == []

    # another CLIP: only CLIP (and its tables) load; the caption model is reused
    other_clip = load(comfy, clip="tiny-clip-b")
    interrogate(comfy, image_batch(1), other_clip, "fast", 2, 4, 2)
    assert counts == {"clip": 2, "caption": 1}

    # caption model off: CLIP is reused
    no_caption = load(comfy, clip="tiny-clip-b", caption="none")
    pos, neg, cap = interrogate(comfy, image_batch(1), no_caption, "negative", 2, 4, 2)[:3]
    assert counts == {"clip": 2, "caption": 1} and cap == [""] and neg[0]

    # a second loader node keeps its own models
    load(comfy, node_id="2")
    assert comfy.nodes._LOADED["1"] is no_caption


def test_replaced_interrogator_leaves_comfys_list(comfy):
    mm = comfy.mm
    first = load(comfy)
    interrogate(comfy, image_batch(1), first, "fast", 2, 4, 2)
    old_clip = next(h for h in first.models if h.name.startswith("clip:"))
    second = load(comfy, clip="tiny-clip-b")
    assert not any(lm.model.model.wrapped is old_clip.module for lm in mm.current_loaded_models)
    interrogate(comfy, image_batch(1), second, "fast", 2, 4, 2)
    assert len(ours(mm, second)) == 2 and len(mm.current_loaded_models) == 2


def _workflow(*loader_ids: str) -> dict:
    """A PROMPT with these loader nodes and one Interrogate node."""
    nodes = {i: {"class_type": "PromptInterrogator.Loader", "inputs": {}} for i in loader_ids}
    return {**nodes, "99": {"class_type": "PromptInterrogator.Interrogate", "inputs": {}}}


def test_a_loader_removed_from_the_workflow_is_forgotten_and_unloaded(comfy):
    mm = comfy.mm
    nodes = comfy.nodes
    (first,) = run(nodes.InterrogatorLoader, "1", _workflow("1", "2"), clip_model="tiny-clip",
                   caption_model="tiny-blip", precision="auto", memory="keep loaded")
    (second,) = run(nodes.InterrogatorLoader, "2", _workflow("1", "2"), clip_model="tiny-clip-b",
                    caption_model="none", precision="auto", memory="host managed")
    interrogate(comfy, image_batch(1), first, "fast", 2, 4, 2)
    assert first.models and set(nodes._LOADED) == {"1", "2"}
    # the user deletes loader 1; the next run of the workflow has only loader 2
    (again,) = run(nodes.InterrogatorLoader, "2", _workflow("2"), clip_model="tiny-clip-b", caption_model="none",
                   precision="auto", memory="host managed")
    assert again is second and set(nodes._LOADED) == {"2"}
    assert first.models == [], "the removed loader's models are unloaded, not kept until restart"
    assert ours(mm, first) == []


def test_loader_cache_is_bounded_least_recently_used_first(comfy, monkeypatch):
    nodes = comfy.nodes
    monkeypatch.setattr(nodes, "MAX_LOADERS", 2)
    loaded = {i: load(comfy, node_id=i, caption="none") for i in ("1", "2")}
    for it in loaded.values():
        interrogate(comfy, image_batch(1), it, "negative", 2, 4, 2)
    assert loaded["2"].models
    load(comfy, node_id="1", caption="none")  # node 1 used again: node 2 is now the oldest
    load(comfy, node_id="3", caption="none")  # no PROMPT (e.g. an API call without one): only the bound applies
    assert list(nodes._LOADED) == ["1", "3"]
    assert loaded["2"].models == [] and loaded["1"].models


def test_nodes_have_search_aliases_where_comfyui_takes_them(comfy, monkeypatch):
    import dataclasses as dc

    from comfy_api.latest import io

    aliases = {"img2prompt", "caption", "interrogate", "tagger"}
    for cls in comfy.nodes.NODES:
        assert aliases <= set(cls.GET_SCHEMA().search_aliases or ()), cls
    # ComfyUI 0.3.75: io.Schema has no search_aliases field (a dataclass: an unknown keyword is a TypeError)
    old = dc.make_dataclass("Schema", [(f.name, f.type, dc.field(default=f.default)) if f.default is not dc.MISSING
                                       else (f.name, f.type) for f in dc.fields(io.Schema)
                                       if f.name != "search_aliases"])
    monkeypatch.setattr(io, "Schema", old)
    for cls in comfy.nodes.NODES:
        schema = cls.define_schema()
        assert schema.node_id.startswith("PromptInterrogator.") and not hasattr(schema, "search_aliases")


# -- other nodes and conversions -------------------------------------------------------------------------------
def test_caption_and_analyze_nodes(comfy):
    it = load(comfy)
    (caps,) = caption(comfy, image_batch(2), it)
    assert len(caps) == 2 and all(isinstance(c, str) for c in caps)
    (texts,) = analyze(comfy, image_batch(2), it, 3, False)
    assert len(texts) == 2
    for text in texts:
        assert "flavors:" in text and "mediums:" in text and "negative:" not in text
        assert len([line for line in text.splitlines() if line.startswith("  ")]) >= 3 * 4


def test_min_above_max_is_a_clear_error(comfy):
    it = load(comfy)
    with pytest.raises(ValueError, match="min_flavors"):
        interrogate(comfy, image_batch(1), it, "best", 9, 4, 2)


def test_comfyui_image_tensors():
    """IMAGE tensors → RGB PIL: exact 8-bit values, clamping, one image without a batch dimension, alpha."""
    from interrogator_hosts.comfyui import tensor_to_pil

    batch = torch.zeros((2, 4, 5, 3))
    batch[0, 0, 0] = torch.tensor([1.0, 0.5, 0.25])
    batch[0, 3, 4] = torch.tensor([0.0, 0.2, 0.8])
    batch[1] = 2.0  # out of range values clamp
    batch[1, 1, 1] = -0.5
    ims = tensor_to_pil(batch)
    assert [im.size for im in ims] == [(5, 4), (5, 4)] and all(im.mode == "RGB" for im in ims)
    first = np.asarray(ims[0])
    assert first[0, 0].tolist() == [255, 128, 64] and first[3, 4].tolist() == [0, 51, 204]
    assert int(first.sum()) == 255 + 128 + 64 + 51 + 204, "every other pixel stays black"
    second = np.asarray(ims[1])
    assert second[1, 1].tolist() == [0, 0, 0] and int((second == 255).sum()) == 4 * 5 * 3 - 3
    half = torch.zeros((1, 2, 2, 4))
    half[..., 3] = 0.0  # fully transparent: flattened on white like files
    half[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0, 1.0])  # one opaque red pixel
    (rgba,) = tensor_to_pil(half[0])  # one image without batch dim, with alpha
    assert rgba.mode == "RGB" and np.asarray(rgba)[0, 0].tolist() == [255, 0, 0]
    assert np.asarray(rgba)[1, 1].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="IMAGE"):
        tensor_to_pil(torch.ones((5, 3)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_comfyui_image_with_nan_or_inf_is_a_clear_error(bad):
    """Non-finite pixels (e.g. from an fp16 VAE decode) are refused with the image named, not clamped to a
    plausible picture that would be interrogated into a garbage prompt."""
    from interrogator_hosts.comfyui import tensor_to_pil

    batch = torch.rand((3, 8, 8, 3), generator=torch.Generator().manual_seed(0))
    batch[1, 2, 3, 0] = bad
    batch[1, 4, 4, 2] = bad
    with pytest.raises(ValueError, match=r"image 1 of the IMAGE batch: has 2 NaN or infinite"):
        tensor_to_pil(batch)
    half = batch.half()  # fp16 IMAGE tensors are checked as well
    with pytest.raises(ValueError, match="image 1"):
        tensor_to_pil(half)
    assert len(tensor_to_pil(batch[[0, 2]])) == 2, "the finite images alone convert"


def test_interrogate_node_refuses_a_nan_image(comfy):
    it = load(comfy)
    images = image_batch(2)
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        interrogate(comfy, images, it, "fast", 2, 4, 2)
    assert it.models == [], "refused before any model loaded"


# -- target presets, SDXL dual prompts, beam width, round-trip score (issue 7) --------------------------------
@pytest.fixture
def registry_names_to_tiny(comfy, monkeypatch, tiny_models, second_clip) -> List[str]:
    """Real registry names cannot be downloaded here: load_clip serves every ``ViT-…`` name from a tiny model
    (SDXL's ViT-bigG → tiny-clip, ViT-L/14 → tiny-clip-b). Returns the names asked for, in order."""
    asked: List[str] = []
    real = loaders.load_clip
    tiny = {"ViT-bigG-14/laion2b_s39b_b160k": tiny_models["clip"], "ViT-L-14/openai": second_clip,
            "ViT-H-14/laion2b_s32b_b79k": second_clip}

    def load_clip(name, *args, **kwargs):
        asked.append(name)
        return real(str(tiny.get(name, name)), *args, **kwargs)

    monkeypatch.setattr(loaders, "load_clip", load_clip)
    return asked


def _holders(mm) -> List[str]:
    return [lm.model.model.handle_name for lm in mm.current_loaded_models
            if type(lm.model.model).__name__ == "InterrogatorModelHolder"]


def test_new_inputs_are_optional_and_last_so_saved_workflows_keep_working(comfy):
    from interrogator_core import TARGETS

    nodes = comfy.nodes
    loader = nodes.InterrogatorLoader.INPUT_TYPES()
    assert list(loader["required"]) == ["clip_model", "caption_model", "precision", "memory"]
    from interrogator_core.hostapi import TAGGER_SETTINGS

    assert list(loader["optional"]) == ["target", "sdxl_dual", "caption_style", "caption_prompt",
                                        "trust_remote_code", *TAGGER_SETTINGS, "caption_length",
                                        "trigger_prefix", "trigger_suffix", "caption_replace"]
    opts = loader["optional"]["target"][1]
    targets = options(loader["optional"]["target"])
    assert targets == ["sd15", "sd2", "sdxl", "sdxl-tags", "flux", "sd35", "flux2", "qwen-image", "hidream",
                       "z-image", "chroma", "lumina2", "wan", "illustrious", "noobai", "pony", "custom"]
    assert opts["default"] == "custom"
    assert all(t.description in opts["tooltip"] for t in TARGETS.values())
    assert loader["optional"]["sdxl_dual"] == ("BOOLEAN", loader["optional"]["sdxl_dual"][1])
    assert loader["optional"]["sdxl_dual"][1]["default"] is False

    spec = nodes.Interrogate.INPUT_TYPES()
    assert list(spec["required"]) == ["image", "interrogator", "mode", "min_flavors", "max_flavors",
                                             "negative_count"]
    kind, beam = spec["optional"]["beam_width"]
    from interrogator_core import MAX_BEAM_WIDTH

    assert kind == "INT" and (beam["default"], beam["min"], beam["max"]) == (1, 1, MAX_BEAM_WIDTH)
    assert list(nodes.Interrogate.RETURN_NAMES) == ["positive", "negative", "caption", "positive_l", "negative_l",
                                                    "clip_l", "clip_g", "t5xxl", "llm", "llama"]
    assert list(nodes.Interrogate.RETURN_TYPES) == ["STRING"] * 10
    assert list(nodes.Interrogate.OUTPUT_IS_LIST) == [True] * 10
    style = loader["optional"]["caption_style"]
    assert options(style) == ["auto", "short", "detailed", "tags"] and style[1]["default"] == "auto"
    assert loader["optional"]["caption_prompt"][0] == "STRING" and loader["optional"]["caption_prompt"][1]["default"] == ""
    assert loader["optional"]["trust_remote_code"][1]["default"] is False

    # a workflow saved before these widgets: no target / sdxl_dual / beam_width / caption settings given
    it = load(comfy)
    assert (it.config.target, it.config.sdxl_dual, it.config.clip_model) == ("custom", False, "tiny-clip")
    assert (it.config.caption_style, it.config.caption_prompt, it.config.trust_remote_code) == (None, None, False)
    out = interrogate(comfy, image_batch(1), it, "fast", 2, 4, 2)
    assert len(out) == 10 and out[0][0] and out[3:] == ([""],) * 7


def test_target_picks_the_clip_model_and_reloads_only_clip(comfy, registry_names_to_tiny, monkeypatch):
    captions = []
    real_caption = loaders.load_captioner
    monkeypatch.setattr(loaders, "load_captioner", lambda *a, **k: captions.append(1) or real_caption(*a, **k))
    first = load(comfy, target="custom")
    interrogate(comfy, image_batch(1), first, "fast", 2, 4, 2)
    assert registry_names_to_tiny == ["tiny-clip"] and len(captions) == 1

    for target, clip in (("sd15", "ViT-L-14/openai"), ("sd2", "ViT-H-14/laion2b_s32b_b79k"),
                         ("sdxl", "ViT-bigG-14/laion2b_s39b_b160k")):
        it = load(comfy, target=target)  # the clip_model widget ("tiny-clip") is ignored
        assert (it.config.target, it.config.clip_model) == (target, clip)
    interrogate(comfy, image_batch(1), it, "fast", 2, 4, 2)
    assert registry_names_to_tiny[-1] == "ViT-bigG-14/laion2b_s39b_b160k"
    assert len(captions) == 1, "another target reloads CLIP only: the caption model is kept"
    assert load(comfy, target="sdxl") is it, "same widgets: the same interrogator"

    with pytest.raises(ValueError, match="sdxl"):
        load(comfy, target="sd15", sdxl_dual=True)
    with pytest.raises(ValueError, match="sdxx"):
        load(comfy, target="sdxx")


def test_sdxl_dual_fills_the_vit_l_outputs_and_both_encoders_follow_the_memory_policy(comfy,
                                                                                    registry_names_to_tiny):
    mm = comfy.mm
    it = load(comfy, target="sdxl", sdxl_dual=True)
    assert it.config.sdxl_dual and it.config.clip_model == "ViT-bigG-14/laion2b_s39b_b160k"
    pos, neg, cap, pos_l, neg_l, clip_l, clip_g, t5 = interrogate(comfy, image_batch(2), it, "fast", 2, 4, 3)[:8]
    assert registry_names_to_tiny == ["ViT-bigG-14/laion2b_s39b_b160k", "ViT-L-14/openai"]
    assert (clip_g, clip_l, t5) == (pos, pos_l, ["", ""]), "SDXL's prompts by encoder name too"
    assert len(pos_l) == len(neg_l) == 2 and all(pos_l) and all(neg_l)
    assert all(p.startswith(c) for p, c in zip(pos_l, cap)), "same caption, the ViT-L encoder's flavors"
    assert (pos_l, neg_l) != (pos, neg)
    # all three models (caption, bigG, L) are on ComfyUI's manager ...
    assert sorted(n.split(":")[0] for n in _holders(mm)) == ["caption", "clip", "clip"]
    # ... and leave it when the memory widget says "keep loaded" (the second encoder too)
    pinned = load(comfy, target="sdxl", sdxl_dual=True, memory="keep loaded")
    assert _holders(mm) == [] and len(pinned.models) == 3 and it.models == []

    # dual off: a new interrogator that keeps bigG and the caption model and drops the ViT-L encoder
    single = load(comfy, target="sdxl", sdxl_dual=False, memory="keep loaded")
    assert single is not pinned and pinned.models == [] and len(single.models) == 2
    out = interrogate(comfy, image_batch(1), single, "fast", 2, 4, 3)
    assert out[3:5] == ([""], [""]) and len(registry_names_to_tiny) == 2, "nothing reloaded"


@pytest.mark.parametrize("target, keys", [("flux", ("clip_l", "t5")), ("sd35", ("clip_l", "clip_g", "t5")),
                                         ("hidream", ("clip_l", "clip_g", "t5", "llama")), ("flux2", ("llm",)),
                                         ("wan", ("t5",))])
def test_flux_and_sd35_outputs_plug_into_their_encode_nodes(comfy, registry_names_to_tiny, target, keys):
    """clip_l / clip_g / t5xxl / llm / llama (outputs 5-9) carry the target's prompts by encoder name:
    CLIPTextEncodeFlux takes clip_l + t5xxl, CLIPTextEncodeSD3 clip_l + clip_g + t5xxl, CLIPTextEncodeHiDream
    clip_l + clip_g + t5xxl + llama; the others stay empty."""
    it = load(comfy, target=target)
    out = interrogate(comfy, image_batch(2), it, "fast", 2, 4, 3)
    expected = it.interrogate(tensor_to_pil_(image_batch(2)), mode="fast", min_flavors=2, max_flavors=4,
                              negative_count=3)
    assert len(out) == 10
    by_output = dict(zip(("clip_l", "clip_g", "t5", "llm", "llama"), out[5:]))
    for name, values in by_output.items():
        assert values == [r.prompts.get(name, "") for r in expected], name
        assert all(values) == (name in keys), name
    assert out[0] == [r.positive for r in expected] and out[1] == [r.negative for r in expected]
    if target == "flux":
        assert out[1] == ["", ""], "Flux reads no negative prompt"


def test_caption_settings_reach_the_engine_and_change_only_the_caption_stage(comfy, monkeypatch):
    it = load(comfy)
    interrogate(comfy, image_batch(1), it, "fast", 2, 4, 2)
    models = {h.name: h.module for h in it.models}
    styled = load(comfy, caption_style="short", caption_prompt="Describe the colors.")
    assert (styled.config.caption_style, styled.config.caption_prompt) == ("short", "Describe the colors.")
    assert {h.name: h.module for h in styled.models} == models, "same models kept, nothing reloaded"
    auto = load(comfy, caption_style="auto", caption_prompt="")
    assert (auto.config.caption_style, auto.config.caption_prompt, auto.config.trust_remote_code) == \
        (None, None, False)
    assert load(comfy, trust_remote_code=True).config.trust_remote_code is True
    with pytest.raises(ValueError, match="caption style"):
        load(comfy, caption_style="poem")


def test_beam_width_reaches_the_engine(comfy, monkeypatch):
    seen = []
    real = Interrogator.interrogate

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("beam_width"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Interrogator, "interrogate", spy)
    it = load(comfy, caption="none")  # negative mode: the beam runs on the negative chain, no captioner
    images = image_batch(1)
    interrogate(comfy, images, it, "negative", 2, 6, 2)
    beam = interrogate(comfy, images, it, "negative", 2, 6, 2, beam_width=3)
    assert seen == [1, 3]
    expected = real(it, tensor_to_pil_(images), mode="negative", min_flavors=2, max_flavors=6, negative_count=2,
                    beam_width=3)[0]
    assert beam[1] == [expected.negative] and expected.negative


def tensor_to_pil_(images: torch.Tensor):
    from interrogator_hosts.comfyui import tensor_to_pil

    return tensor_to_pil(images)


def test_round_trip_score_node(comfy):
    nodes = comfy.nodes
    spec = nodes.RoundTripScore.INPUT_TYPES()
    assert [v[0] for v in spec["required"].values()] == ["IMAGE", "IMAGE", "INTERROGATOR"]
    assert spec["optional"]["prompt"][0] == "STRING" and spec["optional"]["prompt"][1]["forceInput"]
    assert list(nodes.RoundTripScore.RETURN_TYPES) == ["FLOAT", "FLOAT", "STRING"]
    assert list(nodes.RoundTripScore.RETURN_NAMES) == ["image_similarity", "prompt_similarity", "summary"]
    assert nodes.RoundTripScore.INPUT_IS_LIST and list(nodes.RoundTripScore.OUTPUT_IS_LIST) == [True] * 3

    it = load(comfy)
    original = image_batch(2, seed=0)
    # ComfyUI hands every input over as a list; regenerated images sampled one prompt at a time arrive as
    # a list of 1-image batches and pair up with the original batch image by image
    img, txt, summary = score(comfy, [original], [original[:1], original[1:]], [it])
    assert [round(x, 4) for x in img] == [1.0, 1.0] and txt == [0.0, 0.0]
    assert all("regenerated" in s and "prompt" not in s for s in summary)

    # one regenerated image applies to every original; prompts (Interrogate's list output) pair up
    prompts = interrogate(comfy, original, it, "fast", 2, 4, 2)[0]
    other = image_batch(1, seed=5)
    img, txt, summary = score(comfy, [original], [other], [it], prompt=prompts)
    expected = it.score(tensor_to_pil_(original), references=tensor_to_pil_(other), prompts=prompts)
    assert img == pytest.approx([e.image_similarity for e in expected], abs=1e-5) and max(img) < 0.9999
    assert txt == pytest.approx([e.prompt_similarity for e in expected], abs=1e-5)
    assert summary == [e.to_text() for e in expected]
    with pytest.raises(ValueError, match="references"):
        score(comfy, [original], [image_batch(3)], [it])


# -- Interrogate & Encode: each encoder's prompt in its own token stream (issue 19.4) ------------------------
class FakeClip:
    """A ComfyUI ``CLIP`` that records what it is asked: ``tokenize(text)`` returns one entry per stream its
    tokenizer has (``streams``), each a list of chunks (one per ``chunk`` characters, at least one) of
    ``(text, stream)`` pairs; ``encode_from_tokens_scheduled`` returns ``[[tokens, {"pooled_output": ..., **add}]]``
    so a test can read which text went into which stream."""

    def __init__(self, streams=("l", "g"), chunk: int = 1000) -> None:
        self.streams, self.chunk = tuple(streams), chunk
        self.tokenized: List[str] = []
        self.encoded: List[dict] = []

    def tokenize(self, text: str) -> dict:
        self.tokenized.append(text)
        n = max(1, -(-len(text) // self.chunk))
        return {s: [[(text, s)] for _ in range(n)] for s in self.streams}

    def encode_from_tokens_scheduled(self, tokens: dict, unprojected=False, add_dict: dict = {}, show_pbar=True):
        self.encoded.append(tokens)
        return [[tokens, {"pooled_output": "pooled", **add_dict}]]

    def encode_from_tokens(self, tokens: dict, return_pooled=False, return_dict=False):
        self.encoded.append(tokens)
        return tokens, "pooled"


class OldFakeClip(FakeClip):
    """A CLIP of a ComfyUI before ``encode_from_tokens_scheduled`` (``hasattr`` is False)."""

    @property
    def encode_from_tokens_scheduled(self):
        raise AttributeError("encode_from_tokens_scheduled")


def streams_of(conditioning) -> dict:
    """stream → the texts its chunks were tokenized from, of a FakeClip conditioning ``[[tokens, extra]]``."""
    (tokens, _extra), = conditioning
    return {s: [pair[0] for chunk in chunks for pair in chunk] for s, chunks in tokens.items()}


def result_for(target: str, **fields):
    from interrogator_core.result import InterrogationResult

    base = dict(mode="best", positive="POS", negative="NEG", caption="CAP")
    base.update(fields)
    return InterrogationResult(**base)


HIDREAM = dict(positive="LLAMA", prompts={"llama": "LLAMA", "clip_l": "CL", "clip_g": "CG", "t5": "T5"})


def test_encode_puts_each_prompt_into_its_own_stream_as_the_hidream_node_does():
    from interrogator_core import get_target
    from interrogator_core.targets import token_streams
    from interrogator_hosts.comfyui import encode_text

    clip = FakeClip(("l", "g", "t5xxl", "llama"))
    r = result_for("hidream", **HIDREAM)
    pos = encode_text(clip, *token_streams(get_target("hidream"), r))
    assert streams_of(pos) == {"l": ["CL"], "g": ["CG"], "t5xxl": ["T5"], "llama": ["LLAMA"]}
    neg = encode_text(clip, *token_streams(get_target("hidream"), r, negative=True))
    assert streams_of(neg) == {s: ["NEG"] for s in ("l", "g", "t5xxl", "llama")}, "one negative in every stream"
    assert pos[0][1] == {"pooled_output": "pooled"}, "no guidance for HiDream"


def test_encode_skips_streams_the_clip_does_not_have_and_pads_l_and_g():
    from interrogator_core import get_target
    from interrogator_core.targets import token_streams
    from interrogator_hosts.comfyui import encode_text

    clip = FakeClip(("l", "g"))  # an SDXL CLIP given HiDream's prompts: only l and g are filled
    pos = encode_text(clip, *token_streams(get_target("hidream"), result_for("hidream", **HIDREAM)))
    assert streams_of(pos) == {"l": ["CL"], "g": ["CG"]}
    assert "T5" not in clip.tokenized and "LLAMA" in clip.tokenized, "the base text, then only present streams"
    long_l = FakeClip(("l", "g"), chunk=4)  # "CL" is one chunk, a long base text three: g and l padded equal
    r = result_for("sdxl", positive="G" * 10, positive_l="LL", prompts={"clip_g": "G" * 10, "clip_l": "LL"})
    (tokens, _), = encode_text(long_l, *token_streams(get_target("sdxl"), r, sdxl_dual=True))
    assert len(tokens["g"]) == len(tokens["l"]) == 3 and [p[0] for c in tokens["l"] for p in c] == ["LL", "", ""]


def test_encode_sdxl_dual_gives_vit_l_its_own_positive_and_negative():
    from interrogator_core import get_target
    from interrogator_core.targets import token_streams
    from interrogator_hosts.comfyui import encode_text

    clip = FakeClip(("g", "l"))
    r = result_for("sdxl", positive="G", negative="NG", positive_l="L", negative_l="NL",
                   prompts={"clip_g": "G", "clip_l": "L"})
    preset = get_target("sdxl")
    assert streams_of(encode_text(clip, *token_streams(preset, r, sdxl_dual=True))) == {"g": ["G"], "l": ["L"]}
    assert streams_of(encode_text(clip, *token_streams(preset, r, negative=True, sdxl_dual=True))) == \
        {"g": ["NG"], "l": ["NL"]}
    single = result_for("sdxl", positive="G", negative="NG", prompts={"clip_g": "G"})
    assert streams_of(encode_text(clip, *token_streams(preset, single))) == {"g": ["G"], "l": ["G"]}, \
        "without sdxl_dual SDXL reads one prompt in both encoders, as CLIPTextEncode gives it"


def test_encode_flux_streams_and_guidance_and_an_older_comfyui():
    from interrogator_core import get_target
    from interrogator_core.targets import token_streams
    from interrogator_hosts.comfyui import encode_text

    r = result_for("flux", positive="CL", negative="", prompts={"clip_l": "CL", "t5": "LONG CAPTION"})
    for clip in (FakeClip(("l", "t5xxl")), OldFakeClip(("l", "t5xxl"))):
        cond = encode_text(clip, *token_streams(get_target("flux"), r), {"guidance": 2.5})
        assert streams_of(cond) == {"l": ["CL"], "t5xxl": ["LONG CAPTION"]}
        assert cond[0][1] == {"pooled_output": "pooled", "guidance": 2.5}
    with pytest.raises(RuntimeError, match="CLIPLoader"):
        encode_text(None, "x", {})


def test_encode_lumina2_puts_the_system_prompt_before_the_positive_only():
    from interrogator_core import get_target
    from interrogator_core.targets import LUMINA2_SYSTEM_PROMPT, token_streams
    from interrogator_hosts.comfyui import encode_text

    clip = FakeClip(("gemma2_2b",))
    r = result_for("lumina2", positive="A CAPTION", negative="blurry", prompts={"llm": "A CAPTION"})
    pos = encode_text(clip, *token_streams(get_target("lumina2"), r))
    assert streams_of(pos) == {"gemma2_2b": [f"{LUMINA2_SYSTEM_PROMPT} <Prompt Start> A CAPTION"]}
    neg = encode_text(clip, *token_streams(get_target("lumina2"), r, negative=True))
    assert streams_of(neg) == {"gemma2_2b": ["blurry"]}


def test_interrogate_encode_node_conditions_the_clip_with_the_engines_prompts(comfy, registry_names_to_tiny):
    nodes = comfy.nodes
    assert [i for i in nodes.InterrogateEncode.INPUT_TYPES()["required"]] == \
        ["image", "interrogator", "clip", "mode", "min_flavors", "max_flavors", "negative_count"]
    assert nodes.InterrogateEncode.INPUT_TYPES()["required"]["clip"][0] == "CLIP"
    assert nodes.InterrogateEncode.INPUT_TYPES()["optional"]["guidance"][1]["default"] == 3.5
    it = load(comfy, target="flux")
    clip = FakeClip(("l", "t5xxl"))
    pos, neg, pos_text, neg_text, cap = run(nodes.InterrogateEncode, image=image_batch(2), interrogator=it,
                                            clip=clip, mode="fast", min_flavors=2, max_flavors=4,
                                            negative_count=3, guidance=2.0)
    expected = it.interrogate(tensor_to_pil_(image_batch(2)), mode="fast", min_flavors=2, max_flavors=4,
                              negative_count=3)
    assert pos_text == [r.positive for r in expected] and neg_text == [""] * 2 and len(pos) == len(neg) == 2
    for cond, r in zip(pos, expected):
        assert streams_of(cond) == {"l": [r.prompts["clip_l"]], "t5xxl": [r.prompts["t5"]]}
        assert cond[0][1]["guidance"] == 2.0
    assert all(streams_of(c) == {"l": [""], "t5xxl": [""]} for c in neg), "Flux: an empty prompt's conditioning"
    assert cap == [r.caption for r in expected]

    sd = load(comfy, target="sd15")
    clip = FakeClip(("l",))
    (cond,), (ncond,), (text,), (ntext,), _ = run(nodes.InterrogateEncode, image=image_batch(1), interrogator=sd,
                                                  clip=clip, mode="fast", min_flavors=2, max_flavors=4,
                                                  negative_count=3)
    assert streams_of(cond) == {"l": [text]} and streams_of(ncond) == {"l": [ntext]} and ntext
    assert "guidance" not in cond[0][1], "guidance only for the targets that read it"


# -- image taggers: the loader's tagger inputs, Analyze's tags --------------------------------------------------
def test_tagger_inputs_reach_the_engine_and_analyze_shows_the_tags(comfy):
    import math

    from interrogator_core import TaggerOptions
    from interrogator_core.testing import TINY_TAGS, make_tiny_tagger

    scores = {"1girl": 0.95, "solo": 0.9, "long_hair": 0.6, "smile": 0.3, "hatsune_miku": 0.92}
    make_tiny_tagger(comfy.folder / "tiny-tagger", head_bias=[
        math.log(p / (1 - p)) for p in (scores.get(name, 0.1) for name, _ in TINY_TAGS)])
    assert "tiny-tagger" in options(comfy.nodes.InterrogatorLoader.INPUT_TYPES()["required"]["caption_model"])
    old = load(comfy, caption="tiny-tagger")  # a workflow saved before the tagger inputs: the defaults
    assert old.config.tagger_options == TaggerOptions()
    it = load(comfy, caption="tiny-tagger", general_threshold=0.25, exclude="long hair", max_tags=3,
              character_first=False)
    assert it.config.tagger_options == TaggerOptions(general_threshold=0.25, exclude=("long hair",), max_tags=3,
                                                     character_first=False)
    (captions,) = caption(comfy, image_batch(2), it)
    assert captions == ["1girl, hatsune miku, solo"] * 2  # all by score, long hair excluded, 3 at most
    (texts,) = analyze(comfy, image_batch(1), it, 2, True)
    assert "tags (character):\n  0.9200  hatsune miku" in texts[0]
    assert "tags (general):\n  0.9500  1girl\n  0.9000  solo" in texts[0] and "long hair" not in texts[0]
    assert "tags (rating):" in texts[0] and "flavors:" in texts[0]


def test_loader_caption_controls_reach_the_engine(comfy, tmp_path):
    """Issue 19 item 5: the caption controls are optional Loader inputs at the end and reach the config."""
    f = tmp_path / "replace.txt"
    f.write_text("blurry\n", encoding="utf-8")
    it = load(comfy, caption_length="very_short", trigger_prefix="ohwx", trigger_suffix="zyx style",
              caption_replace=str(f))
    assert (it.config.caption_length, it.config.trigger_prefix, it.config.trigger_suffix,
            it.config.caption_replace) == ("very_short", "ohwx", "zyx style", str(f))
    plain = load(comfy, node_id="2")
    assert (plain.config.caption_length, plain.config.trigger_prefix, plain.config.caption_replace) == \
        (None, "", None)
