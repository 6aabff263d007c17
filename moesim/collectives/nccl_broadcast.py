"""NCCL's ring broadcast as NCCL runs one (`nccl`; `nccl-ll128-cap`, the default since session 17, with NCCL's ring
LL128 cap; `nccl-fill` with the chain's store-and-forward fill) and
as nccl-tests reports back-to-back ones (`nccl-tests`), beside the pricing before session 10 (`plain`):
TopologyModel(broadcast_model=...), `moesim collective --broadcast-model`. docs/collectives-history.md "Session 10
(bcast)" has the sources read, the per-log figures and why only `nccl` ships.

What NCCL v2.24.3-1 does (the Voltage Park logs' NCCL):
- src/device/broadcast.h `runRing`: one chain per channel from the root along the ring (root: directSend /
  directCopySend; the rank before the root: directRecv; the others: directRecvCopyDirectSend), one chunk per step
  (src/include/collectives.h BROADCAST_CHUNKSTEPS = BROADCAST_SLICESTEPS = 1). Priced as hierarchy.broadcast_terms'
  ring: n - 1 hops, the buffer streaming at the slowest tier.
- src/enqueue.cc `topoGetAlgoInfo`: once the tuner has picked (ring, protocol), a small broadcast runs on fewer
  channels, then fewer threads (nc-- while nBytes < nc x nt x threadThreshold; the ring LL threshold x nRanks,
  src/graph/tuning.cc `ncclTopoTuneModel`): nccl_channels.share_at, as nccl_plan prices it for AR / AG / RS.
- src/graph/tuning.cc `ncclTopoTuneModel`: a ring's LL bus bandwidth is capped at llMaxBws (every collective, the
  broadcast included: `a == NCCL_ALGO_RING && p == NCCL_PROTO_LL`), the share before the cap as nccl_plan._transfer.

What nccl-tests 2.17.9 reports (src/common.cu `BenchTime`): after one Barrier it starts its timer, launches `iters`
(default 20, `-n`) broadcasts back to back with no barrier between them (blocking_coll 0, `-z`), waits for its stream
and divides by iters; `Allreduce(args, &deltaSec, average)` with `average = 1` (`-a` default) takes the mean over
ranks; src/broadcast.cu `BroadcastGetBw`: busbw = algbw. So rank k's time is its chain latency L_k (k hops from the
root) plus iters - 1 periods P, and the log shows P (iters - 1) / iters + mean_k L_k / iters. The period P is one
rank's share of a broadcast once the chain is full (the engineer's reading, not in either source: neighbours start
their kernels one after another, so each waits one hop for its data): the base latency, the slowest hop and the
transfer. Latency of the reading = (h_max (iters - 1) + sum_j h_j (n - j) / n) / iters; base and transfer as one
broadcast. NCCL picks its protocol by one broadcast (the tuner knows nothing of nccl-tests), so the pick stays
one broadcast's (the tuner offset takes the difference back).

- `nccl-fill`: a network hop forwards whole steps (src/transport/net.cc `sendProxyProgress`: one isend per complete
  step) and a Simple NVLink hop whole slices (BROADCAST_SLICESTEPS = 1), a step at most one chunk (src/enqueue.cc
  `calcCollChunking`; nccl_tuning.toml [broadcast_chunk_bytes]): one chunk per such hop but the slowest on the latency.

Session 11 (bcast2; docs/collectives-history.md "Session 11 (bcast2)"), both evaluated, not the default:
- `nccl-fill-entry`: `nccl-fill` with the root its node's ring exit on the slowest channel (entry_offset: src/graph/
  connect.cc `connectRings`, src/init.cc `setupChannel`): a multi-node chain crosses the network nNodes times.
- `nccl-tests-proxy`: the `nccl-tests` reading over `nccl-fill-entry`, its period bounded below by the proxy's
  per-connection op order at a network hop (proxy_period_s: src/proxy.cc `ProxyAppend` / `removeOp`).

Session 17 (bcast; docs/collectives-history.md "Session 17 (bcast)"), the default by that round's ship rule:
- `nccl-ll128-cap`: `nccl` with NCCL's per-channel ring LL128 cap on the broadcast's LL128 candidate (v2.24.3-1
  src/graph/tuning.cc l. 251: the ring LL128 line has no condition on the collective), tuner and wire alike, as
  nccl_plan prices it for the other ring collectives (nccl_channel_caps.py; graph channels = system's / 2), after the
  channel share and per tier as the LL cap; only where per_channel_caps is on (off: `nccl` bit for bit).

Who uses which: estimate, search and the simulator price no broadcast; `moesim collective`, `moesim calibrate` and the
per-log table price the default (`nccl-ll128-cap`); the others where asked for (`--broadcast-model`,
scripts/broadcast_model_check.py). `nccl-tests` reads session 10's one-broadcast model, `nccl` (with the fill were the
default `nccl-fill`), not the LL128 cap.
"""

