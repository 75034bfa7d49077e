"""Every host shows each setting as the core's settings table declares it (``interrogator_core.SETTINGS``): the
same bounds, default and choices in the ComfyUI node inputs, the A1111/Forge settings page, tab and API request
models, and the CLI flags.

Each ``*_problems`` function lists where one host differs from the table; the tests assert the lists are empty,
and ``test_each_check_sees_a_host_that_shows_another_bound`` gives the checks a table with another bound to
prove that they notice.
"""
from __future__ import annotations

import dataclasses
import enum
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, List, Mapping

import pytest

from interrogator_core import SETTINGS, InterrogatorConfig, Setting
from interrogator_core.settings import TAGGER_SETTINGS, tagger_options
from interrogator_core.request import Request

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "a1111"))

from fixtures import webui, webui_models  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"
PACK = "prompt_interrogator_pack_settings_table"

#: Values a host offers beyond the table's, and why.
EXTRA_CHOICES = {("cli", "mode"): {"analyze"}}  # the CLI's analyze mode is Interrogator.analyze, not a prompt mode


def _plain(choices) -> List[Any]:
    """gradio 4 stores choices as (label, value) pairs, gradio 3 as values."""
    return [c[1] if isinstance(c, (tuple, list)) else c for c in choices or []]


def _compare(host: str, name: str, table: Mapping[str, Setting], *, default: Any = "skip", minimum: Any = "skip",
             maximum: Any = "skip", choices: Any = None, unset_ok: bool = False) -> List[str]:
    """Where a host's control of setting ``name`` differs from the table (``"skip"``: the host shows no such
    fact; ``unset_ok``: None is a valid default, the engine's default then applies)."""
    s = table[name]
    problems = []
    if default != "skip" and not s.host_default:
        allowed = [s.default_value(), s.parse(s.default_value())] + ([None] if unset_ok else [])
        if default not in allowed:
            problems.append(f"{host} {name}: default {default!r}, table {s.default_value()!r}")
    for what, shown, declared in (("minimum", minimum, s.minimum), ("maximum", maximum, s.maximum)):
        if shown != "skip" and shown != declared:
            problems.append(f"{host} {name}: {what} {shown!r}, table {declared!r}")
    if choices is not None:
        shown = list(choices)
        expected = s.options()
        extra = EXTRA_CHOICES.get((host, name), set())
        if s.open_choices:  # suggestions: every table name listed (a host may add its local folders)
            missing = set(expected) - set(shown)
            if missing:
                problems.append(f"{host} {name}: choices lack {sorted(missing)}")
        elif sorted(set(shown) - extra) != sorted(expected):
            problems.append(f"{host} {name}: choices {shown}, table {expected}")
    return problems


def test_the_table_is_what_the_engine_uses():
    """Defaults: the engine's own (InterrogatorConfig fields, Request.make arguments); each default passes the
    setting's own check; a none word parses to None."""
    config_defaults = {f.name: (f.default_factory() if f.default is dataclasses.MISSING else f.default)
                       for f in dataclasses.fields(InterrogatorConfig)}
    tagger = config_defaults.pop("tagger_options")  # one setting per field of TaggerOptions
    assert [f.name for f in dataclasses.fields(tagger)] == list(TAGGER_SETTINGS)
    config_defaults.update({f.name: ", ".join(v) if isinstance(v, tuple) else v
                            for f in dataclasses.fields(tagger) for v in [getattr(tagger, f.name)]})
    assert tagger_options({}) == tagger and tagger_options({"max_tags": "3"}).max_tags == 3
    assert set(config_defaults) <= set(SETTINGS), \
        f"declare {sorted(set(config_defaults) - set(SETTINGS))} in interrogator_core/settings.py"
    for name, engine in config_defaults.items():
        s = SETTINGS[name]
        engine = engine.value if isinstance(engine, enum.Enum) else engine
        table = s.parse(s.default_value())
        if s.type is list:
            assert list(engine) == list(table), name
        elif name == "cache_dir":
            assert str(engine) == str(table)
        else:
            assert table == engine, name
    request = Request.make()
    for name in ("mode", "min_flavors", "max_flavors", "negative_count", "beam_width", "similarities"):
        assert getattr(request, name) == SETTINGS[name].parse(SETTINGS[name].default_value()), name
    for s in SETTINGS.values():
        s.check(s.default_value())
        assert s.help_text(), s.name
        if s.none_word is not None:
            assert s.parse(s.none_word) is None and s.parse(f" {s.none_word.upper()} ") is None
    with pytest.raises(ValueError, match="0 to 64"):
        Request.make(max_flavors=SETTINGS["max_flavors"].maximum + 1)


# -- ComfyUI --------------------------------------------------------------------------------------------------
def _drop_modules(*prefixes: str) -> None:
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            del sys.modules[name]


