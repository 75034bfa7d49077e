"""Benchmark: the plain engine (what the CLI runs) vs Ray Data with 1 and 2 actors, same folder, same models.

    python bench/bench_ray.py [--device cpu|cuda] [--images 100] [--clip tiny|ViT-B-32] [--mode fast]

Needs Ray (``pip install .[ray]``). Random-weight models (the tiny test CLIP or a real architecture such as
ViT-B-32 with random weights, and the tiny BLIP), a label subset whose cache is built before any timing, and
``--images`` random 224x224 PNGs in one folder. Each row is the wall time of one whole run, model loading
included (the CLI's start-up; the actors' start-up under Ray), after Ray itself is up. Ray writes Parquet
(``parts``: the part files written, at least ``ROWS_PER_FILE`` rows each).
On CPU, Ray gets one logical CPU more than the machine has (a slot for its read and write tasks) and each
actor ``cores / actors`` CPUs, so torch uses the same number of threads in total on every path; on CUDA the
actors share the one GPU (``1 / actors`` each). Prints a table and writes bench/results/bench-ray-<device>.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORK = ROOT / ".cache" / "bench-ray"


def _prepare(args) -> dict:
    import numpy as np
    from PIL import Image

    from interrogator_core.labels import DATA_DIR, load_list
    from interrogator_core.testing import make_tiny_blip, make_tiny_clip

    WORK.mkdir(parents=True, exist_ok=True)
    clip_dir = WORK / f"clip-{args.clip}"
    if not (clip_dir / "open_clip_model.safetensors").is_file():
        make_tiny_clip(clip_dir, arch=None if args.clip == "tiny" else args.clip)
    blip_dir = WORK / "blip"
    if not (blip_dir / "config.json").is_file():
        make_tiny_blip(blip_dir)
    data = WORK / "data"
    data.mkdir(exist_ok=True)
    for name, n in (("mediums", None), ("movements", None), ("negative", None), ("flavors", args.flavors),
                    ("artists", 32)):
        (data / f"{name}.txt").write_text("\n".join(load_list(DATA_DIR / f"{name}.txt")[:n]), encoding="utf-8")
    images = WORK / f"images-{args.images}"
    if not images.is_dir() or len(list(images.glob("*.png"))) != args.images:
        shutil.rmtree(images, ignore_errors=True)
        rng = np.random.default_rng(0)
        for i in range(args.images):
            sub = images / f"part{i % 4}"
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(sub / f"{i:05d}.png")
    return {"clip_model": str(clip_dir), "caption_model": str(blip_dir), "data_dir": str(data),
            "cache_dir": str(WORK / "cache"), "images": str(images)}


def _engine(cfg: dict, args) -> float:
    """The CLI's path: one Interrogator, ``run_batch`` over the folder (no output file)."""
    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost
    from interrogator_core.batch import collect_images, run_batch

    start = time.perf_counter()
    engine = {k: cfg[k] for k in ("clip_model", "caption_model", "data_dir", "cache_dir")}
    ci = Interrogator(InterrogatorConfig(**engine), StandaloneHost(device=args.device))
    summary = run_batch(ci, collect_images([cfg["images"]]), None, mode=args.mode, chunk_size=args.batch_size)
    assert summary.written == args.images and not summary.failed, summary.to_text()
    return time.perf_counter() - start


def _ray(cfg: dict, args, actors: int) -> tuple:
    """(seconds, Parquet part files written)."""
    from interrogator_core.ray import interrogate_dataset

    out = WORK / f"out-{actors}"
    shutil.rmtree(out, ignore_errors=True)
    stage = {k: cfg[k] for k in ("clip_model", "caption_model", "data_dir", "cache_dir")}
    stage.update(mode=args.mode, device=args.device)
    cuda = args.device.startswith("cuda")
    start = time.perf_counter()
    rows = interrogate_dataset(cfg["images"], stage, output=out, actors=actors,
                               gpus_per_actor=1 / actors if cuda else 0,
                               cpus_per_actor=1 if cuda else max(1, (os.cpu_count() or 1) // actors),
                               batch_size=args.batch_size)
    took = time.perf_counter() - start
    assert rows.count() == args.images
    return took, len(list(out.glob("*.parquet")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--clip", default="tiny", help="tiny, or an open_clip architecture (random weights), e.g. ViT-B-32")
    p.add_argument("--mode", default="fast")
    p.add_argument("--flavors", type=int, default=256, help="flavors in the label subset")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--actors", type=int, nargs="*", default=[1, 2])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

    import ray

    from interrogator_core.dataset import prepare_label_cache

    cfg = _prepare(args)
    prepare_label_cache({k: cfg[k] for k in ("clip_model", "caption_model", "data_dir", "cache_dir")},
                        with_files=False)  # every path below starts from a warm label cache
    cpus = os.cpu_count() or 1
    ray.init(num_cpus=cpus + (0 if args.device.startswith("cuda") else 1), include_dashboard=False,
             log_to_driver=False, logging_level=logging.ERROR)
    rows = [{"path": "engine (CLI)", "actors": "-", "seconds": _engine(cfg, args), "parts": "-"}]
    for n in args.actors:
        seconds, parts = _ray(cfg, args, n)
        rows.append({"path": "Ray Data", "actors": n, "seconds": seconds, "parts": parts})
    ray.shutdown()
    for r in rows:
        r["images_per_s"] = args.images / r["seconds"]
    header = f"{'path':<14} {'actors':>6} {'seconds':>8} {'images/s':>9} {'parts':>6}"
    print(f"{args.images} images, {args.clip} CLIP (random weights), tiny BLIP, mode {args.mode}, "
          f"{args.flavors} flavors, device {args.device}, {cpus} CPUs")
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['path']:<14} {str(r['actors']):>6} {r['seconds']:>8.1f} {r['images_per_s']:>9.2f} "
              f"{str(r['parts']):>6}")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"bench-ray-{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "cpus": cpus, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
