"""NCCL's NVLS / NVLSTree chunk size and loop count per message size (issue 11, nvlschunk round, session 7).

NCCL cuts the chunk an NVLS or NVLSTree collective moves per step when the message is small compared with the bytes
one loop of all channels and heads moves (concurrentOps x chunk), and each channel then runs one loop per
nChannels x nHeads x chunk bytes of the buffer. These functions transcribe that logic; docs/collectives-history.md "NVLS
chunks (nvlschunk round, session 7)" says what it is priced as and what was evaluated but not shipped.
Constants: nccl_tuning.toml [nvls_chunk] and [nvls] (NVIDIA/nccl v2.28.9-1 and v2.30.7-1, cited there).
"""

from __future__ import annotations

from functools import lru_cache

from moesim.collectives.nccl import tuning


def nvls_heads(ppn: int) -> int:
    """NVLS heads of one NVLink domain (channels[0].nvls.nHeads): one per GPU of the domain, at most
    NCCL_MAX_NVLS_ARITY (32). Source: NVIDIA/nccl v2.30.7-1 src/graph/search.cc ncclTopoCompute (NVLS graph
    maxChannels = min(NCCL_MAX_NVLS_ARITY, GPUs); one node forces minChannels = maxChannels), src/graph/connect.cc
    (a head per distinct NVLS graph channel), src/include/device.h NCCL_MAX_NVLS_ARITY 32. On several nodes a head
    is a GPU with a NIC: every shipped profile has one NIC per GPU (nccl_tuning.toml [p2p_net] nics_per_gpu)."""
    return max(1, min(tuning()["nvls_chunk"]["max_arity"], ppn))


def nvls_tree_max_chunk_bytes(nodes: int) -> int:
    """NCCL's default nvlsTreeMaxChunkSize (NCCL_NVLSTREE_MAX_CHUNKSIZE = -2): 64 KiB from 4 nodes, else the NVLS
    chunk. Source: v2.28.9-1 src/enqueue.cc calcCollChunking; v2.30.7-1 src/transport/nvls.cc ncclNvlsTuning (the
    fallback where its SM100 several-node tuning sets nothing; that tuning is not modelled, see the docs)."""
    c = tuning()["nvls_chunk"]
    return c["tree_max_chunk_bytes_4_nodes"] if nodes >= 4 else c["chunk_bytes"]


def nvls_chunk_bytes(algorithm: str, size_bytes: float, channels: int, heads: int, nodes: int) -> int:
    """The chunk (bytes) NCCL's NVLS or NVLSTree moves per step for a collective of `size_bytes` (nBytes: the
    buffer of an all-reduce, the gathered / scattered array of an all-gather / reduce-scatter), on `channels`
    channels (nvlsChannels) with `heads` heads (nvls_heads), unregistered buffers:

      NVLS:     chunk = min(buffSizes[SIMPLE] / NCCL_STEPS, nvlsChunkSize); with concurrentOps = nChannels x nHeads:
                nBytes < 64 x concurrentOps x chunk -> 64 KiB, < 8 x ... -> 32 KiB, < 2 x ... -> 16 KiB
      NVLSTree: chunk = min(nvlsChunkSize, nvlsTreeMaxChunkSize);
                nBytes < 32 x concurrentOps x chunk -> 256 KiB, < 16 x ... -> 128 KiB, < 4 x ... -> 64 KiB,
                < 1 x ... -> 32 KiB (each only where the chunk is larger)
    then aligned down to the Simple grain. Source: NVIDIA/nccl v2.28.9-1 and v2.30.7-1 src/enqueue.cc
    calcCollChunking (the same cuts in both). Not transcribed: NCCL's 32 KiB cap on NVLS across nodes (NVLS over
    CollNet) below 150 GB/s of NVLS bandwidth: moesim's NVLS runs on one domain only (across nodes it is NVLSTree or
    CollNet, nccl_plan), so that branch never applies here."""
    chunk, cuts, grain = _chunk_start(algorithm, nodes)
    ops = channels * heads
    for times, cut in cuts:  # in NCCL's order; each test reads the chunk the previous one left
        if size_bytes < times * ops * chunk and chunk > cut:
            chunk = cut
    return chunk // grain * grain