from __future__ import annotations

from moesim.collectives import hierarchy, nccl_code_rules
from moesim.collectives.formulas import Terms
from moesim.collectives.nccl_channel_caps import per_channel_cap_bytes_per_s
from moesim.collectives.nccl_channels import ring_tree_channels_at, share_at
from moesim.errors import SpecError

MODELS = ("plain", "nccl", "nccl-fill", "nccl-tests", "nccl-fill-entry", "nccl-tests-proxy", "nccl-ll128-cap")
DEFAULT_MODEL = "nccl-ll128-cap"


def check_model(name: str) -> None:
    """SpecError unless `name` is one of MODELS."""
    if name not in MODELS:
        raise SpecError(f"unknown broadcast model '{name}'", field="broadcast_model", value=name, allowed=MODELS)


def iters() -> int:
    """nccl-tests' default iteration count (nccl_tuning.toml [nccl_tests])."""
    from moesim.collectives.nccl import tuning

    return tuning()["nccl_tests"]["iters"]


def hop_weights(n: int, counts, offset: int = 0) -> tuple[tuple[int, float], ...]:
    """Per tier, (hops of a chain of n - 1 in ring order that cross it, sum over them of (n - j) / n): hop j (1..n-1)
    crosses tier i where j is a multiple of c_i = g_{i-1} and not of g_i (hierarchy.ring_latency_s' split); rank k
    waits for hops 1..k, so hop j counts for the n - j ranks k >= j (the mean over ranks of the root-to-rank sum).
    `offset` (entry_offset): the root sits `offset` places after its group's first rank in ring order, so hop j
    crosses where j + offset is a multiple (the wrap-around hop, j + offset = n, crosses the top tier)."""
    if offset:
        out = [[0, 0.0] for _ in counts]
        for j in range(1, n):
            tier = max(i for i in range(len(counts)) if (j + offset) % (counts[i - 1] if i else 1) == 0)
            out[tier][0] += 1
            out[tier][1] += (n - j) / n
        return tuple((h, w) for h, w in out)
    out, c = [], 1
    for g in counts:
        hops, weight = 0, 0.0
        for step in (c, g):  # the multiples of c, less those of g (every multiple of g is one of c)
            m = (n - 1) // step
            sign = 1 if step == c else -1
            hops += sign * m
            weight += sign * (m * n - step * m * (m + 1) / 2) / n
        out.append((hops, weight))
        c = g
    return tuple(out)


def entry_offset(counts, tiers) -> int:
    """Where the root sits in its node on the slowest channel's ring (`nccl-fill-entry`, `nccl-tests-proxy`): NCCL
    v2.24.3-1 src/graph/connect.cc `connectRings` enters each node at the channel's ring recv rank and leaves it at
    its send rank, src/init.cc `setupChannel` starts every rank's ring at itself, and the ring channels enter a node
    at the GPU of their NIC (src/graph/search.cc, one search per NIC), so on the channel that enters the root's node
    at the root's ring neighbour the root is the node's exit: its chain crosses the network first and then every
    g-th hop, nNodes times in all, the most for every rank k (ceil(k / g) crossings up to rank k). 0 (the root
    first, nNodes - 1 crossings) on one node or where the tier above the first is NVLink (no NIC)."""
    if len(counts) < 2 or tiers[1].kind in ("switch", "torus"):
        return 0
    return counts[0] - 1


