"""Benchmark: Prompt Interrogator vs clip-interrogator 0.6.0, same run, same random-weight models.

    python bench/bench.py [--device cpu|cuda] [--arch ViT-B-32] [--images 8] [--chain-images 2]
                          [--intermediate 256] [--max-flavors 8] [--sizes small full] [--docs]
    python bench/bench.py --render bench/results/bench-cpu.json --docs    # docs/speed.md tables from a saved run

Both sides get the same random-weight open_clip model (a real architecture, so the compute is real), the same
tiny BLIP caption model, the same label lists and settings, and each side runs in its own subprocess (peak RSS
and VRAM are per side and per table size). Measured:

* **cold label-table build** (labels/s) on a subset of the real lists, for ``--arch`` and for each
  ``--build-arch`` (ours on ``--build-labels`` labels; the reference, ~40x slower, on ``--ref-build-labels``:
  its rate is per label, it pads every label to 77 tokens);
* **seconds per image of each mode** with a warm cache, per table size: ``small`` (``--small-flavors`` flavors
  and ``--small-artists`` artists beside the other lists) and ``full`` (every label, ~112k). The reference loads
  the very cache files ours wrote (same format). fast/classic: ours on a folder (one call for all images, as
  the CLI, batch tab, ComfyUI batches and the Ray stage run) and per call (one image per call); the
  reference has only a per-image call. Ours runs with ``similarities=False`` there: like the reference it computes no
  similarity that is only reported. negative/best: one call for ``--chain-images`` images (chains run per
  image);
* the final best-prompt and negative-prompt **similarity** of both, recomputed afterwards with the model's
  own padded ``encode_text`` (neutral to both implementations);
* **peak RSS** (and peak VRAM on CUDA) of each side.

Prints a table per table size and writes ``bench/results/bench-<device>.json``; ``--docs`` (old name
``--readme``) rewrites the tables of ``docs/speed.md`` (between its ``bench:begin``/``bench:end`` markers) from
that JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORK = ROOT / ".cache" / "bench"
SPEED_DOC = ROOT / "docs" / "speed.md"  # the benchmark tables live here (the README links to it)
MODES = ("fast", "classic", "negative", "best")
TABLES = ("artists", "flavors", "mediums", "movements", "negative", "trendings")


def ref_name(arch: str) -> str:
    """The reference's ``clip_model_name`` (ARCH/TAG; its cache files are named after it)."""
    return f"{arch}/bench"


