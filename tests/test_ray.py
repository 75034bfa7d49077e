"""Dataset scale (issue 14): the per-actor stage, label caches prepared once, resume, and Ray Data end to end.

The stage tests need no Ray and run in every environment; the Ray tests start a local Ray with 2 CPUs and run
where Ray is installed (the "current" environment in CI: .ci/envs/current-test.txt).
"""
import errno
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interrogator_core import Interrogator, InterrogatorConfig, InterrogatorError, StandaloneHost
from interrogator_core.dataset import OUTPUT_COLUMNS, PromptStage, existing_ids, prepare_label_cache
from interrogator_core.labels import builtin_labels

ROOT = Path(__file__).resolve().parent.parent
CALL = {"mode": "fast", "min_flavors": 2, "max_flavors": 6, "negative_count": 4}  # fast: keeps Ray tests short


def _png(seed: int, h: int = 40, w: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def config(tiny_models, small_data_dir, tmp_path) -> dict:
    return dict(clip_model=str(tiny_models["clip"]), caption_model=str(tiny_models["blip"]),
                data_dir=str(small_data_dir), cache_dir=str(tmp_path / "cache"), device="cpu", **CALL)


def _engine_rows(config: dict, images: dict) -> dict:
    """The single-process engine's rows for {id: PIL image or path} (the reference every path must match)."""
    engine = {k: v for k, v in config.items() if k not in (*CALL, "device")}
    ci = Interrogator(InterrogatorConfig(**engine), StandaloneHost(device="cpu"))
    keys = sorted(images)
    results = ci.interrogate([images[k] for k in keys], **{k: config[k] for k in CALL})
    return {k: (r.positive, r.negative, r.caption, r.similarity, json.dumps(r.prompts, sort_keys=True))
            for k, r in zip(keys, results)}


def _same(row: dict, expected: tuple) -> None:
    positive, negative, caption, similarity, prompts = expected
    assert (row["positive"], row["negative"], row["caption"], row["prompts"]) == (positive, negative, caption, prompts)
    assert row["similarity"] == pytest.approx(similarity, abs=1e-5)
    assert row["error"] is None


# -- the stage, no Ray --------------------------------------------------------------------------------------
def test_stage_rows_equal_engine_and_bad_image_gives_error_row(config, tmp_path):
    config = {**config, "mode": "best"}  # the default mode, chains included
    blobs = {f"img{i}": _png(i, 32 + 8 * i) for i in range(3)}
    expected = _engine_rows(config, {k: Image.open(io.BytesIO(b)) for k, b in blobs.items()})
    stage = PromptStage(config)
    ids = [*blobs, "broken", "empty"]
    rows = stage({"id": np.array(ids), "image": np.array([*blobs.values(), b"not an image", b""], dtype=object)})
    assert list(rows) == list(OUTPUT_COLUMNS) and rows["id"] == ids
    by_id = {k: {c: rows[c][i] for c in rows} for i, k in enumerate(ids)}
    for k in blobs:
        _same(by_id[k], expected[k])
        assert by_id[k]["positive"] and by_id[k]["negative"]
    for bad in ("broken", "empty"):
        assert by_id[bad]["error"] and bad in by_id[bad]["error"] and by_id[bad]["positive"] == ""
    # a path column gives the same rows as bytes
    for k, b in blobs.items():
        (tmp_path / f"{k}.png").write_bytes(b)
    by_path = stage({"id": list(blobs), "path": [str(tmp_path / f"{k}.png") for k in blobs]})
    assert by_path["positive"] == rows["positive"][:3] and by_path["error"] == [None] * 3


def test_stage_refuses_unknown_config_key_and_batch_without_id(config):
    from interrogator_core import UnknownNameError

    with pytest.raises(UnknownNameError, match="max_flavours.*max_flavors"):
        PromptStage({**config, "max_flavours": 3})
    with pytest.raises(KeyError, match="no id column 'id'"):
        PromptStage({**config, "mode": "caption"})({"key": ["a"], "image": [_png(0)]})


def test_labels_prepared_once_and_workers_with_the_files_encode_none(config, small_data_dir, tmp_path):
    total = sum(len(v) for v in builtin_labels(small_data_dir).values())
    first = prepare_label_cache(config)
    assert first.encoded == total and len(first.files) == 6
    assert prepare_label_cache(config).encoded == 0  # the cache folder serves every table now
    assert PromptStage(config).labels_encoded == 0  # a worker sharing the folder
    elsewhere = {**config, "cache_dir": str(tmp_path / "other-node")}
    assert PromptStage(elsewhere, label_files=first.files).labels_encoded == 0  # a worker given the files
    cold = {**config, "cache_dir": str(tmp_path / "cold")}
    with pytest.raises(InterrogatorError, match=f"had to encode {total} labels"):
        PromptStage(cold, require_label_cache=True)


def test_existing_ids_moves_a_damaged_part_aside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text('{"id": "x"}\n{"id": "y"}\n')
    (out / "b.json").write_text('{"id": "z"}\n{"id": ')
    assert existing_ids(out, "jsonl") == {"x", "y"}
    assert (out / "b.json.incomplete").is_file() and not (out / "b.json").exists()


def test_importing_the_package_never_imports_ray_and_missing_ray_says_how_to_install():
    code = ("import sys, interrogator_core, interrogator_core.cli, interrogator_core.dataset\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n"
            "sys.modules['ray'] = None\n"
            "try:\n    import interrogator_core.ray\nexcept ImportError as e:\n    print(e)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install prompt-interrogator[ray]" in out.stdout


# -- the CLI's Ray path: usage errors before Ray starts (no Ray needed) ---------------------------------------
@pytest.fixture
def ray_never_starts(monkeypatch):
    """The CLI must refuse before it imports the Ray path: a stand-in module fails the test if it is used."""
    import types

    import interrogator_core.cli as cli

    def refuse(*a, **k):
        raise AssertionError("the Ray path started before the arguments were checked")

    fake = types.ModuleType("interrogator_core.ray")
    fake.run_cli = refuse
    monkeypatch.setitem(sys.modules, "interrogator_core.ray", fake)
    monkeypatch.setattr(cli, "Interrogator", refuse)


def _usage_error(capsys, argv) -> str:
    from interrogator_core.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_cli_ray_output_checks_before_ray_starts(ray_never_starts, tmp_path, capsys, monkeypatch):
    """Issue 21.6 (and 21.3's folder rule): Ray outputs are folders; what cannot be one is a usage error."""
    from interrogator_core import fileio
    from interrogator_core.cli import build_parser, usage_problems

    images = tmp_path / "imgs"
    images.mkdir()
    (images / "a.png").write_bytes(_png(0))
    existing = tmp_path / "prompts"
    existing.mkdir()
    # a folder is the right thing for --ray --jsonl / --parquet (a rerun resumes into it)
    for flag in ("--jsonl", "--parquet"):
        assert usage_problems(build_parser().parse_args([str(images), "--ray", flag, str(existing)])) == []
    # ... and the wrong thing without --ray
    assert "is a folder" in " ".join(usage_problems(build_parser().parse_args([str(images), "--jsonl", str(existing)])))
    a_file = tmp_path / "out.parquet"
    a_file.write_bytes(b"x")
    err = _usage_error(capsys, [str(images), "--ray", "--parquet", str(a_file)])
    assert f"--parquet {a_file} is a file; give a folder" in err
    err = _usage_error(capsys, [str(images), "--ray", "--jsonl", str(a_file / "sub")])
    assert "out.parquet (is not a folder)" in err
    # a read-only output folder (simulated: tests run as root, which may write anywhere)
    real = fileio.tempfile.TemporaryFile

    def read_only(*a, dir=None, **k):
        if dir is not None and Path(dir) == existing:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(fileio.tempfile, "TemporaryFile", read_only)
    err = _usage_error(capsys, [str(images), "--ray", "--parquet", str(existing)])
    assert str(existing) in err and "Read-only file system" in err
    err = _usage_error(capsys, [str(images), "--ray", "--jsonl", str(existing / "new")])
    assert str(existing) in err and "Read-only file system" in err
    # flags that do not go with --ray
    assert "--parquet needs --ray" in _usage_error(capsys, [str(images), "--parquet", str(tmp_path / "new")])
    assert "--ray needs an output" in _usage_error(capsys, [str(images), "--ray"])
    assert "use --txt skip" in _usage_error(capsys, [str(images), "--ray", "--txt", "overwrite"])
    assert "analyze" in _usage_error(capsys, [str(images), "--ray", "--parquet", str(tmp_path / "n"), "--mode",
                                              "analyze"])
    shard = tmp_path / "shard.tar"
    shard.write_bytes(b"")
    assert "beside each image file" in _usage_error(capsys, [str(shard), "--ray", "--txt", "skip"])


# -- Ray Data end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install prompt-interrogator[ray] "
                                            "(CI installs it in the current environment)")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (part of the ray extra)")
    # workers import interrogator_core from this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "imgs"
    for i in range(6):
        sub = d / f"part{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i}.png").write_bytes(_png(10 + i, 32 + 4 * i))
    (d / "part0" / "corrupt.png").write_bytes(b"\x89PNG but cut short")
    return d


