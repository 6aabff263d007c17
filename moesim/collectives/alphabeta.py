"""A first, topology-blind collective model: Hockney alpha-beta on the slowest level a group spans.

Notation and formulas: moesim/collectives/formulas.py (Thakur, Rabenseifner & Gropp, IJHPCA 2005).
A group uses the innermost interconnect level whose domain holds its whole span; its per-device
bandwidth W is that level's injection bandwidth (a torus device drives a bidirectional ring over
two links) times the level's efficiency at the message size.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.collectives.base import CollectiveCost, Group, p2p_latency_s
from moesim.collectives.formulas import (
    binomial_broadcast_s, pairwise_all_to_all_s, ring_all_gather_s, ring_all_reduce_s, send_recv_s,
)
from moesim.specs.hardware import HardwareProfile, InterconnectLevel

TORUS_RING_LINKS = 2  # a bidirectional ring on one torus axis drives 2 links per chip (SB sharding.md)


def device_bw_bytes_per_s(level: InterconnectLevel, devices_per_chip: int, message_bytes: float) -> float:
    """Per-device one-way bandwidth a ring or pairwise algorithm can use on `level`."""
    links = TORUS_RING_LINKS if level.topology == "torus" else 1
    share = devices_per_chip if level.topology == "torus" else 1  # cores of a chip share its links
    return links * level.link_bw_bytes_per_s * level.bw_efficiency.at(max(message_bytes, 1.0)) / share


@dataclass(frozen=True)
class AlphaBetaModel:
    """Collective costs from each level's latency and bandwidth; no contention, no topology."""

    hardware: HardwareProfile

    def level_of(self, group: Group) -> InterconnectLevel:
        return self.hardware.interconnect[self.hardware.level_for_span(group.span)]

    def cost(self, op: str, size_bytes: float, group: Group) -> CollectiveCost:
        p = group.size
        level = self.level_of(group)
        if p == 1 and op != "send_recv":
            return CollectiveCost(op, size_bytes, p, 0.0, "local", "none")
        per_message = size_bytes / p if op in ("all_to_all", "all_gather", "reduce_scatter") else size_bytes
        bw = device_bw_bytes_per_s(level, self.hardware.chip.devices_per_chip, per_message)
        alpha = p2p_latency_s(level) if op in ("all_to_all", "send_recv") else level.latency_s
        if op == "all_reduce":
            time_s, algorithm = ring_all_reduce_s(p, size_bytes, alpha, bw), "ring"
        elif op in ("all_gather", "reduce_scatter"):
            time_s, algorithm = ring_all_gather_s(p, size_bytes, alpha, bw), "ring"
        elif op == "all_to_all":
            time_s, algorithm = pairwise_all_to_all_s(p, size_bytes, alpha, bw), "pairwise"
        elif op == "broadcast":
            time_s, algorithm = binomial_broadcast_s(p, size_bytes, alpha, bw), "binomial_tree"
        elif op == "send_recv":
            time_s, algorithm = send_recv_s(size_bytes, alpha, bw), "direct"
        else:
            raise ValueError(f"unknown collective {op!r}")
        return CollectiveCost(op, size_bytes, p, time_s, algorithm, level.name)
