"""`moesim calibrate --transfer p2p-ops` (session 13, heldout2): the send/recv message latency π carried only where the
fitted log's own network send/recv rows agree on it across the number of ops NCCL posts per call.

What NCCL runs: one rank's send/recv or all-to-all over the network is a set of (peer, part) ops on the p2p channels,
the proxy posting each in turn (src/proxy.cc progressOps, src/transport/net.cc sendProxyProgress; src/enqueue.cc
addP2pToPlan splits a peer's bytes into parts; NVIDIA/nccl v2.29.2-1); the model prices a call as π for its work
batch plus one post per further op (collectives/nccl_p2p_net.py channels_send_recv_terms, channels_all_to_all_terms).
A log whose rows of one op count ask π to move while its rows of another refuse the move does not tell π from what
NCCL runs per op, so the move is not carried. The rule, defined before it was priced: docs/collectives-history.md
"Session 13 (heldout2)".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from moesim.calibrate.predict import CollectiveTerm
from moesim.calibrate.transfer import US_PER_S

P2P_OPS_RULES = ("p2p-ops",)
# a group "refuses" the move when its mean |ln t̂/t| at the fitted π exceeds that at the prior π by more than this
# (the held-out matrix's 0.3 pt, tests/calibrate/test_calibration_matrix.py NOISE; fixed before pricing)
AGREE_TOLERANCE = 0.003


def network_ops(model, term: CollectiveTerm) -> int:
    """The (peer, part) ops one rank's proxy posts for a send/recv or all-to-all across nodes: network peers (1 for a
    send/recv; n minus the node's ranks for an all-to-all) x parts per peer (nccl.p2p_channels at the bytes per peer, as
    the model prices it: collectives/nccl_p2p_net.concurrent_terms); 0 for any other row (one node, other ops)."""
    from moesim.collectives import nccl
    from moesim.collectives.tier_layout import nic_tier

    if term.op not in ("send_recv", "all_to_all") or not hasattr(model, "placement"):
        return 0
    system, pl = model.placement(term.group)
    if pl.top < 1 or not system.nccl:
        return 0
    n = term.group.size
    peers, peer_bytes = (1, term.size_bytes) if term.op == "send_recv" else (n - pl.counts[0], term.size_bytes / n)
    parts = nccl.p2p_channels(peer_bytes, n, system.tiers[0], nic_tier(system, pl),
                              nccl.p2p_net_nchannels(getattr(model, "p2p_net_nchannels", None))) or 1
    return peers * parts


def op_count_groups(fit) -> dict[int, np.ndarray]:
    """{op count: the fitted rows (observations) of that count}, over the fit's network send/recv rows."""
    design, theta = fit.point[0], fit.point[1]
    model = design.model_at_theta(theta)
    counts = []
    for obs in design.observations:
        ops = [network_ops(model, t) for t in obs.terms if isinstance(t, CollectiveTerm)]
        counts.append(max(ops, default=0))
    counts = np.array(counts)
    return {int(k): counts == k for k in sorted(set(counts.tolist())) if k > 0}


def disagreeing_levels(fit) -> dict[str, list[tuple[int, float, float]]]:
    """{level name: [(op count, mean |ln t̂/t| at the fitted π, at the prior π)] of the groups that refuse the move}
    for every level whose π the fit moved."""
    design, theta = fit.point[0], fit.point[1]
    if not getattr(design, "has_collectives", False) or getattr(design, "p2p_latency_used", None) is None:
        return {}
    groups = op_count_groups(fit)
    if len(groups) < 2:
        return {}
    prior_theta, offset = design.initial(), design._p2p_offset()
    measured = np.log(design.measured)
    fitted = np.abs(np.log(design.predict(theta)) - measured)  # |ln t̂/t| at the fit, the same for every level
    out = {}
    for j, level in enumerate(design.levels):
        if not design.p2p_latency_used[j] or theta[offset + j] == prior_theta[offset + j]:
            continue
        back = theta.copy()
        back[offset + j] = prior_theta[offset + j]
        prior = np.abs(np.log(design.predict(back)) - measured)
        means = [(k, float(fitted[rows].mean()), float(prior[rows].mean())) for k, rows in groups.items()]
        refused = [m for m in means if m[1] > m[2] + AGREE_TOLERANCE]
        if refused:
            out[level.name] = refused
    return out


def p2p_latency_where_ops_agree(fit) -> tuple:
    """("p2p-ops") `fit` with π set back to the prior on every level where the log's network send/recv rows of some op
    count refuse its move (disagreeing_levels); (the fit to write, one note per such level)."""
    refused = disagreeing_levels(fit)
    if not refused:
        return fit, []
    p2p, notes = dict(fit.p2p_latencies), []
    by_name = {p.name: p for p in fit.parameters}
    for name, groups in refused.items():
        prior = by_name[f"{name}.p2p_latency"].prior
        notes.append(f"{name}.p2p_latency {fit.p2p_latencies[name] * US_PER_S:.4g} us refused by the rows of "
                     + ", ".join(f"{k} op{'s' * (k > 1)} ({100 * a:.1f} % against {100 * b:.1f} % at the prior)"
                                 for k, a, b in groups) + f": prior {prior * US_PER_S:.4g} us kept")
        p2p[name] = prior
    return dataclasses.replace(fit, p2p_latencies=p2p), notes
