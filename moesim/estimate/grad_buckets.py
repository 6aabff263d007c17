"""How many buckets a stage's gradient sync is made of (Megatron-Core's --overlap-grad-reduce).

MCore lays the parameters into buckets in reverse order (megatron/core/optimizer/distrib_optimizer.py
`_compute_per_buffer_param_layout` with the distributed optimizer, param_and_grad_buffer.py
`_compute_default_per_buffer_param_layout` without: `for param in params[::-1]`), closes a bucket once it holds
`bucket_params` parameters, and launches a bucket's reduce-scatter / all-reduce once all its gradients are ready, on
the last micro-batch (`_ParamAndGradBucketGroup.register_grad_ready`). `mcore_buckets` is that rule, with a layer
(and the head, the embedding) as the unit: the simulator calls it per piece (`_Builder.grad_bucket`,
moesim/des/schedule.py), the estimate its closed form for a stage of equal layers (`uniform_buckets`), so the
buckets are unequal (a smaller tail, the embedding's gradient in it or alone) in both. With overlap_grad_reduce off
MCore sets the bucket size to None: one bucket (distributed_data_parallel.py, `DistributedDataParallel.__init__`).

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
from moesim.estimate.pricing import grouped_rows

# Megatron-Core's default bucket floor, in parameters (megatron/training/training.py, resolve_ddp_bucket_size:
# max(40000000, 1000000 * get_pg_size(dp_cp_group))).
DEFAULT_BUCKET_PARAMS = 40_000_000
# ... and its growth with the dp·cp group, in parameters per rank (the same line).
BUCKET_PARAMS_PER_DP_CP_RANK = 1_000_000


def bucket_params(dp_cp):
    """MCore's default gradient bucket size in parameters for a dp·cp group of `dp_cp` ranks (scalar or array):
    max(40e6, 1e6 · dp·cp) (training.py, resolve_ddp_bucket_size); one size for the dense and the expert buffers."""
    return np.maximum(DEFAULT_BUCKET_PARAMS, BUCKET_PARAMS_PER_DP_CP_RANK * np.asarray(dp_cp))


# The zero-bubble schedules sync after the pipeline: sail-sg's runtime (zero-bubble-pipeline-parallelism @ 39f2c186)
# runs the whole schedule under no_sync (megatron/core/pipeline_parallel/zerobubble/runtime.py l.195) and launches
# every bucket after its last node (l.255-267: enable_grad_sync, then finalize_model_grads), and zero bubble asserts
# overlap_grad_reduce off (megatron/core/zbpp_utils.py l.130-133; l.207-209: WeightGradStore unsupported with it).
SYNC_AFTER_PIPELINE = ("zb-h1", "zb-v")


def grad_reduce_overlapped(overlap_grad_reduce: bool, schedule: str) -> bool:
    """Whether the run overlaps its gradient sync with the backward (MCore's buckets as sized here): the training's
    overlap_grad_reduce, never under a zero-bubble schedule (`SYNC_AFTER_PIPELINE`: off, one bucket, after the
    device's last weight-gradient pass)."""
    return bool(overlap_grad_reduce) and schedule not in SYNC_AFTER_PIPELINE


def bucketed(device: int, piece: int) -> bool:
    """Whether MCore buckets the gradients of model piece `piece` held by pipeline device `device`: only the first
    chunk of pipeline rank 0, the model's first piece (distributed_data_parallel.py `DistributedDataParallel.__init__`,
    `if disable_bucketing or pp_rank > 0: self.bucket_size = None`; training.py `get_model`, `chunk_idx > 0`)."""
    return device == 0 and piece == 0


def mcore_buckets(unit_params, bucket_params) -> tuple[tuple[int, float], ...]:
    """MCore's gradient buckets over a buffer's units, each unit the parameters handed to the buffer at once, in the
    order their gradients arrive (reverse parameter order: the output layer and final norm, the layers last to
    first, the word embedding; Megatron-LM d98e8a64 distrib_optimizer.py l.552 `for param in params[::-1]`): a bucket
    closes at the unit that brings it to `bucket_params` or more (l.568-573, `(param_end_index -
    bucket_start_index) >= bucket_size`; param_and_grad_buffer.py l.986 without the distributed optimizer), the
    rest is one last bucket (l.579-580); `bucket_params` None: one bucket (bucket size None). Returns (index of the
    unit that closes it, its parameters) per bucket. The engines' unit is a layer (MCore's a parameter tensor): a
    bucket that MCore closes inside a layer closes at that layer's end here. Both engines' buckets come from here:
    the simulator calls it per piece and axis (moesim.des.schedule `_Builder.grad_bucket`), the estimate its closed
    form for a stage of equal layers (`uniform_buckets`)."""
    buckets, pending = [], 0.0
    for index, params in enumerate(unit_params):
        pending += float(params)
        if bucket_params is not None and pending > 0 and pending >= bucket_params:
            buckets.append((index, pending))
            pending = 0.0
    if pending > 0:
        buckets.append((len(unit_params) - 1, pending))
    return tuple(buckets)


def uniform_buckets(head, layer, layers, embedding, bucket_params) -> tuple[np.ndarray, np.ndarray]:
    """`mcore_buckets` in closed form for the units [head, `layers` × layer, embedding] (arrays of one shape,
    parameters; `bucket_params` inf: one bucket), as (sizes, counts), each stacked (lead, middle, tail) on a last
    axis: the lead bucket holds the head and the j = ceil((T − head) / layer) layers that close it (the head alone
    where head ≥ T), then ⌊(L − j) / k⌋ middle buckets of k = ceil(T / layer) layers, then the r = (L − j) mod k
    layers left with the embedding in one tail bucket (the embedding alone where r = 0; none where both are 0).
    Where the lead never closes within the layers, everything is one tail bucket. Counts 0 or 1 but the middle's.
    DERIVED (session 23, buckets23) from `mcore_buckets`' rule; tests/test_grad_buckets.py checks it equals it."""
    head, layer, layers, embedding = (np.asarray(a, dtype=float) for a in (head, layer, layers, embedding))
    threshold = np.asarray(bucket_params, dtype=float)
    has_layers = (layers > 0) & (layer > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lead_layers = np.where(head >= threshold, 0.0, np.ceil((threshold - head) / layer))
        per_bucket = np.ceil(threshold / layer)
    closes = (head >= threshold) | (has_layers & (lead_layers <= layers))
    split = closes & has_layers  # layers after the lead bucket, in buckets of k (finite here)
    k = np.where(split, per_bucket, 1.0)
    rest = np.where(split, layers - np.where(split, lead_layers, 0.0), 0.0)
    middle = np.floor(rest / k)
    layer_p = np.where(has_layers, layer, 0.0)
    total = head + np.where(has_layers, layers, 0.0) * layer_p + embedding
    lead = np.where(closes, head + np.where(split, lead_layers, 0.0) * layer_p, 0.0)
    tail = np.where(closes, (rest - middle * k) * layer_p + embedding, total)
    sizes = np.stack([lead, np.where(middle > 0, k * layer_p, 0.0), tail], axis=-1)
    counts = np.stack([closes.astype(float), middle, (tail > 0).astype(float)], axis=-1)
    return sizes, counts


def first_stage_buckets(head, stage_params, layers, embedding, bucket_params) -> tuple[np.ndarray, ...]:
    """The bucketed stage's buckets per candidate: `uniform_buckets` of the head, its `layers` layers at their mean
    size (the stage's parameters `stage_params` less the head and the embedding, over the layers) and the embedding,
    as (sizes, counts: each three (N,) arrays, lead, middle, tail, no bucket without parameters; whether the head
    fills a bucket alone (N,); the layers' buckets, the head's not counted, at least 1 (N,)); arguments (N, 1) or
    scalars (`bucket_params` inf: one bucket). Each distinct row of the arguments is bucketed once and read back
    (estimate.pricing.grouped_rows, on exact bits), so every figure is the row-by-row one (session 23, bucketspeed: a
    search's rows hold a handful of distinct first stages)."""
    n = len(stage_params)
    args = [np.broadcast_to(np.asarray(a, dtype=float).reshape(-1), (n,))
            for a in (head, stage_params, layers, embedding, bucket_params)]
    first, inverse = grouped_rows([a for a in args if a.strides != (0,)] or [args[1]])
    head, p0, l0, emb0, threshold = (a[first] for a in args)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_layer = np.where(l0 > 0, np.maximum(p0 - head - emb0, 0.0) / l0, 0.0)
    sizes, counts = uniform_buckets(head, per_layer, l0, emb0, threshold)
    counts = counts * (p0 > 0)[:, None]
    alone = (head >= threshold) & (head > 0)  # the head's own bucket (param_and_grad_buffer.py l.986)
    layers_buckets = np.where(p0 > 0, np.maximum(counts.sum(axis=1), 1.0) - alone, 1.0)
    sizes, counts = ([np.take(a[:, g], inverse) for g in range(3)] for a in (sizes, counts))
    return sizes, counts, np.take(alone, inverse), np.take(layers_buckets, inverse)


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


def interleaved_chunks_exposed_s(first_chunk_s: np.ndarray, later_chunk_s: np.ndarray, n_first: np.ndarray,
                                 bwd_mb_s: np.ndarray, vp, pp, m) -> np.ndarray:
    """(N, S) seconds of an interleaved stage's gradient sync left after its last backward ends, its v chunks
    synced as MCore does: chunk 0 (`first_chunk_s`, priced in its own `n_first` buckets: MCore's on the first stage,
    one on the others) as chunk 0's last backward (`bwd_mb_s` / v) makes them ready (the model's first piece), each
    later chunk c as one bucket (`later_chunk_s`, priced at the chunk's size) once its own last backward ends
    (`bucketed`; Megatron-LM d98e8a64 training.py l.2504-2515, per_chunk_disable_bucketing for chunk_idx > 0), all
    on one grad stream. In Megatron's interleaved order (schedules.py l.1244-1249 get_model_chunk_id: backward k runs
    chunk v − 1 − ⌊k/p⌋ mod v) a device's last p backwards are chunk 0's, the p before them chunk 1's, …: chunk c's
    sync is ready c·p chunk backwards (min(p, m) below p micro-batches) before the end. DERIVED (session 22,
    spoverlap; session 23, pp2tail: each chunk's sync priced at its own buckets' sizes, not 1/v of the stage's
    buckets); arrays (N, S), `vp`, `pp`, `m` (N,)."""
    v = np.asarray(vp, dtype=float)[:, None]
    ahead = np.minimum(np.asarray(pp, dtype=float), np.asarray(m, dtype=float))[:, None]
    chunk_bwd = bwd_mb_s / v
    n0 = np.maximum(1.0, n_first)
    # chunk 0's n0 buckets ready across its last backward, the last one never hidden (core.py's window rule)
    own = np.maximum(first_chunk_s / n0, first_chunk_s - chunk_bwd * (1.0 - 1.0 / n0))
    stream = np.full(np.broadcast(first_chunk_s, v).shape, -np.inf)  # the grad stream's end, the later chunks synced
    for c in range(int(np.max(v)) - 1, 0, -1):
        stream = np.where(c < v, np.maximum(stream, -c * ahead * chunk_bwd) + later_chunk_s, stream)
    return np.maximum(own, stream + first_chunk_s)


def first_stage_exposed_s(sync_s, last_bucket_s, n_buckets, window_s, head_s, head_bwd_s):
    """(N, S) seconds of a bucketed stage's gradient sync `sync_s` left after its last backward (`window_s`, the
    whole last backward: compute and its collectives) ends, the model's ends in the buckets MCore puts them in
    (`mcore_buckets`: reverse parameter order, Megatron-LM d98e8a64 distrib_optimizer.py l.552-580; a bucket launched
    once every parameter in it has its gradient, param_and_grad_buffer.py l.863-886 register_grad_ready, on the last
    micro-batch). GPTModel registers the embedding first and the output layer last (models/gpt/gpt_model.py l.174,
    233, 277): at pp 1 the output layer's gradient alone fills the lead bucket where it holds the bucket size
    (`head_s`, its priced time; 0 elsewhere), ready when the head's backward (`head_bwd_s`) ends; the word
    embedding's joins the last bucket (`last_bucket_s`, priced with it), ready at the backward's end, so never
    hidden. The layers' `n_buckets` buckets (the head's not counted) are ready evenly over the rest of the window,
    W_L = W − t_h: the grad stream ends max(last bucket, S − S_head − W_L·(1 − 1/n), S − W_L) after the window
    (core.py's window rule with the head's bucket first; no head: that rule). DERIVED (session 22, pp1gap; session
    23, buckets23: the buckets' own priced times in place of shares of the sync by bytes); arrays (N, S) or
    broadcastable."""
    layers_window = window_s - head_bwd_s
    fill = np.maximum(1.0, n_buckets)
    return np.maximum(np.maximum(last_bucket_s, sync_s - head_s - layers_window * (1.0 - 1.0 / fill)),
                      sync_s - layers_window)