# -- inputs -----------------------------------------------------------------------------------------------------
def _subset_data(folder: Path, n_flavors, n_artists, n_total=None) -> Path:
    """The real lists, flavors and artists cut to the first ``n``; ``n_total``: every list cut so that the
    whole set has about that many labels (a cold-build subset)."""
    from interrogator_core.labels import DATA_DIR, load_list

    folder.mkdir(parents=True, exist_ok=True)
    lists = {name: load_list(DATA_DIR / f"{name}.txt") for name in ("mediums", "movements", "negative", "flavors",
                                                                    "artists")}
    lists["flavors"] = lists["flavors"][:n_flavors]
    lists["artists"] = lists["artists"][:n_artists]
    if n_total is not None:
        small = {k: v[:max(1, n_total // 40)] for k, v in lists.items() if k != "flavors"}
        lists.update(small)
        lists["flavors"] = lists["flavors"][:max(1, n_total - sum(len(v) for v in small.values()) - 40)]
    for name, labels in lists.items():
        (folder / f"{name}.txt").write_text("\n".join(labels), encoding="utf-8")
    return folder


def _images(n: int):
    import numpy as np
    from PIL import Image

    out = [Image.open(p).convert("RGB") for p in sorted((ROOT / "examples" / "images").glob("*.png"))]
    rng = np.random.default_rng(0)
    while len(out) < n:
        out.append(Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)))
    return out[:n]


def _clip_dir(arch: str) -> Path:
    return WORK / ref_name(arch).replace("/", "_")


def _prepare(args) -> dict:
    from interrogator_core.testing import make_tiny_blip, make_tiny_clip

    for arch in {args.arch, *args.build_arch}:
        if not (_clip_dir(arch) / "open_clip_model.safetensors").is_file():
            make_tiny_clip(_clip_dir(arch), seed=0, arch=arch)
    blip_dir = WORK / "tiny-blip"
    if not (blip_dir / "config.json").is_file():
        make_tiny_blip(blip_dir, seed=0)
    data = {"build": str(_subset_data(WORK / "data-build", None, None, args.build_labels)),
            "ref-build": str(_subset_data(WORK / "data-ref-build", None, None, args.ref_build_labels)),
            "small": str(_subset_data(WORK / "data-small", args.small_flavors, args.small_artists)),
            "full": str(_subset_data(WORK / "data-full", None, None))}
    return {"blip_dir": str(blip_dir), "data": data}


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


def _timed(device: str, fn):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def _ours(args, paths: dict, arch: str, data: str, cache: Path, caption: bool = True):
    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost

    cfg = InterrogatorConfig(clip_model=str(_clip_dir(arch)), caption_model=paths["blip_dir"] if caption else None,
                             cache_dir=cache, data_dir=data, flavor_intermediate_count=args.intermediate)
    return Interrogator(cfg, StandaloneHost(device=args.device))


def _n_labels(data: str) -> int:
    from interrogator_core.labels import builtin_labels

    return sum(len(v) for v in builtin_labels(data).values())


def worker_prepare(args, paths: dict, size: str) -> dict:
    """Build the warm cache of a table size with our encoder (not timed), and name it for the reference too."""
    cache = WORK / f"cache-{args.arch}-{size}"
    ci = _ours(args, paths, args.arch, paths["data"][size], cache, caption=False)
    ci.main.tables()
    ours_name = ci.main.clip.cache_name.replace("/", "_").replace("@", "_")
    theirs = ref_name(args.arch).replace("/", "_").replace("@", "_")
    for table in TABLES:
        src, dst = cache / f"{ours_name}_{table}.safetensors", cache / f"{theirs}_{table}.safetensors"
        if src.is_file() and not dst.exists():
            shutil.copyfile(src, dst)
    return {"labels": _n_labels(paths["data"][size])}


def worker_build_ours(args, paths: dict, arch: str) -> dict:
    cache = WORK / f"cache-build-ours-{arch}-{os.getpid()}"
    ci = _ours(args, paths, arch, paths["data"]["build"], cache, caption=False)
    ci.main.clip  # model load is not part of the table build
    _, seconds = _timed(args.device, ci.main.tables)
    shutil.rmtree(cache, ignore_errors=True)
    return {"labels": _n_labels(paths["data"]["build"]), "seconds": seconds, **_peaks(args.device)}


def _ref_interrogator(args, paths: dict, arch: str, data: str, cache: Path):
    import clip_interrogator as ref
    import torch

    from interrogator_core.caption import load_captioner
    from interrogator_core.clip import load_clip

    assert ref.__version__ == "0.6.0"
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    clip = load_clip(str(_clip_dir(arch)), dtype)
    clip.module.to(args.device)
    cap = load_captioner(paths["blip_dir"], dtype)
    cap.handle.module.to(args.device)
    c = ref.Config(clip_model_name=ref_name(arch), caption_model_name="blip-base", cache_path=str(cache),
                   download_cache=False, device=args.device, data_path=data, quiet=True,
                   flavor_intermediate_count=args.intermediate)
    c.clip_model, c.clip_preprocess = clip.module, clip.preprocess  # class attributes, not fields
    c.caption_model, c.caption_processor = cap.handle.module, cap.processor
    return lambda: ref.Interrogator(c)


def worker_build_ref(args, paths: dict, arch: str) -> dict:
    cache = WORK / f"cache-build-ref-{arch}-{os.getpid()}"
    make = _ref_interrogator(args, paths, arch, paths["data"]["ref-build"], cache)
    _, seconds = _timed(args.device, make)
    shutil.rmtree(cache, ignore_errors=True)
    return {"labels": _n_labels(paths["data"]["ref-build"]), "seconds": seconds, **_peaks(args.device)}


def worker_modes_ours(args, paths: dict, size: str) -> dict:
    ci = _ours(args, paths, args.arch, paths["data"][size], WORK / f"cache-{args.arch}-{size}")
    ci.load()
    images, chain_images = _images(args.images), _images(args.chain_images)
    ci.interrogate(images[:1], mode="fast")  # warm-up
    flavors = dict(min_flavors=args.min_flavors, max_flavors=args.max_flavors)
    out: dict = {"folder": {}, "per_call": {}, "prompts": {}}
    for mode in ("fast", "classic"):
        kw = dict(mode=mode, negative_count=0, similarities=False, **flavors)  # the reference builds neither
        res, s = _timed(args.device, lambda: ci.interrogate(images, **kw))
        out["folder"][mode] = s / len(images)
        _, s = _timed(args.device, lambda: [ci.interrogate([im], **kw) for im in images])
        out["per_call"][mode] = s / len(images)
        out["prompts"][mode] = [r.positive for r in res]
    calls = {"negative": dict(mode="negative"), "best": dict(mode="best", negative_count=0),
             "best+negative": dict(mode="best", negative_count=args.max_flavors)}
    for name, kw in calls.items():
        res, s = _timed(args.device, lambda: ci.interrogate(chain_images, **kw, **flavors))
        out["folder"][name] = s / len(chain_images)
        out["prompts"][name] = [r.negative if name == "negative" else r.positive for r in res]
    out["beam"] = {}
    for k in args.beams:
        res, s = _timed(args.device, lambda: ci.interrogate(chain_images, mode="best", negative_count=0,
                                                            beam_width=k, **flavors))
        out["beam"][str(k)] = {"s_per_image": s / len(chain_images), "prompts": [r.positive for r in res]}
    out.update(_peaks(args.device))
    return out


def worker_modes_ref(args, paths: dict, size: str) -> dict:
    ci = _ref_interrogator(args, paths, args.arch, paths["data"][size], WORK / f"cache-{args.arch}-{size}")()
    images, chain_images = _images(args.images), _images(args.chain_images)
    ci.interrogate_fast(images[0], max_flavors=args.max_flavors)  # warm-up
    m = args.max_flavors
    calls = {
        "fast": (images, lambda im: ci.interrogate_fast(im, max_flavors=m)),
        "classic": (images, lambda im: ci.interrogate_classic(im, max_flavors=3)),
        "negative": (chain_images, lambda im: ci.interrogate_negative(im, max_flavors=m)),
        "best": (chain_images, lambda im: ci.interrogate(im, min_flavors=args.min_flavors, max_flavors=m)),
    }
    out: dict = {"per_call": {}, "prompts": {}}
    for mode, (ims, call) in calls.items():
        res, s = _timed(args.device, lambda: [call(im) for im in ims])
        out["per_call"][mode] = s / len(ims)
        out["prompts"][mode] = res
    # both prompts of an image: the reference's two calls (timed above; running them again would add minutes)
    out["per_call"]["best+negative"] = out["per_call"]["best"] + out["per_call"]["negative"]
    out.update(_peaks(args.device))
    return out


def worker_similarity(args, paths: dict, prompts: dict) -> dict:
    """Similarities of prompts with their images by the model's own padded encode_text."""
    import torch
    import torch.nn.functional as F

    from interrogator_core.clip import load_clip

    clip = load_clip(str(_clip_dir(args.arch)))
    feats = clip.encode_images(torch.stack([clip.preprocess(im) for im in _images(args.chain_images)]))
    out = {}
    for key, texts in prompts.items():
        ids, _ = clip.text.tokenize(texts)
        with torch.no_grad():
            t = F.normalize(clip.module.encode_text(ids).float(), dim=-1)
        out[key] = (t * feats[: len(texts)]).sum(-1).tolist()
    return out


# -- orchestration ----------------------------------------------------------------------------------------------
def _run_worker(name: str, args, **extra) -> dict:
    payload = json.dumps({"args": vars(args), "extra": extra})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    p = subprocess.run([sys.executable, __file__, "--worker", name], input=payload, capture_output=True, text=True,
                       env=env)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"worker {name} failed")
    return json.loads(p.stdout.strip().splitlines()[-1])


