"""How many buckets a stage's gradient sync is made of (Megatron-Core's --overlap-grad-reduce).

MCore lays the parameters into buckets in reverse order (megatron/core/distributed/param_and_grad_buffer.py,
`_ParamAndGradBuffer.__init__`: `for param in params[::-1]`) and launches a bucket's reduce-scatter / all-reduce once
all its gradients are ready, on the last micro-batch (`_ParamAndGradBucketGroup.register_grad_ready`). A bucket
closes at a layer's end once it holds `bucket_params` parameters (the simulator's `_Builder.grad_bucket`,
moesim/des/schedule.py), so a stage of L layers carrying B gradient bytes, layers of B / L bytes each, closes a
bucket every ceil(threshold / (B / L)) layers. With overlap_grad_reduce off MCore sets the bucket size to None: one
bucket (distributed_data_parallel.py, `DistributedDataParallel.__init__`).

The bucket size (`bucket_params`) is MCore's default, max(40e6, 1e6 · dp·cp) parameters: megatron/training/training.py
`resolve_ddp_bucket_size` sizes it from the dp·cp group (`pg_collection.dp_cp`) when neither `--ddp-bucket-size` nor
`--ddp-num-buckets` is given, and `wrap_model_chunks_with_ddp` hands that one size to every buffer of the chunk,
the expert-parallel ones (reduced over the expert data-parallel group) included (NVIDIA/Megatron-LM d98e8a6).

Only the first model chunk of the first pipeline rank is bucketed (`bucketed`): `get_model` (training.py, d98e8a6)
passes bucket size None for every chunk when `pp_rank > 0` and for chunks after the first (`chunk_idx > 0`, with
`disable_bucketing`), and `DistributedDataParallel.__init__` sets `self.bucket_size = None` "if disable_bucketing
or pp_rank > 0" ("data-parallel communication on these stages is not on the critical path"): such a chunk reduces
each of its buffers as one bucket, launched once the chunk's last backward has made all its gradients ready.
"""

from __future__ import annotations

import numpy as np

from moesim.estimate import schedules as sch

# Megatron-Core's default bucket floor, in parameters (megatron/training/training.py, resolve_ddp_bucket_size:
# max(40000000, 1000000 * get_pg_size(dp_cp_group))).
DEFAULT_BUCKET_PARAMS = 40_000_000
# ... and its growth with the dp·cp group, in parameters per rank (the same line).
BUCKET_PARAMS_PER_DP_CP_RANK = 1_000_000


def bucket_params(dp_cp):
    """MCore's default gradient bucket size in parameters for a dp·cp group of `dp_cp` ranks (scalar or array):
    max(40e6, 1e6 · dp·cp) (training.py, resolve_ddp_bucket_size); one size for the dense and the expert buffers."""
    return np.maximum(DEFAULT_BUCKET_PARAMS, BUCKET_PARAMS_PER_DP_CP_RANK * np.asarray(dp_cp))


def bucketed(device: int, piece: int) -> bool:
    """Whether MCore buckets the gradients of model piece `piece` held by pipeline device `device`: only the first
    chunk of pipeline rank 0, the model's first piece (distributed_data_parallel.py `DistributedDataParallel.__init__`,
    `if disable_bucketing or pp_rank > 0: self.bucket_size = None`; training.py `get_model`, `chunk_idx > 0`)."""
    return device == 0 and piece == 0