@lru_cache(maxsize=16)
def _chunk_start(algorithm: str, nodes: int) -> tuple[int, tuple, int]:
    """(starting chunk, ((times, cut), ...), Simple grain) of nvls_chunk_bytes, read from [nvls_chunk] once."""
    c = tuning()["nvls_chunk"]
    if algorithm == "nvls":
        chunk, cuts = min(c["simple_buff_bytes"] // c["steps"], c["chunk_bytes"]), c["nvls_cuts"]
    elif algorithm == "nvlstree":
        chunk, cuts = min(c["chunk_bytes"], nvls_tree_max_chunk_bytes(nodes)), c["nvlstree_cuts"]
    else:
        raise ValueError(f"not an NVLS algorithm: {algorithm}")
    return chunk, tuple((times, cut) for times, cut in cuts), c["simple_grain_bytes"]


def nvls_loops(size_bytes: float, channels: int, heads: int, chunk_bytes: int) -> int:
    """Loops (steps) every channel runs: DIVUP(nBytes, nChannels x nHeads x chunk), one chunk per head per loop
    (ncclPatternNvls / ncclPatternNvlsTree: nstepsPerLoop 1, nchunksPerLoop nHeads). Source: NVIDIA/nccl v2.28.9-1
    src/enqueue.cc calcCollChunking (proxyOp->nsteps = nstepsPerLoop x nLoops); src/device/all_reduce.h runs one
    scatter / reduce / gather per loop of nHeads x chunk elements of a channel's part."""
    loop = channels * heads * chunk_bytes
    return max(1, -(-int(size_bytes) // loop))


def nvls_step_rule(algorithm: str, n: int, counts, tiers, nodes: int,
                   nvls_knobs: tuple | None = None) -> tuple | None:
    """The size-free part of the per-loop cost of NVLS (one domain of n ranks) or NVLSTree (counts[0] ranks per
    domain, `nodes` domains): (algorithm, nChannels, nHeads, nodes, step s); None where tier 0 names no
    architecture with an NVLS channel count ([nvls] channels, channels_multi_node: nvls.cc NVLS_NCHANNELS_SM90 16,
    SM100_NVL 24 on one domain, SM100 32 across domains) and the run sets none. `nvls_knobs` = (NCCL_NVLS_NCHANNELS,
    NCCL_MIN_CTAS, NCCL_MAX_CTAS) of the run (nccl_channels.nvls_channels, as nccl.nvls_fill_bytes). The step is
    NCCL's Simple ring hop over NVLink (hwLatencies[NVLINK][RING][SIMPLE], the profile's latency_us:
    nccl.hop_latency_s)."""
    from moesim.collectives.nccl import PROTOCOLS, hop_latency_s
    from moesim.collectives.nccl_channels import nvls_channels

    t = tuning()["nvls"]
    multi = algorithm == "nvlstree"
    channels = t["channels_multi_node" if multi else "channels"].get(getattr(tiers[0], "nccl_arch", ""))
    if nvls_knobs is not None and (channels or nvls_knobs[0] is not None):
        channels = nvls_channels(channels or 0, *nvls_knobs)
    if not channels:
        return None
    heads = nvls_heads(counts[0] if multi else n)
    return algorithm, channels, heads, nodes, hop_latency_s("ring", PROTOCOLS.index("Simple"), tiers[0])


def nvls_steps_s(rule: tuple, size_bytes: float) -> float:
    """Per-loop cost of an NVLS / NVLSTree call of `size_bytes` (`rule`: nvls_step_rule): nvls_loops x the step,
    the loops from NCCL's own chunk (nvls_chunk_bytes). Every loop a channel's reduce warps wait for the scatter
    warps' chunk and post theirs to the gather warps (src/device/all_reduce.h, Simple primitives over NVLink): moesim
    prices each loop at one Simple NVLink step, paid in sequence with the bytes (assumption: not hidden by the
    NCCL_STEPS-deep pipeline). Priced on the wire only; NCCL's tuner does not see it (nccl_plan.priced's offset)."""
    algorithm, channels, heads, nodes, step_s = rule
    chunk = nvls_chunk_bytes(algorithm, size_bytes, channels, heads, nodes)
    return nvls_loops(size_bytes, channels, heads, chunk) * step_s

