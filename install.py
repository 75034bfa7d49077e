"""Installs Prompt Interrogator's missing dependencies; run by A1111/Forge (and ComfyUI-Manager) at start-up.

Rules:
* The minimums come from ``requirements.txt`` beside this file (``name>=version`` lines).
* A package that is installed and satisfies its minimum is left alone (no upgrade, no downgrade).
* torch, torchvision and torchaudio are never installed or changed; every package already installed is pinned
  to its installed version through a constraints file, so installing what is missing cannot move them.
* Inside the webui it uses ``launch.is_installed`` / ``launch.run_pip`` (which honour ``--skip-install`` and
  the webui's index URL); elsewhere ``python -m pip``.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

log = logging.getLogger("prompt_interrogator.install")

HERE = Path(__file__).resolve().parent
NEVER_TOUCH = {"torch", "torchvision", "torchaudio"}
#: Used when requirements.txt is missing (kept in step with it).
FALLBACK_REQUIREMENTS: List[Tuple[str, str]] = [
    ("transformers", "4.30.2"), ("open-clip-torch", "2.20.0"), ("safetensors", "0.3.1"), ("Pillow", "9.5.0"),
    ("tqdm", "4.0"),
]
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][^\s;,#]*))?\s*(?:[;#].*)?$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path = HERE / "requirements.txt") -> List[Tuple[str, str]]:
    """``(name, minimum)`` pairs (minimum "" when none) from a requirements file, torch family left out."""
    if not path.is_file():
        return list(FALLBACK_REQUIREMENTS)
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "-")):
            continue
        m = _REQ.match(line)
        if m is None:
            log.warning("install.py: ignoring requirement line %r", line)
            continue
        if canonical(m.group(1)) not in NEVER_TOUCH:
            out.append((m.group(1), m.group(2) or ""))
    return out


def _version_tuple(version: str) -> Tuple:
    try:
        from packaging.version import Version

        return (Version(version),)
    except Exception:
        parts = []
        for piece in re.split(r"[.+-]", version):
            if not piece.isdigit():
                break
            parts.append(int(piece))
        return tuple(parts)


def satisfies(installed: str, minimum: str) -> bool:
    return not minimum or _version_tuple(installed) >= _version_tuple(minimum)


def installed_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def plan(requirements: List[Tuple[str, str]], version_of: Callable[[str], Optional[str]] = installed_version,
         is_installed: Optional[Callable[[str], bool]] = None) -> List[str]:
    """The pip specifiers to install: missing packages, and installed ones older than their minimum."""
    todo = []
    for name, minimum in requirements:
        if canonical(name) in NEVER_TOUCH:
            log.warning("install.py: not installing %s: the webui's own build is kept", name)
            continue
        version = version_of(name)
        if version is None and is_installed is not None and is_installed(name):
            continue  # present without metadata (vendored): trust the host
        if version is None or not satisfies(version, minimum):
            if version is not None:
                log.warning("install.py: %s %s is older than the required %s; upgrading it", name, version, minimum)
            todo.append(f"{name}>={minimum}" if minimum else name)
    return todo


def constraints(skip: List[str]) -> str:
    """A constraints file's text pinning every installed distribution (except ``skip``) to its version."""
    skip_set = {canonical(re.split(r"[<>=!~ ]", s, 1)[0]) for s in skip}
    pins: Dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name") if dist.metadata else None
        if name and canonical(name) not in skip_set and dist.version:
            pins.setdefault(canonical(name), f"{name}=={dist.version}")
    return "\n".join(sorted(pins.values())) + "\n"


def main(launch=None) -> List[str]:
    """Install what is missing; returns the specifiers it asked pip for (empty when nothing was needed)."""
    if launch is None:
        try:
            import launch  # type: ignore[no-redef]  # the webui's launch module
        except ImportError:
            launch = None
    todo = plan(read_requirements(), is_installed=getattr(launch, "is_installed", None))
    if not todo:
        return []
    fd, path = tempfile.mkstemp(prefix="prompt-interrogator-constraints-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(constraints(todo))
        specs = " ".join(f'"{s}"' for s in todo)
        if launch is not None:
            launch.run_pip(f'install {specs} -c "{path}"', f"Prompt Interrogator requirements: {', '.join(todo)}")
        else:
            subprocess.check_call([sys.executable, "-m", "pip", "install", *todo, "-c", path])
    finally:
        os.unlink(path)
    return todo


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
