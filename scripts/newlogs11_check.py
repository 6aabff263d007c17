"""Session 21 (newlogs11): the fresh logs as they came out, priced once (docs/collectives-history.md, "Session 21
(newlogs11)"; the logs and their healthy flags were committed in 231e0bb, before either was priced).

For each fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it,
and with each unshipped pricing option session 13 named, one at a time on that model (scripts/newlogs4_check.py's three:
NCCL_PROTO "^LL128", the log's NCCL release as a fact, p2p_net_model "summed"); then, per size, measured / priced time
- 1. Each log is alone in its cluster (h100-hostpair, h100-together-sky), so they form no held-out pair: no --pairs view.

Run: python scripts/newlogs11_check.py. Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts import newlogs4_check  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402,F401  (the same options, priced the same way)

# The logs session 21 added (tests/data/nccl/SOURCES.md, "Session 21 (newlogs11)"), committed before pricing.
FRESH_PREFIXES = ("h100-hostpair-2node_", "h100-together-sky-2node_")

# The round's views (scripts/newlogs4_check.round_views) over this round's fresh logs; no transfer rule (no pairs).
fresh_entries, log_lines, size_lines, _by_rule, _pairs = newlogs4_check.round_views(FRESH_PREFIXES, ())


if __name__ == "__main__":
    print("\n".join(log_lines() + [""] + size_lines()))