def _rows(out: Path) -> dict:
    import pyarrow.parquet as pq

    rows = [r for part in sorted(out.glob("*.parquet")) for r in pq.read_table(str(part)).to_pylist()]
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows), "an id was written twice"
    return by_id


def test_folder_to_parquet_matches_engine_labels_once_and_resume(local_ray, config, folder, tiny_models,
                                                                 small_data_dir, tmp_path, capsys):
    from interrogator_core.cli import main
    from interrogator_core.ray import interrogate_dataset

    out = tmp_path / "out"
    # two actors on 2 CPUs: half a CPU each, so Ray's own tasks keep one (a pool that takes every CPU is refused)
    ds = interrogate_dataset(folder, config, output=out, actors=2, cpus_per_actor=0.5, batch_size=2,
                             diagnostics=True)
    rows = _rows(out)
    assert len(list(out.glob("*.parquet"))) == 1  # 7 rows: one part file (ROWS_PER_FILE), not one per block
    assert ds.count() == 7 and sorted(rows) == sorted(
        ["part0/0.png", "part1/1.png", "part0/2.png", "part1/3.png", "part0/4.png", "part1/5.png", "part0/corrupt.png"])
    # every actor found the labels the preparation encoded (an actor that had to encode fails at start-up)
    assert {r["labels_encoded"] for r in rows.values()} == {0}
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 6
    expected = _engine_rows(config, {k: folder / k for k in rows if "corrupt" not in k})
    for k, exp in expected.items():
        _same(rows[k], exp)
    assert "corrupt.png" in rows["part0/corrupt.png"]["error"] and rows["part0/corrupt.png"]["positive"] == ""

    # an interrupted run: one part file lost; the CLI's rerun redoes exactly its rows
    parts = sorted(out.glob("*.parquet"))
    lost = set(_rows_of(parts[0]))
    parts[0].unlink()
    args = [str(folder), "--ray", "--parquet", str(out), *_cli_args(config, small_data_dir)]
    assert main(args) == 1  # the corrupt image is reported as failed
    err = capsys.readouterr().err
    assert f"{len(lost)} new rows, 7 rows in {out}, 1 failed" in err
    again = _rows(out)
    assert sorted(again) == sorted(rows)
    for k in expected:
        _same(again[k], expected[k])
    # a rerun adds nothing
    n_parts = len(list(out.glob("*.parquet")))
    main(args)
    assert "0 new rows, 7 rows" in capsys.readouterr().err
    assert len(list(out.glob("*.parquet"))) == n_parts and len(_rows(out)) == 7


