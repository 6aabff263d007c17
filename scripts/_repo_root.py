"""Puts this checkout's root first on sys.path, so `moesim` and `scripts.*` import from it: every script under scripts/
starts with `from _repo_root import ROOT` (its folder is on sys.path when it runs as `python scripts/NAME.py`)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
