"""Write docs/reproductions.md: moesim's figures beside the published ones (see moesim.models.reproductions)."""

from __future__ import annotations

from pathlib import Path

from moesim.models.reproductions import render_markdown

DOC = Path(__file__).resolve().parent / "reproductions.md"

if __name__ == "__main__":
    DOC.write_text(render_markdown(), encoding="utf-8")
    print(f"wrote {DOC}")