def _cli_args(config: dict, small_data_dir: Path, mode: str = CALL["mode"]) -> list:
    return ["--mode", mode, "--min-flavors", "2", "--max-flavors", "6", "--negative-count", "4",
            "--clip-model", config["clip_model"], "--caption-model", config["caption_model"],
            "--cache-dir", config["cache_dir"], "--data-dir", str(small_data_dir), "--device", "cpu",
            "--batch-size", "2", "--actors", "1", "--quiet"]


def _rows_of(part: Path) -> list:
    import pyarrow.parquet as pq

    return pq.read_table(str(part), columns=["id"]).column("id").to_pylist()


def test_parquet_and_webdataset_sources(local_ray, config, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from interrogator_core.ray import interrogate_dataset

    blobs = {f"k{i}": _png(30 + i) for i in range(3)}
    expected = _engine_rows(config, {k: Image.open(io.BytesIO(b)) for k, b in blobs.items()})
    # Parquet with an HF-style image struct and no id column: ids are the images' sha256
    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"image": [{"bytes": b, "path": f"{k}.png"} for k, b in blobs.items()]}), str(src))
    # WebDataset shard: key/png samples (plus a caption file WebDataset users often have)
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for k, b in blobs.items():
            for name, data in ((f"{k}.png", b), (f"{k}.txt", b"a caption")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    import hashlib

    sha = {"sha256:" + hashlib.sha256(b).hexdigest(): k for k, b in blobs.items()}
    for source, key in ((src, sha.__getitem__), (shard, str)):
        rows = {r["id"]: r for r in interrogate_dataset(source, config, output=tmp_path / f"out-{source.stem}",
                                                         actors=1, batch_size=3).take_all()}
        assert len(rows) == 3
        for rid, row in rows.items():
            _same(row, expected[key(rid)])


def test_sidecars_are_written_per_row_and_error_rows_are_skipped(tmp_path):
    from interrogator_core.dataset import sidecar_names, write_sidecars

    rows = {"id": ["a.png", "sub/b.png", "bad.png"], "positive": ["pos a", "", None],
            "negative": ["neg a", "neg b", None], "caption": ["cap a", "cap b", None],
            "error": [None, None, "bad.png is not a readable image"]}
    names = sidecar_names(tmp_path, rows["id"])
    assert write_sidecars(rows, names, "best") == [str(tmp_path / "a.txt"), str(tmp_path / "sub" / "b.txt"), None]
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "pos a\n"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "cap b\n"  # no positive: caption
    assert not (tmp_path / "bad.txt").exists()
    write_sidecars(rows, names, "negative")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "neg a\n"
    assert not list(tmp_path.rglob("*.tmp"))


def test_stage_rows_carry_every_prompt_of_a_new_target(config, registry_to_tiny):
    """Issue 19: a target's prompts by encoder (HiDream: clip_l, clip_g, t5, llama) are the ``prompts`` field of
    each row (a JSON object: the Parquet column holds them whatever the target)."""
    stage = PromptStage({**config, "clip_model": None, "target": "hidream"})
    rows = stage({"id": np.array(["a"]), "image": np.array([_png(0, 40)], dtype=object)})
    prompts = json.loads(rows["prompts"][0])
    assert set(prompts) == {"clip_l", "clip_g", "t5", "llama"} and all(prompts.values())
    assert rows["caption"][0] in prompts["llama"] and rows["error"][0] is None


def test_sidecar_names_follow_the_batch_rule(tmp_path):
    """One rule for the CLI, the Batch tab and Ray (issue 21.4): of a.jpg and a.png, a.txt and a.png.txt."""
    from interrogator_core.batch import assign_sidecars
    from interrogator_core.dataset import existing_ids, sidecar_names

    ids = ["a.png", "a.jpg", "sub/c.png", "b.webp"]
    names = sidecar_names(tmp_path, ids)
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in names.items()} == {
        "a.jpg": "a.txt", "a.png": "a.png.txt", "sub/c.png": "sub/c.txt", "b.webp": "b.txt"}
    batch_rule, _ = assign_sidecars([tmp_path / i for i in ids])
    assert sorted(map(str, batch_rule.values())) == sorted(map(str, names.values()))
    (tmp_path / "a.txt").write_text("done")
    assert existing_ids(tmp_path, "sidecars", ids) == {"a.jpg"}  # a.png's own sidecar is a.png.txt


