"""Where ZeRO ≥ 1's parameter all-gather runs: after the optimizer step (Megatron-Core's default), or with
overlap_param_gather in the next forward.

MCore's distributed optimizer reduce-scatters each gradient bucket as its gradients are ready (param_and_grad_buffer.py
`start_grad_sync`), updates its shard, then gathers the updated parameters bucket by bucket: with
`overlap_param_gather` off (Megatron's default: arguments.py `--overlap-param-gather`, default False) the gathers are
launched synchronously right after the optimizer step (NVIDIA/Megatron-LM d98e8a64 core/optimizer/distrib_optimizer.py
l.3168-3199, `step_with_ready_grads`: `should_sync_params = not self.ddp_config.overlap_param_gather`, then
`start_param_sync_for_bucket_group_subset`, every bucket group of every model chunk, dense and expert; each
`_ParamAndGradBucketGroup.start_param_sync` with `async_op` False, param_and_grad_buffer.py l.383-408). Nothing runs
beside them: the step ends when the last gather ends. Both engines place them so (`gathers_after_step`): the
simulator as operations on the grad stream after its optimizer step (moesim/des/schedule.py `build_stage_program`),
the estimate as a part of the step after `optimizer_time_s` (moesim/estimate/core.py), each bucket the one its
reduce-scatter reduced (grad_buckets.mcore_buckets), priced as before.

With `--overlap-param-gather` (`training.overlap_param_gather`, every Megatron-Bridge recipe's setting) MCore
dispatches each bucket's gather in the next iteration's forward: a module's forward pre-hook waits on its bucket's
gather (dispatching it first if it is not yet: the first bucket of each chain) and then dispatches the next bucket's
(distributed_data_parallel.py l.517-551, param_and_grad_buffer.py l.538-575 `finish_param_sync`); the chain runs in
forward order, from the last bucket (distributed_data_parallel.py l.369-380), one chain per buffer (dense, expert).
Without `align_param_gather` (forced off outside the interleaved schedule, arguments.py l.1013) nothing is dispatched
before a piece's first forward; with the interleaved schedule and `align_param_gather` (its default) every stage
dispatches chunks 0 and 1 at the step's start and chunk k + 1 one chunk ahead (schedules.py l.1219-1221,
l.1341-1356). Priced here for 1F1B, GPipe and interleaved (`gathers_in_forward`), with or without moe_a2a_overlap:
Megatron's combined order runs the same dispatches (interleaved: combined_1f1b_schedule_for_interleaved_pipelining is
handed forward_step_helper_preprocess, schedules.py l.1485-1495, after l.1219-1221; pp 1: the first micro-batch's
forward alone, combined_1f1b.py l.60 and l.77-92, so its pre-hooks wait as 1F1B's). The zero-bubble schedules refuse
the key with the distributed optimizer (sail-sg/zero-bubble-pipeline-parallelism @ 39f2c186 megatron/core/zbpp_utils.py
l.130-132; moesim/specs/param_overlap.py); DualPipe keeps the gathers after the step (Megatron-LM has no DualPipe,
deepseek-ai/DualPipe no parameter sync: docs/collectives-history.md, Session 25 (paramoverlap2)). With
overlap_param_gather_with_optimizer_step (interleaved) each stage's chunk 0 is gathered after its own optimizer step
instead (`gathers_with_step`, below).
"""

from __future__ import annotations

import numpy as np

from moesim.specs.param_overlap import WITH_STEP_STAGES  # ZeRO 1 / 2: Megatron-LM arguments.py l.1067-1068

# The names the gathers are priced under, one per gradient axis (the estimate's ledger, the simulator's CommSpec).
PARAM_GATHER_NAMES = ("dp_all_gather", "edp_all_gather")
# Its label on the simulator's grad stream, per axis.
PARAM_GATHER_LABEL = "parameter all-gather ({axis})"


