"""Check of the several-node p2p channel count (session 11 p2pcong): every nccl-tests log priced with NCCL's
p2pnChannels across nodes at 32 (moesim's count before this round, [p2p] p2p_channels) and at 16 (pow2Up of the
16 collective channels published INFO lines print across nodes; NVIDIA/nccl v2.29.2-1 src/graph/paths.cc
ncclTopoComputeP2pChannels): per-log busbw MAPE, the sums over the healthy logs, the misses, and the per-size rows
of the send/recv logs the round is about.

The rule and the candidate were committed before this script first ran (docs/collectives-history.md "Session 11
(p2pcong)", 70641df). Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its
system facts, its model, the host floor), with TopologyModel(p2p_net_nchannels=32) and (=16); every other setting
of the log's model is kept.

Run: python scripts/p2p_net_nchannels_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from moesim.collectives.topo_model import TopologyModel  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import misses, pct  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN p2p_net_nchannels_check: python scripts/p2p_net_nchannels_check.py --write -->"
END = "<!-- END p2p_net_nchannels_check -->"
VARIANTS = (32, 16)  # p2pnChannels across nodes: before this round, the candidate
ALWAYS = ("h100-xxrjun-10node_sendrecv", "b200-together-")  # listed whether they move or not (the round's logs)


def priced() -> list[tuple]:
    """(log, healthy, {variant: LogError}) per manifest entry, in the manifest's order."""
    out = []
    for e in read_manifest(MANIFEST):
        log = priced_log(MANIFEST.parent, e)
        model = log.model()
        if not isinstance(model, TopologyModel):
            continue
        errs = {v: log.error(dataclasses.replace(model, p2p_net_nchannels=v)) for v in VARIANTS}
        out.append((e["file"].replace("_perf.log", ""), e.get("healthy", True), errs))
    return out


def _moves(errs) -> bool:
    a, b = (errs[v] for v in VARIANTS)
    return any(x.predicted_s != y.predicted_s for x, y in zip(a.sizes, b.sizes))


def _cell(err) -> str:
    return f"{pct(err.mape_large)} \\| {pct(err.mape_small)}"


def render() -> str:
    data = priced()
    healthy = [d for d in data if d[1]]
    lines = ["| log (healthy) | p2pnChannels 32 (before) | 16 (candidate) | change >= 1 MiB \\| < 1 MiB (pt) |",
             "|---|---:|---:|---:|"]
    for name, ok, errs in data:
        if not (_moves(errs) or name.startswith(ALWAYS)):
            continue
        a, b = (errs[v] for v in VARIANTS)
        d = [(None if x is None else 100 * (y - x)) for x, y in ((a.mape_large, b.mape_large),
                                                                  (a.mape_small, b.mape_small))]
        lines.append(f"| {name} ({str(ok).lower()}) | {_cell(a)} | {_cell(b)} | "
                     + " \\| ".join("-" if x is None else f"{x:+.1f}" for x in d) + " |")
    sums = {k: (sum(e[k].mape_large or 0 for _, _, e in healthy), sum(e[k].mape_small or 0 for _, _, e in healthy))
            for k in VARIANTS}
    lines.append(f"| sum over the {len(healthy)} healthy logs | {sums[32][0]:.1%} \\| {sums[32][1]:.1%} | "
                 f"{sums[16][0]:.1%} \\| {sums[16][1]:.1%} | {100 * (sums[16][0] - sums[32][0]):+.1f} \\| "
                 f"{100 * (sums[16][1] - sums[32][1]):+.1f} |")
    lines.append(f"| misses over the healthy logs (20 % \\| 40 % bars) | {sum(misses(e[32]) for _, _, e in healthy)} "
                 f"| {sum(misses(e[16]) for _, _, e in healthy)} | |")
    lines += ["", "Send/recv rows >= 1 MiB of the round's logs (GB/s busbw; error = measured / predicted - 1):", "```",
              f"{'log':34s} {'size':>8s} {'measured':>9s} {'p2p 32':>8s} {'err':>8s} {'p2p 16':>8s} {'err':>8s}"]
    for name, _, errs in data:
        if not name.startswith(ALWAYS) or "sendrecv" not in name:
            continue
        for a, b in zip(errs[32].sizes, errs[16].sizes):
            s = int(a.size_bytes)
            if s not in (2**20, 2**24, 2**28, 2**30, 2**34):
                continue
            lines.append(f"{name:34s} {_size(s):>8s} {s / a.measured_s / 1e9:9.2f} {s / a.predicted_s / 1e9:8.2f} "
                         f"{a.measured_s / a.predicted_s - 1:+8.1%} {s / b.predicted_s / 1e9:8.2f} "
                         f"{b.measured_s / b.predicted_s - 1:+8.1%}")
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
