"""NCCL's ring broadcast as NCCL runs one (`nccl`) and as nccl-tests reports back-to-back ones (`nccl-tests`), beside
today's pricing (`plain`, the default): TopologyModel(broadcast_model=...), `moesim collective --broadcast-model`.
docs/collectives-history.md "Session 10 (bcast)" has the sources read and the per-log figures.

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

Who uses which: estimate, search and the simulator price one broadcast (`plain`, the default); `moesim collective
--broadcast-model` and the per-log table may ask for the others (see the docs section for what is shipped).
"""

from __future__ import annotations

from moesim.collectives import hierarchy
from moesim.collectives.formulas import Terms
from moesim.errors import SpecError

MODELS = ("plain", "nccl", "nccl-tests")
DEFAULT_MODEL = "nccl"


def check_model(name: str) -> None:
    """SpecError unless `name` is one of MODELS."""
    if name not in MODELS:
        raise SpecError(f"unknown broadcast model '{name}'", field="broadcast_model", value=name, allowed=MODELS)


def iters() -> int:
    """nccl-tests' default iteration count (nccl_tuning.toml [nccl_tests])."""
    from moesim.collectives.nccl import tuning

    return tuning()["nccl_tests"]["iters"]


def chain_latencies_s(n: int, counts, alpha) -> tuple[float, float]:
    """(slowest hop s, mean over the n ranks of the root-to-rank latency s) of a chain of n - 1 hops in ring order:
    hop j (1..n-1) crosses tier i where j is a multiple of c_i = g_{i-1} and not of g_i (hierarchy.ring_latency_s'
    split); rank k waits for hops 1..k, so hop j counts for the n - j ranks k >= j."""
    worst, total, c = 0.0, 0.0, 1
    for i, g in enumerate(counts):
        hops = [j for j in range(c, n, c) if j % g]
        if hops:
            worst = max(worst, alpha[i])
            total += alpha[i] * sum(n - j for j in hops) / n
        c = g
    return worst, total


def layout(model: str, n: int, counts, tiers, protocol_rows, channels: int | None) -> tuple | None:
    """What `terms` needs that no size changes, per protocol name: (channel rule, per-tier LL caps or None,
    nccl-tests latency s or None); None for `plain` (today's pricing) or off NCCL. `channels`: the run's
    comm->nChannels after its knobs (None: the system's)."""
    if model == "plain":
        return None
    from moesim.collectives.nccl import _caps, _ll_cap, tuning
    from moesim.collectives.nccl_channels import channel_rule

    default = tuning()["pipeline"]["channels"]
    multi = len(counts) > 1
    nodes = max(1, n // counts[0])
    cap = _ll_cap(tiers[0], nodes, getattr(tiers[1], "host_cpu", "") if multi else "")
    out = {}
    for proto, alpha, _ in protocol_rows:
        rule = channel_rule("ring", proto.name, n, default if channels is None else channels, default)
        tests = None
        if model == "nccl-tests":
            worst, mean = chain_latencies_s(n, counts, alpha["ring"])
            k = iters()
            tests = (worst * (k - 1) + mean) / k
        out[proto.name] = (rule, _caps(counts, cap) if proto.name == "LL" else None, tests)
    return out


def terms(bcast: dict, proto: str, size: float, n: int, counts, alpha, bw) -> tuple[Terms, float]:
    """(Terms, tuner offset s) of NCCL's ring broadcast under `bcast` (layout's): the transfer at the per-size channel
    share and LL cap; under nccl-tests the latency of the reading, the offset keeping NCCL's pick one broadcast's."""
    from moesim.collectives.nccl_channels import share_at

    rule, caps, tests = bcast[proto]
    share = share_at(rule, size)
    cut = [w * share for w in bw] if caps is None else [min(w * share, c) for w, c in zip(bw, caps)]
    one = hierarchy.broadcast_terms("ring", size, n, counts, alpha, cut)
    if tests is None:
        return one, 0.0
    return Terms(tests, one.transfer_s, one.overlapped), one.latency_s - tests
