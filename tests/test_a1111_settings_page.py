"""The Settings page section through the webui's own page-load refresh, on the real gradio of each host
(3.41.2 in A1111's venv, 4.40 in Forge's): every option's component is built from its component arguments,
and the ``gr.update(value=..., **component_args)`` the page sends on every load goes through gradio's own
processing. An argument that the host's gradio refuses in an update breaks the refresh of the whole page
(in A1111 1.10.1 the checkpoint dropdown then shows "Error")."""
import asyncio
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "a1111"))

from fixtures import forge_webui, webui, webui_models  # noqa: E402,F401

gr = pytest.importorskip("gradio")


def _run_load(demo):
    """Run the page's load event as gradio's server does (preprocess, call, postprocess each update)."""
    fns = list(demo.fns.values()) if isinstance(demo.fns, dict) else demo.fns  # gradio 4 / 3
    params = inspect.signature(demo.process_api).parameters
    if "block_fn" in params:  # gradio 4
        return asyncio.run(demo.process_api(block_fn=fns[0], inputs=[], state=None))
    return asyncio.run(demo.process_api(fn_index=0, inputs=[], state={}))


def _our_keys(shared):
    from interrogator_hosts import a1111

    keys = [k for k in shared.opts.data_labels if k.startswith(a1111.OPT_PREFIX)]
    assert len(keys) == len(a1111.DEFAULTS)
    return keys


@pytest.mark.parametrize("env_fixture", ["webui", "forge_webui"])
def test_page_load_refresh_accepts_every_option(env_fixture, request):
    shared, _ = request.getfixturevalue(env_fixture)
    from modules import ui_settings

    keys = _our_keys(shared)
    with gr.Blocks() as demo:
        components = ui_settings.add_settings_refresh(demo, keys)
    out = _run_load(demo)  # raised TypeError (Dropdown.update: allow_custom_value) on gradio 3.41.2
    updates = out["data"]
    assert len(updates) == len(keys)
    by_key = dict(zip(keys, updates))
    for key in ("prompt_interrogator_clip_model", "prompt_interrogator_caption_model"):
        assert by_key[key]["choices"], f"{key}: the refresh sends the model list"
    comps = dict(zip(keys, components))
    for key in ("prompt_interrogator_clip_model", "prompt_interrogator_caption_model"):
        assert isinstance(comps[key], gr.Dropdown) and comps[key].allow_custom_value, \
            f"{key}: a model name not in the list can still be typed"
    assert comps["prompt_interrogator_caption_style"].allow_custom_value is False


@pytest.mark.parametrize("env_fixture", ["webui", "forge_webui"])
def test_component_args_only_name_update_arguments(env_fixture, request):
    """The rule behind the refresh: each option's component arguments are ones its component's update takes
    in the host's gradio (gradio 3 has a per-component ``update``; gradio 4 takes any of the constructor's)."""
    shared, _ = request.getfixturevalue(env_fixture)
    for key in _our_keys(shared):
        info = shared.opts.data_labels[key]
        args = (info.component_args() if callable(info.component_args) else info.component_args) or {}
        comp = info.component
        update = getattr(comp, "update", None) if comp is not None else None
        if update is None or not callable(update) or not gr.__version__.startswith("3."):
            continue
        accepted = set(inspect.signature(update).parameters)
        assert set(args) - {"precision"} <= accepted, f"{key}: {comp.__name__}.update() refuses {set(args) - accepted}"


def test_editable_dropdown_without_the_webuis_class(webui, monkeypatch):
    """A webui without ``modules.ui_components.DropdownEditable``: our own editable dropdown, same rule."""
    from interrogator_hosts import a1111_settings

    monkeypatch.setitem(sys.modules, "modules.ui_components", None)  # import now raises ImportError
    cls = a1111_settings.setting_component(a1111_settings.EDITABLE)
    with gr.Blocks():
        comp = cls(label="x", value="typed-name", choices=["a", "b"])
    assert isinstance(comp, gr.Dropdown) and comp.allow_custom_value
    assert a1111_settings.setting_component("Slider") is gr.Slider