def first_stage_buckets(n_buckets: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Buckets per stage (N, S) where only the first pipeline stage (`first`, (N, S) or broadcastable) keeps its
    `n_buckets` and every later stage syncs in one (`bucketed`: pp_rank > 0 has bucket size None)."""
    return np.where(first, n_buckets, 1.0)


def bucket_count(grad_bytes: np.ndarray, layers: np.ndarray, bucket_bytes: float, overlap: bool) -> np.ndarray:
    """Buckets per stage (N, S) for `grad_bytes` spread over `layers` layers (both (N, S)) in buckets of
    `bucket_bytes` (a scalar or (N, 1)); 1 where either is 0 or overlap is off."""
    grad_bytes, layers = np.asarray(grad_bytes, dtype=float), np.asarray(layers, dtype=float)
    if not overlap:
        return np.ones_like(grad_bytes)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_layer_bytes = grad_bytes / layers
        layers_per_bucket = np.ceil(bucket_bytes / per_layer_bytes)
        n = np.ceil(layers / layers_per_bucket)
    return np.where((grad_bytes > 0) & (layers > 0) & np.isfinite(n), np.maximum(n, 1.0), 1.0)


def earlier_end_s(schedule: np.ndarray, vp, index: np.ndarray, exists: np.ndarray, bwd_mb_s: np.ndarray,
                  hop_s) -> np.ndarray:
    """(N, S) how long before stage 0 each representative stage (`index`, sorted, -1 pads) ends its last backward,
    so its one-bucket sync starts that much earlier. 1F1B / GPipe drain the last micro-batch's backward from stage
    p − 1 to 0 (Narayanan et al. 2021, arXiv 2104.04473, §2.2): stage s ends Σ_{j<s} (t_j + hop) before stage 0,
    t_j a stage's backward per micro-batch (compute and its collectives, `bwd_mb_s`); interleaved, the last
    backward is chunk 0, t_j / v (§2.2.2). Stages between two representatives are not priced one by one: each is
    counted at the smallest earlier representative's t (a lower bound; exact on an even split, where the middle
    stages are one kind). ZB-H1, ZB-V and DualPipe fill the drain with weight gradients or the other direction:
    0, nothing credited."""
    interleaved = sch.is_schedule(schedule, "interleaved")[:, None]
    t_s = np.where(interleaved, bwd_mb_s / np.asarray(vp, dtype=float)[:, None], bwd_mb_s)
    per_stage = np.where(exists, t_s + np.asarray(hop_s, dtype=float).reshape(-1, 1), np.inf)
    n, width = per_stage.shape
    # Column c: the c representatives before it (an exclusive running sum, added left to right), the other
    # index − c stages before it at the cheapest earlier one's t (an exclusive running minimum).
    finite = np.where(np.isfinite(per_stage), per_stage, 0.0)
    total = np.zeros((n, width))
    np.cumsum(finite[:, :-1], axis=1, out=total[:, 1:])
    cheapest = np.full((n, width), np.inf)
    np.minimum.accumulate(per_stage[:, :-1], axis=1, out=cheapest[:, 1:])
    between = np.maximum(index - np.arange(width)[None, :], 0)
    before = total + between * np.where(np.isfinite(cheapest), cheapest, 0.0)
    drains = sch.is_schedule(schedule, "1f1b") | sch.is_schedule(schedule, "gpipe")
    return np.where((drains[:, None] | interleaved) & exists, before, 0.0)


def chunk_buckets(schedule: np.ndarray, vp, first: np.ndarray, most_buckets: np.ndarray, last_bucket: np.ndarray,
                  sync_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(buckets, last bucket's time) per stage (N, S) for the estimate's hiding window: interleaved, a stage after the
    first holds v chunks, each synced as one bucket once its last backward ends (`bucketed`), so its sync `sync_s` is
    v equal buckets ready across the window, the last one sync_s / v; the first stage keeps its own count (its first
    chunk's buckets stand for all v here; interleaved_chunks_exposed_s takes the first stage's chunks apart)."""
    later = sch.is_schedule(schedule, "interleaved")[:, None] & ~np.asarray(first, dtype=bool)
    v = np.broadcast_to(np.asarray(vp, dtype=float)[:, None], most_buckets.shape)
    return np.where(later, v, most_buckets), np.where(later, sync_s / v, last_bucket)


