"""What a collective is, how big, over which devices, and what costing one returns.

Sizes follow nccl-tests (NVIDIA/nccl-tests doc/PERFORMANCE.md): `size_bytes` S is
  all_reduce, broadcast, send_recv : the buffer on each rank
  all_gather                       : the full gathered output (per-rank count × n)
  reduce_scatter                   : the full input (per-rank count × n)
  all_to_all                       : the total each rank sends, its own share included
so that algbw = S / t and busbw = algbw × factor compare line by line with nccl-tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from moesim.errors import SpecError

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv")


def bus_bw_factor(op: str, n: int) -> float:
    """busbw / algbw (nccl-tests PERFORMANCE.md): AR 2(n−1)/n; AG, RS, A2A (n−1)/n; bcast, p2p 1."""
    if op not in OPS:
        raise ValueError(f"unknown collective {op!r}; allowed: {', '.join(OPS)}")
    if n <= 1:
        return 0.0 if op not in ("broadcast", "send_recv") else 1.0
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


def wire_bytes_per_device(op: str, size_bytes: float, n: int) -> float:
    """Bytes one device sends for an optimal algorithm: S × busbw factor (S for bcast/p2p roots)."""
    return size_bytes * bus_bw_factor(op, n)


def p2p_latency_s(level) -> float:
    """The latency of one send/recv message over `level` (a Tier or an InterconnectLevel): its own
    p2p_latency_s where the profile sets one (`interconnect[].p2p_latency_us`), else latency_s. Every engine
    that prices a point-to-point message reads it here: all-to-all and send/recv on switch tiers and tori,
    DeepEP's per-message hops (dispatch.py), the alpha-beta model; the estimate and the simulator through them."""
    return level.latency_s if level.p2p_latency_s is None else level.p2p_latency_s


def wire_factor(model, op: str, n: int) -> float:
    """Bytes one device sends per byte of S, as `model` runs `op` over n members: the model's own count
    where it has one (DeepEP's deduplicated dispatch, collectives/dispatch.py), else the busbw factor."""
    own = getattr(model, "wire_factor", None)
    return own(op, n) if own is not None else bus_bw_factor(op, n)


@dataclass(frozen=True)
class Group:
    """One collective's devices as laid on the mesh: `size` members `stride` device ids apart.

    `concurrent` is how many such groups run at the same time (the other groups of the same mesh
    axis): they share links where their paths meet. `devices` is the job's device count (0 = unknown).
    """

    size: int
    stride: int = 1
    concurrent: int = 1
    devices: int = 0

    def __post_init__(self) -> None:
        if self.size < 1 or self.stride < 1 or self.concurrent < 1:
            raise ValueError(f"group needs size, stride, concurrent >= 1, got {self}")

    @property
    def span(self) -> int:
        """Consecutive device ids from the first member to the last."""
        return (self.size - 1) * self.stride + 1

    def members(self, first: int = 0) -> list[int]:
        return [first + i * self.stride for i in range(self.size)]


@dataclass(frozen=True)
class CollectiveCost:
    """The predicted cost of one collective."""

    op: str
    size_bytes: float
    group_size: int
    time_s: float
    algorithm: str
    bottleneck: str  # the interconnect level (or link) that bounds it

    @property
    def algbw_bytes_per_s(self) -> float:
        return self.size_bytes / self.time_s if self.time_s > 0 else float("inf")

    @property
    def busbw_bytes_per_s(self) -> float:
        return self.algbw_bytes_per_s * bus_bw_factor(self.op, self.group_size)

    @property
    def bytes_per_device(self) -> float:
        return wire_bytes_per_device(self.op, self.size_bytes, self.group_size)


class CollectiveModel(Protocol):
    """Anything that prices a collective: the alpha-beta model, the topology-aware one, a calibrated one."""

    def cost(self, op: str, size_bytes: float, group: Group) -> CollectiveCost:
        """Time of `op` moving `size_bytes` (nccl-tests S) over `group`."""
        ...


def check_op(op: str, size_bytes: float) -> None:
    """SpecError unless `op` is a known collective and the size a non-negative number of bytes."""
    if op not in OPS:
        raise SpecError(f"unknown collective '{op}'", field="op", value=op, allowed=OPS)
    if not isinstance(size_bytes, (int, float)) or math.isnan(size_bytes) or size_bytes < 0:
        raise SpecError(f"size must be a non-negative number of bytes, got {size_bytes!r}", field="bytes",
                        value=size_bytes)
