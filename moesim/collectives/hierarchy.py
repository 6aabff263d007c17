"""Collective costs over nested switch tiers (NVLink domain → NIC fabric → leaf uplinks), per tier.

Notation (tiers i = 0..t, innermost first; t the innermost tier holding the whole group):
  n        ranks;  S  size as nccl-tests counts it (see formulas.py);  M  bytes one rank sends (all-to-all)
  g_i      ranks of the group inside one tier-i domain (g_{−1} = 1, g_t = n)
  c_i      = g_{i−1}: ranks of one tier-(i−1) domain; their c_i ports carry that domain's tier-i traffic
  D_i      = g_i / g_{i−1}: tier-(i−1) domains of the group inside one tier-i domain
  W_i      per-rank port bandwidth of tier i, one direction (already scaled by protocol, efficiency,
           and for leaf uplinks by the oversubscription share)
  α_i      latency per step crossing tier i
Transfer terms are per tier so the bounding tier can be reported (CollectiveCost.bottleneck).
"""

from __future__ import annotations

from moesim.collectives.formulas import Terms, lg, tree_bytes


def _c(counts, i):
    return counts[i - 1] if i > 0 else 1


def _d(counts, i):
    return max(1, -(-counts[i] // _c(counts, i)))


def ring_terms(passes: int, size_bytes: float, n: int, counts, alpha, bw) -> Terms:
    """Flat ring through the hierarchy: transfer_i = passes·(n−1)/n·S/(c_i·W_i) where tier i is crossed;
    latency = passes·Σ_i (n/g_{i−1} − n/g_i)·α_i (the n−1 ring steps split by the tier they cross).

    passes = 1 for all-gather / reduce-scatter, 2 for all-reduce. One ring channel per port crossing a
    boundary, as NCCL builds one ring per NIC. Source: Thakur et al. 2005 §4 (ring costs);
    NVIDIA/nccl src/graph/tuning.cc (latency = (nsteps − nInterSteps)·intraLat + nInterSteps·interLat).
    """
    return Terms(ring_latency_s(passes, n, counts, alpha), ring_transfer_s(passes, size_bytes, n, counts, bw),
                 overlapped=True)


def ring_latency_s(passes: int, n: int, counts, alpha) -> float:
    """ring_terms' latency, which no size changes (nccl_plan.plan computes it once per group)."""
    latency = 0.0
    for i in range(len(counts)):
        latency += passes * (n / _c(counts, i) - n / counts[i]) * alpha[i]
    return latency


def ring_transfer_s(passes: int, size_bytes: float, n: int, counts, bw) -> tuple[float, ...]:
    """ring_terms' per-tier transfer times."""
    out, c = [], 1  # c = _c(counts, i), inline: this runs for every NCCL ring candidate
    moved = passes * (n - 1) / n * size_bytes  # the same product, left to right, as per tier before
    for i, g in enumerate(counts):
        out.append(moved / (c * bw[i]) if g > c else 0.0)  # g > c: D_i = ceil(g / c) > 1
        c = g
    return tuple(out)


def hierarchical_ring_terms(passes: int, size_bytes: float, counts, alpha, bw) -> Terms:
    """A ring per tier (inner first), pipelined: transfer_i = passes·S·(D_i−1)/(D_i·c_i·W_i);
    latency = passes·Σ_i (D_i − 1)·α_i.

    Source: SB gpus.md "Cross-node collectives": T_AG = bytes·max_i (D_i−1)/(D_i·W_link,i), W_link,i the
    bandwidth joining a child to tier i (node egress 8·50 GB/s at the leaf); all-reduce is 2× without SHARP.
    """
    transfer, latency = [], 0.0
    for i in range(len(counts)):
        d = _d(counts, i)
        transfer.append(passes * size_bytes * (d - 1) / (d * _c(counts, i) * bw[i]))
        latency += passes * (d - 1) * alpha[i]
    return Terms(latency, tuple(transfer), overlapped=True)


def halving_doubling_terms(passes: int, size_bytes: float, counts, alpha, bw) -> Terms:
    """Recursive halving (RS) / doubling (AG), Rabenseifner for AR (passes = 2), ranks ordered by tier:
    transfer_i = passes·S·(1/c_i − 1/g_i)/W_i (the steps whose partners sit across tier i, each on the
    rank's own port); latency = passes·Σ_i ⌈lg D_i⌉·α_i; steps depend on each other, so they add.

    Source: Thakur et al. 2005 §4.3–4.4 (lg p·α + (p−1)/p·S·β per pass; p a power of two).
    """
    transfer, latency = [], 0.0
    for i in range(len(counts)):
        transfer.append(passes * size_bytes * (1 / _c(counts, i) - 1 / counts[i]) / bw[i])
        latency += passes * lg(_d(counts, i)) * alpha[i]
    return Terms(latency, tuple(transfer), overlapped=False)


TREE_EFFICIENCY = 0.9  # NVIDIA/nccl src/graph/tuning.cc: "if (a == NCCL_ALGO_TREE) busBw = ... busBw*.9"


def double_binary_tree_terms(size_bytes: float, counts, alpha, bw) -> Terms:
    """NCCL tree all-reduce: a chain inside the innermost tier, double binary trees above it.

    transfer_0 = 2·S/(η·W_0) (each chain rank receives and sends S up and S down);
    transfer_i = B(D_i)/(η·c_i·W_i) for i ≥ 1, B(2) = S, B(D > 2) = 2·S (formulas.tree_bytes), spread
    over the c_i ports of a tier-(i−1) domain; η = 0.9;
    latency = 2·((g_0 − 1)·α_0 + Σ_{i≥1} ⌈lg D_i⌉·α_i).
    Source: NVIDIA/nccl src/graph/tuning.cc (tree latency 2·((nRanks/nNodes − 1)·intraLat +
    log2(nNodes)·interLat), busBw·0.9, algbw = busbw/2); Sanders et al. 2009 (two trees).
    """
    return Terms(double_binary_tree_latency_s(counts, alpha), double_binary_tree_transfer_s(size_bytes, counts, bw),
                 overlapped=True)


def double_binary_tree_latency_s(counts, alpha) -> float:
    """double_binary_tree_terms' latency, which no size changes (nccl_plan.plan computes it once per group)."""
    latency = 0.0
    for i in range(len(counts)):
        latency += 2 * (counts[0] - 1) * alpha[0] if i == 0 else 2 * lg(_d(counts, i)) * alpha[i]
    return latency


def double_binary_tree_transfer_s(size_bytes: float, counts, bw) -> tuple[float, ...]:
    """double_binary_tree_terms' per-tier transfer times."""
    transfer, c = [], 1  # c = _c(counts, i), d = _d(counts, i), inline: this runs for every NCCL tree candidate
    for i, g in enumerate(counts):
        d = max(1, -(-g // c))
        if i == 0:
            transfer.append(2 * size_bytes / (TREE_EFFICIENCY * bw[0]) if d > 1 else 0.0)
        else:
            transfer.append(tree_bytes(d, size_bytes) / (TREE_EFFICIENCY * c * bw[i]) if d > 1 else 0.0)
        c = g
    return tuple(transfer)


def pairwise_all_to_all_terms(size_bytes: float, n: int, counts, alpha, bw, forward_inner: bool) -> Terms:
    """Direct all-to-all (every rank sends S/n to every peer at once):
    transfer_0 = S·(g_0 − 1)/n/W_0  [+ S·(n − g_0)/n·(g_0 − 1)/g_0/W_0 with rail forwarding];
    transfer_i = S·(n − c_i)/n/W_i for i ≥ 1 (everything leaving the rank's tier-(i−1) domain);
    latency = Σ_i (g_i − g_{i−1})·α_i (one message per peer).

    `forward_inner`: rail-optimized fabrics first move a byte over NVLink to the local rank on the
    destination's rail (PXN), so NVLink also carries that share of the off-node bytes.
    Source: Thakur et al. 2005 §4.5 ((p−1)α + (p−1)/p·S·β); SB gpus.md (cross-node AllToAll is bound
    by node egress); NVIDIA developer blog "Doubling all2all Performance with NCCL 2.12" (PXN).
    """
    transfer, latency = [], 0.0
    for i in range(len(counts)):
        c = _c(counts, i)
        if i == 0:
            inner = size_bytes * (counts[0] - 1) / n
            if forward_inner and len(counts) > 1:
                inner += size_bytes * (n - counts[0]) / n * (counts[0] - 1) / counts[0]
            transfer.append(inner / bw[0])
        else:
            transfer.append(size_bytes * (n - c) / n / bw[i])
        latency += (counts[i] - c) * alpha[i]
    return Terms(latency, tuple(transfer), overlapped=True)


def two_level_all_to_all_terms(size_bytes: float, n: int, counts, alpha, bw, copy_bw: float) -> Terms:
    """Hierarchical (2DH) all-to-all: an all-to-all inside the innermost tier among its g_0 ranks, then
    one among the N = n/g_0 same-local-index ranks across the outer tiers, plus two stride copies:
    T = (g_0−1)·α_0 + S(g_0−1)/g_0/W_0 + Σ_{i≥1}[(N_i − N_{i−1})·α_i] + max_{i≥1} S(N − N_{i−1})/N/W_i
        + 2·S/W_copy,  N_i = g_i/g_0.
    The inter-domain messages are g_0× larger and g_0× fewer than the direct algorithm's.
    Source: Tutel (arXiv 2206.03382) App. A, Alg. 2; DeepSpeed-MoE (arXiv 2201.05596) §5.3;
    ../shared/reference/modeling.md §3.7 (2DH alpha-beta form).
    """
    g0, nodes = counts[0], n // counts[0]
    intra = size_bytes * (g0 - 1) / g0 / bw[0]
    latency = (g0 - 1) * alpha[0]
    outer = []
    for i in range(1, len(counts)):
        inside_prev, inside = counts[i - 1] // g0, counts[i] // g0
        outer.append(size_bytes * (nodes - inside_prev) / nodes / bw[i])
        latency += (inside - inside_prev) * alpha[i]
    copies = 2 * size_bytes / copy_bw
    worst = max(range(len(outer)), key=outer.__getitem__) if outer else -1
    # The two phases run one after the other; the outer tiers of phase two run at once (max).
    transfer = (intra + copies,) + tuple(t if j == worst else 0.0 for j, t in enumerate(outer))
    return Terms(latency, transfer, overlapped=False)


def broadcast_terms(algorithm: str, size_bytes: float, n: int, counts, alpha, bw) -> Terms:
    """Broadcast over the tiers.
    ring (pipelined chain, NCCL): transfer_i = S/(c_i·W_i) where crossed, latency as a ring of n−1 steps;
    binomial: Σ_i ⌈lg D_i⌉·(α_i + S/W_i);
    scatter_allgather: binomial scatter + hierarchical ring all-gather ≈ 2× its transfer.
    Source: formulas.py (Thakur et al. 2005 §4.2; NVIDIA/nccl tuning.cc), composed per tier.
    """
    if algorithm == "ring":
        ring = ring_terms(1, size_bytes, n, counts, alpha, bw)
        transfer = tuple(size_bytes / (_c(counts, i) * bw[i]) if _d(counts, i) > 1 else 0.0
                         for i in range(len(counts)))
        return Terms(ring.latency_s, transfer, overlapped=True)
    if algorithm == "binomial":
        transfer = tuple(lg(_d(counts, i)) * size_bytes / bw[i] for i in range(len(counts)))
        latency = sum(lg(_d(counts, i)) * alpha[i] for i in range(len(counts)))
        return Terms(latency, transfer, overlapped=False)
    gather = hierarchical_ring_terms(1, size_bytes, counts, alpha, bw)
    latency = gather.latency_s + sum(lg(_d(counts, i)) * alpha[i] for i in range(len(counts)))
    return Terms(latency, tuple(2 * t for t in gather.transfer_s), overlapped=True)


def send_recv_terms(size_bytes: float, tier: int, tiers: int, alpha, bw) -> Terms:
    """α_t + S/W_t through the tier t that separates the two ranks (Hockney)."""
    transfer = tuple(size_bytes / bw[tier] if i == tier else 0.0 for i in range(tiers))
    return Terms(alpha[tier], transfer, overlapped=True)
