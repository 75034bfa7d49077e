"""Benchmark: Prompt Interrogator vs clip-interrogator 0.6.0, same run, same random-weight models.

    python bench/bench.py [--device cpu|cuda] [--images 2] [--intermediate 64] [--max-flavors 8]

Both sides get the same random-weight open_clip ViT-B-32 (real architecture, so the compute is real), the same
tiny BLIP caption model, the same label subsets and settings. Each side runs in its own subprocess (peak RSS
and peak VRAM are per side). Prints a table and writes bench/results/bench-<device>.json.

Measured:
* label-table build, cold cache (labels/s) on a subset of the real lists;
* seconds per image of each mode with a warm cache (the reference loads the very cache files ours wrote —
  they share the file format), fast/classic/negative/best;
* the final best-prompt similarity of both, computed afterwards with the model's own padded ``encode_text``;
* peak RSS (and peak VRAM on CUDA) of each side.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORK = ROOT / ".cache" / "bench"
CLIP_NAME = "ViT-B-32/bench"  # the reference needs ARCH/TAG; the cache files are named after it
MODES = ("fast", "classic", "negative", "best")


def _subset_data(folder: Path, n_flavors, n_artists) -> Path:
    from interrogator_core.labels import DATA_DIR, load_list

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("mediums", "movements", "negative"):
        (folder / f"{name}.txt").write_text("\n".join(load_list(DATA_DIR / f"{name}.txt")), encoding="utf-8")
    (folder / "flavors.txt").write_text("\n".join(load_list(DATA_DIR / "flavors.txt")[:n_flavors]), encoding="utf-8")
    (folder / "artists.txt").write_text("\n".join(load_list(DATA_DIR / "artists.txt")[:n_artists]), encoding="utf-8")
    # (a slice [:None] keeps the whole list)
    return folder


def _images(n: int):
    import numpy as np
    from PIL import Image

    out = [Image.open(p).convert("RGB") for p in sorted((ROOT / "examples" / "images").glob("*.png"))]
    rng = np.random.default_rng(0)
    while len(out) < n:
        out.append(Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)))
    return out[:n]


def _prepare(args) -> dict:
    from interrogator_core.testing import make_tiny_blip, make_tiny_clip

    # the folder's name is our cache key: the same file names the reference derives from CLIP_NAME
    clip_dir, blip_dir = WORK / CLIP_NAME.replace("/", "_"), WORK / "tiny-blip"
    if not (clip_dir / "open_clip_model.safetensors").is_file():
        make_tiny_clip(clip_dir, seed=0, arch="ViT-B-32")
    if not (blip_dir / "config.json").is_file():
        make_tiny_blip(blip_dir, seed=0)
    return {
        "clip_dir": str(clip_dir), "blip_dir": str(blip_dir),
        "build_data": str(_subset_data(WORK / "data-build", args.build_flavors, args.build_artists)),
        "modes_data": str(_subset_data(WORK / "data-modes", args.modes_flavors, args.modes_artists)),
    }


# -- workers (each in its own process) ------------------------------------------------------------------------
def _peaks(device: str) -> dict:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        out["peak_vram_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker_ours(args, paths: dict) -> dict:
    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost

    def make(data: str, cache: Path) -> Interrogator:
        cfg = InterrogatorConfig(clip_model=paths["clip_dir"], caption_model=paths["blip_dir"], cache_dir=cache,
                                 data_dir=data, flavor_intermediate_count=args.intermediate)
        return Interrogator(cfg, StandaloneHost(device=args.device))

    out: dict = {}
    ci = make(paths["build_data"], WORK / f"cache-build-ours-{os.getpid()}")
    ci._get_clip()  # model load is not part of the table build
    _sync(args.device)
    t = time.perf_counter()
    ci._label_tables()
    _sync(args.device)
    n = sum(len(v) for v in __import__("interrogator_core.labels", fromlist=["x"]).builtin_labels(paths["build_data"]).values())
    out["build"] = {"labels": n, "seconds": time.perf_counter() - t}
    ci = make(paths["modes_data"], WORK / "cache-modes")  # warm: written by the prepare step
    ci.load()
    images = _images(args.images)
    ci.interrogate(images[:1], mode="fast")  # warm-up
    out["modes"], out["prompts"] = {}, {}
    for mode in MODES:
        kw = dict(mode=mode, min_flavors=args.min_flavors, max_flavors=args.max_flavors)
        if mode != "negative":
            kw["negative_count"] = 0  # the reference computes no negative in these modes
        _sync(args.device)
        t = time.perf_counter()
        res = [ci.interrogate([im], **kw)[0] for im in images]
        _sync(args.device)
        out["modes"][mode] = (time.perf_counter() - t) / len(images)
        out["prompts"][mode] = [r.negative if mode == "negative" else r.positive for r in res]
    _sync(args.device)
    t = time.perf_counter()
    both = [ci.interrogate([im], mode="best", min_flavors=args.min_flavors, max_flavors=args.max_flavors,
                           negative_count=args.max_flavors)[0] for im in images]
    out["modes"]["best+negative"] = (time.perf_counter() - t) / len(images)
    out["prompts"]["best+negative"] = [r.positive for r in both]
    out["beam"] = {}
    for k in args.beams:
        _sync(args.device)
        t = time.perf_counter()
        res = [ci.interrogate([im], mode="best", min_flavors=args.min_flavors, max_flavors=args.max_flavors,
                              negative_count=0, beam_width=k)[0] for im in images]
        _sync(args.device)
        out["beam"][str(k)] = {"s_per_image": (time.perf_counter() - t) / len(images),
                               "prompts": [r.positive for r in res]}
    out.update(_peaks(args.device))
    return out


def worker_ref(args, paths: dict) -> dict:
    import clip_interrogator as ref
    from interrogator_core.clip import load_clip
    from interrogator_core.caption import load_captioner

    assert ref.__version__ == "0.6.0"
    import torch

    clip = load_clip(paths["clip_dir"], torch.float16 if args.device.startswith("cuda") else torch.float32)
    clip.module.to(args.device)
    cap = load_captioner(paths["blip_dir"], torch.float16 if args.device.startswith("cuda") else torch.float32)
    cap.handle.module.to(args.device)

    def config(data: str, cache: Path):
        c = ref.Config(clip_model_name=CLIP_NAME, caption_model_name="blip-base", cache_path=str(cache),
                       download_cache=False, device=args.device, data_path=data, quiet=True,
                       flavor_intermediate_count=args.intermediate)
        c.clip_model, c.clip_preprocess = clip.module, clip.preprocess  # class attributes, not fields
        c.caption_model, c.caption_processor = cap.handle.module, cap.processor
        return c

    out: dict = {}
    _sync(args.device)
    t = time.perf_counter()
    ref.Interrogator(config(paths["build_data"], WORK / f"cache-build-ref-{os.getpid()}"))
    _sync(args.device)
    out["build"] = {"seconds": time.perf_counter() - t}
    ci = ref.Interrogator(config(paths["modes_data"], WORK / "cache-modes"))
    images = _images(args.images)
    ci.interrogate_fast(images[0], max_flavors=args.max_flavors)  # warm-up
    calls = {
        "fast": lambda im: ci.interrogate_fast(im, max_flavors=args.max_flavors),
        "classic": lambda im: ci.interrogate_classic(im, max_flavors=3),
        "negative": lambda im: ci.interrogate_negative(im, max_flavors=args.max_flavors),
        "best": lambda im: ci.interrogate(im, min_flavors=args.min_flavors, max_flavors=args.max_flavors),
    }
    out["modes"], out["prompts"] = {}, {}
    for mode, call in calls.items():
        _sync(args.device)
        t = time.perf_counter()
        out["prompts"][mode] = [call(im) for im in images]
        _sync(args.device)
        out["modes"][mode] = (time.perf_counter() - t) / len(images)
    _sync(args.device)
    t = time.perf_counter()
    for im in images:
        ci.interrogate(im, min_flavors=args.min_flavors, max_flavors=args.max_flavors)
        ci.interrogate_negative(im, max_flavors=args.max_flavors)
    out["modes"]["best+negative"] = (time.perf_counter() - t) / len(images)
    out.update(_peaks(args.device))
    return out


def worker_prepare(args, paths: dict) -> dict:
    """Build the warm cache for the modes run with our encoder (not timed)."""
    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost

    cfg = InterrogatorConfig(clip_model=paths["clip_dir"], caption_model=None, cache_dir=WORK / "cache-modes",
                             data_dir=paths["modes_data"])
    ci = Interrogator(cfg, StandaloneHost(device=args.device))
    ci._label_tables()
    return {}


def worker_similarity(args, paths: dict, prompts: dict) -> dict:
    """Final similarities with the model's own padded encode_text (neutral to both implementations)."""
    import torch
    import torch.nn.functional as F

    from interrogator_core.clip import load_clip

    clip = load_clip(paths["clip_dir"])
    feats = clip.encode_images(torch.stack([clip.preprocess(im) for im in _images(args.images)]))
    out = {}
    for side, per_mode in prompts.items():
        out[side] = {}
        for mode, texts in per_mode.items():
            ids, _ = clip.text.tokenize(texts)
            with torch.no_grad():
                t = F.normalize(clip.module.encode_text(ids).float(), dim=-1)
            sims = (t * feats).sum(-1)
            out[side][mode] = sims.tolist()
    return out


