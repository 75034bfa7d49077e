"""Installs Prompt Interrogator's missing dependencies; run by A1111/Forge (and ComfyUI-Manager) at start-up.

Rules:
* The requirements come from ``requirements.txt`` beside this file (parsed with ``packaging``, which every
  webui Python has; pip's vendored copy otherwise).
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
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Union

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover - pip vendors it wherever pip is
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[no-redef]

log = logging.getLogger("prompt_interrogator.install")

HERE = Path(__file__).resolve().parent
NEVER_TOUCH = {"torch", "torchvision", "torchaudio"}
#: Used when requirements.txt is missing (kept in step with it).
FALLBACK_REQUIREMENTS: List[str] = ["transformers>=4.30.2", "open-clip-torch>=2.20.0", "safetensors>=0.3.1",
                                    "Pillow>=9.5.0", "tqdm>=4.0"]


def canonical(name: str) -> str:
    """The normalized distribution name (PEP 503): ``Open_Clip.Torch`` → ``open-clip-torch``."""
    return canonicalize_name(name)


def parse_requirements(lines: Iterable[str]) -> List[Requirement]:
    """Requirement lines → :class:`Requirement` objects for this environment: comments, pip options
    (``-r``, ``--index-url``), lines whose marker does not apply, and the torch family are left out."""
    out = []
    for line in lines:
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement as e:
            log.warning("install.py: ignoring requirement line %r (%s)", line, e)
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        if canonical(req.name) in NEVER_TOUCH:
            log.info("install.py: %s is the webui's own; never installed or changed", req.name)
            continue
        out.append(req)
    return out


def read_requirements(path: Path = HERE / "requirements.txt") -> List[Requirement]:
    """The requirements of ``path`` (see :func:`parse_requirements`); :data:`FALLBACK_REQUIREMENTS` when it is
    missing."""
    if not path.is_file():
        return parse_requirements(FALLBACK_REQUIREMENTS)
    return parse_requirements(path.read_text(encoding="utf-8").splitlines())


def satisfies(installed: str, requirement: Union[str, Requirement]) -> bool:
    """Whether version ``installed`` meets ``requirement``'s specifier (local versions such as ``+cu121`` and
    pre-releases count). A version that does not parse is trusted: the host's package is never replaced."""
    req = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
    try:
        return req.specifier.contains(Version(installed), prereleases=True)
    except InvalidVersion:
        log.warning("install.py: cannot read %s's version %r; leaving it as it is", req.name, installed)
        return True


def installed_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def plan(requirements: Iterable[Union[str, Requirement]],
         version_of: Callable[[str], Optional[str]] = installed_version,
         is_installed: Optional[Callable[[str], bool]] = None) -> List[str]:
    """The pip specifiers to install: missing packages, and installed ones that do not meet their requirement."""
    todo = []
    for req in requirements:
        req = req if isinstance(req, Requirement) else Requirement(req)
        if canonical(req.name) in NEVER_TOUCH:
            log.warning("install.py: not installing %s: the webui's own build is kept", req.name)
            continue
        version = version_of(req.name)
        if version is None and is_installed is not None and is_installed(req.name):
            continue  # present without metadata (vendored): trust the host
        if version is None or not satisfies(version, req):
            if version is not None:
                log.warning("install.py: %s %s does not meet %s; upgrading it", req.name, version, req)
            todo.append(str(req))
    return todo


def constraints(skip: List[str]) -> str:
    """A constraints file's text pinning every installed distribution (except ``skip``) to its version."""
    skip_set = {canonical(Requirement(s).name) for s in skip}
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
