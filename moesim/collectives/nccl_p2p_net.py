"""NCCL's network sends of one grouped send/recv (a flat all-to-all, a send/recv between nodes) run at once:
the wire latency of a batch is paid once, and the proxy thread launches every Simple step of every network peer
one after another (TopologyModel(p2p_net_model="concurrent"), an option); or the ops on NCCL's p2p channels, one
latency per work batch, the proxy posting each (peer, part) op in turn, 14 GB/s a channel ("channels", the default
since session 12, a2ap2p: NVIDIA/nccl v2.29.2-1, docs/collectives-history.md "Session 12 (a2ap2p)"); "summed" is the
per-peer sum of hierarchy.pairwise_all_to_all_terms (the default before).

Read in NVIDIA/nccl v2.28.9-1 (the B200 Vultr report's NCCL), file and function:
- protocol: src/enqueue.cc addP2pToPlan, `protoLL[dir] &= conn->conn.buffs[NCCL_PROTO_LL] != nullptr`: a network
  connection has no LL buffer unless NCCL_ALLOC_P2P_NET_LL_BUFFERS=1 (src/transport/net.cc sendProxyConnect), so
  every network peer runs Simple ([p2p_net] ll_buffers = false);
- which peers at once: src/enqueue.cc scheduleP2pTasksToPlan puts one op per round into work batches of up to
  NCCL_MAX_DEV_WORK_P2P_PER_BATCH = 8 ops (ncclAddWorkBatchToPlan); the kernel (src/device/sendrecv.h
  RunWorkBatch) runs a batch's ops at once and a channel's batches in turn (nccl_p2p_schedule.channel_batches):
  the rank waits for its busiest channel, one message latency per batch (nccl_p2p_schedule.latency_s);
- the proxy: src/proxy.cc progressOps walks the thread's active ops one after another; ProxyAppend merges the ops
  of one channel and opCount on a shared (p2p) connection into one args with nsubs subs; src/transport/net.cc
  sendProxyProgress serves each sub in turn, one action per pass (post the buffer, `ncclNet->isend`, `test`), and
  recvProxyProgress the same for irecv / test / iflush. isend and irecv return at once, so the messages of all
  peers are on the wire together (the latency is paid once) while every step is launched by the one thread;
- what a launch costs: NCCL's tuner prices it, src/graph/tuning.cc ncclTopoTuneModel, "Inter-node rings still
  have to launch nsteps * net overhead": getNetOverhead (1 us on Intel and other hosts, 2 us on AMD x86), x 3 for
  Simple ([net_overhead]; nccl.net_overhead_s). A ring step is one send and one receive of the rank's proxy, as
  is one step of a peer here; moesim charges the same figure per Simple step of every network peer. With PXN the
  send is launched by the proxy of the local GPU on the peer's rail (src/transport/net.cc sendSetup), which then
  launches one step for each of the node's GPUs to its rail's peer: the same count per proxy;
- steps of one peer: src/enqueue.cc addP2pToPlan: Simple's step is comm->p2pChunkSize (NCCL_P2P_NET_CHUNKSIZE
  128 KiB on several nodes, src/init.cc computeBuffSizes), quartered where the peer's bytes are under one step and
  halved under eight ("Tune chunk size for the network"); the bytes split into nChannels parts
  (src/include/device.h ncclP2pPartBounds: parts aligned up to 4 KiB), each part divUp(part, chunk) steps
  (proxyOps[dir].nsteps). In flight per sub: min(NCCL_STEPS 8, NCCL_SHARED_STEPS 16 / nsubs) steps (sendProxyProgress
  maxDepth): a window, not a rate, so no term here (no published round trip to turn it into one).

So the network part of one rank's call: latency = the batches' message latency on the busiest channel; transfer
on the NIC tier = the larger of the shipped bytes / bandwidth (Simple's factor) and (steps - 1) launches. The
NVLink peers run on other channels (another block of rounds, nccl_p2p_schedule.base_channel), priced as shipped;
the call waits for the longer of the two. Not modelled: the proxy's receive launches apart from the send's (one
launch per step covers both, as the tuner's ring step does), a cost of the window above, v2.29+ channel counts
(the parts, which change the step count only where a part is smaller than a chunk, come from nccl.p2p_channels).
"""

from __future__ import annotations

import math
from functools import lru_cache

from moesim.collectives import nccl, nccl_p2p_ops
from moesim.collectives.formulas import Terms
from moesim.collectives.nccl_p2p import p2p_channels_at

MODELS = ("summed", "concurrent", "channels", "channels-steps")  # the last: nccl_p2p_ops.py (session 14, an option)
DEFAULT_MODEL = "channels"  # TopologyModel.p2p_net_model unless set (session 12, a2ap2p: shipped under its rule)
_PART_ALIGN_BYTES = 4096  # ncclP2pPartBounds: alignUp(divUp(bytes, nParts), 4 << 10)


