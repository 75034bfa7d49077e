"""Command line: ``python -m interrogator_core IMAGES_OR_DIRS --mode best``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from .batch import EXISTING_POLICIES, BatchWriter, collect_images, run_batch
from .errors import InterrogatorError
from .fileio import RecordFile, output_problem, writable_dir_problem
from .host import StandaloneHost, device_problem
from .interrogator import MODES, Interrogator, InterrogatorConfig
from .settings import SETTINGS, TAGGER_SETTINGS, add_flag, tagger_options
from .usage import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ray_output

log = logging.getLogger("interrogator_core")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m interrogator_core",
        description="Image → positive and negative Stable Diffusion prompt (CLIP + caption model).",
    )
    p.add_argument("inputs", nargs="*", help="image files and/or folders (folders are walked recursively)")
    add_flag(p, "mode", choices=[*MODES, "analyze"], help="prompt mode; analyze: top labels per table")
    add_flag(p, "clip_model")
    add_flag(p, "caption_model", help=SETTINGS["caption_model"].help_text().replace(
        "registry names:", "see --list-caption-models:"))
    add_flag(p, "target")
    add_flag(p, "sdxl_dual")
    add_flag(p, "caption_style")
    add_flag(p, "caption_prompt", metavar="TEXT")
    add_flag(p, "caption_length")
    add_flag(p, "trigger_prefix", metavar="TEXT")
    add_flag(p, "trigger_suffix", metavar="TEXT")
    add_flag(p, "caption_replace", metavar="FILE")
    add_flag(p, "trust_remote_code")
    add_flag(p, "beam_width")
    add_flag(p, "min_flavors")
    add_flag(p, "max_flavors")
    add_flag(p, "negative_count")
    add_flag(p, "top_n")
    add_flag(p, "device")
    add_flag(p, "precision")
    add_flag(p, "offload")
    add_flag(p, "model_dirs")
    add_flag(p, "cache_dir")
    add_flag(p, "data_dir")
    add_flag(p, "user_tables_dir", metavar="DIR")
    add_flag(p, "blocklist", metavar="FILE")
    tags = p.add_argument_group("image taggers (a WD v3 tagger as --caption-model)")
    for name in TAGGER_SETTINGS:
        if SETTINGS[name].cli_flag:
            add_flag(tags, name, dest=name)
    p.add_argument("--no-recursive", action="store_true", help="do not walk subfolders")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--txt", choices=EXISTING_POLICIES, default=None,
                     help="write <image>.txt sidecars with the prompt; existing ones: overwrite, append or skip")
    out.add_argument("--jsonl", default=None, metavar="FILE", help="add one JSON line per image to FILE")
    out.add_argument("--csv", default=None, metavar="FILE", help="add one CSV row per image to FILE")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: skip images it finished (and images already in FILE)")
    add_flag(p, "batch_size")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no per-image printout")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--list-clip-models", action="store_true")
    p.add_argument("--list-caption-models", action="store_true")
    ray = p.add_argument_group("Ray Data (pip install prompt-interrogator[ray]; see docs/datasets.md, Ray)")
    ray.add_argument("--ray", action="store_true", help="run on Ray Data: one model per actor, resumable output")
    ray.add_argument("--ray-address", default=None, help="cluster to join (default: start a local Ray)")
    ray.add_argument("--actors", type=int, default=1, help="with --ray: actors (model copies)")
    ray.add_argument("--gpus-per-actor", type=float, default=0, help="with --ray: GPUs per actor (0.5: two per GPU)")
    out.add_argument("--parquet", default=None, metavar="DIR", help="with --ray: Parquet part files in DIR")
    return p


def _config(a: argparse.Namespace) -> InterrogatorConfig:
    caption = a.caption_model  # "none": no caption model (InterrogatorConfig)
    return InterrogatorConfig(
        clip_model=a.clip_model, target=a.target, sdxl_dual=a.sdxl_dual, caption_model=caption,
        caption_style=a.caption_style, caption_prompt=a.caption_prompt, trust_remote_code=a.trust_remote_code,
        caption_length=a.caption_length, trigger_prefix=a.trigger_prefix, trigger_suffix=a.trigger_suffix,
        caption_replace=a.caption_replace,
        cache_dir=a.cache_dir, model_dirs=a.models_dir,
        data_dir=a.data_dir, user_tables_dir=a.user_tables, blocklist=a.blocklist, offload=a.offload,
        tagger_options=tagger_options({n: getattr(a, n) for n in TAGGER_SETTINGS if SETTINGS[n].cli_flag}),
    )


def _progress_bar(quiet: bool, total: int):
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)


class _PhaseBars:
    """tqdm bars for the engine's long phases (label encoding), fed by the host's progress callback."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: dict = {}

    def __call__(self, step: int, total: int, desc: str) -> None:
        if self.quiet or not desc.startswith("encoding"):
            return
        bar = self.bars.get(desc)
        if bar is None:
            from tqdm import tqdm

            bar = self.bars[desc] = tqdm(total=total, desc=desc, unit="label", file=sys.stderr, leave=False)
        bar.update(step - bar.n)
        if step >= total:
            bar.close()


