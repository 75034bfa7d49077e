#!/usr/bin/env bash
# Tests: ./test.sh [all|current|a1111|forge] [pytest args...]
#   all (default, what CI runs): the suite in three environments — the library versions A1111 pins
#   (.venv-a1111), those Forge runs (.venv-forge), and the current releases ComfyUI installs (.venv, where the
#   real-ComfyUI server test runs too). See .ci/envs/*.txt.
# Each environment is created on first use (torch 2.14.1 from the machine's local wheels).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WHICH="${1:-all}"; [ $# -gt 0 ] && shift
case "$WHICH" in all|current|a1111|forge) ;; *) set -- "$WHICH" "$@"; WHICH=all ;; esac
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

run_env() {  # run_env NAME VENV
  local name="$1" venv="$2"; shift 2
  echo "=== tests: $name environment ($venv)" >&2
  "$ROOT/tools/setup_env.sh" "$venv" "$name" --test
  "$venv/bin/python" -m pip list --format=freeze 2>/dev/null | grep -iE '^(torch|transformers|open.clip.torch|numpy|pillow|safetensors)==' | tr '\n' ' ' >&2; echo >&2
  local rc=0
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" || rc=$?
  [ "$rc" -eq 5 ] && { echo "no tests collected in $name" >&2; rc=1; }
  return "$rc"
}

status=0
if [ "$WHICH" = all ] || [ "$WHICH" = a1111 ]; then run_env a1111 "$ROOT/.venv-a1111" "$@" || status=1; fi
if [ "$WHICH" = all ] || [ "$WHICH" = forge ]; then run_env forge "$ROOT/.venv-forge" "$@" || status=1; fi
if [ "$WHICH" = all ] || [ "$WHICH" = current ]; then
  # a real ComfyUI 0.3.75 (downloaded, never committed) for tests/integration/test_comfyui_server.py
  "$ROOT/tools/setup_env.sh" "$ROOT/.venv" current --test
  if eval "$(bash "$ROOT/.ci/comfyui_env.sh" "$ROOT/.venv-comfy" "$ROOT/.venv")"; then :; else
    echo "ComfyUI environment could not be prepared; the real-server test will say so" >&2
    [ -n "${CI:-}" ] && status=1
  fi
  run_env current "$ROOT/.venv" "$@" || status=1
  unset COMFYUI_DIR COMFYUI_PYTHON
fi
exit "$status"
