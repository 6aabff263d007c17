"""NCCL's schedule of a grouped send/recv (an all-to-all): which peers one rank serves at once, on which p2p
channels, in how many work batches one after another.

Read in NVIDIA/nccl v2.30.7-1 (@5067397c); the same logic in v2.28.9-1 (the Vultr report's NCCL):
- rounds (src/init.cc ncclP2pSchedule): n rounds, round r pairs one send peer and one recv peer. Ranks are split
  into groups of G = NCCL_P2P_SCHEDULE_GROUP_SIZE (default NCCL_MAX_DEV_WORK_P2P_PER_BATCH = 8) local ranks on
  several nodes (G = gcd(G, local ranks) where those do not divide), one group = the node's ranks on one node;
  group deltas follow the quadratic sequence (x*x+x)/2 mod pow2Up(groups), and inside a group delta the local
  delta runs 0..G-1 (send to local+delta, recv from local-delta);
- channels (src/include/channel.h ncclP2pChannelBaseForRound, src/include/device.h ncclP2pChannelForPart): round
  r's op starts on base = reverseBits(r / G * ceil(G / 8) + (r % G) / 8, log2 p2pnChannels) on several nodes,
  reverseBits(r, ...) on one, and its c parts take channels (base + part) mod p2pnChannels;
- batches (src/enqueue.cc ncclAddWorkBatchToPlan): on one channel, an op joins the open batch unless that batch
  holds 8 ops or a round of another block of 8 rounds (p2pRound / 8); otherwise a new batch starts;
- kernel (src/device/sendrecv.h RunWorkBatch<ncclFuncSendRecv>): the ops of one batch split the channel's warps
  and run at once; a channel (one CTA) runs its batches one after another; channels run at once.
So one rank's all-to-all waits for the busiest channel: the sum over its batches of each batch's slowest message.

Not modelled here: the proxy thread that posts every network op of the rank in turn (src/proxy.cc;
scripts/a2a_schedule_check.py tries NCCL's tuner network post overhead for it); budget splits of one group into
several kernel plans (ncclTestBudget), which an all-to-all of moesim's sizes does not reach. The default
p2p_net_model="channels" (nccl_p2p_net.py, session 12) and the option "concurrent" price a flat all-to-all's network
peers with it; one node keeps the per-peer sum (docs/collectives-history.md "All-to-all: peers in flight" says why).
"""

from __future__ import annotations

import math
from functools import lru_cache

SELF = -1  # a rank's copy to itself (round 0): no message latency


def _reverse_bits(x: int, n_bits: int) -> int:
    """The bottom n_bits of x reversed, higher bits dropped (NVIDIA/nccl src/include/bitops.h reverseBits)."""
    out = 0
    for _ in range(n_bits):
        out = (out << 1) | (x & 1)
        x >>= 1
    return out


def schedule_group_size(n: int, local: int, group_size: int) -> int:
    """p2pSchedGroupSize: `group_size` on several nodes, reduced to gcd with the local ranks where they are not a
    multiple of it; the local ranks on one node (src/init.cc ncclP2pSchedule)."""
    if n == local:
        return local
    return group_size if local % group_size == 0 and local >= group_size else math.gcd(group_size, local)


def rounds(n: int, local: int, group_size: int) -> list[tuple[int, int]]:
    """(send peer, recv peer) of rank 0 per round, in NCCL's round order (ranks numbered node by node)."""
    g = schedule_group_size(n, local, group_size)
    n_groups = n // g
    pow2 = 1 << (n_groups - 1).bit_length()
    out, group_round, delta_group = [], 0, 0
    while True:
        if delta_group < n_groups:
            send_base, recv_base = delta_group * g, ((-delta_group) % n_groups) * g
            out.extend((send_base + d % g, recv_base + (-d) % g) for d in range(g))
        group_round += 1
        delta_group = (delta_group + group_round) & (pow2 - 1)
        if group_round == pow2:
            return out


