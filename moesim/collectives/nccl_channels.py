"""NCCL's per-size channel and thread count for ring and tree (issue 11, ramp round): once its tuner has picked an
(algorithm, protocol), NCCL runs a small collective on fewer channels and then fewer threads (enqueue.cc
topoGetAlgoInfo). nccl_plan.py prices the transfer at that share of the full-size rate, on the wire only.
Constants: nccl_tuning.toml [channels]; docs/collectives-history.md "The ramp from NCCL's channel count"."""

from __future__ import annotations

from contextlib import contextmanager

from moesim.collectives import nccl_tuned_plan
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_code_rules import rule as code_rule
from moesim.collectives.nccl_tuning import ABSENT, active_version, row_for
from moesim.errors import SpecError


def channel_rule(algorithm: str, protocol: str, n: int, channels: int, default: int | None = None) -> tuple:
    """The size-free part of NCCL's per-size channel and thread count for a ring or tree (algorithm, protocol) over
    n ranks and `channels` (nChannels): (nChannels, nt_max, threadThreshold bytes, sync warp, minimum threads, the
    tree's fixed threads or 0, `default` (the system's count, NCCL's tuner's; None: `channels`) x data threads at
    full size). Constants: nccl_tuning.toml [channels]."""
    ch = tuning()["channels"]
    nt = ch["max_threads"][protocol]
    threshold = ch["thread_threshold"][protocol]
    if algorithm == "ring" and protocol == "LL" and ch["ring_ll_threshold_times_ranks"]:
        threshold *= n
    tree = ch["all_threads"] if algorithm == "tree" else 0
    sync = ch["sync_warp"] if algorithm == "ring" and protocol == "Simple" else 0
    full = tree or max(nt + sync, ch["min_threads"]) - sync
    default = channels if default is None else default
    return channels, nt, threshold, sync, ch["min_threads"], tree, default * full, default


def full_share_bytes(rule: tuple) -> float:
    """The size from which `share_at` is 1: default x nt_max x threadThreshold where the run's channels reach the
    system's default; never (inf) where NCCL_MAX_NCHANNELS left fewer (`rule`: channel_rule)."""
    channels, nt, threshold, default = rule[0], rule[1], rule[2], rule[7]
    return float("inf") if channels < default else default * nt * threshold


def ring_tree_channels_at(rule: tuple, size_bytes: float) -> tuple[int, int]:
    """(channels, data threads per channel) NCCL runs a ring or tree collective of `size_bytes` on, once its tuner
    has picked (algorithm, protocol) (`rule`: channel_rule):
      nc, nt = nChannels, maxThreads[a][p]
      while (nBytes < nc*nt*threadThreshold[a][p]) nc-- (not below 1), then nt /= 2 while nt % 128 == 0;
      a ring's Simple adds one sync warp; at least 3 warps; a tree always runs NCCL_MAX_NTHREADS.
    The data threads are nt without the sync warp (a tree's: all NCCL_MAX_NTHREADS).
    Source: NVIDIA/nccl 2.30.7 src/enqueue.cc topoGetAlgoInfo (the same in v2.26.2-1, v2.28.9-1).
    """
    channels, nt, threshold, sync, min_threads, tree = rule[:6]
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


_RING_LL_SHARE = {"on": True}  # the per-size share on a ring LL's wire (ring_ll_share_on); on as shipped


def ring_ll_share_on() -> bool:
    """Whether nccl_plan prices a small ring LL collective at its channel / thread share (share_at), as shipped.
    Off (without_ring_ll_share) the ring LL wire runs at the full busBw at every size, as NCCL's own model prices it
    (v2.19.3-1 src/graph/tuning.cc ncclTopoGetAlgoTime l. 418: the bandwidth scaled by channels only where
    info->nChannels is set). Off is worse on 7 healthy logs below 1 MiB (docs/collectives-history.md "Session 17
    (llshare)"), so the share stays on; the switch is a Python API only (no CLI flag, no JSON key)."""
    return _RING_LL_SHARE["on"]


@contextmanager
def without_ring_ll_share():
    """The ring LL share off for the duration (ring_ll_share_on); a TopologyModel memoises its plans, so build the
    model inside (and price nothing through costs kept from before it)."""
    saved = _RING_LL_SHARE["on"]
    _RING_LL_SHARE["on"] = False
    try:
        yield
    finally:
        _RING_LL_SHARE["on"] = saved


def share_at(rule: tuple, size_bytes: float) -> float:
    """nc x nt / (nChannels x nt at full size) (ring_tree_channels_at): what takes nChannels' place in NCCL's
    busBw = nChannels x per-channel bandwidth (tuning.cc ncclTopoTuneModel) at this size, before the LL cap
    (nccl_plan._transfer). Assumption (not in NCCL's model): a channel's rate goes with its data threads.
    nChannels is the system's count (channel_rule's `default`); channels a run adds above it (NCCL_MIN_NCHANNELS)
    share the same links, so the share stops at 1."""
    nc, nt = ring_tree_channels_at(rule, size_bytes)
    return min(1.0, nc * nt / rule[6])


