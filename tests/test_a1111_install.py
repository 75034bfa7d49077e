"""install.py: installs only what is missing or too old, never touches torch, pins what is installed."""
import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "a1111"))

import env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def install():
    spec = importlib.util.spec_from_file_location("pi_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def launch():
    env.install()
    import launch

    launch.pip_calls.clear()
    yield launch
    env.uninstall()


def test_reads_repo_requirements(install):
    reqs = {install.canonical(r.name): r for r in install.read_requirements()}
    assert {"transformers", "open-clip-torch", "safetensors"} <= set(reqs)
    assert str(reqs["open-clip-torch"].specifier) == ">=2.20.0"


def test_requirements_filter_drops_torch_options_and_foreign_markers(install, tmp_path):
    """The torch family never reaches pip, whatever the file lists and however it spells the names."""
    path = tmp_path / "requirements.txt"
    path.write_text("\n".join([
        "# a comment", "", "--extra-index-url https://example.invalid/simple", "-r other.txt",
        "torch>=2.0", "TorchVision==0.20.0", "TorchAudio ; python_version >= '3'",
        "transformers>=4.30.2  # inline comment", "open_clip_torch>=2.20.0,<4",
        "tqdm>=4.0; python_version < '3'",  # not for this Python
        "not a requirement ===",
    ]) + "\n", encoding="utf-8")
    reqs = install.read_requirements(path)
    assert [str(r) for r in reqs] == ["transformers>=4.30.2", "open_clip_torch<4,>=2.20.0"]
    assert install.plan(reqs, {"transformers": "4.30.2", "open_clip_torch": "4.0.0"}.get) == \
        ["open_clip_torch<4,>=2.20.0"], "an installed version above a maximum is planned too"


def test_plan_leaves_satisfied_packages_alone(install):
    reqs = ["transformers>=4.30.2", "open-clip-torch>=2.20.0", "safetensors>=0.3.1"]
    versions = {"transformers": "4.46.1", "open-clip-torch": "2.20.0", "safetensors": "0.3.1"}
    assert install.plan(reqs, versions.get) == []
    versions["transformers"] = "4.25.1"
    del versions["safetensors"]
    assert install.plan(reqs, versions.get) == ["transformers>=4.30.2", "safetensors>=0.3.1"]
    assert install.plan(reqs, versions.get, is_installed=lambda n: n == "safetensors") == ["transformers>=4.30.2"]


def test_version_compare(install):
    assert install.satisfies("4.30.10", "x>=4.30.2") and not install.satisfies("4.3.0", "x>=4.30.2")
    assert install.satisfies("2.1.0+cu121", "x>=2.1.0") and install.satisfies("1.0", "x")
    assert install.satisfies("4.31.0.dev0", "x>=4.30.2"), "a pre-release above the minimum counts"
    assert install.satisfies("weird-build", "x>=1.0"), "an unreadable host version is left alone"


def test_main_installs_nothing_when_satisfied(install, launch):
    assert install.main(launch) == []  # this venv has what requirements.txt asks for
    assert launch.pip_calls == []


def test_main_pins_installed_packages_and_never_torch(install, launch, monkeypatch):
    monkeypatch.setattr(install, "read_requirements", lambda: ["transformers>=99.0", "torch>=3.0"])
    monkeypatch.setattr(install, "installed_version",
                        lambda n: {"transformers": "4.30.2", "torch": "2.14.1"}.get(n))
    written = {}
    real_constraints = install.constraints

    def spy(skip):
        written["text"] = real_constraints(skip)
        return written["text"]

    monkeypatch.setattr(install, "constraints", spy)
    todo = install.main(launch)
    assert todo == ["transformers>=99.0"], "torch is never installed, whatever the requirements say"
    (command, desc), = launch.pip_calls
    assert command.startswith('install "transformers>=99.0"') and " -c " in command
    pins = written["text"].splitlines()
    import importlib.metadata

    assert f"torch=={importlib.metadata.version('torch')}" in pins, "installed torch pinned to its version"
    assert not any(p.lower().startswith("transformers==") for p in pins), "the package being upgraded is free"
    launch.args.skip_install = True
    launch.pip_calls.clear()
    install.main(launch)
    assert launch.pip_calls == [], "--skip-install is honoured by launch.run_pip"
    launch.args.skip_install = False
