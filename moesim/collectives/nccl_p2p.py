"""NCCL's send/recv channels: how many channels one peer's send is split over, and the bandwidth those channels
carry inside one NVLink domain and to a peer on another node (moved out of nccl.py, which re-exports them).

Constants: nccl_tuning.toml [p2p], [p2p_net] (NCCL 2.30.7 enqueue.cc, paths.cc, cited there; the several-node
p2pnChannels: NCCL 2.29.2 paths.cc ncclTopoComputeP2pChannels, session 11 p2pcong).
"""

from __future__ import annotations

from moesim.collectives import nccl_p2p_peer
from moesim.collectives.nccl_tuning import tuning
from moesim.errors import SpecError


def p2p_channels(size_bytes: float, n: int, tier0, net_tier=None, net_nchannels: int | None = None,
                 peer_rule: str = nccl_p2p_peer.LATEST) -> int:
    """Channels NCCL splits one peer's send of `size_bytes` over, in an n-rank communicator
    (nccl_tuning.toml [p2p], [p2p_net]; NCCL 2.30.7 enqueue.cc addP2pToPlan / scheduleP2pTasksToPlan, paths.cc
    ncclTopoGetNchannels / ncclTopoComputeP2pChannels); 0 where the tier's architecture has no NVLink line
    rate listed (not priced by channel).

    `net_tier` is the NIC tier when the communicator spans several nodes: then every peer's send, an NVLink
    one included, gets the communicator's per-peer count, the smallest over all peers (the network peer's
    max(NICs, ceil(NIC GB/s / 14)) below an NVLink peer's 2 x links), halved while per-peer x ceil(peers / 8)
    exceeds the communicator's p2p channels (p2p_net_nchannels(net_nchannels)), and parts of P2P_NET_CHUNKSIZE / 2
    to P2P_NET_CHUNKSIZE. `peer_rule` the network peer's rule (nccl_p2p_peer.RULES; "2.29" the above)."""
    return p2p_channels_at(p2p_channel_rule(n, tier0, net_tier, net_nchannels, peer_rule), size_bytes)


def p2p_channel_rule(n: int, tier0, net_tier=None, net_nchannels: int | None = None,
                     peer_rule: str = nccl_p2p_peer.LATEST) -> tuple | None:
    """The part of p2p_channels no size changes (a layout computes it once per group and op): (the per-peer count
    after the communicator's bound, the smallest part, the largest part, the per-peer count), None where the tier's
    architecture has no NVLink line rate listed."""
    t = tuning()["p2p"]
    line = t["link_gb_per_s"].get(getattr(tier0, "nccl_arch", ""))
    if not line:
        return None
    links = max(1, int(tier0.port_bw_bytes_per_s / (line * 1e9) + 1e-9))
    if net_tier is None:
        total = t["p2p_channels"]
        per_peer = min(total, _pow2_up(2 * links))
        min_part = t["chunk_bytes"] // t["min_part_divisor"]
        max_part = t["chunk_bytes"] * t["max_part_chunks"]
    else:
        tn = tuning()["p2p_net"]
        total = p2p_net_nchannels(net_nchannels)
        per_peer = min(total, _pow2_up(min(2 * links, nccl_p2p_peer.network_peer_channels(peer_rule, n, total,
                                                                                          net_tier))))
        while nccl_p2p_peer.halves_to_one_round(peer_rule) and per_peer * -(-n // tn["max_p2p_per_batch"]) > total \
                and per_peer > 1:  # ncclTopoComputeP2pChannels from v2.29.2-1: every peer in one round
            per_peer //= 2
        min_part = tn["chunk_bytes"] // tn["min_part_divisor"]
        max_part = tn["chunk_bytes"]
    c_min = per_peer
    while c_min * n > total and c_min > 1:
        c_min //= 2
    return c_min, min_part, max_part, per_peer


def p2p_channels_at(rule: tuple | None, size_bytes: float) -> int:
    """p2p_channels at `size_bytes` from its size-free part (`rule`: p2p_channel_rule; None: 0, not priced by
    channel)."""
    if rule is None:
        return 0
    c_min, min_part, max_part, per_peer = rule
    c = max(1, min(c_min, -(-int(size_bytes) // min_part)))
    while size_bytes / c > max_part and c <= per_peer // 2:
        c *= 2
    return c


def p2p_bw_cap(size_bytes: float, n: int, tier0, net_tier=None) -> float:
    """Bytes/s the p2p channels of one NVLink send carry: channels x half an NVLink's line rate (0 = no cap)."""
    c = p2p_channels(size_bytes, n, tier0, net_tier)
    return c * tuning()["p2p"]["link_gb_per_s"][tier0.nccl_arch] * 1e9 / 2 if c else 0.0


def p2p_net_nchannels(value: int | None = None) -> int:
    """NCCL's p2pnChannels of a communicator spanning several nodes: pow2Up(min(comm->nChannels,
    NCCL_MAX_P2P_NCHANNELS)) (NVIDIA/nccl v2.29.2-1 src/graph/paths.cc ncclTopoComputeP2pChannels); `value` the
    run's comm->nChannels (TopologyModel.p2p_net_nchannels), None = [p2p_net] p2p_channels where set, else [p2p]'s."""
    if value is None:
        value = tuning()["p2p_net"].get("p2p_channels", tuning()["p2p"]["p2p_channels"])
    return _pow2_up(int(value))


def check_p2p_net_nchannels(value) -> None:
    """The p2p_net_nchannels option as given: None, or an integer 1..MAXCHANNELS (else a SpecError naming it)."""
    top = tuning()["channels"]["max_channels"]
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise SpecError(f"must be an integer from 1 to {top}, got {value!r}", field="p2p_net_nchannels", value=value,
                        allowed=f"1..{top} (the communicator's channels across nodes), or not set")


def p2p_net_peer_channels(net_tier) -> int:
    """Channels NCCL 2.30.7 gives one network peer by default: max(NICs per GPU, ceil(NIC GB/s / 14))
    (paths.cc ncclTopoGetNchannels, NCCL_P2P_PER_CHANNEL_NET_BW = 14 GB/s; nccl_tuning.toml [p2p_net]).
    One NIC per GPU on every shipped rail profile: 400 Gb/s (50 GB/s) -> 4, 200 Gb/s -> 2, 100 Gb/s -> 1.
    The "2.29" rule of nccl_p2p_peer (which takes no rank or channel count)."""
    return nccl_p2p_peer.network_peer_channels(nccl_p2p_peer.LATEST, 0, 0, net_tier)


def p2p_net_bw_cap(size_bytes: float, n: int, tier0, net_tier, net_nchannels: int | None = None,
                   peer_rule: str = nccl_p2p_peer.LATEST) -> float:
    """Bytes/s one send to a peer on another node carries: its p2p channels x NCCL's per-channel network
    figure (14 GB/s, the bandwidth NCCL provisions one channel for; that a channel moves exactly that much is
    an assumption). Without an NVLink tier the network peer's own count applies. 0 = no cap. `peer_rule`:
    p2p_channels'."""
    c = p2p_channels(size_bytes, n, tier0, net_tier, net_nchannels, peer_rule) if tier0 is not None else 0
    if not c:
        c = nccl_p2p_peer.network_peer_channels(peer_rule, n, p2p_net_nchannels(net_nchannels), net_tier)
    return c * tuning()["p2p_net"]["per_channel_net_gb_per_s"] * 1e9


def _pow2_up(v: int) -> int:
    """The least power of two >= v (1 for v <= 1), NCCL's pow2Up."""
    return 1 if v <= 1 else 1 << (int(v) - 1).bit_length()
