"""A first, topology-blind collective model: Hockney alpha-beta on the slowest level a group spans.

Notation (Thakur, Rabenseifner & Gropp, IJHPCA 2005, §2): α latency per message (s), β = 1/W
seconds per byte, p group size, S size in nccl-tests' convention (see base.py).
A group uses the innermost interconnect level whose domain holds its whole span; its per-device
bandwidth W is that level's injection bandwidth (a torus device drives a bidirectional ring over
two links) times the level's efficiency at the message size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moesim.collectives.base import CollectiveCost, Group
from moesim.specs.hardware import HardwareProfile, InterconnectLevel

TORUS_RING_LINKS = 2  # a bidirectional ring on one torus axis drives 2 links per chip (SB sharding.md)


def device_bw_bytes_per_s(level: InterconnectLevel, devices_per_chip: int, message_bytes: float) -> float:
    """Per-device one-way bandwidth a ring or pairwise algorithm can use on `level`."""
    links = TORUS_RING_LINKS if level.topology == "torus" else 1
    share = devices_per_chip if level.topology == "torus" else 1  # cores of a chip share its links
    return links * level.link_bw_bytes_per_s * level.bw_efficiency.at(max(message_bytes, 1.0)) / share


def ring_all_reduce_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """2(p−1)α + 2(p−1)/p·S·β (Thakur 2005, ring all-reduce; reduction cost folded into β)."""
    return 2 * (p - 1) * alpha_s + 2 * (p - 1) / p * size_bytes / bw


def ring_all_gather_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """(p−1)α + (p−1)/p·S·β, S the gathered size (Thakur 2005, ring all-gather; RS is symmetric)."""
    return (p - 1) * alpha_s + (p - 1) / p * size_bytes / bw


def pairwise_all_to_all_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """(p−1)α + (p−1)/p·S·β, S the bytes each rank sends in total (Thakur 2005, pairwise exchange;
    the local share never leaves the device)."""
    return (p - 1) * alpha_s + (p - 1) / p * size_bytes / bw


def binomial_broadcast_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """⌈lg p⌉·(α + S·β) (Thakur 2005, binomial tree)."""
    return math.ceil(math.log2(p)) * (alpha_s + size_bytes / bw)


def send_recv_s(size_bytes: float, alpha_s: float, bw: float) -> float:
    """α + S·β (Hockney)."""
    return alpha_s + size_bytes / bw


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
        alpha = level.latency_s
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
