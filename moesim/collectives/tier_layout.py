"""A group's tiers as one collective prices them, with every figure no message size changes (TopologyModel._layout
builds it, memoised per group and op), and the two per-tier facts pricing reads beside it: the NIC tier of a placement
and send/recv's line over a tier. Moved out of topo_model.py (session 11, tidy: a pure move; topo_model imports each
under its old private name)."""

from __future__ import annotations

from dataclasses import dataclass

from moesim.collectives import nccl, nccl_p2p, nccl_p2p_net, nccl_p2p_peer
from moesim.collectives.algorithm_menu import P2P_OPS
from moesim.collectives.formulas import Terms
from moesim.topology.placement import GroupPlacement
from moesim.topology.system import System


@dataclass(frozen=True)
class Layout:
    """A group's tiers as one op prices them, with every figure no message size changes (TopologyModel._layout)."""

    tiers: tuple  # the group's tiers, innermost first, up to the one that bounds it
    counts: tuple[int, ...]  # g_i on those tiers
    top: int
    multi: bool  # more than one tier (several NVLink domains / nodes)
    torus_port: tuple[bool, ...]  # per tier: a torus tier inside a larger group (TopologyModel._port_bw)
    p2p: tuple[float, ...] | None  # per tier InterconnectLevel.p2p_factor, for send/recv-based ops
    rail: bool  # a rail-optimized fabric among the tiers (PXN forwarding over NVLink)
    # (Protocol, {"ring" | "tree": per-tier step latency s}, bandwidth factor) per protocol; () where `tuner` prices
    protocols: tuple
    names: tuple[str, ...]  # the algorithms _algorithm_terms prices for the op
    tuner: object  # nccl_plan.plan for AR / AG / RS on NCCL systems, else None
    # (NVLink tier, NIC tier or None, network-peer rule) where NCCL's p2p channels cap a send/recv
    cap_tiers: tuple | None
    p2p_protocols: bool  # NCCL send/recv: each algorithm runs the protocol its message size picks
    p2p_net_simple: bool = False  # NCCL send/recv between nodes: Simple at every size (nccl_multinode.p2p_net_runs_ll)
    gdr_offsets: dict | None = None  # broadcast without GDR: {protocol: tuner offset s}, its legs taken back
    p2p_concurrent: tuple | None = None  # p2p_net_model "concurrent" / "channels": TopologyModel._concurrent_layout's
    bcast: dict | None = None  # broadcast_model other than "plain": nccl_broadcast.layout's


def nic_tier(system: System, pl: GroupPlacement):
    """The NIC tier (the first fabric tier) when the group spans more than one NVLink domain, else None."""
    if pl.top < 1 or len(system.tiers) < 2 or system.tiers[1].kind != "fabric":
        return None
    return system.tiers[1]


def p2p_line(tier, op: str) -> float:
    """Send/recv's line over a tier, as a factor of its usable bandwidth: p2p_factor, or for an all-to-all the tier's
    alltoall_p2p_factor where a profile sets one (session 10, calpairs: NCCL runs every peer at once there)."""
    own = getattr(tier, "alltoall_p2p_factor", None) if op == "all_to_all" else None
    return tier.p2p_factor if own is None else own


def concurrent_layout(p2p_net_model: str, p2p_net_nchannels, op: str, n: int, system: System, pl: GroupPlacement,
                      tiers, protocol_rows, peer_rule: str = nccl_p2p_peer.LATEST):
    """What TopologyModel's p2p_net_model="concurrent" / "channels" needs for `op` (nccl_p2p_net.py), or None where it
    does not apply (not NCCL, not a send/recv-based op, one node, no network tier, no Simple row): (Simple's row, the
    proxy's launch s, the NVLink tier, the NIC tier, the communicator's p2p channels across nodes, the model, the
    size-free part of a peer's p2p channels (nccl_p2p.p2p_channel_rule; `peer_rule` the network peer's rule,
    nccl_p2p_peer.RULES), NCCL's p2p ops per batch, group size)."""
    if (p2p_net_model == "summed" or not system.nccl or op not in P2P_OPS or len(tiers) < 2
            or all(t.kind in ("switch", "torus") for t in tiers[1:])):
        return None
    simple = [row for row in protocol_rows if row[0].name == "Simple"]
    if not simple:
        return None
    launch = nccl_p2p_net.launch_s(getattr(tiers[1], "host_cpu", ""))
    net_tier, t, nchannels = nic_tier(system, pl), nccl.tuning(), nccl.p2p_net_nchannels(p2p_net_nchannels)
    return (simple[0], launch, tiers[0], net_tier, nchannels, p2p_net_model,
            nccl_p2p.p2p_channel_rule(n, tiers[0], net_tier, nchannels, peer_rule) if net_tier is not None else None,
            t["p2p_net"]["max_p2p_per_batch"], t["p2p_schedule"]["group_size"])


def bound(terms: Terms, tiers) -> str:
    """The name of the tier that bounds `terms` (the last tier where nothing moves): TopologyModel's bottleneck."""
    transfer = terms.transfer_s
    for t in transfer:  # any(t > 0): a tier moves bytes
        if t > 0:
            return tiers[transfer.index(max(transfer))].name  # Terms.bottleneck, inline
    return tiers[-1].name
