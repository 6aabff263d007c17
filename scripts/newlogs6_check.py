"""Session 15 (newlogs6): the fresh logs as they came out, priced once (docs/collectives-history.md, "Session 15
(newlogs6)"; the logs, the runs kept and their healthy flags were committed in 8035d43, before any was priced).

For every fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it,
and with each unshipped pricing option the lane names, one at a time on that model (scripts/newlogs4_check.py's three:
NCCL_PROTO "^LL128", the log's NCCL release as a fact, p2p_net_model "summed"); then, per size, measured / priced time
- 1. With --pairs: the held-out calibration pairs of the fresh logs' clusters under `--transfer shared` (calibrate's
default) and the opt-in rules `machinery`, `lines`, `protocol-hops`, `p2p-ops`, `pick-protocol-hops` (the pairs with a
fresh log on either side, worse | better than the prior by more than 0.3 pt, and each fresh cluster's mean change at
>= 1 MiB over all its pairs), printed by newlogs5_check.pair_lines over this round's logs.

Run: python scripts/newlogs6_check.py [--pairs]   (--pairs: six matrices over the fresh clusters, minutes). Prints only;
the figures are quoted in the docs section.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts import newlogs4_check, newlogs5_check  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402,F401  (the same options, priced the same way)

# The logs session 15 added (tests/data/nccl/SOURCES.md, "Session 15 (newlogs6)"), committed before pricing.
FRESH_PREFIXES = ("b200-engaging-ubuntu-2node_", "h100-lambda-2node-g8_", "h100-mghpcc-dgx-2node-g8_")
TRANSFERS = ("shared", "machinery", "lines", "protocol-hops", "p2p-ops", "pick-protocol-hops")


# The round's views (scripts/newlogs4_check.round_views), each over this round's fresh logs and rules.
fresh_entries, log_lines, size_lines, pairs_by_rule, pair_lines = newlogs4_check.round_views(
    FRESH_PREFIXES, TRANSFERS, newlogs5_check.pair_lines)


if __name__ == "__main__":
    out = log_lines() + [""] + size_lines()
    if "--pairs" in sys.argv[1:]:
        out += [""] + pair_lines()
    print("\n".join(out))
