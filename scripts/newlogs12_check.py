"""Session 22 (newlogs12): the fresh logs as they came out, priced once (docs/collectives-history.md, "Session 22
(newlogs12)"; each log and its flags were committed before it was priced: the GB300 one in 7bd7219 and e5b23e3, the
Snellius one in 4f739fc).

For each fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it
(its logs.toml facts; the GB300 run's: NVLS off as its sbatch set it, NCCL_MIN_CTAS=16, NCCL 2.29.3 from its banner),
and with each unshipped pricing option session 13 named, one at a time on that model (scripts/newlogs4_check.py's
three); then, per size, measured / priced time - 1. Each log is alone in its cluster (gb300-oke, h100-snellius), so
they form no held-out pair.

Run: python scripts/newlogs12_check.py. Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts import newlogs4_check  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402,F401  (the same options, priced the same way)

# The logs session 22 added (tests/data/nccl/SOURCES.md, "Session 22 (newlogs12)"), each committed before pricing.
FRESH_PREFIXES = ("gb300-oke-4node_", "h100-snellius-2node_")

# The round's views (scripts/newlogs4_check.round_views) over this round's fresh logs; no transfer rule (no pairs).
fresh_entries, log_lines, size_lines, _by_rule, _pairs = newlogs4_check.round_views(FRESH_PREFIXES, ())


if __name__ == "__main__":
    print("\n".join(log_lines() + [""] + size_lines()))
