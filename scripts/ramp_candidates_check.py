"""Check of session 11's ramp candidates against every collected log, each as defined before it was priced
(docs/collectives-history.md "Session 11 (ramp)"): C1, NCCL's per-channel ring LL128 / tree caps
(TopologyModel(per_channel_caps=True), nccl_channel_caps.py), and C2, LL128 off across nodes (NCCL_PROTO=^LL128 on
every group spanning nodes whose run sets no NCCL_PROTO). Per log, busbw MAPE shipped -> candidate, and the lead's
rule (b) over the healthy logs: summed MAPE >= 1 MiB falls, the sum < 1 MiB rises by at most 1 pt, no log worse by
more than 2 pt in either band, no log newly over a bar. Each log is priced as the per-log table prices it
(calibrate/nccl_error.log_error).

Run: python scripts/ramp_candidates_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.collectives.topo_model import TopologyModel  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import before_after_rows as rows  # noqa: E402  (rows(make): the tests call it so)
from scripts.log_variants import moved_lines, rule_b_lines  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ramp_candidates_check: python scripts/ramp_candidates_check.py --write -->"
END = "<!-- END ramp_candidates_check -->"
SUM_SMALL_RISE = 0.01  # rule (b): the sum below 1 MiB may rise by at most 1 pt


def _before(shipped):
    """The pricing before this round: the log's model with NCCL's per-channel caps off."""
    return dataclasses.replace(shipped, per_channel_caps=False) if isinstance(shipped, TopologyModel) else shipped


def _c1(entry, hw, shipped, n):
    before = _before(shipped)
    return before, dataclasses.replace(before, per_channel_caps=True) if isinstance(before, TopologyModel) else before


def _c2(entry, hw, shipped, n):
    before = _before(shipped)
    if not isinstance(before, TopologyModel) or before.nccl_proto or n <= hw.interconnect[0].domain_devices:
        return before, before
    return before, dataclasses.replace(before, nccl_proto="^LL128")


CANDIDATES = (("C1 per_channel_caps", _c1, "passes: NCCL v2.29.2-1's figures; the graph's channels = channels / 2 "
                                            "(connect.cc), an assumption stated with it"),
              ("C2 LL128 off across nodes", _c2, "fails: no source states these clusters' GPU-NIC paths exceed PXN"))


def verdict(data: list[tuple]) -> tuple[list[str], bool]:
    """Rule (b) with its small-size allowance (log_variants.rule_b_lines), and the verdict line."""
    lines, ok = rule_b_lines(data, SUM_SMALL_RISE)
    return lines + [f"rule (b): {'passes' if ok else 'fails'}"], ok


def render() -> str:
    lines = ["```"]
    for label, make, sourced in CANDIDATES:
        data = rows(make)
        lines += moved_lines(data, f"before -> {label}")
        lines += verdict(data)[0] + [f"rule (a), every figure sourced: {sourced}", ""]
    return "\n".join(lines[:-1] + ["```"])


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