def base_channel(r: int, multi_node: int, g: int, p2p_channels: int, per_batch: int) -> int:
    """Round r's first channel (src/include/channel.h ncclP2pChannelBaseForRound)."""
    base = (r // g) * -(-g // per_batch) + (r % g) // per_batch if multi_node else r
    return _reverse_bits(base, (p2p_channels - 1).bit_length())


@lru_cache(maxsize=4096)
def channel_batches(n: int, counts: tuple[int, ...], parts: int, p2p_channels: int, per_batch: int,
                    group_size: int) -> tuple[tuple[frozenset, ...], ...]:
    """Per channel that rank 0 uses, its work batches in order, each the set of tiers its messages cross (SELF
    for the copy to itself): tier i is the innermost tier whose domain around rank 0 holds the peer (`counts`:
    ranks of the group inside one domain of each tier, innermost first; tier 0 = the node). `parts`: channels
    per op (NCCL's nChannels of one peer's send, the same for every peer of an all-to-all)."""
    batches: dict[int, list] = {}
    for r, send, recv, channel in _part_channels(n, counts, parts, p2p_channels, per_batch, group_size):
        tiers = frozenset(_tier(peer, counts) for peer in (send, recv))
        chan = batches.setdefault(channel, [])
        if chan and len(chan[-1][1]) < per_batch and chan[-1][0] == r // per_batch:
            chan[-1][1].append(r)
            chan[-1][2].update(tiers)
        else:
            chan.append((r // per_batch, [r], set(tiers)))
    return tuple(tuple(frozenset(b[2]) for b in chan) for chan in batches.values())


@lru_cache(maxsize=4096)
def busiest_network_parts(n: int, counts: tuple[int, ...], parts: int, p2p_channels: int, per_batch: int,
                          group_size: int) -> int:
    """The most parts of sends to a peer off rank 0's node (tier >= 1) that one channel carries (_part_channels)."""
    load: dict[int, int] = {}
    for _, send, _, chan in _part_channels(n, counts, parts, p2p_channels, per_batch, group_size):
        if _tier(send, counts) >= 1:
            load[chan] = load.get(chan, 0) + 1
    return max(load.values(), default=0)


def channels_taken(n: int, counts: tuple[int, ...], parts: int, p2p_channels: int, per_batch: int,
                   group_size: int) -> int:
    """How many distinct channels rank 0's all-to-all takes (_part_channels): NCCL launches one CTA on each
    (src/enqueue.cc ncclLaunchKernel: grid = countOneBits(plan->channelMask)), the SMs it holds
    (moesim.ops.sm_share)."""
    return len({channel for *_, channel in _part_channels(n, counts, parts, p2p_channels, per_batch, group_size)})


def _part_channels(n: int, counts: tuple[int, ...], parts: int, p2p_channels: int, per_batch: int, group_size: int):
    """(round r, rank 0's send peer, its recv peer, channel) of every part of every round, in NCCL's order: round r's
    op starts on base_channel and its part p takes (base + p) mod p2p_channels (NVIDIA/nccl v2.29.2-1
    src/include/channel.h ncclP2pChannelBaseForRound, src/include/device.h ncclP2pChannelForPart)."""
    local = counts[0]
    g = schedule_group_size(n, local, group_size)
    multi = n > local
    for r, (send, recv) in enumerate(rounds(n, local, group_size)):
        base = base_channel(r, multi, g, p2p_channels, per_batch)
        for part in range(min(parts, p2p_channels)):
            yield r, send, recv, (base + part) & (p2p_channels - 1)


def _tier(peer: int, counts: tuple[int, ...]) -> int:
    """The tier rank 0 crosses to reach `peer` (ranks fill each tier's domains in order), SELF for itself."""
    if peer == 0:
        return SELF
    for i, c in enumerate(counts):
        if peer < c:
            return i
    return len(counts) - 1


def latency_s(batches: tuple[tuple[frozenset, ...], ...], alpha_by_tier) -> float:
    """The busiest channel's time: the sum over its batches of the slowest message in each (alpha_by_tier[i]:
    one message's latency across tier i; the copy to itself costs none)."""
    worst = 0.0
    for chan in batches:
        total = sum(max((alpha_by_tier[t] for t in tiers if t != SELF), default=0.0) for tiers in chan)
        worst = max(worst, total)
    return worst


def sequential_batches(batches: tuple[tuple[frozenset, ...], ...]) -> int:
    """Work batches on the busiest channel (rounds of latency one rank waits for)."""
    return max((len(chan) for chan in batches), default=0)