def pinned_share(rule: tuple, size_bytes: float, channels: int, traffic_per_byte: int, protocol: str,
                 work_bytes: int | None = None) -> float:
    """share_at with a tuner plugin's channel count: NCCL keeps the threads of its own per-size loop and replaces the
    channels by the plugin's (getAlgoInfo: `info->nMaxChannels = nMaxChannels`); the scheduler caps them at
    comm->nChannels and spreads the traffic (nBytes x 2 for all-reduce) in cells of at least MinTrafficPerChannel per
    channel (32 KiB unset, v2.30.7-1's; 4x denser for LL), so a small collective still runs on ceil(traffic / cell)
    channels; both figures are the release's where a version is in force (nccl_tuning.toml [versioned] rows; no
    cell before v2.22.3-1: traffic_cell_bytes).
    Source: NVIDIA/nccl v2.28.9-1 / v2.30.7-1 src/enqueue.cc getAlgoInfo, scheduleCollTasksToPlan
    (MinTrafficPerChannel), ncclFuncTrafficPerByte. The cap at comm->nChannels by release (session 17 tunerver):
    v2.20.3-1 .. v2.21.5-1 addTunedCollToPlan `std::min(collInfo->nChannels, usableChannels)` (l. 340), usableChannels
    at most comm->collChannels = comm->nChannels (l. 780 / 810; graph/connect.cc l. 471); v2.19.x has none (getAlgoInfo
    l. 1257 hands the plugin's count to addCollToPlan as nBid, which fills channels 0..nBid-1 past comm->nChannels,
    channels that init never connected): moesim keeps the cap there, having no run to price above it.
    v2.20.3-1 .. v2.21.5-1 ([tuned_coll_to_plan]; session 18 ncclleft) halve the threads against the plugin's count and
    run as many channels as whole aligned shares of the count (`work_bytes`: nccl_tuned_plan.count_bytes) fill; a
    tree keeps moesim's all threads there (its threads are not priced at any release)."""
    if work_bytes is not None and code_rule("tuned_coll_to_plan"):
        threads = nccl_tuned_plan.tuned_threads(rule, size_bytes, channels, protocol)
        used = nccl_tuned_plan.tuned_channels(work_bytes, channels, rule[0], threads, protocol)
        return min(1.0, used * (rule[5] or threads - rule[3]) / rule[6])  # a ring's data threads: less its sync warp
    _, nt = ring_tree_channels_at(rule, size_bytes)
    cell = traffic_cell_bytes(protocol)
    used = min(channels, rule[0], max(1, -(-int(size_bytes * traffic_per_byte) // int(cell))) if cell else channels)
    return min(1.0, used * nt / rule[6])


def traffic_cell_bytes(protocol: str) -> float | None:
    """The traffic of one scheduler cell per channel at the NCCL release in force: MinTrafficPerChannel, LL's 4x denser
    from v2.26.2-1 (nccl_tuning.toml [channels] and their [versioned] rows; enqueue.cc scheduleCollTasksToPlan); None
    at v2.18.1-1 .. v2.21.5-1, which have no such scheduler (a tuner plugin's channel count is taken whole)."""
    version = active_version()
    if version and row_for("channels.min_traffic_per_channel_bytes", version) == ABSENT:
        return None
    ch = tuning()["channels"]
    return ch["min_traffic_per_channel_bytes"] / (ch["min_traffic_ll_multiplier"] if protocol == "LL" else 1)


def ring_tree_channels(algorithm: str, protocol: str, size_bytes: float, n: int, channels: int) -> tuple[int, int]:
    """ring_tree_channels_at for (algorithm, protocol) over n ranks and `channels` channels."""
    return ring_tree_channels_at(channel_rule(algorithm, protocol, n, channels), size_bytes)


def channel_share(algorithm: str, protocol: str, size_bytes: float, n: int, channels: int) -> float:
    """share_at for (algorithm, protocol) over n ranks and `channels` channels."""
    return share_at(channel_rule(algorithm, protocol, n, channels), size_bytes)


# -- per-run channel knobs (nchannels round, session 7) ---------------------------------------------------------------
CHANNEL_KNOBS = ("nccl_min_nchannels", "nccl_max_nchannels", "nccl_nvls_nchannels", "nccl_min_ctas", "nccl_max_ctas")
_LOWEST = {"nccl_min_nchannels": 0, "nccl_max_nchannels": 1, "nccl_nvls_nchannels": 1, "nccl_min_ctas": 1,
           "nccl_max_ctas": 1}  # NCCL ignores NCCL_MIN_CTAS / NCCL_MAX_CTAS <= 0 (init.cc envConfigOverride): rejected here


def check_channel_knob(name: str, value, file: str | None = None) -> int | None:
    """`value` of one of CHANNEL_KNOBS (NCCL_MIN_NCHANNELS, NCCL_MAX_NCHANNELS, NCCL_NVLS_NCHANNELS, NCCL_MIN_CTAS,
    NCCL_MAX_CTAS) as given, None = not set; SpecError unless an integer at or above NCCL's floor (0 for the minimum
    channels, 1 otherwise). Above MAXCHANNELS it is kept: NCCL lowers it itself (coll_channels, nvls_channels)."""
    if value is None:
        return None
    lowest = _LOWEST[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise SpecError(f"must be an integer >= {lowest} (NCCL's {_env(name)}), or unset", file=file, field=name,
                        value=value, allowed=f"{lowest}..")
    return value


def _env(name: str) -> str:
    return name.upper()


def ctas(min_ctas: int | None = None, max_ctas: int | None = None) -> tuple[int, int]:
    """(config.minCTAs, config.maxCTAs) after NCCL_MIN_CTAS / NCCL_MAX_CTAS: defaults 1 / MAXCHANNELS, each lowered to
    MAXCHANNELS, and minCTAs lowered to maxCTAs above it. Source: NVIDIA/nccl v2.28.9-1 src/init.cc parseCommConfig,
    envConfigOverride ("cap channels if needed")."""
    top = tuning()["channels"]["max_channels"]
    high = top if max_ctas is None else min(max_ctas, top)
    return min(1 if min_ctas is None else min(min_ctas, top), high), high


def coll_channels(default: int, min_nchannels: int | None = None, max_nchannels: int | None = None,
                  min_ctas: int | None = None, max_ctas: int | None = None) -> int:
    """comm->nChannels, the rings' and trees' channel count, after NCCL_MAX_NCHANNELS / NCCL_MIN_NCHANNELS and the
    CTA bounds (`ctas`): max = min(NCCL_MAX_NCHANNELS, MAXCHANNELS) (unset: MAXCHANNELS); min =
    min(NCCL_MIN_NCHANNELS, MAXCHANNELS) (unset: 0); nChannels = min(max, nChannels, maxCTAs); then copyChannels
    duplicates channels up to max(min, minCTAs). `default` is the count NCCL's search and its doublings give
    (nccl_tuning.toml [pipeline] channels). The work-args bound (default unbounded) is not modelled. Source:
    NVIDIA/nccl v2.28.9-1 / v2.30.7-1 src/graph/connect.cc ncclMinNchannels, ncclMaxNchannels, ncclTopoPostset
    ("Honor NCCL_MIN_NRINGS/NCCL_MAX_NRINGS")."""
    top = tuning()["channels"]["max_channels"]
    low_ctas, high_ctas = ctas(min_ctas, max_ctas)
    high = top if max_nchannels is None else min(max_nchannels, top)
    low = 0 if min_nchannels is None else min(min_nchannels, top)
    return max(min(high, default, high_ctas), low, low_ctas)


def nvls_channels(default: int, nvls_nchannels: int | None = None, min_ctas: int | None = None,
                  max_ctas: int | None = None) -> int:
    """comm->nvlsChannels: NCCL_NVLS_NCHANNELS in place of the architecture's count, clamped to [minCTAs,
    maxCTAs] (`ctas`; [1, MAXCHANNELS] by default). Source: NVIDIA/nccl v2.28.9-1 src/transport/nvls.cc
    ncclNvlsInit, src/init.cc (NCCL_NVLS_NCHANNELS -> config.nvlsCTAs)."""
    low, high = ctas(min_ctas, max_ctas)
    return max(low, min(high, default if nvls_nchannels is None else nvls_nchannels))


def channel_counts(model, group, knobs: dict) -> dict | None:
    """What `moesim collective` reports of the channels (JSON key nccl_channels): the rings' and trees' comm->nChannels
    and, where the profile has NVLS, comm->nvlsChannels for `group` with the run's `knobs` ({CHANNEL_KNOBS name:
    value or None}); None off NCCL (TPU, CPU) or for a model without placements."""
    if not hasattr(model, "placement"):
        return None
    system, pl = model.placement(group)
    if not system.nccl:
        return None
    t = tuning()
    tier0 = system.tiers[0]
    nvls = t["nvls"]["channels_multi_node" if pl.top >= 1 else "channels"].get(getattr(tier0, "nccl_arch", ""), 0)
    has_nvls = getattr(tier0, "nvls_efficiency", 0.0) > 0
    c = (knobs.get("nccl_min_ctas"), knobs.get("nccl_max_ctas"))
    return {"coll": coll_channels(t["pipeline"]["channels"], knobs.get("nccl_min_nchannels"),
                                  knobs.get("nccl_max_nchannels"), *c),
            "nvls": nvls_channels(nvls, knobs.get("nccl_nvls_nchannels"), *c) if has_nvls and nvls else 0}
