"""NCCL's per-size channel and thread count for ring and tree (issue 11, ramp round): once its tuner has picked an
(algorithm, protocol), NCCL runs a small collective on fewer channels and then fewer threads (enqueue.cc
topoGetAlgoInfo). nccl_plan.py prices the transfer at that share of the full-size rate, on the wire only.
Constants: nccl_tuning.toml [channels]; docs/collectives.md "The ramp from NCCL's channel count"."""

from __future__ import annotations

from moesim.collectives.nccl import tuning


def channel_rule(algorithm: str, protocol: str, n: int, channels: int) -> tuple:
    """The size-free part of NCCL's per-size channel and thread count for a ring or tree (algorithm, protocol) over
    n ranks and `channels` (nChannels): (nChannels, nt_max, threadThreshold bytes, sync warp, minimum threads, the
    tree's fixed threads or 0, nChannels x data threads at full size). Constants: nccl_tuning.toml [channels]."""
    ch = tuning()["channels"]
    nt = ch["max_threads"][protocol]
    threshold = ch["thread_threshold"][protocol]
    if algorithm == "ring" and protocol == "LL" and ch["ring_ll_threshold_times_ranks"]:
        threshold *= n
    tree = ch["all_threads"] if algorithm == "tree" else 0
    sync = ch["sync_warp"] if algorithm == "ring" and protocol == "Simple" else 0
    full = tree or max(nt + sync, ch["min_threads"]) - sync
    return channels, nt, threshold, sync, ch["min_threads"], tree, channels * full


def ring_tree_channels_at(rule: tuple, size_bytes: float) -> tuple[int, int]:
    """(channels, data threads per channel) NCCL runs a ring or tree collective of `size_bytes` on, once its tuner
    has picked (algorithm, protocol) (`rule`: channel_rule):
      nc, nt = nChannels, maxThreads[a][p]
      while (nBytes < nc*nt*threadThreshold[a][p]) nc-- (not below 1), then nt /= 2 while nt % 128 == 0;
      a ring's Simple adds one sync warp; at least 3 warps; a tree always runs NCCL_MAX_NTHREADS.
    The data threads are nt without the sync warp (a tree's: all NCCL_MAX_NTHREADS).
    Source: NVIDIA/nccl 2.30.7 src/enqueue.cc topoGetAlgoInfo (the same in v2.26.2-1, v2.28.9-1).
    """
    channels, nt, threshold, sync, min_threads, tree, _ = rule
    per_channel = nt * threshold
    if size_bytes >= channels * per_channel:
        return channels, tree or max(nt + sync, min_threads) - sync
    nc = max(1, int(size_bytes // per_channel))
    if tree:
        return nc, tree
    if nc == 1:
        while size_bytes < nt * threshold and nt % 128 == 0:
            nt //= 2
    return nc, max(nt + sync, min_threads) - sync


def share_at(rule: tuple, size_bytes: float) -> float:
    """nc x nt / (nChannels x nt at full size) (ring_tree_channels_at): what takes nChannels' place in NCCL's
    busBw = nChannels x per-channel bandwidth (tuning.cc ncclTopoTuneModel) at this size, before the LL cap
    (nccl_plan._transfer). Assumption (not in NCCL's model): a channel's rate goes with its data threads."""
    nc, nt = ring_tree_channels_at(rule, size_bytes)
    return nc * nt / rule[6]


def ring_tree_channels(algorithm: str, protocol: str, size_bytes: float, n: int, channels: int) -> tuple[int, int]:
    """ring_tree_channels_at for (algorithm, protocol) over n ranks and `channels` channels."""
    return ring_tree_channels_at(channel_rule(algorithm, protocol, n, channels), size_bytes)


def channel_share(algorithm: str, protocol: str, size_bytes: float, n: int, channels: int) -> float:
    """share_at for (algorithm, protocol) over n ranks and `channels` channels."""
    return share_at(channel_rule(algorithm, protocol, n, channels), size_bytes)
