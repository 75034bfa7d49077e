"""Reliability matrix (core side): odd images, bad files, label-list quirks, concurrency, memory."""
import io
import multiprocessing
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from interrogator_core import ImageError
from interrogator_core.batch import collect_images, run_batch
from interrogator_core.images import open_image, to_rgb
from interrogator_core.labels import read_user_list

RNG = np.random.default_rng(7)


def _noise(h, w, c=3):
    return RNG.integers(0, 255, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)


def _rgba():
    return Image.new("RGBA", (40, 30), (200, 100, 50, 128))


def _la():
    return Image.new("LA", (40, 30), (100, 128))


def _p_transparent():
    im = Image.new("RGB", (40, 30), (10, 20, 30)).quantize(4)
    im.info["transparency"] = im.getpixel((0, 0))
    return im


def _gray16_png():
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 48), 51400, np.uint16)).save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()))


def _cmyk_jpeg():
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 50, 20)).convert("CMYK").save(buf, format="JPEG", quality=95)
    return Image.open(io.BytesIO(buf.getvalue()))


def _animated(fmt):
    frames = [Image.fromarray(np.full((24, 24, 3), v, np.uint8)) for v in (10, 200, 90)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
    im = Image.open(io.BytesIO(buf.getvalue()))
    im.seek(2)  # a caller left it on a later frame
    return im


def _exif_rotated():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif)
    return Image.open(io.BytesIO(buf.getvalue()))


def _on_white(rgb, alpha):
    a = alpha / 255
    return tuple(c * a + 255 * (1 - a) for c in rgb)


#: kind → (image, (expected size, expected mean RGB, tolerance)); colors are what a viewer shows
GOOD_IMAGES = {
    "rgba": (_rgba, ((40, 30), _on_white((200, 100, 50), 128), 2)),
    "la": (_la, ((40, 30), _on_white((100, 100, 100), 128), 2)),
    "p_transparency": (_p_transparent, ((40, 30), (255, 255, 255), 0)),
    "grayscale": (lambda: Image.new("L", (30, 30), 77), ((30, 30), (77, 77, 77), 0)),
    "gray16_png": (_gray16_png, ((48, 32), (200, 200, 200), 1)),
    "cmyk_jpeg": (_cmyk_jpeg, ((32, 32), (200, 50, 20), 12)),
    "one_pixel": (lambda: Image.new("RGB", (1, 1), (9, 9, 9)), ((1, 1), (9, 9, 9), 0)),
    "very_wide": (lambda: Image.new("RGB", (16000, 200), (120, 30, 30)), ((16000, 200), (120, 30, 30), 0)),
    "animated_gif": (lambda: _animated("GIF"), ((24, 24), (10, 10, 10), 1)),
    "animated_webp": (lambda: _animated("WEBP"), ((24, 24), (10, 10, 10), 6)),
    "exif_rotated": (_exif_rotated, ((20, 40), (127.5, 127.5, 127.5), 8)),
    "float_F": (lambda: Image.fromarray(np.full((20, 20), 0.25, np.float32)), ((20, 20), (64, 64, 64), 1)),
    "bilevel": (lambda: Image.new("1", (16, 16), 1), ((16, 16), (255, 255, 255), 0)),
}


@pytest.mark.parametrize("kind", sorted(GOOD_IMAGES))
def test_odd_images_become_rgb(kind):
    make, (size, color, tol) = GOOD_IMAGES[kind]
    im = to_rgb(make(), kind)
    assert im.mode == "RGB" and im.size == size
    mean = np.asarray(im, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - np.array(color)).max() <= tol + 0.5, (kind, mean, color)


def test_transparency_is_flattened_on_white():
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(im).getpixel((0, 0)) == (255, 255, 255)


def test_animation_uses_the_first_frame():
    assert to_rgb(_animated("GIF")).getpixel((0, 0))[0] < 50


def test_exif_orientation_is_applied():
    im = to_rgb(_exif_rotated())
    assert im.size == (20, 40)


def test_16_bit_range_is_kept():
    arr = np.asarray(to_rgb(Image.fromarray(np.array([[0, 65535]], np.uint16))))
    assert arr.max() == 255 and arr.min() == 0  # scaled by the bit depth, not clipped to white


BAD_FILES = {
    "zero_bytes": b"",
    "text_with_png_name": b"hello, I am not a picture",
    "truncated_png": None,  # filled below
    "html_with_jpg_name": b"<html><body>404</body></html>",
}