def interleaved_chunks_exposed_s(sync_s: np.ndarray, n_buckets: np.ndarray, bwd_mb_s: np.ndarray, vp, pp,
                                 m) -> np.ndarray:
    """(N, S) seconds of an interleaved stage's gradient sync `sync_s` left after its last backward ends, its v chunks
    synced as MCore does: chunk 0 in its `n_buckets` / v buckets as chunk 0's last backward (`bwd_mb_s` / v) makes
    them ready (the model's first piece; on a later stage `chunk_buckets`' v, one bucket), each later chunk c as one
    bucket once its own last backward ends (`bucketed`; Megatron-LM d98e8a64 training.py l.2504-2515,
    per_chunk_disable_bucketing for chunk_idx > 0), all on one grad stream. In Megatron's interleaved order
    (schedules.py l.1244-1249 get_model_chunk_id: backward k runs chunk v − 1 − ⌊k/p⌋ mod v) a
    device's last p backwards are chunk 0's, the p before them chunk 1's, …: chunk c's sync is ready c·p chunk
    backwards (min(p, m) below p micro-batches) before the end. Each chunk holds 1/v of the sync (the embedding's
    gradients shared alike: an approximation). DERIVED (session 22, spoverlap); arrays (N, S), `vp`, `pp`, `m` (N,)."""
    v = np.asarray(vp, dtype=float)[:, None]
    ahead = np.minimum(np.asarray(pp, dtype=float), np.asarray(m, dtype=float))[:, None]
    chunk_sync, chunk_bwd = sync_s / v, bwd_mb_s / v
    n0 = np.maximum(1.0, n_buckets / v)
    # chunk 0's n0 buckets ready across its last backward, the last one never hidden (core.py's window rule)
    own = np.maximum(chunk_sync / n0, chunk_sync - chunk_bwd * (1.0 - 1.0 / n0))
    stream = np.full(np.broadcast(sync_s, v).shape, -np.inf)  # the grad stream's end, the later chunks synced
    for c in range(int(np.max(v)) - 1, 0, -1):
        stream = np.where(c < v, np.maximum(stream, -c * ahead * chunk_bwd) + chunk_sync, stream)
    return np.maximum(own, stream + chunk_sync)


def first_stage_exposed_s(sync_s, last_bucket_s, n_buckets, window_s, embedding_s, head_s, dense_buckets,
                          head_bwd_s):
    """(N, S) seconds of a bucketed stage's gradient sync `sync_s` left after its last backward (`window_s`, the
    whole last backward: compute and its collectives) ends, the model's ends in the buckets MCore puts them in.
    MCore fills buckets in reverse parameter order (Megatron-LM d98e8a64 param_and_grad_buffer.py l.980-995: `for
    param in params[::-1]`, a bucket closes once it holds `bucket_size` elements) and launches one once every
    parameter in it has its gradient (l.863-886 register_grad_ready, on the last micro-batch). GPTModel registers
    the embedding first and the output layer last (models/gpt/gpt_model.py l.174, 233, 277): the output layer's
    gradient (`head_s` of the sync, on the device only at pp 1) fills the first bucket, ready when the head's
    backward (`head_bwd_s`) ends; the word embedding's (`embedding_s`) the last, ready at the backward's end, so
    never hidden. The layers' `n_buckets` buckets are ready evenly over the rest of the window, W_L = W − t_h: the
    grad stream ends max(last bucket, S − S_head − W_L·(1 − 1/n), S − W_L) after the window (core.py's window rule
    with the head's bucket first and the embedding joined to the last; zero ends: that rule). The last bucket is
    `last_bucket_s` (each axis's sync / its count) with the ends' share of the dense axis's (`dense_buckets`)
    bucket taken out and the embedding's added. Shares of the sync by bytes (one bucket's latency not split).
    DERIVED (session 22, pp1gap); every argument (N, S) or broadcastable."""
    ends_in_last = (embedding_s + head_s) / dense_buckets
    last = last_bucket_s - ends_in_last + embedding_s
    layers_window = window_s - head_bwd_s
    fill = np.maximum(1.0, n_buckets)
    return np.maximum(np.maximum(last, sync_s - head_s - layers_window * (1.0 - 1.0 / fill)),
                      sync_s - layers_window)
