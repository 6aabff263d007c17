"""Every relative link in docs/*.md and README.md reaches a file that exists, and a link's #anchor a heading of that
file, named as GitHub names it: the heading's text lower-cased, everything but letters, digits, '_', '-' and spaces
dropped, each space a '-', a repeated name suffixed -1, -2, ... (code fences and inline code hold no links)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose_lines(text: str):
    """The lines outside fenced code blocks, inline code spans blanked."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield re.sub(r"`[^`]*`", "", line)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading's text (a link in the heading counts by its text)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            name = anchor(m.group(1))
            n = seen.get(name, 0)
            seen[name] = n + 1
            out.add(name if n == 0 else f"{name}-{n}")
    return out


def test_anchor_follows_githubs_rule():
    assert anchor("Multi-node floors, round 3 (mnfloor round; busbw MAPE, ≥ 1 MiB | < 1 MiB)") == \
        "multi-node-floors-round-3-mnfloor-round-busbw-mape--1-mib---1-mib"
    assert anchor("Send/recv latency everywhere (`p2p`)") == "sendrecv-latency-everywhere-p2p"
    assert anchor("TPU ICI (moesim/collectives/torus_costs.py)") == "tpu-ici-moesimcollectivestorus_costspy"


def _links():
    for page in PAGES:
        for line in _prose_lines(page.read_text(encoding="utf-8")):
            for target in LINK.findall(line):
                if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                    yield page, target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_reach_a_file_and_a_heading(page):
    broken = []
    for src, target in _links():
        if src != page:
            continue
        file_part, _, frag = target.partition("#")
        dest = (src.parent / file_part).resolve() if file_part else src
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{frag} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_split_collectives_pages_link_each_other():
    """The history page is reached from collectives.md, and links back (so the check above has links to check)."""
    targets = {(src.name, t.partition("#")[0]) for src, t in _links()}
    assert ("collectives.md", "collectives-history.md") in targets
    assert ("collectives-history.md", "collectives.md") in targets
