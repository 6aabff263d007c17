"""Session 22 (newlogs12): the fresh log as it came out, priced once (docs/collectives-history.md, "Session 22
(newlogs12)"; the log and its flags were committed in 7bd7219 and e5b23e3, before it was priced).

For the fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it
(its logs.toml facts: NVLS off as the run's sbatch set it, NCCL_MIN_CTAS=16, NCCL 2.29.3 from its banner), and with each
unshipped pricing option session 13 named, one at a time on that model (scripts/newlogs4_check.py's three); then, per
size, measured / priced time - 1. The log is alone in its cluster (gb300-oke), so it forms no held-out pair.

Run: python scripts/newlogs12_check.py. Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts import newlogs4_check  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402,F401  (the same options, priced the same way)

# The log session 22 added (tests/data/nccl/SOURCES.md, "Session 22 (newlogs12)"), committed before pricing.
FRESH_PREFIXES = ("gb300-oke-4node_",)

# The round's views (scripts/newlogs4_check.round_views) over this round's fresh log; no transfer rule (no pairs).
fresh_entries, log_lines, size_lines, _by_rule, _pairs = newlogs4_check.round_views(FRESH_PREFIXES, ())


if __name__ == "__main__":
    print("\n".join(log_lines() + [""] + size_lines()))
