"""Issue 12 end to end: a local tiny folder of each VLM caption family through the CLI, for each style it can do
and for the targets flux and sd35 (the A1111 API check is in test_a1111_api.py, the ComfyUI one in
tests/integration/test_comfyui_server.py)."""
import json

import pytest

from conftest import FAMILY_BUILDERS, family_model
from interrogator_core.caption import FAMILIES, load_captioner
from interrogator_core.cli import main
from interrogator_core.interrogator import CAPTION_TOKENS
from interrogator_core.prompts import as_tags

CASES = [(f, s, "custom") for f in FAMILY_BUILDERS for s in FAMILIES[f].default_styles] + \
        [(f, None, t) for f in FAMILY_BUILDERS for t in ("flux", "sd35")]
KEYS = {"custom": set(), "flux": {"clip_l", "t5"}, "sd35": {"clip_l", "clip_g", "t5"}}


@pytest.mark.parametrize("family,style,target", CASES)
def test_cli_with_each_family_style_and_target(family, style, target, family_models, tiny_models, small_data_dir,
                                               tmp_path, images, registry_to_tiny):
    folder = family_model(family_models, family)
    for name, im in zip(("a.png", "b.png"), images[:2]):
        im.save(tmp_path / name)
    out = tmp_path / "out.jsonl"
    args = [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--caption-model", str(folder), "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--data-dir", str(small_data_dir), "--mode", "fast",
            "--max-flavors", "4", "--jsonl", str(out), "--quiet"]
    args += ["--caption-style", style] if style else []
    args += ["--clip-model", str(tiny_models["clip"])] if target == "custom" else ["--target", target]
    assert main(args) == 0
    rows = {r["file"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert sorted(rows) == ["a.png", "b.png"]

    # the caption is the family's own output for that style, generated the way the engine does it
    used = style or "detailed"  # flux and sd35 caption in detailed style by default
    captioner = load_captioner(str(folder))
    direct = captioner.generate(images[:2], CAPTION_TOKENS[used], style=used)
    if used == "tags":  # a tags caption is cleaned up as tags (prompts.as_tags)
        direct = [as_tags(c) for c in direct]
    assert [rows["a.png"]["caption"], rows["b.png"]["caption"]] == direct
    for row in rows.values():
        assert set(row.get("prompts", {})) == KEYS[target]
        if target != "custom":
            assert row["prompts"]["t5"] == row["caption"], "t5 is the whole caption"
        assert (row["negative_prompt"] == "") == (target == "flux")
