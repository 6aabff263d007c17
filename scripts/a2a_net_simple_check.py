"""Check, not the shipped prior: the flat all-to-all with its network peers priced Simple, against the alltoall logs.

NCCL's send/recv between ranks on different nodes runs Simple at every size: its network connection has no LL
buffer unless NCCL_ALLOC_P2P_NET_LL_BUFFERS=1 (nccl_tuning.toml [p2p_net] ll_buffers = false;
nccl_multinode.p2p_net_runs_ll; NVIDIA/nccl 2.30.7 src/transport/net.cc, src/enqueue.cc addP2pToPlan). The
shipped model applies that rule to send/recv only (topo_model.TopologyModel._layout, `p2p_net_simple`); its
all-to-all prices every peer, network peers included, with the protocol the per-peer size S/n picks (LL up to
16 KiB, Simple above: protocols.p2p_protocol). This script prices every alltoall log's flat pairwise exchange
(what nccl-tests runs: calibrate/bench_cost.py) with the NVLink peers as shipped and the network peers Simple,
in the same formula (hierarchy.pairwise_all_to_all_terms: one message latency per peer, transfers overlapped):
- latency: Σ_i (g_i − g_{i−1})·α_i with α_i of the tier's protocol (Simple's step factor on network tiers);
- transfers: the network tiers' at Simple's bandwidth factor, the NVLink tier's as shipped;
- base latency: the largest of the protocols the peers run (the kernel ends with its slowest peer).
Sizes whose per-peer bytes already pick Simple are priced as shipped.

Run: python scripts/a2a_net_simple_check.py [--write]   (--write replaces the marked block of docs/collectives.md)
"""

from __future__ import annotations

import dataclasses

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.collectives.base import Group, p2p_latency_s  # noqa: E402
from moesim.collectives.protocols import NCCL_PROTOCOLS  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import alltoall_logs, mape_change_line, moved_size_lines  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives.md"
BEGIN = "<!-- BEGIN a2a_net_simple_check: python scripts/a2a_net_simple_check.py --write -->"
END = "<!-- END a2a_net_simple_check -->"
_PROTO = {p.name: p for p in NCCL_PROTOCOLS}


def _latency_s(tiers, counts, protos) -> float:
    """Σ_i (g_i − g_{i−1})·α_i, α_i = the tier's send/recv latency × its protocol's step factor."""
    total, inside = 0.0, 1
    for t, g, p in zip(tiers, counts, protos):
        total += (g - inside) * p2p_latency_s(t) * p.step_factor(t.kind)
        inside = g
    return total


def net_simple_time_s(model, size_bytes: float, group: Group) -> tuple[float, float, str]:
    """(shipped pairwise time, the same with the network peers Simple, the shipped label)."""
    flat = min((c for c in model.candidates("all_to_all", size_bytes, group) if c.algorithm == "pairwise"),
               key=lambda c: c.time_s)
    system, pl = model.placement(group)
    tiers, counts = system.tiers[:pl.top + 1], tuple(pl.counts[:pl.top + 1])
    inner = _PROTO[flat.protocol]
    if len(tiers) < 2 or inner.name == "Simple" or all(t.kind in ("switch", "torus") for t in tiers[1:]):
        return flat.time_s, flat.time_s, flat.label
    shipped_latency = _latency_s(tiers, counts, [inner] * len(tiers))
    if abs(shipped_latency - flat.terms.latency_s) > 1e-12:  # a leg this script does not model (no-GDR staging)
        raise SystemExit(f"latency {flat.terms.latency_s} is not the per-peer sum {shipped_latency}: not comparable")
    simple = _PROTO["Simple"]
    protos = [inner if t.kind in ("switch", "torus") else simple for t in tiers]
    scale = [inner.bw_factor(False, True) / p.bw_factor(False, True) for p in protos]
    transfer = [x * s for x, s in zip(flat.terms.transfer_s, scale)]
    base = max(p.base_latency_s("pairwise") for p in protos)
    return flat.time_s, base + _latency_s(tiers, counts, protos) + max(transfer), flat.label


def rows() -> list[tuple]:
    out = []
    for name, healthy, model, floor, points in alltoall_logs(MANIFEST):
        # against the per-peer sum ("summed", the default until session 12's "channels")
        model = dataclasses.replace(model, p2p_net_model="summed")
        sizes = []
        for p in points:
            old, new, label = net_simple_time_s(model, p.size_bytes, Group(size=p.group_size, devices=p.group_size))
            sizes.append((p.size_bytes, p.time_s, max(old, floor), max(new, floor), label))
        out.append((name, healthy, sizes))
    return out


def render() -> str:
    lines = ["```",
             "log (healthy)                          busbw MAPE >= 1 MiB | < 1 MiB: shipped -> network peers Simple"]
    data = [(name.replace("_perf.log", ""), healthy, sizes) for name, healthy, sizes in rows()]
    lines += [mape_change_line(name, healthy, sizes) for name, healthy, sizes in data]
    lines += ["", "sizes that move (us; error = measured / predicted - 1)"]
    lines += moved_size_lines(data, "shipped", "net Simple")
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
