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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moesim.calibrate.nccl_error import log_error, pct  # noqa: E402
from moesim.calibrate.nccl_table import _points, entry_hardware, entry_model, read_manifest  # noqa: E402
from moesim.collectives.select import default_model  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import BARS  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ring_channel_cap_check: python scripts/ring_channel_cap_check.py --write -->"
END = "<!-- END ring_channel_cap_check -->"
CHANNEL_GBPS = 20.0  # stated before pricing (docs), read off the plateau table: fitted


def rows() -> list[tuple]:
    """(log, healthy, (shipped >= 1 MiB, < 1 MiB), (option >= 1 MiB, < 1 MiB)) per log whose GPU model takes NCCL's
    options (every log of the manifest)."""
    out = []
    for entry in read_manifest(MANIFEST):
        hw = entry_hardware(entry)
        shipped = entry_model(entry, hw) or default_model(hw)
        option = dataclasses.replace(shipped, ring_net_channel_gbps=CHANNEL_GBPS)
        pts, gpt = tuple(_points(MANIFEST.parent, entry)), entry.get("gpus_per_thread", 1)
        old, new = log_error(pts, hw, shipped, gpt), log_error(pts, hw, option, gpt)
        out.append((entry["file"].removesuffix("_perf.log"), entry["healthy"], (old.mape_large, old.mape_small),
                    (new.mape_large, new.mape_small)))
    return out


def verdict(data: list[tuple]) -> list[str]:
    """The ship rule's (b) on the healthy logs: summed MAPE >= 1 MiB falls; no log worse by more than 2 pt in either
    band; no log newly over a bar."""
    healthy = [r for r in data if r[1]]
    before = sum(r[2][0] for r in healthy if r[2][0] is not None)
    after = sum(r[3][0] for r in healthy if r[3][0] is not None)
    worse = [(r[0], band) for r in healthy for band in (0, 1)
             if r[2][band] is not None and r[3][band] - r[2][band] > 0.02]
    crossed = [(r[0], band) for r in healthy for band in (0, 1)
               if r[2][band] is not None and r[2][band] <= BARS[band] < r[3][band]]
    met = [(r[0], band) for r in healthy for band in (0, 1)
           if r[2][band] is not None and r[3][band] <= BARS[band] < r[2][band]]
    name = ("MAPE >= 1 MiB", "MAPE < 1 MiB")
    return [f"healthy logs: {len(healthy)}; summed MAPE >= 1 MiB {100 * before:.1f} -> {100 * after:.1f} "
            f"({'falls' if after < before else 'does not fall'})",
            f"worse by more than 2 pt: {len(worse)}" + "".join(f"\n  {n} ({name[b]})" for n, b in worse),
            f"newly over a bar: {len(crossed)}" + "".join(f"\n  {n} ({name[b]})" for n, b in crossed),
            f"newly under a bar: {len(met)}" + "".join(f"\n  {n} ({name[b]})" for n, b in met),
            "rule (a), every figure sourced: fails (20 GB/s is read off these logs)"]


def render() -> str:
    data = rows()
    width = max(len(r[0]) for r in data) + 10
    lines = ["```", f"{'log (healthy)':{width}s}busbw MAPE >= 1 MiB | < 1 MiB: shipped -> ring_net_channel_gbps = "
                    f"{CHANNEL_GBPS:g}"]
    for name, healthy, old, new in data:
        if old != new:
            lines.append(f"{name + ' (' + ('yes' if healthy else 'no') + ')':{width}s}{pct(old[0])} | {pct(old[1])}"
                         f"  ->  {pct(new[0])} | {pct(new[1])}")
    unmoved = sum(1 for r in data if r[2] == r[3])
    lines += [f"({unmoved} logs do not move)", ""] + verdict(data) + ["```"]
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
