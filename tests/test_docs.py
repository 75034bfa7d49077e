"""The README and docs/*.md: every relative link and #anchor resolves, and the benchmark tables have a home.

The README was split into docs/ (speed, reliability, datasets, architecture); these checks keep the links
between them working when a heading is renamed or a section moves.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchors(path: Path) -> set:
    """GitHub's heading anchors of a markdown file (lowercase, punctuation dropped, spaces → '-', repeats
    numbered), plus explicit ``<a id="...">`` anchors."""
    text = _prose(path.read_text(encoding="utf-8"))
    seen: dict = {}
    out = set(re.findall(r'<a id="([^"]+)"', text))
    for title in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path):
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if not re.match(r"[a-z]+:", target):
            yield target


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_and_anchors_resolve(doc: Path) -> None:
    broken = []
    for target in links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{doc.name}: broken links:\n" + "\n".join(broken)


def test_benchmark_tables_live_in_speed_doc() -> None:
    """bench.py --docs rewrites the tables between the markers of the file it names."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench
    finally:
        sys.path.remove(str(ROOT / "bench"))
    text = bench.SPEED_DOC.read_text(encoding="utf-8")
    assert bench.SPEED_DOC == ROOT / "docs" / "speed.md"
    assert text.count("<!-- bench:begin -->") == 1 and text.count("<!-- bench:end -->") == 1
    assert "bench:begin" not in (ROOT / "README.md").read_text(encoding="utf-8")


def test_caption_benchmark_tables_live_in_speed_doc() -> None:
    """bench_caption.py --docs rewrites its tables between its own markers of docs/speed.md."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_caption
    finally:
        sys.path.remove(str(ROOT / "bench"))
    text = bench_caption.SPEED_DOC.read_text(encoding="utf-8")
    assert bench_caption.SPEED_DOC == ROOT / "docs" / "speed.md"
    assert text.count(bench_caption.BEGIN) == 1 and text.count(bench_caption.END) == 1
    assert text.index(bench_caption.BEGIN) < text.index(bench_caption.END)


def test_readme_test_command_is_ci() -> None:
    """.ci/run is the README's test command (./test.sh, whose default is all three environments)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"^\./test\.sh +#", quick, flags=re.M)
    assert "exec ./test.sh all" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'WHICH="${1:-all}"' in (ROOT / "test.sh").read_text(encoding="utf-8")
