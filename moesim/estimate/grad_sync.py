"""The gradient sync's buckets priced per stage, as `evaluate` runs them (moesim.estimate.core): dense (dp·cp) and
expert (edp) gradients in MCore's buckets on the first stage, one bucket a later stage (grad_buckets.py), interleaved
chunks apart, ZeRO's parameter all-gathers after the optimizer step (param_gather.py) and ZeRO-3's per-micro-batch
gathers; and what of the sync the last micro-batch's backward leaves exposed (`exposed_sync_s`). Moved from core.py
unchanged (session 24, tidy24).

Notation as moesim.estimate.core: arrays (N, S) over candidate rows and representative stages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.estimate.comm_ledger import CommLedger
from moesim.estimate import schedules as sch
from moesim.estimate.grad_buckets import (bucket_params, earlier_end_s, first_stage_buckets, first_stage_exposed_s,
                                         interleaved_chunks_exposed_s)
from moesim.estimate.param_gather import PARAM_GATHER_NAMES, gathers_after_step, with_step_rows
from moesim.estimate.stages import Stages, per_stage
from moesim.specs.training import TrainingSpec
from moesim.workload import Workload


def where_rows(on: np.ndarray, calls: np.ndarray) -> np.ndarray:
    """np.where(on[:, None], calls, 0.0) for calls (N, K), a column at a time (one strided pass each, not a short row
    at a time: session 23, bucketspeed); the same numbers."""
    out = np.empty_like(calls)
    for k in range(calls.shape[1]):
        out[:, k] = np.where(on, calls[:, k], 0.0)
    return out


@dataclass(frozen=True)
class GradSync:
    """`grad_sync`'s figures per candidate row, seconds: (N, S) unless said."""

    dp_time: np.ndarray  # each stage's whole sync, both axes
    zero3_mb: np.ndarray  # ZeRO-3's parameter gathers per micro-batch (0 where no row runs ZeRO-3)
    last_bucket: np.ndarray  # each axis's last bucket: ready only at the backward's end
    gather_time: list | None  # ZeRO >= 1: each stage's parameter all-gathers (S columns of N); None: none
    most_buckets: np.ndarray  # the layers' buckets of the axis with most (the head's not counted)
    head_time: np.ndarray  # (N,) the first stage's dense lead bucket where it is the output layer's alone (pp 1)
    prior: np.ndarray  # (N,) the first stage's last buckets ready at the first layer's end
    first_chunk_s: np.ndarray  # interleaved: the first chunk's sync
    later_chunk_s: np.ndarray  # interleaved: one later chunk's sync