def _truncated_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, format="PNG")
    return buf.getvalue()[:200]


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_raise_one_error_naming_the_file(tmp_path, kind):
    data = BAD_FILES[kind] if BAD_FILES[kind] is not None else _truncated_png()
    path = tmp_path / f"{kind}.{'jpg' if 'jpg' in kind else 'png'}"
    path.write_bytes(data)
    with pytest.raises(ImageError) as e:
        open_image(path)
    assert str(path) in str(e.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        open_image(tmp_path / "nope.png")


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)
    with pytest.raises(ImageError, match="bomb.png"):
        open_image(path)


def test_batch_skips_bad_images_and_keeps_the_rest(make_interrogator, tmp_path, images):
    images[0].save(tmp_path / "good1.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    (tmp_path / "empty.jpg").write_bytes(b"")
    images[1].save(tmp_path / "good2.png")
    done = []
    summary = run_batch(make_interrogator(), collect_images([tmp_path]), None, mode="fast", chunk_size=4,
                        on_result=lambda path, r: done.append(path.name))
    assert sorted(done) == ["good1.png", "good2.png"]
    assert sorted(os.path.basename(p) for p, _ in summary.failed) == ["bad.png", "empty.jpg"]


# -- label lists --------------------------------------------------------------------------------------------
LIST_CASES = {
    "bom": ("\ufeffalpha\nbeta\n".encode("utf-8"), ["alpha", "beta"]),
    "crlf": (b"alpha\r\nbeta\r\n", ["alpha", "beta"]),
    "cr_only": (b"alpha\rbeta\r", ["alpha", "beta"]),
    "blank_lines": (b"\n\nalpha\n   \n\tbeta\n\n", ["alpha", "beta"]),
    "duplicates": (b"alpha\nbeta\nalpha\n  alpha  \n", ["alpha", "beta"]),
    "very_long_line": (b"alpha\n" + b"x" * 5000 + b"\nbeta\n", ["alpha", "beta"]),
    "non_utf8": (b"caf\xe9\nbeta\n", ["caf\ufffd", "beta"]),
    "inner_whitespace": (b"a   b\tc\n", ["a b c"]),
}


@pytest.mark.parametrize("kind", sorted(LIST_CASES))
def test_user_label_lists_are_cleaned(tmp_path, kind):
    data, expected = LIST_CASES[kind]
    path = tmp_path / "list.txt"
    path.write_bytes(data)
    assert read_user_list(path) == expected


# -- faults and memory ----------------------------------------------------------------------------------------
def test_two_threads_share_one_interrogator(make_interrogator, images):
    ci = make_interrogator()
    expected = [r.positive for r in ci.interrogate(images, mode="fast")]
    out, errors = {}, []

    def work(i):
        try:
            out[i] = [r.positive for r in ci.interrogate(images, mode="fast")]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and out == {0: expected, 1: expected}


def _writer(path_str, n):
    from interrogator_core.cache import LabelCache

    cache = LabelCache(path_str)
    labels = [f"label {i}" for i in range(200)]
    for k in range(n):
        cache.save("m", "flavors", labels, torch.full((200, 64), float(k % 3 + 1)))


def test_concurrent_cache_writers_never_leave_a_torn_file(tmp_path):
    from interrogator_core.cache import LabelCache

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 30)) for _ in range(2)]
    for p in procs:
        p.start()
    cache = LabelCache(tmp_path)
    labels = [f"label {i}" for i in range(200)]
    reads = 0
    while any(p.is_alive() for p in procs) or reads < 5:
        got = cache.load("m", "flavors", labels, 64)
        if got is not None:
            reads += 1
            assert got.shape == (200, 64) and len(set(got[:, 0].tolist())) == 1  # one writer's whole file
        if not any(p.is_alive() for p in procs) and reads == 0:
            break
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert reads > 0 and not list(tmp_path.glob("*.tmp"))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_rss_is_stable_over_50_calls(make_interrogator, images):
    ci = make_interrogator()
    for _ in range(5):
        ci.interrogate(images[:1], mode="fast")
    before = _rss_mb()
    for _ in range(50):
        ci.interrogate(images[:1], mode="fast")
    assert _rss_mb() - before < 40  # bounded growth: allocator noise, no per-call leak


# -- ComfyUI IMAGE tensors -------------------------------------------------------------------------------------
# (IMAGE batches of every shape, out-of-range and NaN/inf values: tests/test_comfyui_nodes.py)
def test_comfyui_rgba_tensor_is_flattened_on_white():
    from interrogator_hosts.comfyui import tensor_to_pil

    assert tensor_to_pil(torch.zeros(1, 2, 2, 4))[0].getpixel((0, 0)) == (255, 255, 255)


def test_comfyui_bad_tensor_shape_is_a_clear_error():
    from interrogator_hosts.comfyui import tensor_to_pil

    with pytest.raises(ValueError, match="shape"):
        tensor_to_pil(torch.zeros(2, 3))
