"""NCCL 2.20.3-2.21.5's plan for a ring or tree collective whose channel count a tuner plugin set (session 18
ncclleft; docs/collectives-history.md "Session 18 (ncclleft)"; constants: nccl_tuned_plan.toml, nccl_tuning.toml
[channels]). Those releases (nccl_code_rules.toml [tuned_coll_to_plan]) mark such a collective `userTuned`
(src/enqueue.cc getTunerInfo l. 1522 at v2.20.3-1 / l. 1558 at v2.21.5-1), size its threads with the plugin's count
(getChannnelThreadInfo l. 1561-1578 / 1597-1614) and run it through addTunedCollToPlan (l. 324-347): the plugin's
count capped at usableChannels = min(comm->collChannels, the count) (l. 780 / 810, l. 798 / 828; collChannels =
comm->nChannels, graph/connect.cc l. 471), then cut to as many channels as whole aligned shares of the count fill."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from moesim.paths import read_versioned_toml

_FILE = Path(__file__).with_name("nccl_tuned_plan.toml")
PER_RANK_COUNT = ("all_gather", "reduce_scatter")  # ncclInfoSetDerived: count per rank, nBytes x nRanks


@lru_cache(maxsize=1)
def _file() -> dict:
    return read_versioned_toml(_FILE)


def tuned_threads(rule: tuple, size_bytes: float, channels: int, protocol: str) -> int:
    """nThreads of a ring / tree collective of nBytes `size_bytes` whose plugin set `channels` (`rule`:
    nccl_channels.channel_rule): nt = maxThreads halved while nBytes < channels x nt x threadThreshold and nt is a
    multiple of 128; a ring's Simple adds its sync warp, a tree's Simple four warps; at least 3 warps."""
    _, nt, threshold, sync, min_threads, tree = rule[:6]
    while size_bytes < channels * nt * threshold and nt % 128 == 0:  # v2.20.3-1 src/enqueue.cc l. 1567-1568
        nt //= 2
    extra = _file()["threads"]["tree_simple_extra"] if tree and protocol == "Simple" else sync  # l. 1574-1576
    return max(nt + extra, min_threads)  # l. 1578 `nt = nt / WARP_SIZE < 3 ? 3 * WARP_SIZE : nt`


def count_bytes(op: str, size_bytes: float, n: int) -> int:
    """The bytes of the count addTunedCollToPlan splits: per rank for all-gather / reduce-scatter (moesim's size is
    the whole gathered output / reduced input), the whole buffer otherwise (v2.20.3-1 src/include/info.h l. 83-88)."""
    return int(size_bytes // n if op in PER_RANK_COUNT else size_bytes)


def align_bytes(protocol: str, threads: int) -> int:
    """computeCollAlignCount in bytes (v2.20.3-1 src/enqueue.cc l. 214-223): Simple a fixed 4 KiB, LL128 480 B per
    warp, LL 8 B per thread."""
    per = _file()["align_bytes"][protocol]
    if protocol == "LL128":
        return per * (threads // _file()["threads"]["warp_size"])
    return per * threads if protocol == "LL" else per


def tuned_channels(work_bytes: int, channels: int, run_channels: int, threads: int, protocol: str) -> int:
    """addTunedCollToPlan's channel count for a count of `work_bytes` (count_bytes) whose plugin set `channels` on a
    communicator of `run_channels`: nChannels = min(channels, usableChannels), countPerChannels = DIVUP(DIVUP(count,
    nChannels), alignCount) x alignCount, nChannels = DIVUP(count, countPerChannels) (v2.20.3-1 src/enqueue.cc l. 340,
    346-347)."""
    capped = max(1, min(channels, run_channels))
    if work_bytes <= 0:
        return capped
    align = align_bytes(protocol, threads)
    per_channel = -(-(-(-work_bytes // capped)) // align) * align
    return -(-work_bytes // per_channel)