def grad_sync(wl: Workload, tr: TrainingSpec, cands, stages: Stages, ledger: CommLedger, chunks: np.ndarray,
              dense_1: np.ndarray, expert_1: np.ndarray, tp: np.ndarray, pp: np.ndarray, m: np.ndarray,
              first: np.ndarray, last: np.ndarray, zero: np.ndarray, one_bucket: np.ndarray | None) -> GradSync:
    """Each stage's gradient sync over dp and edp for the rows of `cands` (`stages` theirs), priced on `ledger`;
    `dense_1` / `expert_1` (N, S) one parameter copy's per device, `chunks` (N,) the interleaved chunks synced apart
    (1.0: none), `zero` (N, 1) the ZeRO stage, `one_bucket` (N,) the rows synced in one bucket after their pipeline
    (grad_buckets.SYNC_AFTER_PIPELINE; None: none)."""
    n_cand, n_stages = stages.counts.shape[:2]
    q_g, q_p = tr.bytes_of("grad"), tr.bytes_of("param")
    add = ledger.add
    # Layers carrying dense / expert gradients on each stage: a bucket closes at a layer's end (grad_buckets.py).
    grad_layers = [per_stage(stages.counts, [np.full(n_cand, float(has(c))) for c in wl.classes])
                   for has in (lambda c: c.params_shardable + c.params_replicated > 0, lambda c: c.params_experts > 0)]
    dp_time = np.zeros((n_cand, n_stages))
    zero3_mb, zero3_any = np.zeros((n_cand, n_stages)), bool((zero >= 3).any())
    # MCore's bucket size from the dp·cp group, one for both axes (grad_buckets.bucket_params).
    threshold_p = bucket_params(cands.dp * cands.cp)[:, None].astype(float)
    last_bucket = np.zeros((n_cand, n_stages))  # each axis's last bucket: ready only at the backward's end
    gather_time = None  # ZeRO >= 1: each stage's parameter all-gathers (S columns of N), after the step; None: none
    most_buckets = np.ones((n_cand, n_stages))  # the layers' buckets of the axis with most (the head's not counted)
    head_time = np.zeros(n_cand)  # the first stage's dense lead bucket where it is the output layer's alone (pp 1)
    prior = np.zeros(n_cand)  # the first stage's last buckets ready at the first layer's end, before the embedding's
    # Interleaved (v chunks a stage), each chunk's sync apart: chunk 0 of the first stage in MCore's buckets, every
    # other chunk one bucket (grad_buckets.bucketed; Megatron-LM d98e8a64 training.py l.2504-2515). first_chunk_s:
    # (N, S) the first chunk's sync (on a later stage one bucket, as every chunk there); later_chunk_s: one later chunk's.
    v_col = chunks[:, None]
    chunked_any = bool((chunks > 1).any())
    first_chunk_s, later_chunk_s = np.zeros((n_cand, n_stages)), np.zeros((n_cand, n_stages))
    # The model's ends on the bucketed stage, parameters (device_state.py's): the head first, the embedding last.
    pp1 = first & last & (pp[:, None] == 1)
    head_p = np.where(pp1, ((wl.lm_head_params / tp) + wl.final_norm_params)[:, None], 0.0)
    embedding_p = np.where(first, ((wl.embedding_params / tp) + wl.position_params)[:, None], 0.0)
    for axis, params, layers in (("dp", dense_1, grad_layers[0]), ("edp", expert_1, grad_layers[1])):
        # MCore's buckets (grad_buckets.uniform_buckets, mcore_buckets' closed form) on the first stage (column 0:
        # stages.index is sorted): the head, the stage's layers at their mean size, the embedding; every later stage
        # syncs in one bucket (grad_buckets.bucketed), as every stage with overlap_grad_reduce off (size None);
        # interleaved, those of the first stage's chunk 0, every other chunk one bucket of its own (pp2tail).
        head0, emb0 = (head_p[:, :1], embedding_p[:, :1]) if axis == "dp" else (0.0, 0.0)
        p0 = params[:, :1]
        threshold = threshold_p if tr.overlap_grad_reduce else np.inf
        if tr.overlap_param_gather_with_optimizer_step:  # no chunk bucketed (Megatron-LM d98e8a64 training.py
            # l.2504-2512) on the rows that run it (param_gather.with_step_rows)
            threshold = np.where(with_step_rows(tr, cands.schedule_codes(tr), zero[:, 0])[:, None], np.inf, threshold)
        if one_bucket is not None:
            threshold = np.where(one_bucket[:, None], np.inf, threshold)
        # the first chunk: 1/v of the stage's layers (at their mean size) and the embedding (no head: pp > 1)
        rest0 = np.maximum(p0 - emb0, 0.0) / v_col if chunked_any else 0.0
        p0_first = rest0 + emb0 if chunked_any else p0
        layers0 = layers[:, :1] / v_col if chunked_any else layers[:, :1]
        sizes, n_group, alone, layer_buckets = first_stage_buckets(head0, p0_first, layers0, emb0, threshold)
        # The sync runs bucket by bucket, each its own collective (MCore param_and_grad_buffer.py, start_grad_sync),
        # priced in one pass per op (CommLedger.add_packed): the first stage's tail bucket, every later stage's one
        # bucket (its whole sync), then the first stage's lead and middle buckets where any row has one; an op
        # without calls is not priced.
        extra = [g for g in (0, 1) if n_group[g].any()]
        owner = np.array(list(range(n_stages)) + [0] * (len(extra) + chunked_any))
        # (N, K) filled a column at a time (one strided pass each, not a short row at a time: session 23, bucketspeed)
        packed, packed_calls = np.empty((n_cand, len(owner))), np.empty((n_cand, len(owner)))
        packed[:, 0], packed_calls[:, 0] = sizes[2], n_group[2]
        for s in range(1, n_stages):  # a later stage: one bucket a chunk
            if chunked_any:
                packed[:, s], packed_calls[:, s] = params[:, s] / chunks, (params[:, s] > 0) * chunks
            else:
                packed[:, s], packed_calls[:, s] = params[:, s], params[:, s] > 0
        for i, g in enumerate(extra):
            packed[:, n_stages + i], packed_calls[:, n_stages + i] = sizes[g], n_group[g]
        if chunked_any:  # the first stage's later chunks, one bucket each
            packed[:, -1], packed_calls[:, -1] = rest0[:, 0], (rest0[:, 0] > 0) * (chunks - 1.0)
        priced = [(f"{axis}_{op}", op, q, packed_calls if on.all() else where_rows(on[:, 0], packed_calls))
                  for op, q, on in (("all_reduce", q_g, zero == 0), ("reduce_scatter", q_g, zero >= 1),
                                    ("all_gather", q_p, gathers_after_step(zero))) if on.any()]
        # the reduce-scatter / all-reduce on the grad stream; the all-gather after the optimizer step, each bucket on
        # its stage (param_gather.py: Megatron-LM d98e8a64 distrib_optimizer.py l.3168-3199 step_with_ready_grads)
        t_packed = 0.0
        for (name, _, _, _), t_op in zip(priced, ledger.add_packed(axis, priced, packed, owner) if priced else ()):
            if name in PARAM_GATHER_NAMES:  # columns 0..S−1 are stages 0..S−1, every further one the first stage's
                # a column at a time: numpy's reductions over the short stage axis cost the warm Mixtral search
                # +44 M instructions (session 24, zero1ag; benchmarks/RESULTS.md)
                cols = [t_op[:, s] for s in range(n_stages)]
                for k in range(n_stages, t_op.shape[1]):
                    cols[0] = cols[0] + t_op[:, k]
                gather_time = cols if gather_time is None else [g + c for g, c in zip(gather_time, cols)]
            else:
                t_packed = t_packed + t_op
        t_packed = np.broadcast_to(t_packed, packed.shape)  # column s < S: stage s's tail bucket (or one bucket)
        t0 = [np.zeros(n_cand), np.zeros(n_cand), t_packed[:, 0]]  # the first stage's lead, middle, tail
        for i, g in enumerate(extra):
            t0[g] = t_packed[:, n_stages + i]
        for s in range(n_stages):
            dp_time[:, s] += t_packed[:, s]
        dp_time[:, 0] += t0[0] + t0[1]
        if chunked_any:
            t_later = t_packed[:, -1]
            dp_time[:, 0] += t_later
            first_chunk_s[:, 0] += t0[0] + t0[1] + t0[2]
            later_chunk_s[:, 0] += np.where(chunks > 1, t_later / np.maximum(chunks - 1.0, 1.0), 0.0)
            for s in range(1, n_stages):
                first_chunk_s[:, s] += t_packed[:, s] / chunks
                later_chunk_s[:, s] += t_packed[:, s] / chunks
        with np.errstate(divide="ignore", invalid="ignore"):
            one = [np.where(n > 0, t / n, 0.0) for t, n in zip(t0, n_group)]  # one bucket's time, per group
        # Each axis's last bucket, ready at the backward's end (a later stage: its one bucket). On the first stage,
        # holding the embedding, a last bucket of layers only is ready one embedding backward before that (the
        # first layer's end: `prior`, credited below): the expert axis's, and the dense axis's layers' last where
        # the embedding's bucket is alone after it.
        before_tail = np.where(n_group[1] > 0, one[1], one[0])
        last_g = np.where(n_group[2] > 0, one[2], before_tail)
        ends_only = (n_group[2] > 0) & (sizes[2] <= (emb0[:, 0] if axis == "dp" else 0.0))
        early = (embedding_p[:, 0] > 0) & ((axis == "edp") | ends_only)
        prior += np.where(early, np.where(ends_only, before_tail, last_g), 0.0)
        for s in range(1, n_stages):
            last_bucket[:, s] += t_packed[:, s]
        last_bucket[:, 0] += np.where(early & ~ends_only, 0.0, last_g)
        head_time += np.where(alone, one[0], 0.0)
        most_buckets[:, 0] = np.maximum(most_buckets[:, 0], layer_buckets)
        # ZeRO-3 gathers every layer's parameters again in forward and backward (ZeRO §7); not priced where no row
        # runs ZeRO-3 (no calls: every time 0, no entry with calls; session 24, searchspeed24).
        zero3_mb += add(f"{axis}_param_all_gather", axis, "all_gather", params * q_p,
                        np.where(zero >= 3, 2 * m[:, None], 0)) / m[:, None] if zero3_any else 0.0
    return GradSync(dp_time=dp_time, zero3_mb=zero3_mb, last_bucket=last_bucket, gather_time=gather_time,
                    most_buckets=most_buckets, head_time=head_time, prior=prior, first_chunk_s=first_chunk_s,
                    later_chunk_s=later_chunk_s)


