#!/usr/bin/env bash
# Main job: prompts for images/folders. Sets up .venv on first use, then runs the CLI.
#   ./run.sh IMAGES_OR_DIRS [options]        (see ./run.sh --help; default models download on first use)
#   ./run.sh --tiny-models IMAGES_OR_DIRS    the same pipeline on tiny random-weight models (offline try-out:
#                                            the prompts are gibberish, everything else is real)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PI_VENV:-$ROOT/.venv}"
"$ROOT/tools/setup_env.sh" "$VENV" current >&2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--tiny-models" ]; then
  shift
  TINY="$ROOT/.cache/tiny-models"
  [ -f "$TINY/tiny-clip/open_clip_model.safetensors" ] && [ -f "$TINY/tiny-blip/config.json" ] || \
    "$VENV/bin/python" -c "import sys; from interrogator_core.testing import make_tiny_clip, make_tiny_blip; make_tiny_clip(sys.argv[1] + '/tiny-clip'); make_tiny_blip(sys.argv[1] + '/tiny-blip')" "$TINY"
  set -- "$@" --clip-model "$TINY/tiny-clip" --caption-model "$TINY/tiny-blip" --cache-dir "$ROOT/.cache/tiny-cache"
fi
exec "$VENV/bin/python" -m interrogator_core "$@"
