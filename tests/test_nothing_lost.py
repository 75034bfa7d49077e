"""Nothing lost, nothing mixed up (issue 13): crash-safe outputs, one output per image, cache identity, bit
depths and input types, clear errors before any model loads, and a prompt Cancel during label encoding."""
import errno
import io
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interrogator_core import ImageError, InterrogatorError, ModelNotFoundError, UnknownNameError
from interrogator_core import fileio
from interrogator_core.batch import collect_images, run_batch
from interrogator_core.cli import main
from interrogator_core.images import load_images, open_image, to_rgb


def _args(tiny_models, small_data_dir, tmp_path, *extra):
    return [*extra, "--clip-model", str(tiny_models["clip"]), "--caption-model", "none",
            "--cache-dir", str(tmp_path / "cache"), "--data-dir", str(small_data_dir), "--quiet", "--mode", "fast"]


@pytest.fixture
def three(tmp_path, images):
    d = tmp_path / "imgs"
    d.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        images[i].save(d / name)
    return d


def _jsonl_files(path: Path) -> list:
    return [json.loads(line)["file"] for line in path.read_text(encoding="utf-8").splitlines()]


# -- appended outputs are crash-safe ------------------------------------------------------------------------------
def test_disk_full_is_a_clear_error_and_resume_ends_with_every_image_once(tiny_models, small_data_dir, tmp_path,
                                                                          three, monkeypatch, capsys):
    out = tmp_path / "out.jsonl"
    real_write, rows = fileio._write, [0]

    def full_disk(fd, data):
        if b'"file"' in bytes(data):  # a jsonl row (journal lines are bare names)
            rows[0] += 1
            if rows[0] == 2:  # the second row: half of it lands, then the disk is full
                real_write(fd, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(fileio, "_write", full_disk)
    args = _args(tiny_models, small_data_dir, tmp_path, str(three), "--jsonl", str(out), "--resume",
                 "--batch-size", "1")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "No space left on device" in err and "disk is full" in err
    assert "Traceback" not in err
    assert _jsonl_files(out) == ["a.png"]  # the torn half row was rolled back
    monkeypatch.setattr(fileio, "_write", real_write)
    assert main(args) == 0
    assert sorted(_jsonl_files(out)) == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_after_a_torn_last_line_has_every_image_once(tiny_models, small_data_dir, tmp_path, three, fmt,
                                                            capsys, caplog):
    import csv

    out = tmp_path / f"out.{fmt}"
    args = _args(tiny_models, small_data_dir, tmp_path, str(three), f"--{fmt}", str(out), "--resume")
    assert main(args) == 0
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 25])  # a crash while the last row was being written
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert any("incomplete last line" in r.getMessage() for r in caplog.records)
    if fmt == "jsonl":
        files = _jsonl_files(out)  # every line parses
    else:
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert rows[0][0] == "file" and all(len(r) == len(rows[0]) for r in rows)
        files = [r[0] for r in rows[1:]]
    assert sorted(files) == ["a.png", "b.png", "c.png"]


