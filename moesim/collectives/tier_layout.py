"""A group's tiers as one collective prices them, with every figure no message size changes (TopologyModel._layout
builds it, memoised per group and op), and the two per-tier facts pricing reads beside it: the NIC tier of a placement
and send/recv's line over a tier. Moved out of topo_model.py (session 11, tidy: a pure move; topo_model imports each
under its old private name)."""

from __future__ import annotations

from dataclasses import dataclass

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
    cap_tiers: tuple | None  # (NVLink tier, NIC tier or None) where NCCL's p2p channels cap a send/recv
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