def main(argv: Optional[List[str]] = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if a.list_clip_models or a.list_caption_models:
        from . import list_caption_models, list_clip_models

        print("\n".join(list_clip_models() if a.list_clip_models else list_caption_models()))
        return EXIT_OK
    if not a.inputs:
        print("error: give at least one image or folder (see --help)", file=sys.stderr)
        return EXIT_USAGE
    missing = [i for i in a.inputs if not Path(i).exists()]
    if missing:
        print(f"error: not found: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    problems = usage_problems(a)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if a.ray or a.parquet:
        try:
            from .ray import run_cli
        except ImportError as e:  # the message says how to install Ray
            print(f"error: {e}", file=sys.stderr)
            return EXIT_FAILED
        return run_cli(a, _config(a))
    try:
        ci = Interrogator(_config(a), StandaloneHost(device=a.device, dtype=a.precision, progress=_PhaseBars(a.quiet)))
        if a.mode == "analyze":
            return _analyze(ci, a)
        files = collect_images(a.inputs, recursive=not a.no_recursive)
        bar = _progress_bar(a.quiet, len(files))

        def show(path, r) -> None:
            if not a.quiet:
                text = f"== {path}\npositive: {r.positive}\nnegative: {r.negative}"
                text += "".join(f"\n{key}: {prompt}" for key, prompt in r.prompts.items())
                if r.negative_l is not None:
                    text += f"\nnegative (clip_l): {r.negative_l}"
                text += "".join(f"\nnote: {note}" for note in r.notes)
                (bar.write if bar is not None else print)(text)
            if bar is not None:
                bar.update(1)

        summary = run_batch(ci, files, _writer(a), mode=a.mode, min_flavors=a.min_flavors,
                            max_flavors=a.max_flavors, negative_count=a.negative_count, chunk_size=a.batch_size,
                            beam_width=a.beam_width, on_result=show)
        if bar is not None:
            bar.close()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InterrogatorError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    for path, reason in summary.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    for path, sidecar in summary.renamed:
        print(f"note: {path} shares its name with another image; its prompt is in {sidecar}", file=sys.stderr)
    print(f"{summary.written} done, {summary.skipped} skipped, {len(summary.failed)} failed", file=sys.stderr)
    if summary.error:
        print(f"error: {summary.error}", file=sys.stderr)
        return EXIT_FAILED
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if not summary.written and not summary.skipped:
        print("error: no image could be processed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if summary.failed else EXIT_OK


def usage_problems(a: argparse.Namespace) -> List[str]:
    """What is wrong with the arguments, found before any model loads (each names the fix); [] when fine."""
    problems = []
    bad_device = device_problem(a.device, flag="--device")
    if bad_device:
        problems.append(bad_device)
    for flag, value in (("--batch-size", a.batch_size), ("--beam-width", a.beam_width)):
        if value < 1:
            problems.append(f"{flag} must be at least 1, got {value}")
    for flag, value in (("--min-flavors", a.min_flavors), ("--max-flavors", a.max_flavors),
                        ("--negative-count", a.negative_count), ("--top", a.top)):
        if value is not None and value < 0:
            problems.append(f"{flag} must be 0 or more, got {value}")
    if a.blocklist and not Path(a.blocklist).is_file():
        what = "is a folder" if Path(a.blocklist).is_dir() else "does not exist"
        problems.append(f"--blocklist {a.blocklist} {what}; give a text file with one label per line")
    if a.user_tables and not Path(a.user_tables).is_dir():
        problems.append(f"--user-tables {a.user_tables} is not a folder; give a folder of NAME.txt label lists")
    if a.ray or a.parquet:
        problems.extend(_ray_problems(a))
    else:
        for flag in ("jsonl", "csv"):
            target = getattr(a, flag)
            problem = target and output_problem(target, "file", example_name=f"prompts.{flag}")
            if problem:
                problems.append(f"--{flag} {target} {problem}")
    if a.txt:
        folders = sorted({Path(i) if Path(i).is_dir() else Path(i).parent for i in a.inputs})
        for folder in folders:
            problem = writable_dir_problem(folder)
            if problem:
                problems.append(f"--txt: cannot write sidecars in {folder} ({problem}); make it writable or use "
                                "--jsonl/--csv with a file elsewhere")
    return problems


def _ray_problems(a: argparse.Namespace) -> List[str]:
    """Usage problems of a ``--ray`` run (outputs are folders there), found before Ray starts."""
    if not a.ray:
        return ["--parquet needs --ray (without Ray, write --jsonl FILE or --csv FILE)"]
    fmt, output = ray_output(a)
    if fmt is None:
        return ["--ray needs an output: --parquet DIR, --jsonl DIR or --txt skip"
                + (" (--csv is not a Ray output)" if a.csv else "")]
    problems = []
    if a.mode == "analyze":
        problems.append("--ray does not do analyze mode; choose another --mode or drop --ray")
    if fmt == "sidecars":
        from .dataset import guess_source_format

        if a.txt != "skip":
            problems.append(f"--ray --txt {a.txt}: a Ray run resumes by skipping images that have their .txt; "
                            "use --txt skip (or the CLI without --ray)")
        try:
            kind = guess_source_format(a.inputs)
        except ValueError as e:
            kind = f"mixed ({e})"
        if kind != "images":
            problems.append(f"--ray --txt writes a .txt beside each image file; these inputs are {kind}: use "
                            "--parquet DIR or --jsonl DIR")
    else:
        problem = output_problem(output, "folder")
        if problem:
            problems.append(f"--{fmt} {output} {problem}")
    return problems


def _writer(a: argparse.Namespace) -> Optional[BatchWriter]:
    """The output writer the flags ask for (None: print only). Keys are relative to the first input."""
    first = Path(a.inputs[0])
    root = first if first.is_dir() else first.parent
    if a.txt:
        return BatchWriter(root, output="txt", existing=a.txt, resume=a.resume)
    for fmt in ("jsonl", "csv"):
        target = getattr(a, fmt)
        if target:
            return BatchWriter(root, output=fmt, existing="skip" if a.resume else "append", out_file=target,
                               resume=a.resume)
    return None


def _analyze(ci: Interrogator, a: argparse.Namespace) -> int:
    failed = 0
    for f in collect_images(a.inputs, not a.no_recursive):
        try:
            r = ci.analyze([f], top_n=a.top, with_caption=bool(ci.config.caption_model))[0]
        except InterrogatorError as e:
            print(f"failed: {f}: {e}", file=sys.stderr)
            failed += 1
            continue
        r.source = str(f)
        if a.jsonl:
            with RecordFile(a.jsonl) as out:
                out.append(json.dumps(r.to_dict(), ensure_ascii=False))
        print(f"== {f}\n{r.to_text()}")
    return EXIT_FAILED if failed else EXIT_OK
