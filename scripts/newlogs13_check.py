"""Session 23 (newlogs13): the fresh log as it came out, priced once (docs/collectives-history.md, "Session 23
(newlogs13)"; the log and its flags were committed in 37f8636, before it was priced).

For the fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it
(its logs.toml facts: NCCL_ALGO=NVLSTree from the run's /etc/nccl.conf, 16 ranks, no NCCL release printed), and with
each unshipped pricing option session 13 named, one at a time on that model (scripts/newlogs4_check.py's three); then,
per size, measured / priced time - 1. The log is alone in its cluster (h100-crusoe), so it forms no held-out pair.

Run: python scripts/newlogs13_check.py. Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts import newlogs4_check  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402,F401  (the same options, priced the same way)

# The log session 23 added (tests/data/nccl/SOURCES.md, "Session 23 (newlogs13)"), committed before pricing.
FRESH_PREFIXES = ("h100-crusoe-2node_",)

# The round's views (scripts/newlogs4_check.round_views) over this round's fresh log; no transfer rule (no pairs).
fresh_entries, log_lines, size_lines, _by_rule, _pairs = newlogs4_check.round_views(FRESH_PREFIXES, ())


def without_algo(entry: dict) -> dict:
    """The variant that does not read the run's /etc/nccl.conf: NCCL's own algorithm choice."""
    return {k: v for k, v in entry.items() if k != "nccl_algo"}


if __name__ == "__main__":
    lines = log_lines() + [""] + size_lines()
    for e in fresh_entries():
        err = priced(without_algo(e))
        lines.append(f"{e['file'].removesuffix('_perf.log')} without nccl_algo (NCCL's own choice): "
                     f"{100 * err.mape_large:.1f}% >= 1 MiB, signed {100 * err.signed_large:+.1f}%; "
                     + ", ".join(f"{s.algorithm} {100 * s.busbw_error:+.0f}%" for s in err.sizes))
    print("\n".join(lines))