def exposed_sync_s(*, sched: np.ndarray, vp: np.ndarray, pp: np.ndarray, m: np.ndarray, index: np.ndarray,
                   exists: np.ndarray, first: np.ndarray, last: np.ndarray, bwd_own: np.ndarray, bwd_comm: np.ndarray,
                   hop: np.ndarray, dp_time: np.ndarray, last_bucket: np.ndarray, most_buckets: np.ndarray,
                   prior: np.ndarray, head_time: np.ndarray, head_bwd_comm: np.ndarray, logits_time: np.ndarray,
                   embedding_bwd: np.ndarray, of: np.ndarray | None, chunks: np.ndarray, first_chunk_s: np.ndarray,
                   later_chunk_s: np.ndarray, tp_grad) -> np.ndarray:
    """(N,) the gradient sync left after the last micro-batch's backward (overlap_grad_reduce), over every candidate:
    `grad_sync`'s figures expanded to them, `bwd_own` / `bwd_comm` (N, S) the backward's compute and collectives per
    micro-batch, `hop` (N,) one pipeline send, `index` stages.index; `logits_time` and `embedding_bwd` (per row of
    `of`, the order-free fold; None: per candidate) the head's and the embedding's; `tp_grad` the replicated
    gradients' tp all-reduce (0.0: none). The model's form: evaluate's comment before its call."""
    window = (bwd_own + bwd_comm) * (1.0 - 1.0 / most_buckets)
    # A later stage, one bucket (grad_buckets.bucketed), ends its backward before stage 0 (earlier_end_s).
    early = earlier_end_s(sched, vp, index, exists, bwd_own + bwd_comm, hop)
    # The model's ends in their own buckets on a bucketed stage (grad_buckets.first_stage_exposed_s): the word
    # embedding's gradient in the last (device 0, piece 0; `last_bucket` holds it, priced), at pp 1 the output
    # layer's alone in the first where it fills one (`head_time`), ready once the head's backward ends.
    chunked = sch.is_schedule(sched, "interleaved")[:, None] & (np.asarray(vp)[:, None] > 1)
    ends = first & ~chunked
    at_pp1 = ends & last & (pp[:, None] == 1)
    head_s, head_bwd = 0.0, 0.0  # no candidate at pp 1: the head is on no bucketed stage
    if at_pp1.any():
        head_s = np.where(at_pp1, head_time[:, None], 0.0)
        logits_rows = logits_time if of is None else np.take(logits_time, of, axis=0)
        head_bwd = np.where(at_pp1, (2 / 3) * logits_rows[:, None] + head_bwd_comm, 0.0)
    # the buckets ready at the first layer's end run beside the embedding's backward (pieces._backward_layer)
    emb_bwd = (embedding_bwd if of is None else np.take(embedding_bwd, of, axis=0))[:, None]
    ends_last = last_bucket.copy()
    ends_last[:, 0] += np.maximum(0.0, prior - emb_bwd[:, 0])
    left = np.where(ends, first_stage_exposed_s(dp_time, ends_last, most_buckets, bwd_own + bwd_comm,
                                                head_s, head_bwd),
                    np.maximum(last_bucket, dp_time - window))
    # Interleaved, a stage's later chunks sync in the cool-down, chunk 0 after its own last backward (bucketed
    # on the first stage, one bucket on the others: chunk_buckets' v buckets, 1 a chunk).
    if chunked.any():  # even chunks priced apart (`chunks`); a pipeline layout's: 1/v of the stage's each
        split, v_col = (chunks > 1)[:, None], np.asarray(vp, dtype=float)[:, None]
        share = dp_time / v_col
        left = np.where(chunked, interleaved_chunks_exposed_s(
            np.where(split, first_chunk_s, share), np.where(split, later_chunk_s, share),
            np.where(first, np.where(split, most_buckets, most_buckets / v_col), 1.0),
            bwd_own + bwd_comm, vp, pp, m), left)
    return np.max(np.where(exists, np.maximum(0.0, left - early) + tp_grad, 0), axis=1)
