"""Label lists: the built-in tables (clip-interrogator 0.6.0 compatible), user tables and the blocklist.

The built-in label strings are built exactly as clip-interrogator builds them (same order, same blank and
duplicate lines), because the label-cache hash covers them: any difference would force a recompute of
users' existing caches. Blank and duplicate labels are masked out at ranking time instead.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from .errors import InterrogatorError

log = logging.getLogger(__name__)

def _data_dir() -> Path:
    """data/ next to the package (a checkout or a host's extension folder), else where pip put it."""
    here = Path(__file__).resolve().parent.parent / "data"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "prompt-interrogator" / "data"


DATA_DIR = _data_dir()

#: Built-in table names, in clip-interrogator's order. These are also the cache-file suffixes.
TABLE_NAMES = ("artists", "flavors", "mediums", "movements", "trendings", "negative")

TRENDING_SITES = (
    "Artstation", "behance", "cg society", "cgsociety", "deviantart", "dribble",
    "flickr", "instagram", "pexels", "pinterest", "pixabay", "pixiv", "polycount",
    "reddit", "shutterstock", "tumblr", "unsplash", "zbrush central",
)

PathLike = Union[str, "os.PathLike[str]"]


def load_list(path: PathLike) -> List[str]:
    """Read a built-in list exactly as clip-interrogator 0.6.0 does (strip each line, keep blanks)."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f.readlines()]


def read_user_list(path: PathLike) -> List[str]:
    """Read a user-supplied list forgivingly: any newline style, BOM, non-UTF-8 bytes, blanks, duplicates.

    Lines longer than 300 characters cannot fit a 77-token prompt and are dropped with a warning. A missing
    file, a folder or a binary file (NUL bytes, or mostly undecodable) raises :class:`InterrogatorError`.
    """
    p = Path(path)
    if not p.is_file():
        raise InterrogatorError(f"label list {p} {'is a folder' if p.is_dir() else 'does not exist'}; "
                                "give a text file with one label per line")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InterrogatorError(f"label list {p} cannot be read ({e.strerror}); check its permissions") from e
    if _looks_binary(raw):
        raise InterrogatorError(f"label list {p} is a binary file, not text; give a text file with one label "
                                "per line")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("%s is not valid UTF-8; undecodable bytes were replaced", path)
        text = raw.decode("utf-8-sig", errors="replace")
    seen, out, too_long = set(), [], 0
    for line in text.splitlines():
        label = " ".join(line.split())
        if not label or label in seen:
            continue
        if len(label) > 300:
            too_long += 1
            continue
        seen.add(label)
        out.append(label)
    if too_long:
        log.warning("%s: skipped %d lines longer than 300 characters", path, too_long)
    return out


def _looks_binary(raw: bytes) -> bool:
    """NUL bytes in the first 8 KiB (text in UTF-8 or a legacy 8-bit encoding has none), or more than 10%
    control characters there (undecodable bytes alone are legacy text, read with replacement)."""
    head = raw[:8192]
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 32 and b not in b"\t\n\r\x0c" or b == 127)
    return control > 0.1 * max(1, len(head))


def trending_labels() -> List[str]:
    sites = list(TRENDING_SITES)
    out = list(sites)
    out.extend("trending on " + s for s in sites)
    out.extend("featured on " + s for s in sites)
    out.extend(s + " contest winner" for s in sites)
    return out


def builtin_labels(data_dir: Optional[PathLike] = None) -> Dict[str, List[str]]:
    """The six built-in tables, label strings identical to clip-interrogator 0.6.0's."""
    d = Path(data_dir) if data_dir is not None else DATA_DIR
    missing = [f for f in ("artists", "flavors", "mediums", "movements", "negative") if not (d / f"{f}.txt").is_file()]
    if missing:
        raise InterrogatorError(
            f"label lists {', '.join(m + '.txt' for m in missing)} are missing from {d}; "
            "reinstall the extension or point data_dir at a folder that has them"
        )
    raw_artists = load_list(d / "artists.txt")
    artists = [f"by {a}" for a in raw_artists] + [f"inspired by {a}" for a in raw_artists]
    return {
        "artists": artists,
        "flavors": load_list(d / "flavors.txt"),
        "mediums": load_list(d / "mediums.txt"),
        "movements": load_list(d / "movements.txt"),
        "trendings": trending_labels(),
        "negative": load_list(d / "negative.txt"),
    }


def user_tables(folder: Optional[PathLike]) -> Dict[str, List[str]]:
    """Every ``NAME.txt`` in ``folder`` becomes an extra positive table ``NAME`` (added to best/fast pools)."""
    if not folder:
        return {}
    folder = Path(folder)
    if not folder.is_dir():
        raise InterrogatorError(f"user label folder {folder} does not exist or is not a folder")
    tables: Dict[str, List[str]] = {}
    for path in sorted(folder.glob("*.txt")):
        name = path.stem
        if path.is_dir():
            log.warning("user tables: %s is a folder, not a label list; skipped", path)
            continue
        if name in TABLE_NAMES:
            raise InterrogatorError(
                f"user table {path} is named like a built-in table; rename it (e.g. my_{name}.txt) "
                "or edit the built-in list instead"
            )
        try:
            labels = read_user_list(path)
        except InterrogatorError as e:
            log.warning("user tables: %s; skipped", e)
            continue
        if labels:
            tables[name] = labels
        else:
            log.warning("user table %s has no labels; ignored", path)
    return tables


def read_blocklist(source: Union[None, PathLike, Iterable[str]]) -> frozenset:
    """A blocklist from a file path or an iterable of labels; comparisons are case-insensitive."""
    if source is None:
        return frozenset()
    if isinstance(source, (str, os.PathLike)):
        items: Sequence[str] = read_user_list(source)
    else:
        items = [" ".join(str(s).split()) for s in source]
    return frozenset(s.lower() for s in items if s)
