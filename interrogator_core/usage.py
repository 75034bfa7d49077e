"""What the command line and its Ray path share: the exit codes and the error for a request that cannot run.

Kept apart from :mod:`interrogator_core.cli` so that :mod:`interrogator_core.ray` (which the CLI imports for
``--ray``) needs nothing from the CLI: no module imports one that imports it back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Tuple

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UsageError", "ray_output"]

#: Exit codes: done; some images failed or the run stopped on an error; the arguments cannot work (nothing was
#: done); interrupted (Ctrl-C).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(ValueError):
    """A run that cannot work as asked (an output that cannot be written, a pool the cluster cannot hold),
    found before any work starts. The message names the bad value and what to change; the CLI prints it as
    one line and exits with :data:`EXIT_USAGE`."""


def ray_output(args: Any) -> Tuple[Optional[str], Optional[str]]:
    """``(format, folder)`` a ``--ray`` command line writes: ``--parquet DIR`` / ``--jsonl DIR`` (folders of part
    files), ``--txt`` (sidecars beside the images: the first input's folder), or ``(None, None)`` when it names
    no output."""
    if args.parquet:
        return "parquet", args.parquet
    if args.jsonl:
        return "jsonl", args.jsonl
    if args.txt:
        first = Path(args.inputs[0])
        return "sidecars", str(first if first.is_dir() else first.parent)
    return None, None