@pytest.fixture
def comfy_nodes(monkeypatch, tmp_path) -> Iterator[ModuleType]:
    """The pack imported as ComfyUI imports it, on the fake ComfyUI of tests/fakes (an empty model folder)."""
    _drop_modules("comfy", "comfy_api", "folder_paths", PACK)
    monkeypatch.syspath_prepend(str(FAKES))
    import folder_paths

    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path / "models"))
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", {})
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    yield sys.modules[PACK + ".nodes"]
    _drop_modules("comfy", "comfy_api", "folder_paths", PACK)


def comfy_problems(nodes: ModuleType, table: Mapping[str, Setting]) -> List[str]:
    problems: List[str] = []
    seen = set()
    for node in (nodes.InterrogatorLoader, nodes.Interrogate, nodes.Analyze):
        spec = node.INPUT_TYPES()
        for name, (kind, opts) in {**spec.get("required", {}), **spec.get("optional", {})}.items():
            if name not in table:
                continue
            seen.add(name)
            if kind in ("INT", "FLOAT"):
                problems += _compare("comfyui", name, table, default=opts.get("default"), minimum=opts.get("min"),
                                     maximum=opts.get("max"))
            elif kind == "COMBO":
                problems += _compare("comfyui", name, table, default=opts.get("default"), choices=opts["options"])
            else:
                problems += _compare("comfyui", name, table, default=opts.get("default"))
            if not str(opts.get("tooltip", "")).startswith(table[name].help_text()):
                problems.append(f"comfyui {name}: tooltip is not the table's help")
    expected = {"mode", "min_flavors", "max_flavors", "negative_count", "beam_width", "target", "clip_model",
                "caption_model", "caption_style", "caption_prompt", "trust_remote_code", "sdxl_dual", "precision",
                "top_n", "with_caption", *TAGGER_SETTINGS, "caption_length", "trigger_prefix", "trigger_suffix",
                "caption_replace"}
    if seen != expected:
        problems.append(f"comfyui shows {sorted(seen)}, expected {sorted(expected)}")
    return problems


def test_comfyui_inputs_match_the_table(comfy_nodes):
    assert comfy_problems(comfy_nodes, SETTINGS) == []


# -- A1111 / Forge ----------------------------------------------------------------------------------------------
def a1111_settings_problems(shared: Any, table: Mapping[str, Setting]) -> List[str]:
    from interrogator_hosts import a1111

    problems = []
    for key, info in shared.opts.data_labels.items():
        name = key[len(a1111.OPT_PREFIX):]
        if not key.startswith(a1111.OPT_PREFIX) or name not in table:
            continue
        args = (info.component_args() if callable(info.component_args) else info.component_args) or {}
        problems += _compare("a1111 settings", name, table, default=info.default,
                             minimum=args.get("minimum", "skip"), maximum=args.get("maximum", "skip"),
                             choices=args.get("choices"))
        if table[name].choices is not None and "choices" not in args and name != "clip_model":
            problems.append(f"a1111 settings {name}: no choice list")
    return problems


def test_a1111_settings_page_matches_the_table(webui):
    pytest.importorskip("gradio")
    shared, _ = webui
    assert a1111_settings_problems(shared, SETTINGS) == []
    from interrogator_hosts import a1111

    shown = {k[len(a1111.OPT_PREFIX):] for k in shared.opts.data_labels if k.startswith(a1111.OPT_PREFIX)}
    assert {"mode", "min_flavors", "max_flavors", "negative_count", "beam_width", "target", "clip_model",
            "caption_model", "caption_style", "caption_prompt", "trust_remote_code", *TAGGER_SETTINGS} <= shown


def a1111_tab_problems(tab: Any, table: Mapping[str, Setting]) -> List[str]:
    import gradio as gr

    problems = []
    found = set()
    for block in tab.blocks.values():
        elem = getattr(block, "elem_id", None) or ""
        if not elem.startswith("prompt_interrogator_"):
            continue
        name = next((n for n in table if elem.endswith("_" + n) or elem == f"prompt_interrogator_{n}"), None)
        if name is None:
            continue
        found.add(name)
        if isinstance(block, gr.Slider):
            problems += _compare(f"a1111 tab {elem}", name, table, minimum=block.minimum, maximum=block.maximum)
        elif isinstance(block, gr.Dropdown) and name != "clip_model":
            problems += _compare(f"a1111 tab {elem}", name, table, choices=_plain(block.choices))
    for name in ("min_flavors", "max_flavors", "negative_count", "beam_width", "top_n", "caption_style", "target"):
        if name not in found:
            problems.append(f"a1111 tab: no control of {name}")
    return problems


def test_a1111_tab_matches_the_table(webui):
    pytest.importorskip("gradio")
    from interrogator_hosts import a1111_ui

    assert a1111_tab_problems(a1111_ui.build_tab(), SETTINGS) == []


def _api_models() -> list:
    from interrogator_hosts import a1111_api

    return [a1111_api.InterrogatorPromptRequest, a1111_api.InterrogatorScoreRequest,
            a1111_api.InterrogatorAnalyzeRequest]


def _field_default(model: Any, name: str) -> Any:
    fields = getattr(model, "model_fields", None)  # pydantic 2
    if fields is None:
        fields = model.__fields__  # pydantic 1
    return fields[name].default