def chain_latencies_s(n: int, counts, alpha, offset: int = 0) -> tuple[float, float]:
    """(slowest hop s, mean over the n ranks of the root-to-rank latency s) of the chain (hop_weights)."""
    weights = hop_weights(n, counts, offset)
    worst = max((a for a, (hops, _) in zip(alpha, weights) if hops), default=0.0)
    return worst, sum(a * w for a, (_, w) in zip(alpha, weights))


def layout(model: str, n: int, counts, tiers, protocol_rows, knobs: tuple,
           per_channel_caps: bool = True) -> dict | None:
    """What `terms` needs that no size changes, per protocol name: (channel rule, per-tier LL caps (LL128's under
    `nccl-ll128-cap`) or None, nccl-tests latency s or None, fill: (per-tier (store-and-forward hops, their rank
    weight), chunk bytes) or None, the chain's latency s where the root is its node's exit (entry_offset) or None);
    None for `plain` (today's pricing) or off NCCL. `knobs`: the run's nccl_channels.CHANNEL_KNOBS values (None: not
    set), whose comm->nChannels (nccl_channels.coll_channels) the channel rule takes. `per_channel_caps`
    (TopologyModel's): whether `nccl-ll128-cap` puts NCCL's per-channel ring LL128 cap on the LL128 candidate."""
    if model == "plain":
        return None
    from moesim.collectives.nccl import _caps, _ll_cap, tuning
    from moesim.collectives.nccl_channels import channel_rule, coll_channels

    default = tuning()["pipeline"]["channels"]
    coll = knobs[:2] + knobs[3:]  # NCCL_MIN/MAX_NCHANNELS, NCCL_MIN/MAX_CTAS (CHANNEL_KNOBS' order), as nccl_plan.plan
    channels = coll_channels(default, *coll) if any(k is not None for k in coll) else None
    multi = len(counts) > 1
    nodes = max(1, n // counts[0])
    cap = _ll_cap(tiers[0], nodes, getattr(tiers[1], "host_cpu", "") if multi else "")
    entry = model in ("nccl-fill-entry", "nccl-tests-proxy")
    offset = entry_offset(counts, tiers) if entry else 0
    weights = hop_weights(n, counts, offset)
    fill = entry or model == "nccl-fill" or (model == "nccl-tests" and DEFAULT_MODEL == "nccl-fill")
    chunks = tuning()["broadcast_chunk_bytes"]
    # NCCL's ring LL128 bus cap, graph channels x perChMaxRingLL128Bw (tuning.cc v2.24.3-1 l. 251; nccl_channel_caps)
    ll128_cap = per_channel_cap_bytes_per_s("ring", "LL128", getattr(tiers[0], "nccl_arch", ""), nodes, default) \
        if model == "nccl-ll128-cap" and per_channel_caps else 0.0
    out = {}
    for proto, alpha, _ in protocol_rows:
        rule = channel_rule("ring", proto.name, n, default if channels is None else channels, default)
        tests = None
        if model in ("nccl-tests", "nccl-tests-proxy"):
            worst, mean = chain_latencies_s(n, counts, alpha["ring"], offset)
            if model == "nccl-tests-proxy":
                worst = max(worst, proxy_period_s(alpha["ring"], tiers, weights) - proto.base_latency_s("ring"))
            k = iters()
            tests = (worst * (k - 1) + mean) / k
        # store-and-forward hops: every network hop (the proxy sends whole steps), NVLink hops for Simple only
        sf = tuple(w if proto.name == "Simple" or t.kind not in ("switch", "torus") else (0, 0.0)
                   for w, t in zip(weights, tiers))
        chain = sum(a * hops for a, (hops, _) in zip(alpha["ring"], weights)) if offset else None
        caps = _caps(counts, cap) if proto.name == "LL" else _caps(counts, ll128_cap) if proto.name == "LL128" else None
        out[proto.name] = (rule, caps, tests,
                           (sf, chunks[proto.name], iters()) if fill else None, chain)
    return out


def proxy_period_s(alpha, tiers, weights) -> float:
    """The latency part of the period of back-to-back broadcasts at a network hop (`nccl-tests-proxy`), s: the
    proxy serialises the ops of one connection (NCCL v2.24.3-1 src/proxy.cc `ProxyAppend`: an op on a connection
    that has one in progress waits as its nextPeer; `removeOp` starts it once the first is done), a send op is done
    once its last isend completed (src/transport/net.cc `sendProxyProgress`) and a recv op once the GPU consumed its
    last step (`recvProxyProgress`, the GPU's head), and only then are the next op's irecvs posted, whose
    clear-to-send the sender waits for before its isend (ncclNet isend returns no request until then): so each
    iteration at a network hop pays, besides its transfer, the clear-to-send's trip and the data's, 2 hop latencies
    of the slowest network tier. 0 where the chain crosses no network tier."""
    net = [a for a, t, (hops, _) in zip(alpha, tiers, weights) if hops and t.kind not in ("switch", "torus")]
    return 2 * max(net) if net else 0.0


def fill_s(sf, chunk: float, size: float, nc: int, transfer) -> tuple[float, float]:
    """(one broadcast's store-and-forward fill s, its mean over ranks s): one chunk, min(S / nc, chunk), at each
    store-and-forward hop's per-channel rate (the tier's transfer of S over nc channels), less the slowest hop's
    (counted in the transfer: a pipeline of K stages and M chunks takes sum t_k + (M - 1) max t_k)."""
    if size <= 0:
        return 0.0, 0.0
    part = min(1.0, chunk * nc / size)
    t = [x * part for x in transfer]
    used = [ti for ti, (hops, _) in zip(t, sf) if hops]
    if not used:
        return 0.0, 0.0
    worst = max(used)
    # the mean over ranks keeps every hop's chunk (an over-count of at most one chunk per rank)
    return sum(ti * hops for ti, (hops, _) in zip(t, sf)) - worst, sum(ti * w for ti, (_, w) in zip(t, sf))


def terms(bcast: dict, proto: str, size: float, n: int, counts, alpha, bw) -> tuple[Terms, float]:
    """(Terms, tuner offset s) of NCCL's ring broadcast under `bcast` (layout's): the transfer at the per-size channel
    share and LL cap; with the fill, its store-and-forward fill on the latency; under nccl-tests the latency of the
    reading, the offset keeping NCCL's pick one broadcast's."""
    rule, caps, tests, fill, chain = bcast[proto]
    share = share_at(rule, size)
    cut = [w * share for w in bw] if caps is None else [min(w * share, c) for w, c in zip(bw, caps)]
    one = hierarchy.broadcast_terms("ring", size, n, counts, alpha, cut)
    if chain is not None:  # the root its node's exit on the slowest channel (entry_offset): its chain's hops
        one = Terms(chain, one.transfer_s, one.overlapped)
    extra = mean_extra = 0.0
    if fill is not None:
        extra, mean_extra = fill_s(fill[0], fill[1], size, ring_tree_channels_at(rule, size)[0], one.transfer_s)
    if tests is None:
        return Terms(one.latency_s + extra, one.transfer_s, one.overlapped), 0.0
    reading = tests + mean_extra / fill[2] if fill is not None else tests
    return Terms(reading, one.transfer_s, one.overlapped), one.latency_s + extra - reading


def protocol_bw_factor(proto, op: str, n: int, counts, multi: bool, on_nccl: bool) -> float:
    """The bandwidth factor of `proto` in topo_model's protocol rows (send/recv-based ops); NCCL's ring broadcast's LL
    factor follows the release in force (1/4 or 1/3 up to v2.20.5-1, nccl_code_rules.ring_ll_bw_factor: its tuner
    prices the broadcast as a ring, src/graph/tuning.cc `a == NCCL_ALGO_RING && p == NCCL_PROTO_LL`)."""
    factor = proto.bw_factor(op == "all_reduce", multi)
    if on_nccl and op == "broadcast" and proto.name == "LL":
        return nccl_code_rules.ring_ll_bw_factor(op, max(1, n // counts[0]), factor)
    return factor
