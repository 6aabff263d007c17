"""Session 13 (heldout2): the held-out pairs of b200-together and h100-qoofyk (the two clusters whose mean change at
>= 1 MiB is positive under `--transfer shared`), and every other cluster's worse pair whose fitted figure is a latency
(a hop α or the send/recv latency π, the same cause), with what NCCL runs on the rows.

Per pair and band: the latency figures the fit on the first log moves (> 0.5 % from the prior; heldout_pairs.fit_figures)
and the machinery of the rows that set them, then the held-out rows that lose more than 0.5 pt, each with what the
model runs there as NCCL would: algorithm / protocol (NCCL's tuner's pick, tuning.cc), transport (net / nvl), channels
(ring / tree: enqueue.cc topoGetAlgoInfo's per-size count, nccl_channels.ring_tree_channels; NVLS / NVLSTree:
comm->nvlsChannels; send/recv and all-to-all: the parts of one peer's bytes, nccl.p2p_channels) and, for send/recv
and all-to-all across nodes, the network peers and the (peer, part) ops the proxy posts (transfer_p2p.network_ops).

Run: python scripts/heldout_causes.py [--write] [--cache DIR]   (--write replaces the marked block of
docs/collectives-history.md; --cache DIR reuses scripts/heldout_rule.py's priced shared matrix).
"""

from __future__ import annotations

from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_table import _size, calibration_matrix, matrix_fit, read_manifest  # noqa: E402
from moesim.calibrate.predict import CollectiveTerm  # noqa: E402
from moesim.calibrate.transfer_p2p import network_ops  # noqa: E402
from moesim.collectives.base import Group  # noqa: E402
from moesim.collectives.nccl import p2p_channels, p2p_net_nchannels, tuning  # noqa: E402
from moesim.collectives.nccl_channels import channel_counts, ring_tree_channels  # noqa: E402
from moesim.collectives.select import default_model  # noqa: E402
from moesim.collectives.tier_layout import nic_tier  # noqa: E402
from moesim.specs.load import load_hardware  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.heldout_pairs import fit_figures, losing_sizes  # noqa: E402
from scripts.heldout_rule import NOISE, priced  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN heldout_causes: python scripts/heldout_causes.py --write -->"
END = "<!-- END heldout_causes -->"
CLUSTERS = ("b200-together", "h100-qoofyk")
LATENCY_FIGURES = (".latency", ".p2p_latency")


def nccl_runs(model, op: str, size_bytes: float, ranks: int) -> str:
    """What the model runs for one row, as NCCL would: 'tree/LL net ch 2' or 'direct/Simple net parts 4, 1 peer, 4
    ops'."""
    group = Group(size=ranks)
    cost = model.cost(op, size_bytes, group)
    system, pl = model.placement(group)
    algo, _, proto = cost.algorithm.partition("/")
    where = "net" if pl.top >= 1 else "nvl"
    if op in ("send_recv", "all_to_all"):
        peer = size_bytes if op == "send_recv" else size_bytes / ranks
        net = nic_tier(system, pl) if pl.top >= 1 else None
        parts = p2p_channels(peer, ranks, system.tiers[0], net, p2p_net_nchannels(None)) or 1
        ops = network_ops(model, CollectiveTerm(op, size_bytes, group, 1))  # network peers x these parts, or 0
        peers = ops // parts
        return f"{cost.algorithm} {where} parts {parts}" + (f", {peers} net peer{'s' * (peers > 1)}, {ops} op{'s' * (ops > 1)}"
                                                            if ops else "")
    if algo in ("ring", "tree"):
        channels = channel_counts(model, group, {})["coll"]
        return f"{cost.algorithm} {where} ch {ring_tree_channels(algo, proto, size_bytes, ranks, channels)[0]}"
    if algo.startswith("nvls"):
        return f"{cost.algorithm} {where} ch {channel_counts(model, group, {})['nvls']}"
    return f"{cost.algorithm} {where}"