def gathers_after_step(zero_stage):
    """Whether a step gathers its buckets' parameters after the optimizer step (scalar or array): every ZeRO stage
    that reduce-scatters them (>= 1, the distributed optimizer keeping a shard of the updated parameters; ZeRO-3's
    per-layer gathers are priced apart, as before, core.py `zero3_mb`); ZeRO-0 all-reduces and keeps them whole."""
    return zero_stage >= 1


# The schedules whose forward order `gathers_in_forward` prices (Megatron's forward_backward_pipelining_without_
# interleaving and GPipe's all-forward order; moesim.des.orders).
FORWARD_GATHER_SCHEDULES = ("1f1b", "gpipe", "interleaved")
# align_param_gather (Megatron-LM d98e8a64 arguments.py l.1013: on by default, kept only with virtual stages): each
# chunk's gathers dispatched by the schedule, not by the forward pre-hook (schedules.py l.1219-1221, l.1341-1356)
ALIGNED_SCHEDULES = ("interleaved",)
PARAM_WAIT_LABEL = "parameter all-gather wait"


def gathers_in_forward(training) -> bool:
    """Whether the step's parameter all-gathers run in its forward (overlap_param_gather, ZeRO >= 1, a schedule priced
    so) rather than after the optimizer step."""
    return bool(training.overlap_param_gather and gathers_after_step(training.zero_stage)
                and training.pipeline_schedule in FORWARD_GATHER_SCHEDULES)


def forward_exposed_s(gathers_s, buckets, forward_s, multiplicity):
    """The gathers' time the first forward waits for, summed over the stages (arrays N × S, a column per kind of
    stage, `multiplicity` of it in the pipeline; 0 where a stage gathers nothing). Each stage's chain: n equal
    buckets of G / n, the first waited on whole at the stage's first forward (dispatched there, after its receive: no
    align_param_gather), each next dispatched when the previous is waited on and hidden under that bucket's forward
    F / n; the stage waits max(G / n, G − F·(1 − 1/n)) — the gradient sync's closed form run forward (core.py,
    `window`). 1F1B / GPipe: each stage's wait lies on the fill, so they add."""
    exposed = np.maximum(gathers_s / buckets, gathers_s - forward_s * (1.0 - 1.0 / buckets))
    return np.sum(np.where(gathers_s > 0, exposed * multiplicity, 0.0), axis=1)


def forward_gathers_s(training, schedule, after_step_s, gathers_s, multiple, buckets, forward_s, multiplicity,
                      chunks, step=None):
    """The step's parameter-gather time with overlap_param_gather: `forward_exposed_s` on the rows whose schedule
    runs the gathers in the forward (`gathers_in_forward`), `after_step_s` (the gathers whole after the step) on the
    rest. `gathers_s`: one array per stage (N each, the estimate's columns), `multiple` the schedule's parameter
    copies (N × 1), `buckets` N × S, `forward_s` each stage's forward per micro-batch (N × S), `multiplicity` the
    stages of each column's kind (N × S), `chunks` the virtual stages v (N); `step` (the optimizer step s, the
    first stage's dense and expert parameters per device, each N, and the candidates): with_optimizer_step's
    `with_step_exposed_s` on its rows (`with_step_rows`)."""
    if not training.overlap_param_gather:  # the schedule is the candidate's: below
        return after_step_s
    rows = _any_schedule(schedule, FORWARD_GATHER_SCHEDULES)
    if not rows.any():
        return after_step_s
    stacked = np.stack(gathers_s, axis=1) * multiple
    exposed = forward_exposed_s(stacked, buckets, forward_s, multiplicity)
    aligned = _any_schedule(schedule, ALIGNED_SCHEDULES)
    if aligned.any():  # chunk 0 (a 1/v share of the first stage's) waited on whole: `aligned_exposed_s`
        first = aligned_exposed_s(stacked, chunks)
        if gathers_with_step(training):  # or dispatched after its own optimizer step, under the rest of it
            optimizer_s, dense, expert, cands = step  # the first stage's parameters per device, the rows
            share = chunk_step_share(dense / (cands.dp * cands.cp), expert / cands.edp, chunks)
            first = np.where(with_step_rows(training, schedule, cands.zero_stage),
                             with_step_exposed_s(first, optimizer_s, share), first)
        exposed = np.where(aligned, first, exposed)
    return np.where(rows, exposed, after_step_s)