WORKERS = {"prepare": worker_prepare, "build-ours": worker_build_ours, "build-ref": worker_build_ref,
           "modes-ours": worker_modes_ours, "modes-ref": worker_modes_ref}


def _worker_main(name: str) -> None:
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    payload = json.loads(sys.stdin.read())
    args = argparse.Namespace(**payload["args"])
    extra = payload["extra"]
    if name == "prepare-models":
        result = _prepare(args)
    elif name == "similarity":
        result = worker_similarity(args, extra["paths"], extra["prompts"])
    else:
        result = WORKERS[name](args, extra["paths"], extra["what"])
    print(json.dumps(result))


def _machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} (CPU)"


def measure(args) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    for old in WORK.glob("cache-build-*"):
        shutil.rmtree(old)
    paths = _run_worker("prepare-models", args)
    result: dict = {"device": args.device, "machine": _machine(args.device),
                    "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out", "render", "docs")},
                    "build": {}, "sizes": {}}
    for arch in dict.fromkeys([args.arch, *args.build_arch]):
        ours = _run_worker("build-ours", args, paths=paths, what=arch)
        ref = _run_worker("build-ref", args, paths=paths, what=arch)
        rate = {k: v["labels"] / v["seconds"] for k, v in (("ours", ours), ("ref", ref))}
        result["build"][arch] = {"ours": {**ours, "labels_per_s": rate["ours"]},
                                 "ref": {**ref, "labels_per_s": rate["ref"]}, "speedup": rate["ours"] / rate["ref"]}
        print(f"build {arch}: ours {rate['ours']:.1f} labels/s, reference {rate['ref']:.1f} labels/s", flush=True)
    for size in args.sizes:
        labels = _run_worker("prepare", args, paths=paths, what=size)["labels"]
        ours = _run_worker("modes-ours", args, paths=paths, what=size)
        ref = _run_worker("modes-ref", args, paths=paths, what=size)
        chains = {"ours best": ours["prompts"]["best"], "ref best": ref["prompts"]["best"],
                  "ours negative": ours["prompts"]["negative"], "ref negative": ref["prompts"]["negative"],
                  **{f"ours beam{k}": v["prompts"] for k, v in ours["beam"].items()}}
        sims = _run_worker("similarity", args, paths=paths, prompts=chains)
        entry = {"labels": labels, "modes": {}, "similarity": sims,
                 "peak_rss_mb": {"ours": ours["peak_rss_mb"], "ref": ref["peak_rss_mb"]},
                 "beam": {k: {"s_per_image": v["s_per_image"], "similarity": sims[f"ours beam{k}"]}
                          for k, v in ours["beam"].items()},
                 "prompts": {"ours": ours["prompts"], "ref": ref["prompts"]}}
        if "peak_vram_mb" in ours:
            entry["peak_vram_mb"] = {"ours": ours["peak_vram_mb"], "ref": ref["peak_vram_mb"]}
        for mode in (*MODES, "best+negative"):
            r, o = ref["per_call"][mode], ours["folder"][mode]
            row = {"ref": r, "ours_folder": o, "speedup_folder": r / o}
            if mode in ours["per_call"]:
                row.update(ours_per_call=ours["per_call"][mode], speedup_per_call=r / ours["per_call"][mode])
            entry["modes"][mode] = row
        result["sizes"][size] = entry
        print(render_text(result, size), flush=True)
    return result