def losing(held: dict, prior, profile, band: int) -> list[tuple]:
    """(size, prior error, calibrated error, what NCCL runs at the prior) of the held-out rows in `band` whose |busbw
    error| grows by more than LOSES."""
    before, hw0, rows = losing_sizes(held, prior, profile, band)
    model = default_model(hw0)
    return [(a.size_bytes, a.busbw_error, b.busbw_error, nccl_runs(model, before.op, a.size_bytes, before.ranks))
            for a, b in rows]


def _rows_text(rows: list[tuple]) -> str:
    groups: dict[str, list[tuple]] = {}
    for r in rows:
        groups.setdefault(r[3], []).append(r)
    out = []
    for runs, rs in groups.items():
        span = _size(rs[0][0]) if len(rs) == 1 else f"{_size(rs[0][0])}-{_size(rs[-1][0])}"
        worst = max(rs, key=lambda r: abs(r[2]) - abs(r[1]))
        out.append(f"{runs}: {span} (worst {_size(worst[0])} {100 * worst[1]:+.1f} -> {100 * worst[2]:+.1f} %)")
    return "; ".join(out) or "none by more than 0.5 pt"


def selected(pairs) -> list[tuple]:
    """(pair, band) of the two clusters (every pair, both bands with rows) and the other clusters' worse pairs."""
    out = []
    for p in pairs:
        for band, (b, c) in enumerate(((p.prior_mape, p.calibrated_mape), (p.prior_mape_small, p.calibrated_mape_small))):
            if b is not None and (p.cluster in CLUSTERS or c > b + NOISE):
                out.append((p, band))
    return out


def render(cache: Path | None) -> str:
    # without a cache, the matrix exactly as the calibration tests price it (lru-cached there: one pricing per process)
    pairs = priced("shared", cache) if cache is not None else list(calibration_matrix(MANIFEST))
    entries = {e["file"]: e for e in read_manifest(MANIFEST)}
    lines = ["| fitted on -> held out | band | MAPE prior -> shared | latency figures the fit moves (machinery of the "
             "rows that set them) | held-out rows that lose > 0.5 pt: what NCCL runs there (signed busbw error prior "
             "-> shared) |", "|---|---|---|---|---|"]
    fits = {}
    for p, band in selected(pairs):
        if p.fitted_on not in fits:  # the matrix's own fit (nccl_table.matrix_fit, cached: not fitted again)
            result = matrix_fit(MANIFEST, p.fitted_on)
            fits[p.fitted_on] = (load_hardware(entries[p.fitted_on]["hardware"]), result.profile, fit_figures(result))
        prior, profile, figures = fits[p.fitted_on]
        latency = [f for f in figures if f[0].endswith(LATENCY_FIGURES)]
        if p.cluster not in CLUSTERS and not latency:
            continue
        figs = "; ".join(f"{n} {100 * m:+.1f} % ({', '.join(sorted(k)) or 'rows not recorded'})"
                         for n, m, k in latency) or "none by more than 0.5 %"
        mape = ((p.prior_mape, p.calibrated_mape), (p.prior_mape_small, p.calibrated_mape_small))[band]
        rows = losing(entries[p.held_out], prior, profile, band)
        lines.append(f"| {p.fitted_on.removesuffix('_perf.log')} -> {p.held_out.removesuffix('_perf.log')} | "
                     f"{('>= 1 MiB', '< 1 MiB')[band]} | {100 * mape[0]:.2f} -> {100 * mape[1]:.2f} % | {figs} | "
                     f"{_rows_text(rows)} |")
    lines.append("")
    lines.append(f"(channels: the NCCL channels the row runs on; parts: one peer's bytes split over that many p2p "
                 f"channels; ops: the (peer, part) ops one rank's proxy posts; NCCL_P2P_NET_CHUNKSIZE "
                 f"{tuning()['p2p_net']['chunk_bytes'] // 1024} KiB)")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END, cache=True)
