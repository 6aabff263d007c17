"""Check, not the shipped prior: an NCCL all-to-all's latency as NCCL schedules its peers, against the logs.

The shipped pairwise all-to-all adds one message latency per peer in the protocol its per-peer size picks,
Σ_i (g_i − g_{i−1})·α_i (hierarchy.pairwise_all_to_all_terms). NCCL runs a group's peers at once: one rank waits
for its busiest p2p channel, the sum over that channel's work batches of each batch's slowest message
(moesim/collectives/nccl_p2p_schedule.py, read in NVIDIA/nccl v2.30.7-1 / v2.28.9-1). This script prices every
alltoall log with that latency instead, the rest of the price unchanged:
- latency = the largest base latency of the protocols the peers run + the schedule's latency, where a peer on
  the rank's node runs the protocol its per-peer size picks (LL up to 16 KiB, then Simple) and a peer on another
  node runs Simple (no LL buffer on a p2p network connection: nccl_tuning.toml [p2p_net] ll_buffers);
- parts per op: NCCL's nChannels of one peer's send (nccl.p2p_channels; 1 where the profile lists no NVLink rate);
- the bandwidth terms of the shipped pairwise candidate as they are.
Send/recv logs (sendrecv_perf: each rank one send and one recv, one round) are the same under both: not listed.

Run: python scripts/a2a_schedule_check.py [--write]   (--write replaces the marked block of docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_table import _size  # noqa: E402
from moesim.collectives import nccl, nccl_p2p_schedule  # noqa: E402
from moesim.collectives.base import Group, p2p_latency_s  # noqa: E402
from moesim.collectives.protocols import NCCL_PROTOCOLS, p2p_protocol  # noqa: E402
from moesim.collectives.topo_model import _nic_tier  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import alltoall_logs, mape_cell  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN a2a_schedule_check: python scripts/a2a_schedule_check.py --write -->"
END = "<!-- END a2a_schedule_check -->"
_PROTO = {p.name: p for p in NCCL_PROTOCOLS}


def scheduled_time_s(model, size_bytes: float, group: Group) -> tuple[float, float, int, float, float]:
    """(shipped pairwise time, the same with NCCL's scheduled latency, batches on the busiest channel, the
    scheduled time with the proxy's network posts in turn, that with the network bytes on their blocks' channels)."""
    flat = min((c for c in model.candidates("all_to_all", size_bytes, group) if c.algorithm == "pairwise"),
               key=lambda c: c.time_s)
    system, pl = model.placement(group)
    tiers, counts, n = system.tiers[:pl.top + 1], tuple(pl.counts[:pl.top + 1]), group.size
    peer = size_bytes / n
    inner = _PROTO[p2p_protocol(peer)]
    protos = [inner] + [_PROTO["Simple"]] * (len(tiers) - 1)
    alpha = [p2p_latency_s(t) * p.step_factor(t.kind) for t, p in zip(tiers, protos)]
    parts = nccl.p2p_channels(peer, n, tiers[0], _nic_tier(system, pl)) or 1
    t = nccl.tuning()
    batches = nccl_p2p_schedule.channel_batches(n, counts, parts, t["p2p"]["p2p_channels"],
                                                t["p2p_net"]["max_p2p_per_batch"], t["p2p_schedule"]["group_size"])
    base = max(p.base_latency_s("pairwise") for p in protos)
    scheduled = nccl_p2p_schedule.latency_s(batches, alpha)
    new = base + scheduled + flat.terms.bandwidth_s
    # the proxy posts the rank's network messages one after another, each at least NCCL's network post overhead
    # (x 3 in Simple, by the hosts' CPU: nccl.net_overhead_s): the last leaves (peers off the node - 1) posts after
    # the first
    net_peers = n - counts[0]
    cpu = getattr(tiers[1], "host_cpu", "") if len(tiers) > 1 else ""
    posts = (net_peers - 1) * nccl.net_overhead_s("Simple", cpu) + max(alpha[1:]) if net_peers > 0 else 0.0
    proxied = base + max(scheduled, posts) + flat.terms.bandwidth_s
    # the network peers of one block of rounds share that block's channels, NCCL_P2P_PER_CHANNEL_NET_BW each
    net_channels = sum(1 for chan in batches if any(t >= 1 for tiers_ in chan for t in tiers_))
    shared = net_peers / n * size_bytes / (net_channels * t["p2p_net"]["per_channel_net_gb_per_s"] * 1e9) \
        if net_channels else 0.0
    channelled = base + max(scheduled, posts) + max(flat.terms.bandwidth_s, shared)
    return flat.time_s, new, nccl_p2p_schedule.sequential_batches(batches), proxied, channelled


def rows() -> list[tuple]:
    out = []
    for name, healthy, model, floor, points in alltoall_logs(MANIFEST):  # with the logs' system facts
        # against the per-peer sum ("summed", the default until session 12's "channels")
        model = dataclasses.replace(model, p2p_net_model="summed")
        sizes = []
        for p in points:
            old, new, seq, proxied, chan = scheduled_time_s(model, p.size_bytes, Group(size=p.group_size,
                                                                                       devices=p.group_size))
            sizes.append((p.size_bytes, p.time_s, max(old, floor), max(new, floor), seq, max(proxied, floor),
                          max(chan, floor)))
        out.append((name, healthy, sizes))
    return out


def render() -> str:
    lines = ["```", "log (healthy)                          MAPE >= 1 MiB | < 1 MiB: shipped -> scheduled -> + posts"
                    " -> + channels"]
    data = rows()
    for name, healthy, sizes in data:
        lines.append(f"{name.replace('_perf.log', '') + (' (' + str(healthy).lower() + ')'):39s}"
                     f"{mape_cell(sizes, True, 2)} | {mape_cell(sizes, False, 2)}  ->  "
                     f"{mape_cell(sizes, True, 3)} | {mape_cell(sizes, False, 3)}  ->  "
                     f"{mape_cell(sizes, True, 5)} | {mape_cell(sizes, False, 5)}  ->  "
                     f"{mape_cell(sizes, True, 6)} | {mape_cell(sizes, False, 6)}")
    lines.append("")
    lines.append("per size (us; error = measured / predicted - 1; batches = work batches on the busiest channel;")
    lines.append("+ posts = scheduled, with the proxy's network posts in turn; + channels = + posts, with each block's")
    lines.append("network bytes on its channels at 14 GB/s each)")
    for name, _, sizes in data:
        lines.append(name.replace("_perf.log", ""))
        lines.append(f"  {'size':>9s} {'measured':>9s} {'shipped':>9s} {'err':>8s} {'scheduled':>9s} {'err':>8s} "
                     f"batches {'+ posts':>9s} {'err':>8s} {'+ chans':>9s} {'err':>8s}")
        for size, meas, old, new, seq, proxied, chan in sizes:
            lines.append(f"  {_size(size):>9s} {meas * 1e6:9.1f} {old * 1e6:9.1f} {meas / old - 1:+8.1%} "
                         f"{new * 1e6:9.1f} {meas / new - 1:+8.1%} {seq:7d} {proxied * 1e6:9.1f} "
                         f"{meas / proxied - 1:+8.1%} {chan * 1e6:9.1f} {meas / chan - 1:+8.1%}")
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
