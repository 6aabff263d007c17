"""Closed-form collective costs on one flat level (Hockney alpha-beta), and the terms type the tiered costs share.

Notation (Thakur, Rabenseifner & Gropp, IJHPCA 19(1) 2005, §2; sizes as nccl-tests counts them, base.py):
  p        ranks in the group
  S        size in bytes: the buffer (all-reduce, broadcast, send/recv), the full gathered/scattered array
           (all-gather, reduce-scatter), the total one rank sends (all-to-all)
  α        latency per message / per algorithm step, s
  W        per-rank bandwidth, one direction, bytes/s (β = 1/W); the reduction cost γ is folded into W
  lg       log base 2, rounded up for non-powers of two
"""

from __future__ import annotations

import math
from typing import NamedTuple


def lg(p: int) -> int:
    """⌈log2 p⌉ (0 for p <= 1)."""
    return max(0, math.ceil(math.log2(p))) if p > 1 else 0


class Terms(NamedTuple):
    """One algorithm's cost: latency plus per-tier transfer times, overlapped (max) or in sequence (sum).

    A NamedTuple rather than a frozen dataclass: the NCCL tuner builds several per collective priced, and a
    NamedTuple is built in about half the time (benchmarks/RESULTS.md, Collectives)."""

    latency_s: float
    transfer_s: tuple[float, ...]  # index = tier
    overlapped: bool = True

    @property
    def bandwidth_s(self) -> float:
        if not self.transfer_s:
            return 0.0
        return max(self.transfer_s) if self.overlapped else sum(self.transfer_s)

    @property
    def time_s(self) -> float:
        transfer = self.transfer_s  # latency_s + bandwidth_s, inline: the tuner reads it for every candidate
        return self.latency_s + ((max(transfer) if self.overlapped else sum(transfer)) if transfer else 0.0)

    @property
    def bottleneck(self) -> int:
        """Index of the tier with the largest transfer time."""
        return self.transfer_s.index(max(self.transfer_s)) if self.transfer_s else 0  # the first largest


def ring_all_reduce_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """2(p−1)α + 2(p−1)/p·S/W.

    Source: Thakur et al. 2005, §4.4 (ring = reduce-scatter + all-gather); nccl-tests PERFORMANCE.md
    (ideal all-reduce t = (S/B)·2(n−1)/n).
    """
    return 2 * (p - 1) * alpha_s + 2 * (p - 1) / p * size_bytes / bw


def ring_all_gather_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """(p−1)α + (p−1)/p·S/W; reduce-scatter costs the same.

    Source: Thakur et al. 2005, §4.1 (ring all-gather), §4.3 (pairwise reduce-scatter).
    """
    return (p - 1) * alpha_s + (p - 1) / p * size_bytes / bw


def recursive_doubling_all_gather_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """lg p·α + (p−1)/p·S/W; recursive halving reduce-scatter costs the same.

    Source: Thakur et al. 2005, §4.1 and §4.3.
    """
    return lg(p) * alpha_s + (p - 1) / p * size_bytes / bw


def rabenseifner_all_reduce_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """2·lg p·α + 2(p−1)/p·S/W (recursive-halving reduce-scatter + recursive-doubling all-gather).

    Source: Thakur et al. 2005, §4.4 (Rabenseifner's algorithm), p a power of two.
    """
    return 2 * lg(p) * alpha_s + 2 * (p - 1) / p * size_bytes / bw


def double_binary_tree_all_reduce_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """2·lg p·α + 2·S/W (p > 2), 2·lg p·α + S/W (p = 2): reduce up and broadcast down two complementary
    binary trees, each carrying S/2, pipelined.

    A rank inner in one tree receives S and sends S/2 (reduce), receives S/2 and sends S (broadcast),
    and as a leaf of the other tree sends and receives S/2: 2·S each way. With two ranks each is the
    root of one tree and a leaf of the other: S each way.
    Source: Sanders, Speck & Träff, Parallel Computing 35(12) 2009 (two-tree reduction);
    NVIDIA/nccl src/graph/tuning.cc (tree algbw = busbw/2).
    """
    return 2 * lg(p) * alpha_s + tree_bytes(p, size_bytes) / bw


def tree_bytes(p: int, size_bytes: float) -> float:
    """Bytes the busiest rank sends in a double-binary-tree all-reduce: S for p = 2, 2·S beyond."""
    return size_bytes if p == 2 else 2 * size_bytes


def pairwise_all_to_all_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """(p−1)α + (p−1)/p·S/W, S the bytes one rank sends in total (its own share stays local).

    Source: Thakur et al. 2005, §4.5 (pairwise exchange); NCCL's all-to-all is a grouped
    send/recv to every peer (NVIDIA/nccl-tests src/alltoall.cu).
    """
    return (p - 1) * alpha_s + (p - 1) / p * size_bytes / bw


def binomial_broadcast_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """⌈lg p⌉·(α + S/W).

    Source: Thakur et al. 2005, §4.2 (binomial tree).
    """
    return lg(p) * (alpha_s + size_bytes / bw)


def scatter_allgather_broadcast_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """(lg p + p − 1)·α + 2(p−1)/p·S/W (binomial scatter, then ring all-gather).

    Source: Thakur et al. 2005, §4.2 (van de Geijn et al.).
    """
    return (lg(p) + p - 1) * alpha_s + 2 * (p - 1) / p * size_bytes / bw


def pipelined_ring_broadcast_s(p: int, size_bytes: float, alpha_s: float, bw: float) -> float:
    """(p−1)·α + S/W: the buffer streams along a chain in small chunks (NCCL's ring broadcast).

    Source: NVIDIA/nccl src/graph/tuning.cc (ring broadcast: busbw = algbw, nsteps = nranks);
    Hockney pipelining with chunk latency folded into α.
    """
    return (p - 1) * alpha_s + size_bytes / bw


def send_recv_s(size_bytes: float, alpha_s: float, bw: float) -> float:
    """α + S/W (Hockney, Parallel Computing 20(3) 1994)."""
    return alpha_s + size_bytes / bw
