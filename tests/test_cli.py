"""The CLI end to end on a folder with subfolders, a bad file, sidecars, jsonl/csv and resume."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interrogator_core.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder(tmp_path, images):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    images[0].save(d / "a.png")
    images[1].save(d / "sub" / "b.jpg")
    (d / "broken.png").write_bytes(b"not an image at all")
    (d / "notes.md").write_text("ignored: not an image extension")
    return d


def _args(tiny_models, small_data_dir, tmp_path, *extra):
    return [*extra, "--clip-model", str(tiny_models["clip"]), "--caption-model", str(tiny_models["blip"]),
            "--cache-dir", str(tmp_path / "cache"), "--data-dir", str(small_data_dir), "--quiet"]


def test_folder_prints_prompts_writes_sidecars_and_reports_bad_file(tiny_models, small_data_dir, tmp_path, folder,
                                                                  capsys):
    rc = main(_args(tiny_models, small_data_dir, tmp_path, str(folder), "--mode", "fast", "--txt", "overwrite"))
    out, err = capsys.readouterr()
    assert rc == 1  # one file failed, the others were done
    assert "broken.png" in err and "2 done, 0 skipped, 1 failed" in err
    for name in ("a.txt", "sub/b.txt"):
        assert (folder / name).read_text().strip()
    main(_args(tiny_models, small_data_dir, tmp_path, str(folder), "--mode", "fast", "--jsonl", str(tmp_path / "out.jsonl")))
    rows = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["file"] for r in rows) == ["a.png", "sub/b.jpg"]
    for r in rows:
        assert (folder / r["file"]).with_suffix(".txt").read_text().strip() == r["prompt"] and r["negative_prompt"]
    main(_args(tiny_models, small_data_dir, tmp_path, str(folder), "--mode", "fast", "--csv", str(tmp_path / "out.csv")))
    with open(tmp_path / "out.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_stdout_has_positive_and_negative_per_image(tiny_models, small_data_dir, tmp_path, folder, capsys):
    (folder / "broken.png").unlink()
    rc = main([*_args(tiny_models, small_data_dir, tmp_path, str(folder), "--mode", "fast")[:-1]])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("positive: ") == 2 and out.count("negative: ") == 2


def test_resume_skips_done_images(tiny_models, small_data_dir, tmp_path, folder, capsys):
    args = _args(tiny_models, small_data_dir, tmp_path, str(folder), "--mode", "fast", "--jsonl",
                 str(tmp_path / "out.jsonl"), "--resume")
    main(args)
    capsys.readouterr()
    main(args)
    err = capsys.readouterr().err
    assert "0 done, 2 skipped, 1 failed" in err
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def test_sidecar_skip_and_append(tiny_models, small_data_dir, tmp_path, folder):
    (folder / "broken.png").unlink()
    (folder / "a.txt").write_text("my own tags")
    main(_args(tiny_models, small_data_dir, tmp_path, str(folder), "--mode", "fast", "--txt", "skip"))
    assert (folder / "a.txt").read_text() == "my own tags"
    assert (folder / "sub" / "b.txt").is_file()
    main(_args(tiny_models, small_data_dir, tmp_path, str(folder), "--mode", "fast", "--txt", "append"))
    assert (folder / "a.txt").read_text().startswith("my own tags, ")


def test_analyze_mode(tiny_models, small_data_dir, tmp_path, folder, capsys):
    (folder / "broken.png").unlink()
    assert main(_args(tiny_models, small_data_dir, tmp_path, str(folder), "--mode", "analyze", "--top", "2")) == 0
    out = capsys.readouterr().out
    assert out.count("mediums:") == 2


def test_missing_input_is_a_usage_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_missing_model_offline_exits_nonzero_with_message(tmp_path, folder):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "interrogator_core", str(folder / "a.png"), "--clip-model",
                        "ViT-B-32/laion2b_s34b_b79k", "--caption-model", "none", "--cache-dir", str(tmp_path / "c"), "--quiet",
                        "--models-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    assert "ViT-B-32_laion2b_s34b_b79k" in p.stderr and "Traceback" not in p.stderr


def test_beam_width_and_target_flags(tiny_models, small_data_dir, tmp_path, folder, capsys):
    from interrogator_core.cli import _config, build_parser

    (folder / "broken.png").unlink()
    assert main(_args(tiny_models, small_data_dir, tmp_path, str(folder / "a.png"), "--mode", "best",
                      "--beam-width", "2")) == 0
    cfg = _config(build_parser().parse_args(["x.png", "--target", "sd15", "--clip-model", "ignored/by-target"]))
    assert cfg.clip_model == "ViT-L-14/openai"


def test_cli_prints_and_writes_every_prompt_of_a_new_target(tiny_models, small_data_dir, tmp_path, images, capsys,
                                                            registry_to_tiny):
    """Issue 19: HiDream's four prompts are printed one line each, and land in the jsonl ``prompts`` and in the
    csv's encoder columns; a csv from before those columns gets rows in its own (older) shape."""
    images[0].save(tmp_path / "a.png")
    common = ["--caption-model", str(tiny_models["blip"]), "--cache-dir", str(tmp_path / "cache"),
              "--data-dir", str(small_data_dir), "--mode", "fast", "--max-flavors", "8", "--target", "hidream"]
    assert main([str(tmp_path / "a.png"), *common]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert {"positive", "negative", "llama", "clip_l", "clip_g", "t5"} <= set(lines)
    out = tmp_path / "out.csv"
    assert main([str(tmp_path / "a.png"), *common, "--csv", str(out), "--quiet"]) == 0
    with open(out, newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert list(row)[:6] == ["file", "prompt", "negative_prompt", "caption", "mode", "similarity"]
    assert list(row)[6:] == ["negative_prompt_l", "clip_l", "clip_g", "t5", "llm", "llama"]
    assert row["llama"] == lines["llama"] and row["clip_g"] == lines["clip_g"] and row["llm"] == ""
    jsonl = tmp_path / "out.jsonl"
    assert main([str(tmp_path / "a.png"), *common, "--jsonl", str(jsonl), "--quiet"]) == 0
    assert set(json.loads(jsonl.read_text())["prompts"]) == {"llama", "clip_l", "clip_g", "t5"}

    old = tmp_path / "old.csv"
    old.write_text("file,prompt,negative_prompt,caption,mode,similarity\r\nz.png,p,n,c,fast,0.1\r\n")
    assert main([str(tmp_path / "a.png"), *common, "--csv", str(old), "--quiet"]) == 0
    with open(old, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert [len(r) for r in rows] == [6, 6, 6] and rows[2][0] == "a.png", "appended in the file's own columns"


NEW_TARGETS = ["flux2", "qwen-image", "hidream", "z-image", "chroma", "lumina2", "wan", "illustrious", "noobai",
               "pony"]


@pytest.mark.parametrize("target", NEW_TARGETS)
def test_each_new_target_end_to_end(target, tiny_models, small_data_dir, tmp_path, images, registry_to_tiny):
    """Issue 19: each of today's targets through the CLI: its prompts by encoder in the jsonl, the main one the
    positive, long-prose ones the whole caption."""
    from interrogator_core import get_target

    images[0].save(tmp_path / "a.png")
    out = tmp_path / "out.jsonl"
    assert main([str(tmp_path / "a.png"), "--caption-model", str(tiny_models["blip"]), "--cache-dir",
                 str(tmp_path / "cache"), "--data-dir", str(small_data_dir), "--mode", "fast", "--max-flavors", "6",
                 "--target", target, "--jsonl", str(out), "--quiet"]) == 0
    row = json.loads(out.read_text())
    preset = get_target(target)
    assert list(row["prompts"]) == preset.prompt_keys() and row["prompt"] == row["prompts"][preset.main_encoder]
    assert all(row["prompts"][e.key] == row["caption"] for e in preset.active() if not e.ranked)
    assert bool(row["negative_prompt"]) == preset.negative


def test_analyze_with_a_tagger_prints_the_tags_with_scores(tiny_models, small_data_dir, tmp_path, images, capsys):
    import math

    from interrogator_core.testing import TINY_TAGS, make_tiny_tagger

    scores = {"1girl": 0.95, "solo": 0.9, "long_hair": 0.6, "hatsune_miku": 0.92}
    tagger = make_tiny_tagger(tmp_path / "tiny-tagger", head_bias=[
        math.log(p / (1 - p)) for p in (scores.get(name, 0.1) for name, _ in TINY_TAGS)])
    images[0].save(tmp_path / "a.png")
    args = ["--clip-model", str(tiny_models["clip"]), "--caption-model", str(tagger), "--cache-dir",
            str(tmp_path / "cache"), "--data-dir", str(small_data_dir), "--quiet", "--mode", "analyze", "--top", "2",
            "--exclude-tags", "solo", "--jsonl", str(tmp_path / "out.jsonl"), str(tmp_path / "a.png")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "caption: hatsune miku, 1girl, long hair" in out
    assert "tags (character):\n  0.9200  hatsune miku\ntags (general):\n  0.9500  1girl\n  0.6000  long hair" in out
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert list(row["tags"]["general"]) == ["1girl", "long hair"] and "rating" in row["tags"]
