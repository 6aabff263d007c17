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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moesim.calibrate.nccl_error import log_error, pct  # noqa: E402
from moesim.calibrate.nccl_table import _points, entry_hardware, entry_model, read_manifest  # noqa: E402
from moesim.collectives.select import default_model  # noqa: E402
from moesim.collectives.topo_model import TopologyModel  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import BARS  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ramp_candidates_check: python scripts/ramp_candidates_check.py --write -->"
END = "<!-- END ramp_candidates_check -->"
SUM_SMALL_RISE = 0.01  # rule (b): the sum below 1 MiB may rise by at most 1 pt


def _before(shipped):
    """The pricing before this round: the log's model with NCCL's per-channel caps off."""
    return dataclasses.replace(shipped, per_channel_caps=False) if isinstance(shipped, TopologyModel) else shipped


def _c1(entry, hw, shipped, n):
    return dataclasses.replace(shipped, per_channel_caps=True) if isinstance(shipped, TopologyModel) else shipped


def _c2(entry, hw, shipped, n):
    if not isinstance(shipped, TopologyModel) or shipped.nccl_proto or n <= hw.interconnect[0].domain_devices:
        return shipped
    return dataclasses.replace(shipped, nccl_proto="^LL128")


CANDIDATES = (("C1 per_channel_caps", _c1, "passes: NCCL v2.29.2-1's figures; the graph's channels = channels / 2 "
                                            "(connect.cc), an assumption stated with it"),
              ("C2 LL128 off across nodes", _c2, "fails: no source states these clusters' GPU-NIC paths exceed PXN"))


def rows(make) -> list[tuple]:
    out = []
    for entry in read_manifest(MANIFEST):
        hw = entry_hardware(entry)
        shipped = _before(entry_model(entry, hw) or default_model(hw))
        pts, gpt = tuple(_points(MANIFEST.parent, entry)), entry.get("gpus_per_thread", 1)
        n = pts[0].group_size
        cand = make(entry, hw, shipped, n)
        old = log_error(pts, hw, shipped, gpt)
        new = old if cand is shipped else log_error(pts, hw, cand, gpt)
        out.append((entry["file"].removesuffix("_perf.log"), entry["healthy"], (old.mape_large, old.mape_small),
                    (new.mape_large, new.mape_small)))
    return out


def verdict(data: list[tuple]) -> tuple[list[str], bool]:
    healthy = [r for r in data if r[1]]
    sums = [[sum(r[k][band] for r in healthy if r[k][band] is not None) for band in (0, 1)] for k in (2, 3)]
    worse = [(r[0], b) for r in healthy for b in (0, 1) if r[2][b] is not None and r[3][b] - r[2][b] > 0.02]
    crossed = [(r[0], b) for r in healthy for b in (0, 1) if r[2][b] is not None and r[2][b] <= BARS[b] < r[3][b]]
    met = [(r[0], b) for r in healthy for b in (0, 1) if r[2][b] is not None and r[3][b] <= BARS[b] < r[2][b]]
    name = ("MAPE >= 1 MiB", "MAPE < 1 MiB")
    falls, small_ok = sums[1][0] < sums[0][0], sums[1][1] - sums[0][1] <= SUM_SMALL_RISE
    ok = falls and small_ok and not worse and not crossed
    return ([f"healthy logs: {len(healthy)}; summed MAPE >= 1 MiB {100 * sums[0][0]:.1f} -> {100 * sums[1][0]:.1f} "
             f"({'falls' if falls else 'does not fall'}); < 1 MiB {100 * sums[0][1]:.1f} -> {100 * sums[1][1]:.1f} "
             f"({'within' if small_ok else 'over'} +1 pt)",
             f"worse by more than 2 pt: {len(worse)}" + "".join(f"\n  {n} ({name[b]})" for n, b in worse),
             f"newly over a bar: {len(crossed)}" + "".join(f"\n  {n} ({name[b]})" for n, b in crossed),
             f"newly under a bar: {len(met)}" + "".join(f"\n  {n} ({name[b]})" for n, b in met),
             f"rule (b): {'passes' if ok else 'fails'}"], ok)


def render() -> str:
    lines = ["```"]
    for label, make, sourced in CANDIDATES:
        data = rows(make)
        width = max(len(r[0]) for r in data) + 10
        lines.append(f"{'log (healthy)':{width}s}busbw MAPE >= 1 MiB | < 1 MiB: before -> {label}")
        for name, healthy, old, new in data:
            if old != new:
                lines.append(f"{name + ' (' + ('yes' if healthy else 'no') + ')':{width}s}{pct(old[0])} | "
                             f"{pct(old[1])}  ->  {pct(new[0])} | {pct(new[1])}")
        lines.append(f"({sum(1 for r in data if r[2] == r[3])} logs do not move)")
        lines += verdict(data)[0] + [f"rule (a), every figure sourced: {sourced}", ""]
    return "\n".join(lines[:-1] + ["```"])


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