# -- orchestration ----------------------------------------------------------------------------------------------
def _run_worker(name: str, args, extra: dict | None = None) -> dict:
    payload = json.dumps({"args": vars(args), "extra": extra or {}})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    p = subprocess.run([sys.executable, __file__, "--worker", name], input=payload, capture_output=True, text=True,
                       env=env)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"worker {name} failed")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _worker_main(name: str) -> None:
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    payload = json.loads(sys.stdin.read())
    args = argparse.Namespace(**payload["args"])
    paths = payload["extra"].get("paths")
    if name == "prepare-models":
        result = _prepare(args)
    elif name == "similarity":
        result = worker_similarity(args, paths, payload["extra"]["prompts"])
    else:
        result = {"ours": worker_ours, "ref": worker_ref, "prepare": worker_prepare}[name](args, paths)
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=64, help="flavor_intermediate_count of both sides")
    p.add_argument("--min-flavors", type=int, default=8)
    p.add_argument("--max-flavors", type=int, default=8)
    p.add_argument("--build-flavors", type=int, default=1024, help="flavors in the cold table-build subset")
    p.add_argument("--build-artists", type=int, default=64)
    p.add_argument("--modes-flavors", type=int, default=None,
                   help="flavors for the modes (default: all ~100k, as users have; the cache is built once)")
    p.add_argument("--modes-artists", type=int, default=None, help="artists for the modes (default: all)")
    p.add_argument("--beams", type=int, nargs="*", default=[1, 2, 4], help="beam widths to time (ours only)")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker_main(args.worker)
    WORK.mkdir(parents=True, exist_ok=True)
    for old in WORK.glob("cache-build-*"):
        import shutil

        shutil.rmtree(old)
    paths = _run_worker("prepare-models", args)
    _run_worker("prepare", args, {"paths": paths})
    ours = _run_worker("ours", args, {"paths": paths})
    ref = _run_worker("ref", args, {"paths": paths})
    beam_prompts = {f"beam{k}": v["prompts"] for k, v in ours["beam"].items()}
    sims = _run_worker("similarity", args, {"paths": paths, "prompts": {
        "ours": {"best": ours["prompts"]["best"], **beam_prompts}, "ref": {"best": ref["prompts"]["best"]}}})
    n = ours["build"]["labels"]
    rows = [("label-table build (labels/s)", n / ref["build"]["seconds"], n / ours["build"]["seconds"])]
    for mode in (*MODES, "best+negative"):
        rows.append((f"{mode} (s/image)", ref["modes"][mode], ours["modes"][mode]))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    result = {
        "device": args.device, "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
        "table_build": {"labels": n, "ref_s": ref["build"]["seconds"], "ours_s": ours["build"]["seconds"],
                        "speedup": ref["build"]["seconds"] / ours["build"]["seconds"]},
        "modes_s_per_image": {m: {"ref": ref["modes"][m], "ours": ours["modes"][m],
                                  "speedup": ref["modes"][m] / ours["modes"][m]} for m in (*MODES, "best+negative")},
        "best_similarity": {"ref": sims["ref"]["best"], "ours": sims["ours"]["best"],
                            "ref_mean": mean(sims["ref"]["best"]), "ours_mean": mean(sims["ours"]["best"])},
        "peak_rss_mb": {"ref": ref["peak_rss_mb"], "ours": ours["peak_rss_mb"]},
        "beam": {k: {"s_per_image": v["s_per_image"], "best_similarity_mean": mean(sims["ours"][f"beam{k}"])}
                 for k, v in ours["beam"].items()},
        "prompts": {"ref": ref["prompts"], "ours": ours["prompts"]},
    }
    if "peak_vram_mb" in ours:
        result["peak_vram_mb"] = {"ref": ref["peak_vram_mb"], "ours": ours["peak_vram_mb"]}
    print(f"{'':32} {'clip-interrogator 0.6.0':>24} {'ours':>12} {'ratio':>8}")
    for label, r, o in rows:
        ratio = o / r if "labels/s" in label else r / o
        print(f"{label:32} {r:24.3f} {o:12.3f} {ratio:7.1f}x")
    print(f"{'best similarity (mean)':32} {result['best_similarity']['ref_mean']:24.4f} "
          f"{result['best_similarity']['ours_mean']:12.4f}")
    print(f"{'peak RSS (MB)':32} {ref['peak_rss_mb']:24.0f} {ours['peak_rss_mb']:12.0f}")
    if "peak_vram_mb" in result:
        print(f"{'peak VRAM (MB)':32} {ref['peak_vram_mb']:24.0f} {ours['peak_vram_mb']:12.0f}")
    print(f"\nbeam chain (ours, best mode): {'width':>6} {'s/image':>9} {'similarity':>11}")
    for k, v in result["beam"].items():
        print(f"{'':30} {k:>6} {v['s_per_image']:9.3f} {v['best_similarity_mean']:11.4f}")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"bench-{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
