#!/usr/bin/env bash
# Create or update a virtual environment for this repo: torch from the machine's local wheels, then the
# runtime requirements (+ an environment's pins), + test tools with --test.
# Usage: tools/setup_env.sh VENV_DIR [ENV_NAME] [--test]      ENV_NAME: current (default), a1111 or forge (.ci/envs/)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$1"; ENV_NAME="${2:-current}"; TEST="${3:-}"
PY="${PYTHON:-python3}"
PIP_FLAGS=(-q --disable-pip-version-check)
log() { echo "[setup_env] $*" >&2; }

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
pip() { "$VENV/bin/python" -m pip "${PIP_FLAGS[@]}" "$@"; }

# torch 2.14.1 + torchvision 0.29.1 lie on this machine's disk; never let pip pick a newer torch.
# The heavy part (torch, torchvision, triton, the CUDA libraries: ~5.3 GB) is installed once into a shared
# folder that every venv of this checkout reads through a .pth file, so the three test venvs cost one torch
# on disk, not three. Set PI_SHARED_TORCH=none to install torch into the venv itself.
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
SHARED="${PI_SHARED_TORCH:-$ROOT/.cache/shared-torch-2.14.1}"
shared_torch() {  # build $SHARED once: torch + torchvision and only their heavy dependencies
  [ -f "$SHARED/.ready" ] && return 0
  local tmp="$SHARED.tmp.$$"
  log "installing ${TORCH_PINS[*]} once into $SHARED (shared by this checkout's venvs)"
  rm -rf "$tmp"; "$VENV/bin/python" -m pip "${PIP_FLAGS[@]}" install --target "$tmp" "${TORCH_PINS[@]}"
  # light dependencies (numpy, pillow, sympy, ...) go into each venv, so a venv's own pins win
  ( cd "$tmp" && for d in *; do
      case "$d" in torch|torch-*|torchvision*|functorch|torchgen|triton|triton-*|nvidia|nvidia_*|cuda|cuda_*|bin) ;;
        *) rm -rf "$d" ;; esac
    done )
  touch "$tmp/.ready"; rm -rf "$SHARED"; mv "$tmp" "$SHARED"
}
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  if [ "$SHARED" != none ]; then
    shared_torch
    SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "import site; site.addsitedir('$SHARED')" > "$SITE/_pi_shared_torch.pth"
  fi
  log "installing ${TORCH_PINS[*]}"
  pip install "${TORCH_PINS[@]}"   # with the shared folder: only torch's light dependencies
fi
TV="$("$VENV/bin/python" -c 'import torch, torchvision; print(f"torch=={torch.__version__.split(chr(43))[0]}\ntorchvision=={torchvision.__version__.split(chr(43))[0]}")')"
CONSTRAINTS="$(mktemp)"; trap 'rm -f "$CONSTRAINTS"' EXIT
printf '%s\n' "$TV" > "$CONSTRAINTS"

stamp="$VENV/.pi-setup-$ENV_NAME${TEST:+-test}"
EXTRA_TEST="$ROOT/.ci/envs/$ENV_NAME-test.txt"  # an environment's test-only extras (current: Ray Data)
inputs="$( { cat "$ROOT/requirements.txt" "$ROOT/.ci/envs/$ENV_NAME.txt" "$ROOT/requirements-test.txt" 2>/dev/null
             if [ -f "$EXTRA_TEST" ]; then cat "$EXTRA_TEST"; fi; } | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  log "$VENV is up to date ($ENV_NAME)"; exit 0
fi
log "installing requirements ($ENV_NAME) into $VENV"
pip install -c "$CONSTRAINTS" -r "$ROOT/requirements.txt" -r "$ROOT/.ci/envs/$ENV_NAME.txt"
if [ "$TEST" = "--test" ]; then
  pip install -c "$CONSTRAINTS" -r "$ROOT/requirements-test.txt"
  if [ -f "$EXTRA_TEST" ]; then pip install -c "$CONSTRAINTS" -r "$EXTRA_TEST"; fi
  # the reference implementation, for the cache-compatibility test and the benchmark (its deps are ours)
  pip install --no-deps clip-interrogator==0.6.0
  # a registry torchaudio next to the local torch breaks `import transformers`
  "$VENV/bin/python" -m pip uninstall -y -q torchaudio >/dev/null 2>&1 || true
fi
echo "$inputs" > "$stamp"
