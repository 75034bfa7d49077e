"""Whether a download can happen now: the one rule both CLIP and caption loading follow before they ask a hub.

A model that is neither in a models folder nor in the download cache is looked up online only when that can
work. :func:`unavailable` says why not -- ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set, or the host did
not answer one quick probe -- and the caller then fails at once with its "where to put the files" message
instead of spending the download libraries' retries and timeouts. A probe's answer and a lookup that failed are
remembered for :data:`RECHECK_AFTER_S` seconds, so a second load of the same missing model (a re-queued
workflow, the next CLI image) fails at once too; a model that appears on disk in the meantime is found, since
the folders and the download cache are always looked at first.
"""
from __future__ import annotations

import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: seconds one probe of a host may take (a host that answers at all answers well within this)
PROBE_TIMEOUT_S = 5.0
#: how long a probe's answer, and a failed lookup, are remembered
RECHECK_AFTER_S = 300.0
DEFAULT_ENDPOINT = "https://huggingface.co"

_lock = threading.Lock()
_probes: Dict[str, Tuple[Optional[str], float]] = {}  # host url -> (why unreachable or None, when)
_failures: Dict[str, Tuple[str, float]] = {}  # lookup key -> (reason, when)


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline_reason() -> Optional[str]:
    """Why the user asked for no downloads (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``), or None."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _truthy(os.environ.get(var)):
            return f"{var}={os.environ[var]} is set"
    try:  # set before import (the env var) or by a host at run time
        from huggingface_hub import constants

        if getattr(constants, "HF_HUB_OFFLINE", False):
            return "huggingface_hub is in offline mode (HF_HUB_OFFLINE)"
    except ImportError:
        pass
    return None


def hf_endpoint() -> str:
    """The Hugging Face endpoint downloads go to (``HF_ENDPOINT``, read now, not at import)."""
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    try:
        from huggingface_hub import constants

        return str(getattr(constants, "ENDPOINT", DEFAULT_ENDPOINT)).rstrip("/")
    except ImportError:
        return DEFAULT_ENDPOINT


def _probe(base: str) -> Optional[str]:
    """One HEAD request to ``base`` (proxies from the environment apply). None when the host answered (any HTTP
    status, or a TLS problem the download library may handle its own way), else why it cannot be reached."""
    try:
        with urllib.request.urlopen(urllib.request.Request(base, method="HEAD"), timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLError):
            return None
        return f"{base} cannot be reached ({e.reason})"
    except (OSError, ValueError) as e:  # timeouts, resets, a malformed endpoint
        return f"{base} cannot be reached ({type(e).__name__}: {e})"


def unavailable(url: Optional[str] = None) -> Optional[str]:
    """None when a download from ``url``'s host (default: the Hugging Face endpoint) may be tried now, else why
    not (offline mode, or the host did not answer a probe in the last :data:`RECHECK_AFTER_S` seconds)."""
    why = offline_reason()
    if why:
        return why
    parts = urlsplit(url or hf_endpoint())
    base = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else (url or hf_endpoint())
    now = time.monotonic()
    with _lock:
        known = _probes.get(base)
        if known is not None and now - known[1] < RECHECK_AFTER_S:
            return known[0]
    why = _probe(base)
    if why:
        log.warning("%s; models not on disk fail at once for the next %d s", why, RECHECK_AFTER_S)
    with _lock:
        _probes[base] = (why, now)
    return why


def failed_before(key: str) -> Optional[str]:
    """The reason a hub lookup of ``key`` failed in the last :data:`RECHECK_AFTER_S` seconds, or None."""
    with _lock:
        known = _failures.get(key)
    if known is not None and time.monotonic() - known[1] < RECHECK_AFTER_S:
        return known[0]
    return None


def remember_failure(key: str, reason: str) -> None:
    with _lock:
        _failures[key] = (reason, time.monotonic())


def forget() -> None:
    """Drop every remembered probe and failure (tests; a host whose network came back)."""
    with _lock:
        _probes.clear()
        _failures.clear()


def cached_hub_file(repo_id: str, filename: str, cache_dir: Optional[os.PathLike] = None) -> Optional[str]:
    """The path of ``repo_id/filename`` in the Hugging Face download cache, without asking the hub; or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=None if cache_dir is None else str(cache_dir))
    except Exception:  # noqa: BLE001 - a repo id the hub library refuses is simply not cached
        return None
    return found if isinstance(found, str) else None
