"""Collective costs on a torus, from the links the algorithm's paths actually use.

Notation (chips; see topology/placement.py for how a group becomes a sub-torus):
  m_i, d_i   members of the group and their spacing in chips along axis i; w_i the group's ring closes
  n_c = Π m_i chips;  q devices of the group per chip
  b          one direction of one link, bytes/s;  α  latency per hop (SB sharding.md: "around 1us"); for the
             all-to-all and send/recv the level's send/recv message latency (p2p_latency_us where set; topo_model)
  s_i        link sharing on axis i: running groups' devices on one of the group's axis-i segments ÷ its own
  S          nccl-tests size (see formulas.py); M_c = q·M bytes one chip sends in an all-to-all
A bidirectional ring on a closed axis drives 2 links per chip (W_i = 2b/s_i); an open axis (a line)
embeds one ring that uses each link once per direction (W_i = b/s_i): half the bandwidth
(SB tpus.md; ../shared/reference/collectives.md "No wraparound → half the bandwidth").
"""

from __future__ import annotations

from moesim.collectives.formulas import Terms, lg
from moesim.topology.placement import TorusGroup


def ring_pair_load(m: int, wrap: bool) -> float:
    """Most loaded directed link of a uniform all-to-all on m nodes, per unit sent per ordered pair,
    shortest-path routing: ring m²/8 (m even; ties split both ways), (m²−1)/8 (m odd); line ⌊m/2⌋·⌈m/2⌉.

    Derivation: on a ring, a link in one direction carries the pairs at distance δ ≤ m/2 that cross it:
    Σ_{δ=1}^{m/2−1} δ + (m/2)/2 = m²/8. On a line the middle link carries every pair across the middle.
    An axis of 2 with wraparound has two parallel links: load 1/2 = 2²/8. Source: [derived], consistent
    with ../shared/reference/modeling.md §3.6.
    """
    if m < 2:
        return 0.0
    if not wrap:
        return (m // 2) * (m - m // 2)
    return m * m / 8 if m % 2 == 0 else (m * m - 1) / 8


def torus_all_to_all_terms(chip_bytes: float, tg: TorusGroup, b: float, alpha_s: float) -> Terms:
    """Dimension-ordered direct all-to-all: transfer_i = M_c·L(m_i, w_i)/m_i·s_i/b, all axes at once;
    latency = diameter·α.

    Each of the n_c/m_i lines of axis i carries P/m_i pairs per (source, destination) coordinate pair,
    each M_c/n_c bytes, so its worst link carries M_c·L(m_i)/m_i. For a full torus with the longest
    axis k even this is k·M/(8b), the bisection bound. Source: [derived], modeling.md §3.6.
    """
    transfer = tuple(chip_bytes * ring_pair_load(m, w) / m * s / b if m > 1 else 0.0
                     for m, w, s in zip(tg.m, tg.wrap, tg.share))
    return Terms(tg.diameter_hops * alpha_s, transfer, overlapped=True)


def torus_bisection_bound_s(chip_bytes: float, longest_axis: int, wrap: bool, b: float) -> float:
    """T_a2a ≥ k·M/(8b) with wraparound, k·M/(4b) without (k the longest axis, M bytes per chip).

    Cut the longest axis in half: 2P/k links cross per direction (P/k without wraparound) and P·M/4
    bytes must cross each way. Source: ../shared/reference/modeling.md §3.6 [derived].
    """
    return longest_axis * chip_bytes / ((8 if wrap else 4) * b)


def axis_ring_bw(m: int, wrap: bool, share: float, b: float) -> float:
    """Per-chip ring bandwidth on one axis: 2b/s_i on a closed axis, b/s_i on a line (see module notes)."""
    return (2 if wrap else 1) * b / share if m > 1 else 0.0


def torus_rings_terms(passes: int, size_bytes: float, tg: TorusGroup, b: float, alpha_s: float) -> Terms:
    """Bidirectional rings on every axis at once (all-gather / reduce-scatter; passes = 2 for all-reduce).

    The buffer is cut into one chunk per axis; chunk r gathers its axes in the rotated order r, r+1, ...
    so every axis works all the time. Bytes received on axis j in a phase = chunk·(Π_{≤j} m − Π_{<j} m)/n_c;
    transfer_j = passes·Σ_chunks bytes_j / W_j; latency = passes·Σ_i steps_i·d_i·α with
    steps_i = ⌈(m_i−1)/2⌉ closed, m_i − 1 open.
    Source: SB sharding.md: bidirectional AllGather T = V/W_ICI,bidi, over several axes T = V/(W·n_axes),
    latency T_min·|X|/2 per axis; ../shared/reference/collectives.md.
    """
    axes = tg.axes
    if not axes:
        return Terms(0.0, (), overlapped=True)
    chunk = size_bytes / len(axes)
    load = {a: 0.0 for a in axes}
    for r in range(len(axes)):
        gathered = 1
        for a in axes[r:] + axes[:r]:
            load[a] += chunk * (gathered * tg.m[a] - gathered) / tg.chips
            gathered *= tg.m[a]
    transfer = tuple(passes * load[a] / axis_ring_bw(tg.m[a], tg.wrap[a], tg.share[a], b) if a in load else 0.0
                     for a in range(len(tg.m)))
    steps = sum((-(-(tg.m[a] - 1) // 2) if tg.wrap[a] else tg.m[a] - 1) * tg.d[a] for a in axes)
    return Terms(passes * steps * alpha_s, transfer, overlapped=True)


def torus_halving_doubling_terms(passes: int, size_bytes: float, tg: TorusGroup, b: float, alpha_s: float) -> Terms:
    """Recursive halving (then doubling) laid on the torus axis by axis: step j of axis i exchanges with the
    partner h = 2^j·d_i hops away; every chip does so at once, so a link carries h exchanges per direction
    (h/2 when h is half a closed axis: both directions). Bytes halve each step (S/2, S/4, ...):
    transfer = passes·Σ_steps bytes·load·s_i/b; latency = passes·Σ_steps h·α (steps in sequence).
    Source: Thakur et al. 2005 §4.3–4.4 (step sizes), paths on the torus [derived].
    """
    transfer = [0.0] * len(tg.m)
    latency, part = 0.0, size_bytes
    for a in tg.axes:
        ring_links = tg.m[a] * tg.d[a]
        for j in range(lg(tg.m[a])):
            h = (2 ** j) * tg.d[a]
            load = h / 2 if tg.wrap[a] and 2 * h == ring_links else (min(h, ring_links - h) if tg.wrap[a] else h)
            part /= 2
            transfer[a] += passes * part * load * tg.share[a] / b
            latency += passes * min(h, ring_links - h if tg.wrap[a] else h) * alpha_s
    return Terms(latency, tuple(transfer), overlapped=False)


def torus_broadcast_terms(algorithm: str, size_bytes: float, tg: TorusGroup, b: float, alpha_s: float) -> Terms:
    """Broadcast on the sub-torus.
    scatter_allgather: binomial scatter + multi-axis ring all-gather ≈ twice the all-gather transfer;
    binomial: per axis ⌈lg m_i⌉ rounds at distances ⌈m_i/2^(j+1)⌉·d_i, each S·s_i/b + distance·α.
    Source: Thakur et al. 2005 §4.2, paths on the torus [derived].
    """
    if algorithm == "scatter_allgather":
        ag = torus_rings_terms(1, size_bytes, tg, b, alpha_s)
        scatter_latency = sum(lg(tg.m[a]) * tg.m[a] * tg.d[a] // 2 for a in tg.axes) * alpha_s
        return Terms(ag.latency_s + scatter_latency, tuple(2 * t for t in ag.transfer_s), overlapped=True)
    transfer, latency = [0.0] * len(tg.m), 0.0
    for a in tg.axes:
        for j in range(lg(tg.m[a])):
            hops = -(-tg.m[a] // 2 ** (j + 1)) * tg.d[a]
            transfer[a] += size_bytes * tg.share[a] / b
            latency += hops * alpha_s
    return Terms(latency, tuple(transfer), overlapped=False)


def torus_send_recv_terms(size_bytes: float, tg: TorusGroup, b: float, alpha_s: float) -> Terms:
    """α·hops + S·s/b between consecutive members (hops per axis from the placement; s on the axes used:
    every pair of a pipeline sends at once, so interleaved groups share the links)."""
    used = [a for a, h in enumerate(tg.pair_hops) if h > 0]
    share = max((tg.share[a] for a in used), default=1.0)
    transfer = tuple(size_bytes * share / b if a == (used[0] if used else 0) else 0.0 for a in range(len(tg.m)))
    return Terms(sum(tg.pair_hops) * alpha_s, transfer, overlapped=True)