def _any_schedule(schedule, names) -> np.ndarray:
    """(N,) whether each row's schedule (names or the search's codes) is one of `names`."""
    from moesim.estimate.schedules import is_schedule  # the estimate's schedule codes

    return np.logical_or.reduce([np.asarray(is_schedule(schedule, name), dtype=bool) for name in names])


def aligned_exposed_s(gathers_s, chunks):
    """align_param_gather (the interleaved schedule): every stage dispatches its chunks 0 and 1 at the step's start,
    each chunk's buckets in buffer order (the dense buffer's, then the expert buffer's; param_and_grad_buffer.py
    start_param_sync), so the first stage's first layer waits on its chunk 0's gathers whole; the later stages' run
    during the fill and chunk k + 1's while chunk k runs (dispatched one chunk ahead): not waited on in the closed
    form (the simulator runs them). `chunks`: v (N)."""
    return gathers_s[:, 0] / chunks


# --overlap-param-gather-with-optimizer-step (Megatron-LM d98e8a64 arguments.py l.1066-1072: the distributed optimizer,
# overlap_param_gather and virtual stages; moesim/specs/param_overlap.py refuses the rest). optimizer/__init__.py
# l.1062-1068: the dense optimizer split in two, [model_chunks[0]] and model_chunks[1:], the expert optimizer after
# both (l.1214-1264); optimizer.py l.1667-1676 ChainedOptimizer._step: right after the first (chunk 0's) step,
# model_chunks[0].start_param_sync(force_dispatch=True), every bucket group of chunk 0, dense and expert
# (distributed_data_parallel.py l.638-639); the schedule's dispatch of chunk 0 then returns at once (l.635-636) and its
# pre-hook waits without dispatching (l.546-550); chunk 1 and later as align_param_gather (schedules.py l.1219-1221,
# l.1341-1356). Bucketing is off on every chunk (training.py l.2504-2512: one bucket per buffer and chunk).
WITH_STEP_LABEL = "optimizer (chunk 0)"


def gathers_with_step(training) -> bool:
    """Whether chunk 0's gathers run after chunk 0's optimizer step (the key, the gathers in the forward and an
    interleaved schedule: `gathers_in_forward`)."""
    return bool(training.overlap_param_gather_with_optimizer_step and gathers_in_forward(training)
                and training.pipeline_schedule in ALIGNED_SCHEDULES)


def with_step_rows(training, schedule, zero_stage) -> np.ndarray:
    """(N,) the rows that run with_optimizer_step: the key on, interleaved, ZeRO 1 or 2 (a search's other rows run
    without it, as Megatron would refuse it there: specs/param_overlap.py `row_overrides`)."""
    if not training.overlap_param_gather_with_optimizer_step:
        return np.zeros(np.shape(zero_stage), dtype=bool)
    return _any_schedule(schedule, ALIGNED_SCHEDULES) & np.isin(zero_stage, WITH_STEP_STAGES)


def chunk_step_share(dense_local, expert_local, chunks):
    """Chunk 0's share of a device's optimizer step (memory-bound over its states: moesim/ops/optimizer.py), the
    first optimizer of Megatron's chain: its dense parameters, 1/v of the device's (even chunks), over the device's
    dense and expert parameters after ZeRO's shard (scalars or arrays)."""
    total = np.asarray(dense_local + expert_local, dtype=float)
    return np.divide(dense_local / chunks, total, out=np.zeros_like(total), where=total > 0)


def with_step_exposed_s(first_gathers_s, optimizer_s, share):
    """What the step waits for of the first stage's chunk 0 gathers `first_gathers_s`, dispatched after chunk 0's
    optimizer step (`share` of `optimizer_s`) and run under the rest of it: max(0, G_0 − (1 − share)·optimizer);
    what is left is waited on at the next step's first forward (its pre-hook), before any compute."""
    return np.maximum(first_gathers_s - (1.0 - share) * optimizer_s, 0.0)