def test_pool_problem_keeps_a_cpu_for_reads_and_counts_gpus():
    """Issue 21.5: actors that take every CPU (or more GPUs than there are) would hang Ray without a word."""
    from interrogator_core.dataset import pool_problem

    assert pool_problem({"CPU": 2.0}, 1, 1, 0) is None
    assert pool_problem({"CPU": 2.0}, 2, 0.5, 0) is None
    problem = pool_problem({"CPU": 2.0}, 2, 1, 0)
    assert "2 actors x 1 CPUs" in problem and "--actors 1" in problem and "cpus_per_actor=0.5" in problem
    assert "\n" not in problem
    assert "--actors" not in pool_problem({"CPU": 1.0}, 1, 1, 0)  # no actor fits: fewer CPUs or a bigger cluster
    problem = pool_problem({"CPU": 16.0, "GPU": 1.0}, 2, 1, 1)
    assert "need 2 GPUs" in problem and "at most 1 actor (--actors 1)" in problem and "--gpus-per-actor 0.5" in problem
    assert "GPU" in pool_problem({"CPU": 16.0}, 1, 1, 1)


def test_cli_ray_sidecars_follow_the_batch_rule_and_a_jsonl_folder_reruns(local_ray, config, small_data_dir, tmp_path,
                                                                          capsys):
    """Issue 21.4: of a.jpg and a.png, a.txt and a.png.txt (as the CLI's folder batch names them), and the count
    said is the files written. Issue 21.3: ``--ray --jsonl DIR`` run again resumes (adds nothing)."""
    from interrogator_core.batch import BatchWriter, collect_images
    from interrogator_core.cli import main

    imgs = tmp_path / "side"
    imgs.mkdir()
    Image.open(io.BytesIO(_png(1))).save(imgs / "a.jpg")
    (imgs / "a.png").write_bytes(_png(2))
    (imgs / "b.png").write_bytes(_png(3))
    args = [str(imgs), "--ray", "--txt", "skip", *_cli_args(config, small_data_dir, mode="negative")]
    assert main(args) == 0
    assert "3 sidecars written, 0 failed" in capsys.readouterr().err
    assert sorted(p.name for p in imgs.glob("*.txt")) == ["a.png.txt", "a.txt", "b.txt"]
    writer = BatchWriter(imgs, output="txt")
    writer.pending(collect_images([imgs]))
    assert {writer.sidecar(i).name for i in collect_images([imgs])} == {"a.png.txt", "a.txt", "b.txt"}
    writer.close()
    assert main(args) == 0
    assert "0 sidecars written, 0 failed" in capsys.readouterr().err

    out = tmp_path / "jsonl"
    args = [str(imgs), "--ray", "--jsonl", str(out), *_cli_args(config, small_data_dir, mode="negative")]
    assert main(args) == 0
    assert f"3 new rows, 3 rows in {out}, 0 failed" in capsys.readouterr().err
    assert main(args) == 0  # the rerun: a folder is the right output, nothing is repeated
    assert f"0 new rows, 3 rows in {out}, 0 failed" in capsys.readouterr().err


