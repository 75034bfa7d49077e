"""Benchmark: the caption stage (batched ``Captioner.generate``) against a plain per-image ``generate`` loop.

    python bench/bench_caption.py [--families florence2 qwen3_vl llava] [--styles short detailed tags]
                                  [--batch-sizes 1 4 8] [--images 8] [--tokens 24] [--size mid|tiny]
                                  [--repeats 2] [--overhead] [--docs]

Each family is built on its real architecture (the transformers class users load: Florence-2, Qwen3-VL,
LLaVA with a SigLIP tower and a Llama text model, JoyCaption's layout) with random weights, saved with
``save_pretrained`` and loaded back through ``load_captioner`` -- the code path users hit. The real checkpoints'
sizes (Florence-2-base 0.23 B, Qwen3-VL-2B, JoyCaption 8 B) do not run on a 2-core CPU in minutes, so ``mid``
(the default) is a reduced config of the same architecture: fewer and narrower layers, small images and the
tiny word-level tokenizer of :mod:`interrogator_core.testing` (see :data:`MID` for the numbers); ``tiny`` is the
test suite's models. Both sides run the same model, greedy, the same ``max_new_tokens`` and the same prompt text
(the style's task token or chat-rendered instruction); every caption of the engine is checked equal to the
loop's. Random weights rarely emit the end token, so a caption is about ``--tokens`` tokens long on both sides.

* **engine**: ``Captioner.generate`` on chunks of ``batch size`` images -- what ``CaptionStage`` runs with
  ``caption_batch_size`` (one processor call and one ``generate`` per chunk);
* **loop**: ``processor(text=prompt, images=image)`` then ``model.generate(**inputs)`` then ``batch_decode``,
  once per image -- what the ComfyUI caption nodes (Florence-2, Qwen-VL, JoyCaption) do.

The ratio engine/loop is measured in one process, alternating the two, ``--repeats`` times (median), so a
loaded machine slows both alike. ``--overhead`` also measures the per-call overhead of the whole interrogation
(see :func:`overhead`): at one image per call, the share of the time spent outside the image encoder and the
caption model, per mode. Prints tables and writes ``bench/results/bench-caption-cpu.json``; ``--docs`` rewrites
the tables of ``docs/speed.md`` between its ``caption-bench:begin`` / ``caption-bench:end`` markers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORK = ROOT / ".cache" / "bench-caption"
SPEED_DOC = ROOT / "docs" / "speed.md"
BEGIN, END = "<!-- caption-bench:begin -->", "<!-- caption-bench:end -->"
FAMILY_NAMES = {"florence2": "Florence-2 (base layout)", "qwen3_vl": "Qwen3-VL (2B layout)",
                "llava": "LLaVA / JoyCaption layout"}

#: The reduced configs (``--size mid``). Real ones for comparison: Florence-2-base DaViT depths 1/1/9/1, widths
#: 128/256/512/1024 at 768 px + BART 6+6 layers d_model 768; Qwen3-VL-2B vision 24 blocks width 1024 + text 28
#: layers width 2048; JoyCaption SigLIP-so400m 27 layers width 1152 at 384 px + Llama-3.1-8B 32 layers width 4096.
MID: Dict[str, Dict[str, Any]] = {
    "florence2": {"depths": [1, 1, 1, 1], "embed_dim": [32, 64, 128, 256], "image": 128,
                  "d_model": 256, "layers": 2, "ffn": 1024, "heads": 4},
    "qwen3_vl": {"vision_depth": 2, "vision_width": 128, "image": 128, "hidden": 256, "layers": 4,
                 "intermediate": 768, "heads": 8, "kv_heads": 4, "head_dim": 32},
    "llava": {"vision_layers": 2, "vision_width": 128, "image": 64, "patch": 8, "hidden": 256, "layers": 4,
              "intermediate": 768, "heads": 8, "kv_heads": 4},
}


# -- models ------------------------------------------------------------------------------------------------------
def build_mid(family: str, folder: Path, seed: int = 0) -> Path:
    """A random ``mid`` model of ``family`` (same classes, processors and chat templates as the tiny test models)."""
    import torch
    from interrogator_core import testing as t

    m = MID[family]
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if family == "florence2":
        from transformers import (CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration,
                                  Florence2Processor)
        tok, vocab = t._tiny_fast_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<image>"], bos_token="<s>",
                                            eos_token="</s>", pad_token="<pad>",
                                            extra_special_tokens={"image_token": "<image>"})
        n = len(m["depths"])
        config = Florence2Config(
            text_config={"model_type": "bart", "vocab_size": len(vocab), "max_position_embeddings": 1024,
                         "encoder_layers": m["layers"], "encoder_ffn_dim": m["ffn"],
                         "encoder_attention_heads": m["heads"], "decoder_layers": m["layers"],
                         "decoder_ffn_dim": m["ffn"], "decoder_attention_heads": m["heads"], "d_model": m["d_model"],
                         "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2,
                         "forced_bos_token_id": 0},
            vision_config={"depths": m["depths"], "patch_size": [7] + [3] * (n - 1),
                           "patch_stride": [4] + [2] * (n - 1), "patch_padding": [3] + [1] * (n - 1),
                           "patch_prenorm": [False] + [True] * (n - 1), "embed_dim": m["embed_dim"],
                           "num_heads": [max(1, d // 32) for d in m["embed_dim"]],
                           "num_groups": [max(1, d // 32) for d in m["embed_dim"]], "window_size": 12,
                           "projection_dim": m["d_model"]},
            image_token_id=vocab["<image>"])
        model = Florence2ForConditionalGeneration(config).eval()
        side = m["image"]
        proc = CLIPImageProcessor(size={"height": side, "width": side}, do_center_crop=False,
                                  crop_size={"height": side, "width": side})
        proc.image_seq_length = (side // 32) ** 2 + 1  # stride 4 * 2^3, + 1 pooled token
        return t._save(model, Florence2Processor(image_processor=proc, tokenizer=tok), folder)
    if family == "qwen3_vl":
        from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                                  Qwen3VLProcessor, Qwen3VLVideoProcessor)
        tok, ids, text = t._tiny_qwen_text(head_dim=m["head_dim"])
        half = m["head_dim"] // 2
        text.update(hidden_size=m["hidden"], intermediate_size=m["intermediate"], num_hidden_layers=m["layers"],
                    num_attention_heads=m["heads"], num_key_value_heads=m["kv_heads"], max_position_embeddings=2048)
        text["rope_parameters"].update(mrope_section=[half - 2 * (half // 4), half // 4, half // 4],
                                       mrope_interleaved=True)
        vision = {"depth": m["vision_depth"], "hidden_size": m["vision_width"],
                  "intermediate_size": 2 * m["vision_width"], "out_hidden_size": m["hidden"], "num_heads": 4,
                  "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                  "num_position_embeddings": 64, "deepstack_visual_indexes": [m["vision_depth"] - 1]}
        config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
        model = Qwen3VLForConditionalGeneration(config).eval()
        px = m["image"] ** 2
        proc = Qwen2VLImageProcessor(min_pixels=px, max_pixels=px, patch_size=16, merge_size=2,
                                     temporal_patch_size=2)
        video = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
        return t._save(model, Qwen3VLProcessor(image_processor=proc, tokenizer=tok, video_processor=video,
                                               chat_template=t.QWEN_CHAT_TEMPLATE), folder)
    if family == "llava":
        from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, SiglipImageProcessor
        specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<image>",
                    "<|finetune_right_pad_id|>", "<unk>"]
        tok, vocab = t._tiny_fast_tokenizer(specials, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                            pad_token="<|finetune_right_pad_id|>")
        side, patch = m["image"], m["patch"]
        config = LlavaConfig(
            vision_config={"model_type": "siglip_vision_model", "hidden_size": m["vision_width"],
                           "intermediate_size": 2 * m["vision_width"], "num_hidden_layers": m["vision_layers"],
                           "num_attention_heads": 4, "image_size": side, "patch_size": patch},
            text_config={"model_type": "llama", "vocab_size": len(vocab), "hidden_size": m["hidden"],
                         "intermediate_size": m["intermediate"], "num_hidden_layers": m["layers"],
                         "num_attention_heads": m["heads"], "num_key_value_heads": m["kv_heads"],
                         "max_position_embeddings": 2048, "bos_token_id": 0, "eos_token_id": 1,
                         "pad_token_id": vocab["<|finetune_right_pad_id|>"]},
            image_token_index=vocab["<image>"], vision_feature_layer=-2, vision_feature_select_strategy="full",
            projector_hidden_act="gelu", image_seq_length=(side // patch) ** 2)
        model = LlavaForConditionalGeneration(config).eval()
        proc = SiglipImageProcessor(size={"height": side, "width": side})
        return t._save(model, LlavaProcessor(image_processor=proc, tokenizer=tok, patch_size=patch,
                                             vision_feature_select_strategy="full",
                                             chat_template=t.LLAVA_CHAT_TEMPLATE, num_additional_image_tokens=0),
                       folder)
    raise SystemExit(f"unknown family {family!r}; pick from {', '.join(MID)}")


def model_folder(family: str, size: str) -> Path:
    folder = WORK / f"{size}-{family}"
    if not (folder / "config.json").is_file():
        if size == "tiny":
            from interrogator_core import testing
            getattr(testing, f"make_tiny_{family}")(folder)
        else:
            build_mid(family, folder)
    return folder


def _images(n: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)) for _ in range(n)]


# -- the two sides -----------------------------------------------------------------------------------------------
def loop_captions(cap, images, prompt: str, tokens: int) -> List[str]:
    """The per-image loop of the ComfyUI caption nodes: processor, ``generate``, decode, one image at a time."""
    import torch

    from interrogator_core.caption import FAMILIES

    module, processor = cap.handle.module, cap.processor
    fam = FAMILIES[cap.family]
    out = []
    with torch.inference_mode():
        for im in images:
            inputs = processor(text=[prompt], images=[im], return_tensors="pt")
            inputs = {k: (v.to(module.dtype) if v.is_floating_point() else v) for k, v in inputs.items()
                      if isinstance(v, torch.Tensor) and k != "token_type_ids"}
            ids = module.generate(**inputs, max_new_tokens=tokens, do_sample=False)
            if fam.decoder_only:
                ids = ids[:, inputs["input_ids"].shape[1]:]
            out.append(cap._clean(processor.batch_decode(ids, skip_special_tokens=True)[0]))
    return out


def engine_captions(cap, images, style: str, tokens: int, batch_size: int) -> List[str]:
    """What CaptionStage runs: ``Captioner.generate`` on chunks of ``batch_size`` images."""
    out: List[str] = []
    for start in range(0, len(images), batch_size):
        out += cap.generate(images[start:start + batch_size], tokens, style=style)
    return out


def _timed(fn: Callable[[], Any]):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_family(args, family: str) -> Dict[str, Any]:
    import torch

    from interrogator_core.caption import load_captioner

    cap = load_captioner(str(model_folder(family, args.size)), torch.float32)
    module = cap.handle.module
    params = sum(p.numel() for p in module.parameters())
    images = _images(args.images)
    rows: Dict[str, Any] = {}
    for style in args.styles:
        if style not in cap.styles:
            continue
        _, texts = cap.build_inputs(images[:1], style)
        prompt = texts[0]
        engine_captions(cap, images[:2], style, 2, 2)  # warm-up (first-call allocations, lazy imports)
        loop_s: List[float] = []
        eng_s: Dict[int, List[float]] = {bs: [] for bs in args.batch_sizes}
        reference = None
        for _ in range(args.repeats):
            reference, s = _timed(lambda: loop_captions(cap, images, prompt, args.tokens))
            loop_s.append(s)
            for bs in args.batch_sizes:
                got, s = _timed(lambda: engine_captions(cap, images, style, args.tokens, bs))
                eng_s[bs].append(s)
                if got != reference:
                    bad = next(i for i, (a, b) in enumerate(zip(got, reference)) if a != b)
                    raise SystemExit(f"{family} {style} batch {bs}: caption {bad} differs from the loop's:\n"
                                     f"  engine {got[bad]!r}\n  loop   {reference[bad]!r}")
        loop = statistics.median(loop_s)
        words = statistics.mean(len(c.split()) for c in reference)
        rows[style] = {"loop_caps_per_s": len(images) / loop, "words": words,
                       "engine": {str(bs): {"caps_per_s": len(images) / statistics.median(v),
                                            "ratio": loop / statistics.median(v), "all_s": v}
                                  for bs, v in eng_s.items()},
                       "loop_all_s": loop_s, "equal": True}
        line = "  ".join(f"b{bs} {rows[style]['engine'][str(bs)]['ratio']:.2f}x" for bs in args.batch_sizes)
        print(f"{family:10s} {style:9s} loop {rows[style]['loop_caps_per_s']:6.2f} caps/s  {line}", flush=True)
    return {"params_m": params / 1e6, "styles": rows}


# -- per-call overhead -------------------------------------------------------------------------------------------
class _Clock:
    """Seconds spent inside wrapped calls (outermost call only, so nested forwards count once)."""

    def __init__(self) -> None:
        self.seconds, self.depth, self.start = 0.0, 0, 0.0

    def enter(self, *_: Any) -> None:
        if self.depth == 0:
            self.start = time.perf_counter()
        self.depth += 1

    def leave(self, *_: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.perf_counter() - self.start

    def hook(self, module) -> None:
        module.register_forward_pre_hook(self.enter)
        module.register_forward_hook(self.leave)

    def wrap(self, obj: Any, name: str) -> None:
        fn = getattr(obj, name)

        def timed(*a: Any, **k: Any) -> Any:
            self.enter()
            try:
                return fn(*a, **k)
            finally:
                self.leave()

        setattr(obj, name, timed)


def overhead(args) -> Dict[str, Any]:
    """Per mode, at one image per call: the share of a call's time outside the image encoder (forward hooks on
    the CLIP visual tower) and the caption model (its module's ``generate``, vision tower included), and
    the share outside every model forward (the CLIP text tower too: best/negative encode candidate prompts).
    Settings as bench.py's: 8 flavors, intermediate 256, fast/classic without similarities or negative prompt.

    The CLIP model is a random-weight ViT-B-32 (bench.py's), the caption model the ``--overhead-caption`` family
    at ``--size``, the label tables the real lists cut to ``--overhead-flavors`` flavors (warm cache)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench  # noqa: E402 - the modes benchmark's CLIP model and label subsets

    from interrogator_core import Interrogator, InterrogatorConfig, StandaloneHost
    from interrogator_core.testing import make_tiny_clip

    clip_dir = WORK / "clip-ViT-B-32"
    if not (clip_dir / "open_clip_model.safetensors").is_file():
        make_tiny_clip(clip_dir, seed=0, arch="ViT-B-32")
    data = bench._subset_data(WORK / f"data-{args.overhead_flavors}", args.overhead_flavors, 64)
    cfg = InterrogatorConfig(clip_model=str(clip_dir), caption_model=str(model_folder(args.overhead_caption,
                                                                                      args.size)),
                             cache_dir=WORK / f"cache-{args.overhead_flavors}", data_dir=data,
                             caption_max_length=args.tokens, flavor_intermediate_count=256)
    ci = Interrogator(cfg, StandaloneHost(device="cpu"))
    ci.load()
    ci.main.tables()
    clip = ci.main.clip
    cap = ci.captions.model() if hasattr(ci, "captions") else None
    image_clock, caption_clock, text_clock = _Clock(), _Clock(), _Clock()
    image_clock.hook(clip.module.visual)
    for name in ("encode_texts", "encode_tokens", "encode_with_prefix"):
        text_clock.wrap(clip.text, name)
    images = _images(args.overhead_images)
    ci.interrogate(images[:1], mode="fast")  # warm-up; also loads the caption model
    if cap is None:
        cap = _find_captioner(ci)
    # not forward hooks: generate runs an encoder-decoder's vision tower and encoder outside module.forward
    caption_clock.wrap(cap.handle.module, "generate")
    out: Dict[str, Any] = {}
    flavors = dict(min_flavors=8, max_flavors=8)  # bench.py's settings
    calls = {"fast": dict(mode="fast", negative_count=0, similarities=False, **flavors),
             "classic": dict(mode="classic", negative_count=0, similarities=False, **flavors),
             "best": dict(mode="best", negative_count=0, **flavors), "negative": dict(mode="negative", **flavors)}
    for mode, kw in calls.items():
        shares, total, model, everything = [], 0.0, 0.0, 0.0
        for _ in range(args.repeats):
            for clock in (image_clock, caption_clock, text_clock):
                clock.seconds = 0.0
            _, s = _timed(lambda: [ci.interrogate([im], **kw) for im in images])
            m = image_clock.seconds + caption_clock.seconds
            shares.append((s - m) / s)
            total, model, everything = total + s, model + m, everything + m + text_clock.seconds
        out[mode] = {"s_per_call": total / args.repeats / len(images), "share_outside": statistics.median(shares),
                     "share_outside_all_forwards": (total - everything) / total,
                     "image_s": image_clock.seconds / len(images), "text_s": text_clock.seconds / len(images),
                     "caption_s": caption_clock.seconds / len(images)}
        print(f"overhead {mode:9s} {out[mode]['s_per_call']:.3f} s/call  outside image+caption "
              f"{100 * out[mode]['share_outside']:.1f}%  outside all forwards "
              f"{100 * out[mode]['share_outside_all_forwards']:.1f}%", flush=True)
    return out


def _find_captioner(ci):
    from interrogator_core.caption import Captioner

    for value in vars(ci.pool).values() if hasattr(ci, "pool") else []:
        if isinstance(value, dict):
            for v in value.values():
                if isinstance(v, Captioner):
                    return v
    raise SystemExit("could not find the loaded caption model to hook")


# -- report ------------------------------------------------------------------------------------------------------
def _machine() -> str:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench

    return bench._machine("cpu")


def render(result: Dict[str, Any]) -> str:
    s = result["settings"]
    bss = [str(b) for b in s["batch_sizes"]]
    lines = [f"Machine: {result['machine']}; transformers {result['transformers']}; {s['images']} images "
             f"({160}x{160}), {s['tokens']} new tokens, greedy, `--size {s['size']}`, median of {s['repeats']}.",
             "",
             "| model (params) | style | loop captions/s | " + " | ".join(f"batch {b} captions/s (× loop)" for b in bss)
             + " |",
             "|---|---|---:|" + "---:|" * len(bss)]
    for family, r in result["families"].items():
        for style, row in r["styles"].items():
            cells = " | ".join(f"{row['engine'][b]['caps_per_s']:.2f} ({row['engine'][b]['ratio']:.2f}×)"
                               for b in bss)
            lines.append(f"| {FAMILY_NAMES.get(family, family)} ({r['params_m']:.1f} M) | {style} | "
                         f"{row['loop_caps_per_s']:.2f} | {cells} |")
    if result.get("overhead"):
        lines += ["", "Per-call overhead, one image per call (`--overhead`): the share of a call outside the image "
                      "encoder and the caption model forwards, and outside every model forward (the CLIP text tower "
                      "too).", "",
                  "| mode | s per call | outside image encoder + caption model | outside all model forwards |",
                  "|---|---:|---:|---:|"]
        for mode, o in result["overhead"].items():
            lines.append(f"| {mode} | {o['s_per_call']:.3f} | {100 * o['share_outside']:.1f}% | "
                         f"{100 * o['share_outside_all_forwards']:.1f}% |")
    return "\n".join(lines)


def write_docs(table: str, doc: Path = SPEED_DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    doc.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    import logging
    import warnings

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", nargs="*", default=list(MID), choices=list(MID))
    p.add_argument("--styles", nargs="*", default=["short", "detailed", "tags"])
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 4, 8])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--tokens", type=int, default=24, help="max_new_tokens of both sides (every style)")
    p.add_argument("--size", default="mid", choices=["mid", "tiny"], help="reduced config (mid) or the tests' tiny")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--overhead", action="store_true", help="also measure the per-call overhead per mode")
    p.add_argument("--overhead-caption", default="florence2", choices=list(MID))
    p.add_argument("--overhead-images", type=int, default=4)
    p.add_argument("--overhead-flavors", type=int, default=480)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench-caption-cpu.json"))
    p.add_argument("--render", default=None, help="print (and with --docs write) the tables of a saved JSON")
    p.add_argument("--docs", action="store_true", help="rewrite the caption tables of docs/speed.md")
    args = p.parse_args()
    if args.render:
        result = json.loads(Path(args.render).read_text())
    else:
        import torch
        import transformers

        logging.disable(logging.WARNING)
        warnings.filterwarnings("ignore")
        transformers.logging.set_verbosity_error()
        if args.threads:
            torch.set_num_threads(args.threads)
        WORK.mkdir(parents=True, exist_ok=True)
        result = {"machine": _machine(), "transformers": transformers.__version__, "settings": {
            k: v for k, v in vars(args).items() if k not in ("out", "render", "docs")}, "families": {}}
        for family in args.families:
            result["families"][family] = run_family(args, family)
        if args.overhead:
            result["overhead"] = overhead(args)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    table = render(result)
    print(table)
    if args.docs:
        write_docs(table)


if __name__ == "__main__":
    main()
