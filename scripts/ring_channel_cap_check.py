"""Check of the ringnet option (TopologyModel ring_net_channel_gbps, nccl_plan.ring_net_caps) at the figure stated
before it was priced, 20 GB/s per ring channel across the network, against every collected log: per-log busbw MAPE
shipped -> with the option, the sums over the healthy logs, and the ship rule's tests (docs/collectives-history.md
"Session 10 (ringnet)"; the figure is read off the plateau table, so fitted: the rule's (a) fails whatever the rest
gives). Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its system facts, its
model, the host floor), once as shipped and once with the option set on the same model.

Run: python scripts/ring_channel_cap_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import before_after_rows, moved_lines, rule_b_lines  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ring_channel_cap_check: python scripts/ring_channel_cap_check.py --write -->"
END = "<!-- END ring_channel_cap_check -->"
CHANNEL_GBPS = 20.0  # stated before pricing (docs), read off the plateau table: fitted


def _option(entry, hw, shipped, n):
    """(shipped, the option at CHANNEL_GBPS) for one log."""
    return shipped, dataclasses.replace(shipped, ring_net_channel_gbps=CHANNEL_GBPS)


def render() -> str:
    data = before_after_rows(_option)
    lines = ["```", *moved_lines(data, f"shipped -> ring_net_channel_gbps = {CHANNEL_GBPS:g}"), ""]
    return "\n".join(lines + rule_b_lines(data)[0]
                     + ["rule (a), every figure sourced: fails (20 GB/s is read off these logs)", "```"])


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