def test_pool_and_output_are_checked_before_any_work(local_ray, config, small_data_dir, tmp_path, capsys):
    """Issue 21.5 / 21.6: two 1-CPU actors on 2 CPUs would leave Ray's Parquet read no CPU (a silent hang); an
    output that is a file fails only after the work. Both are refused before the label step (no cache file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from interrogator_core.cli import main
    from interrogator_core.ray import interrogate_dataset
    from interrogator_core.usage import UsageError

    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"id": ["x", "y"], "image": [_png(5), _png(6)]}), str(src))
    with pytest.raises(UsageError, match=r"2 actors x 1 CPUs .*--actors 1"):
        interrogate_dataset(src, config, output=tmp_path / "out", actors=2)
    with pytest.raises(UsageError, match="is a file; give a folder"):
        interrogate_dataset(src, config, output=src)
    with pytest.raises(UsageError, match="beside local image files"):
        interrogate_dataset(src, config, output=tmp_path / "txt", fmt="sidecars")
    err = _usage_error(capsys, [str(src), "--ray", "--parquet", str(tmp_path / "out"),
                                *_cli_args(config, small_data_dir)[:-3], "--actors", "2", "--quiet"])
    assert "--actors 1" in err and "wait forever" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_parquet_parts_are_few_and_a_crash_resumes_every_row_once(local_ray, config, tmp_path):
    """Issue 21.8: 200 rows in a handful of part files (not one per block of 4), and a run that lost a part file
    and left one cut short (a kill mid-write) ends, when run again, with every row exactly once."""
    from interrogator_core.ray import interrogate_dataset

    src = tmp_path / "many"
    for i in range(200):
        sub = src / f"p{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:03d}.png").write_bytes(_png(i, 8, 8))
    cfg = {**config, "mode": "negative"}  # CLIP only: 200 rows stay quick on 2 CPUs
    out = tmp_path / "out"
    interrogate_dataset(src, cfg, output=out, actors=1, batch_size=4, rows_per_file=50)
    sizes = {p: len(_rows_of(p)) for p in sorted(out.glob("*.parquet"))}
    assert sum(sizes.values()) == 200 and 3 <= len(sizes) <= 6, sizes
    assert sum(1 for n in sizes.values() if n < 50) <= 1, sizes  # only a run's last part may be short
    lost, cut = list(sizes)[:2]
    lost.unlink()
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    again = interrogate_dataset(src, cfg, output=out, actors=1, batch_size=4, rows_per_file=50)
    assert again.count() == 200
    assert len(_rows(out)) == 200  # each id once (_rows checks)
    assert (out / (cut.name + ".incomplete")).is_file()


def test_a_tagger_through_ray_gives_the_engines_tag_rows(local_ray, config, folder, tmp_path):
    """Issue 20.5: an image tagger folder as the caption model of a Ray run, with its options (excluded tags
    gone), gives the single-process engine's rows."""
    import math

    from interrogator_core import TaggerOptions
    from interrogator_core.ray import interrogate_dataset
    from interrogator_core.testing import TINY_TAGS, make_tiny_tagger

    scores = {"1girl": 0.95, "solo": 0.9, "long_hair": 0.6, "hatsune_miku": 0.92}
    tagger = make_tiny_tagger(tmp_path / "tagger", head_bias=[
        math.log(p / (1 - p)) for p in (scores.get(name, 0.1) for name, _ in TINY_TAGS)])
    config = {**config, "caption_model": str(tagger), "tagger_options": TaggerOptions(exclude="long_hair")}
    out = tmp_path / "out"
    interrogate_dataset(folder, config, output=out, actors=1, cpus_per_actor=0.5, batch_size=3)
    rows = _rows(out)
    expected = _engine_rows(config, {k: folder / k for k in rows if "corrupt" not in k})
    assert len(expected) == 6
    for k, exp in expected.items():
        _same(rows[k], exp)
        assert rows[k]["caption"] == "hatsune miku, 1girl, solo" and rows[k]["positive"].startswith("hatsune miku")