def test_failed_append_leaves_only_whole_records(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    with fileio.RecordFile(path) as f:
        f.append('{"n": 1}')

        def full(fd, data):
            os.write(fd, bytes(data)[:3])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(fileio, "_write", full)
        with pytest.raises(InterrogatorError, match="rows.jsonl.*No space left"):
            f.append('{"n": 2}')
    assert path.read_text() == '{"n": 1}\n'


# -- one output per image -------------------------------------------------------------------------------------------
def test_same_stem_images_get_their_own_sidecars(tiny_models, small_data_dir, tmp_path, images, capsys):
    d = tmp_path / "imgs"
    d.mkdir()
    images[0].save(d / "a.png")
    images[1].save(d / "a.jpg")
    assert main(_args(tiny_models, small_data_dir, tmp_path, str(d), "--txt", "overwrite")) == 0
    err = capsys.readouterr().err
    # the documented rule: sorted order, the first keeps a.txt, a later one gets <full name>.txt
    assert (d / "a.txt").read_text().strip() and (d / "a.png.txt").read_text().strip()
    assert "a.png" in err and "a.png.txt" in err
    rows = tmp_path / "rows.jsonl"
    assert main(_args(tiny_models, small_data_dir, tmp_path, str(d), "--jsonl", str(rows))) == 0
    prompts = {json.loads(l)["file"]: json.loads(l)["prompt"] for l in rows.read_text().splitlines()}
    assert (d / "a.txt").read_text().strip() == prompts["a.jpg"]
    assert (d / "a.png.txt").read_text().strip() == prompts["a.png"]


def test_an_image_named_twice_is_done_once(tiny_models, small_data_dir, tmp_path, three, monkeypatch, capsys):
    """A folder and a file inside it, and two spellings of one path: each image once in jsonl and sidecars."""
    out = tmp_path / "out.jsonl"
    monkeypatch.chdir(three.parent)
    twice = [str(three), str(three / "a.png"), "imgs/./b.png", str(three / ".." / "imgs" / "c.png")]
    assert main(_args(tiny_models, small_data_dir, tmp_path, *twice, "--jsonl", str(out))) == 0
    assert sorted(_jsonl_files(out)) == ["a.png", "b.png", "c.png"]
    prompt_a = next(json.loads(l)["prompt"] for l in out.read_text().splitlines() if '"a.png"' in l)
    assert main(_args(tiny_models, small_data_dir, tmp_path, *twice, "--txt", "append")) == 0
    assert (three / "a.txt").read_text().strip() == prompt_a  # appended once, not "prompt, prompt"
    assert "3 done, 0 skipped" in capsys.readouterr().err


# -- cache identity ---------------------------------------------------------------------------------------------------
def test_two_local_clip_folders_with_one_name_do_not_share_a_cache(tmp_path, small_data_dir):
    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost
    from interrogator_core.testing import make_tiny_clip

    first = make_tiny_clip(tmp_path / "one" / "clip", seed=0)
    second = make_tiny_clip(tmp_path / "two" / "clip", seed=1)

    def tables(folder, cache):
        ci = Interrogator(InterrogatorConfig(clip_model=str(folder), caption_model=None, cache_dir=cache,
                                             data_dir=small_data_dir), StandaloneHost(device="cpu"))
        ci.load(caption=False)
        return ci.main.clip.cache_name, ci.main.tables().tables["flavors"].embeds

    shared = tmp_path / "cache"
    name1, _ = tables(first, shared)
    name2, emb2 = tables(second, shared)
    _, own2 = tables(second, tmp_path / "own-cache")
    assert name1 != name2 and name1.startswith("clip-") and name2.startswith("clip-")
    assert torch.equal(emb2, own2), "the second model must rank with its own label embeddings"


def test_weights_fingerprint_follows_content_not_path(tmp_path, tiny_models):
    from safetensors.torch import load_file, save_file

    from interrogator_core.cache import weights_fingerprint

    src = tiny_models["clip"] / "open_clip_model.safetensors"
    copy = tmp_path / "copy.safetensors"
    shutil.copy(src, copy)
    os.utime(copy, (1, 1))
    assert weights_fingerprint(copy) == weights_fingerprint(src)
    sd = load_file(str(src))
    middle = sorted(sd)[len(sd) // 2]
    sd[middle] = sd[middle] + 1e-3  # one tensor in the middle of the file changes
    changed = tmp_path / "changed.safetensors"
    save_file(sd, str(changed))
    assert changed.stat().st_size == src.stat().st_size
    assert weights_fingerprint(changed) != weights_fingerprint(src)


def test_registry_name_found_locally_keeps_clip_interrogator_cache_name(tmp_path):
    from interrogator_core.clip import resolve_clip

    (tmp_path / "ViT-B-32_openai.safetensors").write_bytes(b"x")
    assert resolve_clip("ViT-B-32/openai", [tmp_path]).cache_name == "ViT-B-32/openai"
    assert resolve_clip("ViT-B-32/openai").cache_name == "ViT-B-32/openai"


# -- images: bit depth, every PIL mode, input types ------------------------------------------------------------------
RED = (200, 50, 20)


def _mode_cases():
    src = Image.new("RGB", (6, 4), RED)
    q = src.quantize(4)
    p_transparent = q.copy()
    p_transparent.info["transparency"] = q.getpixel((0, 0))

    def u16(mode, value):
        dtype = ">u2" if mode == "I;16B" else "<u2"
        return Image.frombytes(mode, (6, 4), np.full((4, 6), value, dtype).tobytes())

    return {
        "1": (Image.new("1", (6, 4), 1), (255, 255, 255)),
        "L": (Image.new("L", (6, 4), 100), (100, 100, 100)),
        "LA": (Image.new("LA", (6, 4), (100, 255)), (100, 100, 100)),
        "LA_transparent": (Image.new("LA", (6, 4), (0, 0)), (255, 255, 255)),
        "La": (Image.new("La", (6, 4), (100, 255)), (100, 100, 100)),
        "P": (q, RED),
        "P_transparency": (p_transparent, (255, 255, 255)),
        "PA": (q.convert("PA"), RED),
        "RGB": (src, RED),
        "RGBA": (Image.new("RGBA", (6, 4), RED + (255,)), RED),
        "RGBA_transparent": (Image.new("RGBA", (6, 4), (0, 0, 0, 0)), (255, 255, 255)),
        "RGBa": (Image.new("RGBa", (6, 4), RED + (255,)), RED),
        "RGBX": (src.convert("RGBX"), RED),
        "CMYK": (src.convert("CMYK"), RED),
        "YCbCr": (src.convert("YCbCr"), RED),
        "LAB": (src.convert("LAB"), RED),
        "HSV": (src.convert("HSV"), RED),
        "I": (Image.new("I", (6, 4), 32896), (128, 128, 128)),
        "F": (Image.new("F", (6, 4), 0.5), (128, 128, 128)),
        "I;16": (u16("I;16", 32896), (128, 128, 128)),
        "I;16B": (u16("I;16B", 32896), (128, 128, 128)),
        "I;16L": (u16("I;16L", 32896), (128, 128, 128)),
        "I;16_white": (u16("I;16", 65535), (255, 255, 255)),
    }


@pytest.mark.parametrize("case", sorted(_mode_cases()))
def test_every_pil_mode_becomes_the_color_a_viewer_shows(case):
    image, expected = _mode_cases()[case]
    out = to_rgb(image, case)
    assert out.mode == "RGB" and out.size == (6, 4)
    got = np.asarray(out).reshape(-1, 3)
    assert np.abs(got.astype(int) - np.array(expected)).max() <= 3, (case, got[0], expected)


def test_16_bit_scales_by_bit_depth_not_by_the_images_range():
    dark = np.linspace(0, 4000, 64, dtype=np.uint16).reshape(8, 8)  # a dark 16-bit image stays dark
    out = np.asarray(to_rgb(Image.fromarray(dark)))
    assert out.max() <= 16
    uniform = np.full((8, 8), 40000, np.uint16)  # a uniform gray stays that gray, not black
    assert np.asarray(to_rgb(Image.fromarray(uniform)))[0, 0, 0] == round(40000 / 257)


def test_big_endian_16_bit_tiff_decodes(tmp_path):
    path = tmp_path / "be.tif"
    Image.frombytes("I;16B", (8, 8), np.full((8, 8), 51400, ">u2").tobytes()).save(path)
    assert Image.open(path).mode == "I;16B"
    assert open_image(path).getpixel((0, 0)) == (200, 200, 200)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_pixels_are_refused_clearly(bad):
    values = np.full((4, 4), 0.5, np.float32)
    values[1, 1] = bad
    with pytest.raises(ImageError, match="NaN or infinite"):
        to_rgb(Image.fromarray(values), "float image")
    with pytest.raises(ImageError, match="NaN or infinite"):
        load_images(values)
    with pytest.raises(ImageError, match="NaN or infinite"):
        load_images(torch.from_numpy(values))


def _png_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_api_accepts_arrays_tensors_and_bytes():
    rgb = np.random.default_rng(3).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(rgb))
    as_float = rgb.astype(np.float32) / 255.0
    inputs = {
        "numpy_hwc_uint8": rgb, "numpy_hwc_float": as_float, "torch_hwc": torch.from_numpy(as_float),
        "torch_chw": torch.from_numpy(as_float).permute(2, 0, 1), "torch_chw_uint8": torch.from_numpy(rgb).permute(2, 0, 1),
        "png_bytes": _png_bytes(rgb), "bytearray": bytearray(_png_bytes(rgb)),
    }
    for kind, value in inputs.items():
        out = load_images(value)
        assert len(out) == 1 and np.array_equal(np.asarray(out[0]), ref), kind
    batch = load_images(torch.from_numpy(np.stack([as_float, as_float])))  # a BHWC batch (ComfyUI's layout)
    assert len(batch) == 2
    assert len(load_images([rgb, _png_bytes(rgb), Image.fromarray(rgb)])) == 3


@pytest.mark.parametrize("bad", [None, 3, {"image": 1}, [None], np.zeros((4, 4), np.int64), np.zeros((2, 3, 4, 5, 6))])
def test_api_rejects_other_inputs_saying_what_is_accepted(bad):
    with pytest.raises(ImageError) as e:
        load_images(bad)
    assert "accepted" in str(e.value) or "supported" in str(e.value) or "expected" in str(e.value)


def test_interrogate_takes_an_array_like_the_pil_image(make_interrogator, images):
    ci = make_interrogator(caption_model=None)
    arr = np.asarray(images[0])
    a, b = ci.interrogate(arr, mode="fast")[0], ci.interrogate(images[0], mode="fast")[0]
    assert a.positive == b.positive
    with pytest.raises(ImageError, match="accepted"):
        ci.interrogate(None, mode="fast")


# -- folder walks: broken symlinks and loops are failures, not silence ------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")
def test_broken_symlinks_and_loops_are_reported_as_failed(make_interrogator, tmp_path, images):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    images[0].save(d / "good.png")
    os.symlink(d / "gone.png", d / "broken.png")
    os.symlink(d / "self.png", d / "self.png")
    os.symlink(d, d / "sub" / "loop")
    found = collect_images([d])
    summary = run_batch(make_interrogator(caption_model=None), found, None, mode="fast")
    reasons = {Path(p).name: r for p, r in summary.failed}
    assert summary.written == 1
    assert "broken symbolic link" in reasons["broken.png"]
    assert "loop" in reasons["self.png"] and "loop" in reasons["loop"]


# -- user tables and blocklists -----------------------------------------------------------------------------------------
def test_binary_and_folder_user_tables_are_skipped_with_a_warning(tmp_path, caplog):
    from interrogator_core.labels import user_tables

    (tmp_path / "good.txt").write_text("red\nblue\n")
    (tmp_path / "x.txt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "folder.txt").mkdir()
    with caplog.at_level(logging.WARNING):
        tables = user_tables(tmp_path)
    assert tables == {"good": ["red", "blue"]}
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "x.txt" in text and "binary" in text and "folder.txt" in text


def test_missing_blocklist_file_names_it(make_interrogator, images, tmp_path):
    ci = make_interrogator(caption_model=None, blocklist=str(tmp_path / "nope.txt"))
    with pytest.raises(InterrogatorError, match="nope.txt.*does not exist"):
        ci.interrogate(images[:1], mode="fast")


@pytest.mark.parametrize("mode", ["best", "classic", "fast", "negative"])
def test_a_blocklist_removing_every_label_keeps_prompts_well_formed(make_interrogator, small_data_dir, images, mode):
    from interrogator_core.labels import builtin_labels

    every = [l for labels in builtin_labels(small_data_dir).values() for l in labels if l]
    ci = make_interrogator(blocklist=every)
    r = ci.interrogate(images[:1], mode=mode, captions=["a caption"])[0]
    for prompt in (r.positive, r.negative):
        if prompt:
            assert all(part.strip() for part in prompt.split(", ")), repr(prompt)
            assert prompt == prompt.strip()
    if mode != "negative":
        assert r.positive == "a caption"


# -- clear errors in the Python API ------------------------------------------------------------------------------------
def test_missing_clip_folder_is_named(tmp_path):
    from interrogator_core.clip import resolve_clip

    missing = tmp_path / "my-clip"
    with pytest.raises(ModelNotFoundError, match=str(missing)):
        resolve_clip(str(missing))


def test_caption_mode_without_caption_model_is_an_error(make_interrogator, images):
    with pytest.raises(InterrogatorError, match="caption model"):
        make_interrogator(caption_model=None).interrogate(images[:1], mode="caption")


def test_mode_none_is_a_clear_error(make_interrogator, images):
    with pytest.raises(UnknownNameError, match="unknown mode None.*best"):
        make_interrogator().interrogate(images[:1], mode=None)


def test_caption_folder_without_tokenizer_files_is_an_error_at_load(tiny_models, tmp_path):
    from interrogator_core.caption import load_captioner

    folder = tmp_path / "blip"
    shutil.copytree(tiny_models["blip"], folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).exists():
            (folder / name).unlink()
    with pytest.raises(InterrogatorError, match="tokenizer"):
        load_captioner(str(folder))


# -- CLI: usage errors before any model loads --------------------------------------------------------------------------
@pytest.fixture
def no_model_loads(monkeypatch):
    import interrogator_core.cli as cli

    def refuse(*a, **k):
        raise AssertionError("a model was about to load before the arguments were checked")

    monkeypatch.setattr(cli, "Interrogator", refuse)


def _cli_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_cli_jsonl_path_that_is_a_folder(three, tmp_path, capsys, no_model_loads):
    rc, err = _cli_error(capsys, [str(three), "--jsonl", str(tmp_path)])
    assert rc == 2 and "is a folder" in err and "file name" in err


@pytest.mark.parametrize("device, words", [("cuda", "--device cpu"), ("cuda:7", "--device cpu"),
                                           ("gpu0", "unknown --device 'gpu0'"), ("potato", "use auto, cpu, cuda")])
def test_cli_bad_device(three, capsys, monkeypatch, no_model_loads, device, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, err = _cli_error(capsys, [str(three), "--device", device])
    assert rc == 2 and words in err


def test_cli_missing_blocklist(three, tmp_path, capsys, no_model_loads):
    rc, err = _cli_error(capsys, [str(three), "--blocklist", str(tmp_path / "nope.txt")])
    assert rc == 2 and "nope.txt does not exist" in err


def test_cli_read_only_output_folder(three, tmp_path, capsys, monkeypatch, no_model_loads):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = fileio.tempfile.TemporaryFile

    def refuse(*a, dir=None, **k):
        if dir is not None and Path(dir) in (ro, three):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(fileio.tempfile, "TemporaryFile", refuse)
    rc, err = _cli_error(capsys, [str(three), "--jsonl", str(ro / "out.jsonl")])
    assert rc == 2 and str(ro) in err and "Read-only file system" in err
    rc, err = _cli_error(capsys, [str(three), "--txt", "overwrite"])
    assert rc == 2 and str(three) in err and "Read-only" in err and "--jsonl" in err


# -- Cancel lands within a slice of label-encoding work ---------------------------------------------------------------
def test_cancel_during_label_encoding_stops_within_a_few_labels(tiny_models, tmp_path, monkeypatch):
    """A Cancel pressed while a 512-label batch is being encoded stops it before the batch ends."""
    from interrogator_core import Interrogator, InterrogatorConfig, Interrupted, StandaloneHost
    from interrogator_core import textenc

    data = tmp_path / "data"
    data.mkdir()
    words = ["red", "blue", "green", "tall", "small", "old", "new", "dark", "bright", "soft", "sharp", "warm"]
    flavors = [f"{a} {b} thing {i}" for i, (a, b) in enumerate((a, b) for a in words for b in words)] * 4
    flavors = [f"{f} v{i}" for i, f in enumerate(flavors)]  # 576 distinct labels: one 512-row batch and more
    for name in ("artists", "mediums", "movements", "negative"):
        (data / f"{name}.txt").write_text("x\n")
    (data / "flavors.txt").write_text("\n".join(flavors) + "\n")
    ticks = iter(range(10 ** 9))
    monkeypatch.setattr(textenc, "_clock", lambda: float(next(ticks)))  # every between-layers check is due

    state = {"requested": False, "after": 0, "finished": 0}

    def interrupt() -> bool:
        return state["requested"]

    ci = Interrogator(InterrogatorConfig(clip_model=str(tiny_models["clip"]), caption_model=None, cache_dir=None,
                                         data_dir=data), StandaloneHost(device="cpu", interrupt=interrupt))
    clip = ci.main.clip

    def count(module, inputs, output):
        rows = output.shape[0]
        if state["requested"]:
            state["after"] += rows
        state["finished"] += rows
        if state["finished"] >= 100 and not state["requested"]:
            state["requested"] = True  # the user presses Cancel in the middle of the first batch

    clip.text.tower.ln_final.register_forward_hook(count)
    with pytest.raises(Interrupted):
        ci.load(caption=False)
    assert state["requested"] and state["after"] <= 8, state


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_rewritten_files_keep_the_usual_permissions(tmp_path):
    fileio.atomic_write(tmp_path / "new.txt", "x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    old = tmp_path / "old.txt"
    old.write_text("a")
    old.chmod(0o640)
    fileio.atomic_write(old, "b")
    assert old.stat().st_mode & 0o777 == 0o640 and old.read_text() == "b"