def _field_names(model: Any) -> List[str]:
    return list(getattr(model, "model_fields", None) or model.__fields__)


def _accepts(model: Any, **values: Any) -> bool:
    import pydantic

    try:
        model(**values)
    except pydantic.ValidationError:
        return False
    return True


def api_problems(table: Mapping[str, Setting]) -> List[str]:
    """The bounds as the installed pydantic enforces them (a value just outside is refused, the bounds taken),
    the default (None: the settings page's value), the closed choices named in the field's description."""
    problems = []
    for model in _api_models():
        for name in _field_names(model):
            if name not in table:
                continue
            s = table[name]
            default = _field_default(model, name)
            problems += _compare(f"api {model.__name__}", name, table, default=default, unset_ok=True)
            for bound, outside in ((s.minimum, -1), (s.maximum, 1)):
                if bound is None:
                    continue
                if not _accepts(model, **{name: int(bound)}):
                    problems.append(f"api {model.__name__} {name}: refuses {int(bound)}")
                if _accepts(model, **{name: int(bound) + outside}):
                    problems.append(f"api {model.__name__} {name}: accepts {int(bound) + outside}")
            if s.choices is not None and not s.open_choices:
                fields = getattr(model, "model_fields", None) or model.__fields__
                info = getattr(fields[name], "field_info", fields[name])  # pydantic 1: ModelField.field_info
                missing = [c for c in s.options() if c not in (info.description or "")]
                if missing:
                    problems.append(f"api {model.__name__} {name}: description does not name {missing}")
    return problems


def test_a1111_api_models_match_the_table():
    pytest.importorskip("fastapi")
    assert api_problems(SETTINGS) == []
    from interrogator_hosts import a1111_api

    assert {"mode", "min_flavors", "max_flavors", "negative_count", "beam_width", "target", "caption_style",
            "sdxl_dual", *TAGGER_SETTINGS} <= set(_field_names(a1111_api.InterrogatorPromptRequest))
    assert set(TAGGER_SETTINGS) <= set(_field_names(a1111_api.InterrogatorAnalyzeRequest))


# -- CLI ----------------------------------------------------------------------------------------------------------
def cli_problems(table: Mapping[str, Setting]) -> List[str]:
    import argparse

    from interrogator_core.cli import build_parser

    problems = []
    by_flag = {s.cli_flag: s for s in table.values() if s.cli_flag}
    found = set()
    for action in build_parser()._actions:
        s = next((by_flag[o] for o in action.option_strings if o in by_flag), None)
        if s is None:
            continue
        found.add(s.name)
        problems += _compare("cli", s.name, table, default=action.default, unset_ok=s.unset_ok,
                             choices=action.choices)
        if s.type is int:
            for bound, outside in ((s.minimum, -1), (s.maximum, 1)):
                if bound is None:
                    continue
                try:
                    action.type(str(int(bound) + outside))
                    problems.append(f"cli {s.cli_flag}: accepts {int(bound) + outside}")
                except (argparse.ArgumentTypeError, ValueError):
                    pass
                try:
                    action.type(str(int(bound)))
                except (argparse.ArgumentTypeError, ValueError):
                    problems.append(f"cli {s.cli_flag}: refuses {int(bound)}")
        if s.help not in (action.help or "") and s.name != "mode":
            problems.append(f"cli {s.cli_flag}: help is not the table's")
    missing = {n for n, s in table.items() if s.cli_flag} - found
    if missing:
        problems.append(f"cli: no flag for {sorted(missing)}")
    return problems


def test_cli_flags_match_the_table():
    assert cli_problems(SETTINGS) == []


# -- the checks notice a drift ----------------------------------------------------------------------------------
def _drifted(**changes: Any) -> Dict[str, Setting]:
    """The table with ``max_flavors`` changed (what a host that shows another bound looks like to the check)."""
    return {**SETTINGS, "max_flavors": dataclasses.replace(SETTINGS["max_flavors"], **changes)}


def test_each_check_sees_a_host_that_shows_another_bound(comfy_nodes, webui):
    pytest.importorskip("gradio")
    pytest.importorskip("fastapi")
    from interrogator_hosts import a1111_ui

    shared, _ = webui
    other = _drifted(maximum=SETTINGS["max_flavors"].maximum + 1)
    tab = a1111_ui.build_tab()
    for name, problems in (("comfyui", comfy_problems(comfy_nodes, other)),
                           ("a1111 settings", a1111_settings_problems(shared, other)),
                           ("a1111 tab", a1111_tab_problems(tab, other)), ("api", api_problems(other)),
                           ("cli", cli_problems(other))):
        assert any("max_flavors" in p and "maximum" in p or "accepts" in p or "refuses" in p for p in problems), \
            name
    lower = _drifted(default=SETTINGS["max_flavors"].default - 1)
    assert any("default" in p for p in comfy_problems(comfy_nodes, lower))
    assert any("default" in p for p in cli_problems(lower))
    assert any("default" in p for p in a1111_settings_problems(shared, lower))