# -- reports ------------------------------------------------------------------------------------------------------
def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _size_title(result: dict, size: str) -> str:
    s = result["settings"]
    return (f"{size} tables ({result['sizes'][size]['labels']:,} labels), {s['arch']}, {result['device']}: "
            f"fast/classic on {s['images']} images, chains on {s['chain_images']}, "
            f"intermediate {s['intermediate']}, {s['max_flavors']} flavors")


def render_text(result: dict, size: str) -> str:
    e = result["sizes"][size]
    lines = [f"\n== {_size_title(result, size)}",
             f"{'s/image':24} {'reference':>10} {'ours folder':>12} {'ratio':>7} {'ours per call':>14} {'ratio':>7}"]
    for mode, row in e["modes"].items():
        pc = (f"{row['ours_per_call']:14.3f} {row['speedup_per_call']:6.1f}x" if "ours_per_call" in row else "")
        lines.append(f"{mode:24} {row['ref']:10.3f} {row['ours_folder']:12.3f} {row['speedup_folder']:6.1f}x {pc}")
    sims = e["similarity"]
    lines.append(f"{'best similarity (mean)':24} {_mean(sims['ref best']):10.4f} {_mean(sims['ours best']):12.4f}")
    lines.append(f"{'negative sim. (mean)':24} {_mean(sims['ref negative']):10.4f} {_mean(sims['ours negative']):12.4f}")
    lines.append(f"{'peak RSS (MB)':24} {e['peak_rss_mb']['ref']:10.0f} {e['peak_rss_mb']['ours']:12.0f}")
    if "peak_vram_mb" in e:
        lines.append(f"{'peak VRAM (MB)':24} {e['peak_vram_mb']['ref']:10.0f} {e['peak_vram_mb']['ours']:12.0f}")
    lines.append("beam (ours, best): " + ", ".join(f"k={k} {v['s_per_image']:.2f} s, sim {_mean(v['similarity']):.4f}"
                                                   for k, v in e["beam"].items()))
    return "\n".join(lines)