def check_model(name: str) -> None:
    """SpecError unless `name` is one of MODELS."""
    if name not in MODELS:
        from moesim.errors import SpecError
        raise SpecError(f"unknown p2p network model '{name}'", field="p2p_net_model", value=name, allowed=MODELS)


def chunk_bytes(peer_bytes: float) -> int:
    """Simple's network chunk for one peer's send of `peer_bytes` (addP2pToPlan: the step, / 4 under one step,
    / 2 under eight)."""
    step = nccl.tuning()["p2p_net"]["chunk_bytes"]
    if peer_bytes < step:
        return step // 4
    if peer_bytes < 8 * step:
        return step // 2
    return step


def peer_steps(peer_bytes: float, parts: int) -> int:
    """Simple network steps of one peer's send: each of its `parts` parts divUp(part, chunk) steps (a 0-byte
    send still takes one)."""
    if peer_bytes <= 0:
        return 1
    parts = max(1, parts)
    part = -(-math.ceil(peer_bytes / parts) // _PART_ALIGN_BYTES) * _PART_ALIGN_BYTES
    chunk = chunk_bytes(peer_bytes)
    steps, left = 0, math.ceil(peer_bytes)
    for _ in range(parts):
        this = min(part, left)
        if this <= 0:
            break
        steps += -(-this // chunk)
        left -= this
    return steps


def launch_s(host_cpu: str) -> float:
    """The proxy's time to launch one Simple network step: NCCL's tuner network overhead of a Simple step on the
    hosts' CPU (tuning.cc getNetOverhead x 3; nccl.net_overhead_s)."""
    return nccl.net_overhead_s("Simple", host_cpu)


def launches_s(steps: int, launch_s: float) -> float:
    """The proxy thread's launches after the first step: (steps - 1) x the tuner's network overhead."""
    return max(0, steps - 1) * launch_s


def concurrent_all_to_all_terms(shipped: Terms, size_bytes: float, n: int, counts, alpha_inner, alpha_simple,
                                simple_scale: float, parts: int, launch_s: float, p2p_channels: int,
                                per_batch: int, group_size: int) -> Terms:
    """A flat all-to-all's Terms with its network peers concurrent and Simple: `shipped` is the per-peer-sum pricing
    (hierarchy.pairwise_all_to_all_terms) at the NVLink peers' protocol (`alpha_inner` its per-tier latency);
    `alpha_simple` Simple's per-tier latency; `simple_scale` the NVLink protocol's bandwidth factor over Simple's
    (the shipped network transfers are rescaled to Simple's); `parts` the channels of one peer's send."""
    nvlink_s, net_s, transfer = _simple_network_peers(shipped, n, counts, alpha_inner, alpha_simple, simple_scale,
                                                      parts, p2p_channels, per_batch, group_size)
    steps = (n - counts[0]) * peer_steps(size_bytes / n, parts)
    transfer[1] = max(transfer[1], launches_s(steps, launch_s))
    return Terms(max(nvlink_s, net_s), tuple(transfer), overlapped=True)


def _simple_network_peers(shipped: Terms, n: int, counts, alpha_inner, alpha_simple, simple_scale: float, parts: int,
                          p2p_channels: int, per_batch: int, group_size: int) -> tuple[float, float, list[float]]:
    """What "concurrent" and "channels" share for a flat all-to-all: (the NVLink peers' latency, one message each at
    `alpha_inner`; the busiest channel's batches of Simple network messages; `shipped`'s per-tier transfers with the
    network tiers rescaled from the NVLink peers' protocol to Simple by `simple_scale`)."""
    nvlink_s = (counts[0] - 1) * alpha_inner[0]
    net_s = _network_batches_s(n, tuple(counts), max(1, parts), p2p_channels, per_batch, group_size,
                               (0.0,) + tuple(alpha_simple[1:]))
    transfer = list(shipped.transfer_s)
    for i in range(1, len(transfer)):
        transfer[i] *= simple_scale
    return nvlink_s, net_s, transfer


@lru_cache(maxsize=4096)
def _network_batches_s(n: int, counts: tuple, parts: int, p2p_channels: int, per_batch: int, group_size: int,
                       alpha_by_tier: tuple) -> float:
    """The busiest channel's message latencies (nccl_p2p_schedule.latency_s; NVLink peers at 0), memoised: a
    communicator's batches change only with the parts of one peer's send."""
    from moesim.collectives import nccl_p2p_schedule  # imported where used (session 22)

    batches = nccl_p2p_schedule.channel_batches(n, counts, parts, p2p_channels, per_batch, group_size)
    return nccl_p2p_schedule.latency_s(batches, alpha_by_tier)


def concurrent_send_recv_terms(shipped: Terms, size_bytes: float, parts: int, launch_s: float) -> Terms:
    """A send/recv between nodes (already Simple and one message): its transfer at least the proxy's launches of
    its steps."""
    transfer = list(shipped.transfer_s)
    top = len(transfer) - 1
    transfer[top] = max(transfer[top], launches_s(peer_steps(size_bytes, parts), launch_s))
    return Terms(shipped.latency_s, tuple(transfer), overlapped=shipped.overlapped)


def channels_all_to_all_terms(shipped: Terms, size_bytes: float, n: int, counts, alpha_inner, alpha_simple,
                              simple_scale: float, parts: int, post_s: float, p2p_channels: int, per_batch: int,
                              group_size: int) -> Terms:
    """A flat all-to-all's Terms with its network peers on NCCL's p2p channels (p2p_net_model="channels",
    docs/collectives-history.md "Session 12 (a2ap2p)"): NVLink peers as `shipped` (one message each at
    `alpha_inner`); network peers Simple, latency = the busiest channel's batches (one Simple message each) + the
    proxy's posts of every network (peer, part) op in turn (src/proxy.cc progressOps, `post_s` each); transfer = the
    larger of the NIC tier's (at Simple's factor) and the busiest channel's parts at NCCL_P2P_PER_CHANNEL_NET_BW
    (NVIDIA/nccl v2.29.2-1 src/graph/paths.cc; src/device/sendrecv.h RunWorkBatch shares a channel among its ops)."""
    parts = max(1, parts)
    nvlink_s, net_s, transfer = _simple_network_peers(shipped, n, counts, alpha_inner, alpha_simple, simple_scale,
                                                      parts, p2p_channels, per_batch, group_size)
    net_s += launches_s((n - counts[0]) * parts, post_s)  # (network ops - 1) posts after the first
    from moesim.collectives import nccl_p2p_schedule

    busiest = nccl_p2p_schedule.busiest_network_parts(n, tuple(counts), parts, p2p_channels, per_batch, group_size)
    channel_bytes_per_s = nccl.tuning()["p2p_net"]["per_channel_net_gb_per_s"] * 1e9
    transfer[1] = max(transfer[1], busiest * size_bytes / n / parts / channel_bytes_per_s)
    return Terms(max(nvlink_s, net_s), tuple(transfer), overlapped=True)


def channels_send_recv_terms(shipped: Terms, parts: int, post_s: float) -> Terms:
    """A send/recv between nodes under p2p_net_model="channels": the proxy posts its `parts` ops in turn, (parts - 1)
    posts on top of its latency (its transfer is already capped at parts x 14 GB/s, nccl_p2p.p2p_net_bw_cap)."""
    return Terms(shipped.latency_s + launches_s(max(1, parts), post_s), shipped.transfer_s,
                 overlapped=shipped.overlapped)


def concurrent_terms(conc: tuple, name: str, size: float, n: int, counts, proto, alpha, factor: float, shipped: Terms,
                     base: float) -> tuple[Terms, float]:
    """(Terms, base latency s) of a flat all-to-all or a send/recv between nodes with NCCL's network peers
    concurrent ("concurrent") or on its p2p channels ("channels", the last item of `conc`); `shipped` the summed
    pricing at protocol `proto`, `conc` TopologyModel._concurrent_layout's tuple (its p2p channel rule and batch
    constants read once per layout: nccl_p2p.p2p_channel_rule)."""
    (simple, simple_alpha, simple_factor), launch, tier0, net_tier, p2p_nchannels, model, rule, per_batch, group = conc
    if name == "direct":  # a send/recv between nodes runs Simple (TopologyModel._layout); LL only with LL buffers
        if proto is not simple:
            return shipped, base
        parts = p2p_channels_at(rule, size) if net_tier is not None else 0  # nccl.p2p_channels, its rule once
        if model == "concurrent":
            return concurrent_send_recv_terms(shipped, size, parts, launch), base
        terms = channels_send_recv_terms(shipped, parts, launch)
        if model == nccl_p2p_ops.MODEL and parts:  # every Simple step launched by the proxy (nccl_p2p_ops.py)
            terms = nccl_p2p_ops.steps_send_recv_terms(terms, peer_steps(size, parts), parts, launch)
        return terms, base
    parts = p2p_channels_at(rule, size / n) if net_tier is not None else 0
    # "channels-steps" prices an all-to-all as "channels"
    priced_by = concurrent_all_to_all_terms if model == "concurrent" else channels_all_to_all_terms
    terms = priced_by(
        shipped, size, n, counts, alpha["ring"], simple_alpha["ring"], factor / simple_factor, parts, launch,
        p2p_nchannels, per_batch, group)
    return terms, max(base, simple.base_latency_s(name))
