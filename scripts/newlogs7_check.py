"""Session 16 (newlogs7): the fresh logs as they came out, priced once (docs/collectives-history.md, "Session 16
(newlogs7)"; the logs, the runs kept and their healthy flags were committed in 0de30e1, before any was priced).

For every fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it,
and with each unshipped pricing option session 13 named, one at a time on that model (scripts/newlogs4_check.py's three:
NCCL_PROTO "^LL128", the log's NCCL release as a fact, p2p_net_model "summed"); then, per size, measured / priced time
- 1. With --pairs: the held-out calibration pairs of the fresh logs' clusters under `--transfer shared` (calibrate's
default) and the opt-in rules `machinery`, `lines`, `protocol-hops`, `p2p-ops`, `pick-protocol-hops` (the pairs with a
fresh log on either side, worse | better than the prior by more than 0.3 pt, and each fresh cluster's mean change at
>= 1 MiB over all its pairs), printed by newlogs5_check.pair_lines over this round's logs.

With --diagnose: every fresh pair the shared transfer makes worse by more than 0.3 pt in a band, read as
scripts/heldout_pairs.py reads the whole matrix (the figures the fit moves, the held-out rows that lose, their machinery).

Run: python scripts/newlogs7_check.py [--pairs] [--diagnose]   (--pairs: six matrices over the fresh cluster, minutes).
Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts import newlogs4_check, newlogs5_check  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402,F401  (the same options, priced the same way)

# The logs session 16 added (tests/data/nccl/SOURCES.md, "Session 16 (newlogs7)"), committed before pricing.
FRESH_PREFIXES = ("b200-together-2node-r1_", "b200-together-4node-r1_")
TRANSFERS = ("shared", "machinery", "lines", "protocol-hops", "p2p-ops", "pick-protocol-hops")


# The round's views (scripts/newlogs4_check.round_views), each over this round's fresh logs and rules.
fresh_entries, log_lines, size_lines, pairs_by_rule, pair_lines = newlogs4_check.round_views(
    FRESH_PREFIXES, TRANSFERS, newlogs5_check.pair_lines)


def diagnose_lines(shared_pairs: list) -> list[str]:
    """scripts/heldout_pairs.py's row per worse pair (> 0.3 pt, either band), over the fresh pairs of `--transfer
    shared` only (a fresh log on either side)."""
    from scripts.heldout_pairs import diagnosis_cells, worse_pairs

    fresh = {e["file"] for e in fresh_entries()}
    worse = worse_pairs([p for p in shared_pairs if fresh & {p.fitted_on, p.held_out}])
    return [" | ".join(cells) for cells in diagnosis_cells(worse)]


if __name__ == "__main__":
    out = log_lines() + [""] + size_lines()
    if "--pairs" in sys.argv[1:]:
        out += [""] + pair_lines()
    if "--diagnose" in sys.argv[1:]:
        out += [""] + diagnose_lines(newlogs4_check.pairs_by_rule(fresh_entries(), ("shared",))["shared"])
    print("\n".join(out))
