"""Check of p2p_net_model="concurrent" (NCCL's network sends at once, the proxy's launches in turn) against every
alltoall and sendrecv log, healthy or not: per-log busbw MAPE shipped ("summed") -> concurrent, and every size that
moves.

The model is moesim/collectives/nccl_p2p_net.py (read in NVIDIA/nccl v2.28.9-1; the rule was committed before this
script first ran, c7ef417). Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its
system facts, its model, the host floor), once with the shipped model and once with the same model and
p2p_net_model="concurrent". The ship rule (docs/collectives-history.md "Session 9 (a2aconc)") reads the healthy
rows of the first table.

Run: python scripts/a2a_concurrent_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import read_manifest  # noqa: E402
from moesim.collectives import nccl, nccl_p2p_net  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import mape_cell, mape_change_line, moved_size_lines  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN a2a_concurrent_check: python scripts/a2a_concurrent_check.py --write -->"
END = "<!-- END a2a_concurrent_check -->"
P2P_FILES = ("alltoall", "sendrecv")


def p2p_entries():
    """Every manifest entry of an all-to-all or send/recv log, in the manifest's order."""
    for e in read_manifest(MANIFEST):
        if e.get("op", "") in ("all_to_all", "send_recv") or any(k in e["file"] for k in P2P_FILES):
            yield e


@contextmanager
def launch_without_simple_multiplier():
    """What-if, conceived after the first table was seen (not the rule, not shipped): a p2p step launched at the
    tuner's network overhead without its x 3 for Simple (a p2p op has sliceSteps = chunkSteps = 1, one isend per
    step, where a Simple ring chunk is several)."""
    shipped = nccl_p2p_net.launch_s
    nccl_p2p_net.launch_s = lambda host_cpu: nccl.net_overhead_s("LL", host_cpu)
    try:
        yield
    finally:
        nccl_p2p_net.launch_s = shipped


def rows() -> list[tuple]:
    """(log, healthy, [(size, measured s, summed s, concurrent s, summed label)]) per log."""
    out = []
    for e in p2p_entries():
        log = priced_log(MANIFEST.parent, e)
        # the per-peer sum this round was judged against ("summed", the default until session 12's "channels")
        shipped = log.model(p2p_net_model="summed")
        concurrent = dataclasses.replace(shipped, p2p_net_model="concurrent")
        old, new = log.error(shipped), log.error(concurrent)
        sizes = [(a.size_bytes, a.measured_s, a.predicted_s, b.predicted_s, a.algorithm)
                 for a, b in zip(old.sizes, new.sizes)]
        out.append((e["file"].replace("_perf.log", ""), e.get("healthy", True), sizes))
    return out


def _sum(data, healthy: bool, large: bool, col: int) -> str:
    """The MAPE cells of the logs summed, '-' where none has a row in that band."""
    cells = [mape_cell(s, large, col) for _, h, s in data if h == healthy]
    found = [float(c) for c in cells if c != "-"]
    return f"{sum(found):.1f}" if found else "-"


def render() -> str:
    data = rows()
    lines = ["```",
             "log (healthy)                          busbw MAPE >= 1 MiB | < 1 MiB: summed (shipped) -> concurrent"]
    lines += [mape_change_line(name, healthy, sizes) for name, healthy, sizes in data]
    for healthy in (True, False):
        moved = [(n, h, s) for n, h, s in data if h == healthy and any(r[2] != r[3] for r in s)]
        lines.append(f"sum over the {'healthy' if healthy else 'other'} logs that move ({len(moved)}): "
                     f"{_sum(moved, healthy, True, 2)} | {_sum(moved, healthy, False, 2)}  ->  "
                     f"{_sum(moved, healthy, True, 3)} | {_sum(moved, healthy, False, 3)}")
    with launch_without_simple_multiplier():
        what_if = rows()
    lines += ["", "what-if, after the table above was seen (not the rule): a p2p step launched at 1 / 2 us (no x 3)"]
    lines += [mape_change_line(name, healthy, other) for name, healthy, other in what_if
              if any(r[2] != r[3] for r in other)]
    lines += ["", "sizes that move (us; error = measured / predicted - 1)"]
    lines += moved_size_lines(data, "summed", "concurrent")
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