def render_markdown(result: dict) -> str:
    s = result["settings"]
    out = [f"Measured on {result['machine']} (`python bench/bench.py"
           + (f" --device {result['device']}" if result["device"] != "cpu" else "")
           + f"`: {s['arch']} random weights, tiny BLIP captions, `--intermediate {s['intermediate']} "
           f"--max-flavors {s['max_flavors']}`).", "",
           "Cold label-table build (labels/s; the reference pads every label to 77 tokens):", "",
           "| model | clip-interrogator 0.6.0 | ours | ratio |", "| --- | --- | --- | --- |"]
    for arch, b in result["build"].items():
        out.append(f"| {arch} | {b['ref']['labels_per_s']:.1f} ({b['ref']['labels']:,} labels) | "
                   f"{b['ours']['labels_per_s']:.1f} ({b['ours']['labels']:,} labels) | **{b['speedup']:.1f}×** |")
    if result.get("build_note"):
        out += ["", f"({result['build_note']}.)"]
    for size, e in result["sizes"].items():
        out += ["", f"Seconds per image, {_size_title(result, size)}:", "",
                "| mode | clip-interrogator 0.6.0 | ours, folder | ratio | ours, one image per call | ratio |",
                "| --- | --- | --- | --- | --- | --- |"]
        for mode, row in e["modes"].items():
            pc = (f"{row['ours_per_call']:.3f} | {row['speedup_per_call']:.1f}×" if "ours_per_call" in row
                  else "— | —")
            out.append(f"| {mode} | {row['ref']:.3f} | {row['ours_folder']:.3f} | **{row['speedup_folder']:.1f}×** "
                       f"| {pc} |")
        sims = e["similarity"]
        worse = sum(o < r - 1e-4 for o, r in zip(sims["ours best"], sims["ref best"]))
        out.append(f"| best: final similarity (mean; images below the reference's) | {_mean(sims['ref best']):.4f} "
                   f"| {_mean(sims['ours best']):.4f} ({worse}) | | | |")
        out.append(f"| negative: final similarity (mean, lower is better) | {_mean(sims['ref negative']):.4f} | "
                   f"{_mean(sims['ours negative']):.4f} | | | |")
        out.append(f"| peak RSS (MB) | {e['peak_rss_mb']['ref']:.0f} | {e['peak_rss_mb']['ours']:.0f} | | | |")
        if "peak_vram_mb" in e:
            out.append(f"| peak VRAM (MB) | {e['peak_vram_mb']['ref']:.0f} | {e['peak_vram_mb']['ours']:.0f} | | | |")
        out.append(f"| beam width 1 / 2 / 4 (ours, best; s/image, similarity) | | "
                   + " / ".join(f"{v['s_per_image']:.2f} s, {_mean(v['similarity']):.4f}" for v in e["beam"].values())
                   + " | | | |")
    return "\n".join(out)


def update_doc(result: dict, doc: Path = SPEED_DOC) -> None:
    """Replace ``doc``'s text between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``."""
    text = doc.read_text(encoding="utf-8")
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} has no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    doc.write_text(f"{head}{begin}\n{render_markdown(result)}\n{end}{tail}", encoding="utf-8")
    print(f"updated: {doc}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="ViT-B-32", help="open_clip architecture of the modes run (random weights)")
    p.add_argument("--build-arch", nargs="*", default=["ViT-L-14"],
                   help="more architectures whose cold label build is measured (ViT-L-14: the default CLIP)")
    p.add_argument("--build-labels", type=int, default=2000, help="labels in our cold-build subset")
    p.add_argument("--ref-build-labels", type=int, default=200, help="labels in the reference's cold-build subset")
    p.add_argument("--images", type=int, default=8, help="images for fast/classic")
    p.add_argument("--chain-images", type=int, default=2, help="images for negative/best (the reference's take minutes)")
    p.add_argument("--intermediate", type=int, default=256, help="flavor_intermediate_count of both sides")
    p.add_argument("--min-flavors", type=int, default=8)
    p.add_argument("--max-flavors", type=int, default=8)
    p.add_argument("--sizes", nargs="*", default=["small", "full"], choices=["small", "full"])
    p.add_argument("--small-flavors", type=int, default=480)
    p.add_argument("--small-artists", type=int, default=64)
    p.add_argument("--beams", type=int, nargs="*", default=[1, 2, 4], help="beam widths to time (ours only)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/bench-<device>.json)")
    p.add_argument("--render", default=None, help="print (and with --docs write) the tables of a saved JSON")
    p.add_argument("--docs", "--readme", dest="docs", action="store_true",
                   help="rewrite the benchmark tables of docs/speed.md from the result (--readme: the old name)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker_main(args.worker)
    if args.render:
        result = json.loads(Path(args.render).read_text())
    else:
        result = measure(args)
        out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"bench-{args.device.split(':')[0]}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"written: {out}")
    print("\n" + render_markdown(result))
    if args.docs:
        update_doc(result)


if __name__ == "__main__":
    main()
