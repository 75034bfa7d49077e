"""Benchmark: our batched image tagger vs a per-image loop with the same model (what the tagger nodes do).

    python bench/bench_tagger.py [--device cpu|cuda] [--images 8] [--batch-size 8] [--size 448] [--fp16]

The model is a real WD v3 architecture with random weights: SmilingWolf/wd-vit-tagger-v3's ``config.json``
(timm ``vit_base_patch16_224`` with ``img_size`` 448, no class token, average pooling, no fc norm, gelu_tanh;
10,861 tags; the same preprocessing: white square padding, bicubic resize, -1..1, BGR), built by timm and run
through :class:`interrogator_core.tagger.Tagger` with the default :class:`TaggerOptions`. Both sides tag the
same images with the same module:

* **batched**: ``Tagger.generate`` on ``--batch-size`` images at a time (one forward per batch: the CLI, the
  folder batch, the A1111 Batch tab, the Ray stage and ComfyUI image batches);
* **per image**: ``Tagger.generate`` on one image at a time (one forward per image, as the WD14 tagger nodes
  and kohya's script with batch size 1 run).

Each side gets one warm-up call first. The tags of both sides are asserted equal (the run fails otherwise).
Prints the machine and images/s of each side; ``--size 224`` is a quicker run on a slow machine (the compute of
a 448 px ViT-B/16 is about 4.5x that of 224 px).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: SmilingWolf/wd-vit-tagger-v3's config.json (the architecture and preprocessing; num_classes = its tag count)
WD_VIT_V3 = {"architecture": "vit_base_patch16_224", "num_classes": 10861, "num_features": 768,
             "global_pool": "avg",
             "model_args": {"img_size": 448, "class_token": False, "global_pool": "avg", "fc_norm": False,
                            "act_layer": "gelu_tanh"},
             "pretrained_cfg": {"custom_load": False, "input_size": [3, 448, 448], "fixed_input_size": False,
                                "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
                                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": 10861}}
#: the random head (see build_tagger)
HEAD_STD, HEAD_BIAS = 0.1, -7.0
#: WD v3's categories: 4 ratings first, then general tags and (here 2,000) character tags
N_RATING, N_CHARACTER = 4, 2000


def machine(device: str) -> str:
    """The machine line of every bench (bench.py's)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench  # noqa: E402

    return bench._machine(device)


def build_tagger(size: int, device: str, fp16: bool):
    """The WD v3 ViT tagger with random weights (input ``size`` px), on ``device``."""
    import copy

    import timm
    import torch

    from interrogator_core.tagger import (CHARACTER, GENERAL, RATING, TagLabels, Tagger, TaggerPreprocess,
                                          _model_args)

    config = copy.deepcopy(WD_VIT_V3)
    config["model_args"]["img_size"] = size
    config["pretrained_cfg"]["input_size"] = [3, size, size]
    n = config["num_classes"]
    names = tuple(["general", "sensitive", "questionable", "explicit"]
                  + [f"tag_{i}" for i in range(n - N_RATING - N_CHARACTER)]
                  + [f"character_{i}_(series)" for i in range(N_CHARACTER)])
    cats = tuple([RATING] * N_RATING + [GENERAL] * (n - N_RATING - N_CHARACTER) + [CHARACTER] * N_CHARACTER)
    torch.manual_seed(0)
    module = timm.create_model(config["architecture"], pretrained=False, num_classes=n, **_model_args(config))
    with torch.no_grad():  # a head whose scores spread like a trained tagger's: most tags unlikely, a few dozen kept
        module.head.weight.normal_(0.0, HEAD_STD)
        module.head.bias.fill_(HEAD_BIAS)
    dtype = torch.float16 if fp16 else torch.float32
    module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    tagger = Tagger("wd-vit-tagger-v3 (random weights)", module, TagLabels(names, cats),
                    TaggerPreprocess.from_config(config), dtype)
    return tagger, sum(p.numel() for p in module.parameters())


def images(count: int) -> List:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = [(768, 512), (512, 512), (640, 896), (1024, 768)]
    return [Image.fromarray(rng.integers(0, 255, (*shapes[i % len(shapes)], 3), dtype=np.uint8))
            for i in range(count)]


def timed(fn, device: str) -> float:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--size", type=int, default=448, help="input size in px (WD v3: 448)")
    p.add_argument("--fp16", action="store_true", help="run the model in fp16 (CUDA)")
    a = p.parse_args(argv)
    tagger, params = build_tagger(a.size, a.device, a.fp16)
    ims = images(a.images)
    batched: List[str] = []
    single: List[str] = []

    def run_batched() -> None:
        batched.clear()
        for i in range(0, len(ims), a.batch_size):
            batched.extend(tagger.generate(ims[i:i + a.batch_size]))

    def run_single() -> None:
        single.clear()
        for im in ims:
            single.extend(tagger.generate([im]))

    tagger.generate(ims[:min(a.batch_size, len(ims))])  # warm-up of each shape
    tagger.generate(ims[:1])
    t_batched = timed(run_batched, a.device)
    t_single = timed(run_single, a.device)
    if batched != single:
        diff = sum(x != y for x, y in zip(batched, single))
        print(f"FAILED: the tags differ for {diff} of {len(ims)} images", file=sys.stderr)
        return 1
    n_tags = sum(len(t.split(", ")) for t in batched) / len(batched)
    print(f"machine: {machine(a.device)}")
    print(f"model: WD v3 ViT-B/16 (vit_base_patch16_224, {params / 1e6:.0f} M parameters, random weights), "
          f"{a.size} px, {'fp16' if a.fp16 else 'fp32'}, {len(tagger.labels)} tags; {len(ims)} images, "
          f"{n_tags:.0f} tags per image (default thresholds), tags of both sides equal")
    print(f"batched (batch size {a.batch_size}): {len(ims) / t_batched:.2f} images/s")
    print(f"per image (one forward each):  {len(ims) / t_single:.2f} images/s")
    print(f"speed-up: {t_single / t_batched:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
