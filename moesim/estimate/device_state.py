"""What each device holds on each pipeline stage: parameters, the optimizer step over them, memory.

Arrays (N, S) over candidates and representative stages (moesim.estimate.stages); notation as
moesim.estimate.core: b sequences per micro-batch per device, m micro-batches, tp/pp/ep/etp/edp/vp
degrees, dcp = dp·cp (the group dense gradients reduce and ZeRO shards over: CP ranks hold the same
weights), zero the ZeRO stage (N, 1); first / last / exists (N, S) masks of the pipeline's ends.
"""

from __future__ import annotations

import numpy as np

from moesim import memory as mem, memory_peak as peak
from moesim.estimate import schedules as sch
from moesim.estimate.precision_terms import cached_weight_copies
from moesim.estimate.pricing import grouped_rows
from moesim.estimate.stages import Stages, per_stage
from moesim.estimate.terms import ClassTerms
from moesim.ops.base import memory as memory_op
from moesim.ops.optimizer import PART as OPTIMIZER_PART, ops_total_time_s, optimizer_step_ops
from moesim.ops.vocab_padding import padded_vocab_size
from moesim.precision import fp8_weight_copy_bytes, weight_quantise_cost
from moesim.specs.hardware import HardwareProfile
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec
from moesim.workload import Workload


def stage_params(wl: Workload, counts: np.ndarray, first: np.ndarray, last: np.ndarray, sched: np.ndarray,
                 tp: np.ndarray, ep: np.ndarray, etp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dense, expert) parameters per device on each stage (N, S), times the schedule's parameter copies."""
    n_cand = len(tp)
    dense_params = per_stage(counts, [np.full(n_cand, c.params_shardable) / tp + c.params_replicated
                                      for c in wl.classes])
    dense_params += np.where(first, ((wl.embedding_params / tp) + wl.position_params)[:, None], 0)
    dense_params += np.where(last, ((wl.lm_head_params / tp) + wl.final_norm_params)[:, None], 0)
    # Tied embeddings or MTP modules: the word embedding's copy on the last stage unless it is also the first (pp = 1)
    # (Megatron language_module.py setup_embeddings_and_output_layer; workload.embedding_copy_params).
    dense_params += np.where(last & ~first, (wl.embedding_copy_params / tp)[:, None], 0)
    dense_params *= sch.parameter_multiple(sched)[:, None]
    expert_params = per_stage(counts, [np.full(n_cand, c.params_experts) / (ep * etp) for c in wl.classes])
    expert_params *= sch.parameter_multiple(sched)[:, None]
    return dense_params, expert_params


def optimizer_time_s(model: ModelSpec, hw: HardwareProfile, tr: TrainingSpec, dense_params: np.ndarray,
                     expert_params: np.ndarray, dcp: np.ndarray, edp: np.ndarray, zero: np.ndarray,
                     exists: np.ndarray) -> np.ndarray:
    """Optimizer step: memory-bound pass over the device's (sharded) states; its longest stage (N,)."""
    q_p = tr.bytes_of("param")
    shard_d = np.where(zero >= 1, dcp[:, None], 1)
    shard_e = np.where(zero >= 1, edp[:, None], 1)
    local = dense_params / shard_d + expert_params / shard_e
    # The step's memory-bound operators (moesim/ops/optimizer.py): gradient-buffer reset (sharded at ZeRO >= 2),
    # grad norm, the update over the states, the master -> parameter copy; on GPUs Megatron DDP's NaN-check norm and
    # 1/(dp·cp) pre-scale of the gradient buffers before their reduction.
    buffer = dense_params / np.where(zero >= 2, dcp[:, None], 1) + expert_params / np.where(zero >= 2, edp[:, None], 1)
    opt_ops = optimizer_step_ops(tr, model.d_model, model.d_ff, local, buffer, dcp, hw.device_kind)
    # FP8 GEMMs with cached weight copies: the updated weights are quantised once per step (TE caches them
    # across micro-batches); without the cache every micro-batch casts them (terms.py, precision_terms.py).
    if tr.fp8_weight_cache:
        opt_ops.append(memory_op(OPTIMIZER_PART, "fp8_weight_quantise", tr.dtype_for("activation"),
                              weight_quantise_cost(local, tr.fp8_scaling, q_p, cached_weight_copies(tr)).bytes_moved))
    opt_time = np.max(np.where(exists, ops_total_time_s(opt_ops, hw), 0), axis=1)
    return opt_time


def stage_memory(wl: Workload, model: ModelSpec, hw: HardwareProfile, tr: TrainingSpec, terms: list[ClassTerms],
                 stages: Stages, dense_params: np.ndarray, expert_params: np.ndarray, *, sched: np.ndarray,
                 dual: np.ndarray, pair: np.ndarray, b: np.ndarray, m: np.ndarray, pp: np.ndarray, tp: np.ndarray,
                 ep: np.ndarray, etp: np.ndarray, vp: np.ndarray, dcp: np.ndarray, edp: np.ndarray,
                 zero: np.ndarray, first: np.ndarray, last: np.ndarray, exists: np.ndarray,
                 layout_in_flight: np.ndarray | None = None
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, float]:
    """(memory by part, total, stage index, usable capacity in bytes) per candidate, on its fullest stage.

    `dual` (N, 1): DualPipe candidates, whose device of stage s also holds the stage of its `pair` column
    (p − 1 − s): parameters and in-flight activations of both (see moesim.estimate.core). `layout_in_flight` (N, S):
    the in-flight count of interleaved candidates with a pipeline layout (schedules.layout_in_flight), NaN elsewhere."""
    counts, q_p = stages.counts, tr.bytes_of("param")
    n_cand = counts.shape[0]
    opt_bpp = mem.optimizer_state_bytes_per_param(tr, model.d_model, model.d_ff)
    # Without a DualPipe row every pair term is 0.0 (a + 0.0 as the masked zeros give, bit for bit; x − 0.0 is x):
    # the pair columns are not gathered (warmspeed, session 20).
    any_dual = bool(np.any(dual))
    with_pair = (lambda a: a + np.where(dual, np.take_along_axis(a, pair, axis=1), 0)) if any_dual \
        else (lambda a: a + 0.0)  # noqa: E731
    pm_mem = sch.parameter_multiple(sched)[:, None]
    dense_held, expert_held = with_pair(dense_params / pm_mem), with_pair(expert_params / pm_mem)
    if any_dual:
        dense_held = dense_held - np.where(dual & (first | last) & (pp[:, None] > 1),
                                           (wl.embedding_copy_params / tp)[:, None], 0)
    w_d, g_d, o_d = mem.model_state_bytes(dense_held, dcp[:, None], zero, tr, opt_bpp)
    w_e, g_e, o_e = mem.model_state_bytes(expert_held, edp[:, None], zero, tr, opt_bpp)
    in_flight = mem.in_flight_micro_batches(sched, m[:, None], pp[:, None], stages.index, vp[:, None])
    if layout_in_flight is not None:  # uneven chunks of a pipeline layout (interleaved): their layers held
        in_flight = np.where(np.isnan(layout_in_flight), in_flight, layout_in_flight)
    acts_mb = per_stage(counts, [t.activation_bytes for t in terms])
    vocab = padded_vocab_size(model.vocab_size, tp, tr.framework, hw.device_kind)  # Megatron's (ops/vocab_padding)
    logits = np.where(last, mem.logits_bytes(b, wl.output_tokens, vocab, tp, tr.fused_cross_entropy,
                                             tr.bytes_of("head"), wl.logit_heads)[:, None], 0)
    # The partner stage p − 1 − s holds min(m, s + 1) micro-batches (schedules.in_flight).
    pair_in_flight = np.minimum(m[:, None], stages.index + 1)
    acts = acts_mb * in_flight + logits + (np.where(
        dual, np.take_along_axis(acts_mb, pair, axis=1) * pair_in_flight + np.take_along_axis(logits, pair, axis=1), 0)
        if any_dual else 0.0)
    moe_terms = [t for t in terms if t.slots is not None]
    buffers = np.zeros(n_cand)
    if moe_terms:
        # Dispatch send and receive buffers of one MoE layer in flight (Switch §5.4 [E, C, h] sizes), sized
        # for the wider of the dispatch and combine elements (FP8 dispatch, BF16 combine: DeepSeek-V3 §3.3.4).
        q_buf = max(tr.element_bytes("dispatch"), tr.element_bytes("combine"))
        buffers = np.maximum.reduce([2 * t.slots * model.d_model * q_buf for t in moe_terms])
    framework, transients = _framework_memory(wl, model, hw, tr, stages, acts_mb, logits, buffers, tp=tp, ep=ep,
                                              etp=etp, b=b, dual=dual, pair=pair, first=first, last=last)
    # ZeRO-3 gathers one layer's parameters as this device uses them: its tp shard of the dense part
    # (over dp·cp) and its ep·etp share of the experts (over edp); current + prefetched layer.
    # Source: ZeRO, Rajbhandari et al., arXiv 1910.02054, §7.2.2 (params fetched before use, discarded after).
    layer_gathered = np.max([c.params_shardable / tp + c.params_replicated + c.params_experts / (ep * etp)
                             for c in wl.classes], axis=0)
    working = np.where(zero >= 3, 2 * layer_gathered[:, None] * q_p, 0)
    # Cached FP8 copies of the stage's FP8 GEMM weights: the Linears of its layers (attention, dense FFN, shared
    # and routed experts, MLA's duplicated down-projections); not the embedding, output head, router and norms,
    # which stay BF16 (DeepSeek-V3 arXiv 2412.19437 §3.3; Megatron's output layer is no TE Linear). All of them
    # under ZeRO-3's gathers: an upper bound there. One copy per weight where the transposed one is made every
    # micro-batch (precision_terms.cached_weight_copies).
    fp8_weights = 0.0  # without FP8 scaling and with the param_dtype copy: 0.0 (fp8_weight_copy_bytes' 0.0 · P)
    if tr.fp8_weight_cache and (tr.fp8_scaling != "none" or not tr.fp8_gemm_param_copy):
        gemm_dense = with_pair(per_stage(counts, [c.params_shardable / tp + c.params_duplicated_gemm
                                                  for c in wl.classes]))
        gemm_expert = with_pair(per_stage(counts, [c.params_experts / (ep * etp) for c in wl.classes]))
        fp8_weights = fp8_weight_copy_bytes(gemm_dense + gemm_expert, tr.fp8_scaling, cached_weight_copies(tr))
        if not tr.fp8_gemm_param_copy:
            # No param_dtype copy of those weights (DeepSeek-V3 arXiv 2412.19437 §3.3.1: the GEMMs take FP8 inputs;
            # master weights, gradients and optimizer states are what it stores in higher precision): their q_p
            # bytes leave the weights, at ZeRO-3 the sharded share model_state_bytes charged (over dp·cp, edp).
            fp8_weights = fp8_weights - q_p * (gemm_dense / np.where(zero >= 3, dcp[:, None], 1)
                                               + gemm_expert / np.where(zero >= 3, edp[:, None], 1))
    memory = {
        "weights": w_d + w_e + working + fp8_weights, "gradients": g_d + g_e, "optimizer_states": o_d + o_e,
        "activations": acts, "moe_buffers": np.broadcast_to(buffers[:, None], acts.shape),
        "framework_buffers": framework, "peak_transients": transients,
        "reserved": np.full(acts.shape, hw.memory_reserved_bytes),
    }
    total_stage = np.where(exists, sum(memory.values()), -np.inf)
    mem_stage = np.argmax(total_stage, axis=1)
    # a[i, mem_stage[i]] per candidate: one flat take (the same elements as take_along_axis, fewer instructions)
    at_mem = np.arange(n_cand) * total_stage.shape[1] + mem_stage
    pick_m = lambda a: np.take(np.ascontiguousarray(a).reshape(-1), at_mem)  # noqa: E731
    # the dispatch buffers are one figure per candidate on every stage: their own column
    memory = {k: buffers.copy() if k == "moe_buffers" else pick_m(v) for k, v in memory.items()}
    total_mem = pick_m(total_stage)
    capacity_bytes = tr.usable_memory_bytes(hw.chip.hbm_bytes)
    return memory, total_mem, pick_m(stages.index), capacity_bytes


def _framework_memory(wl: Workload, model: ModelSpec, hw: HardwareProfile, tr: TrainingSpec, stages: Stages,
                      acts_mb: np.ndarray, logits: np.ndarray, buffers: np.ndarray, *, tp: np.ndarray, ep: np.ndarray,
                      etp: np.ndarray, b: np.ndarray, dual: np.ndarray, pair: np.ndarray, first: np.ndarray,
                      last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(framework_buffers, peak_transients) per stage (N, S): Megatron-LM + TransformerEngine on GPUs
    (moesim.memory_peak); zero on other device kinds. framework_buffers is zero where training.framework is
    "none" (the transients are PyTorch's and the loss's, priced whatever the framework)."""
    shape = acts_mb.shape
    if hw.device_kind != "gpu":
        return np.zeros(shape), np.zeros(shape)
    n, h, sp = wl.output_tokens, model.d_model, tr.sequence_parallel
    v = padded_vocab_size(model.vocab_size, tp, tr.framework, hw.device_kind)  # Megatron's (ops/vocab_padding)
    q_a, q_l, fused = tr.bytes_of("activation"), tr.bytes_of("head"), tr.fused_cross_entropy
    buffers_resident = np.zeros(shape) if tr.framework == "none" else \
        _megatron_te_buffers(wl, model, tr, stages, shape, tp=tp, ep=ep, etp=etp, b=b, dual=dual, pair=pair,
                             last=last)
    loss = peak.loss_transient_bytes(b, n, v, tp, fused, q_l)
    head = peak.head_backward_excess_bytes(b, n, h, v, tp, sp, fused, q_a, q_l)
    ends = np.where(last, np.maximum(loss, head)[:, None], 0.0)  # the loss or the head's backward, last stage
    emb = peak.embedding_grad_bytes(v, h, tp, tr.bytes_of("param"))[:, None]
    emb_excess = np.where(first, emb - acts_mb - logits, 0.0)
    return buffers_resident, peak.peak_transient_bytes([ends, emb_excess], buffers[:, None])


def _megatron_te_buffers(wl: Workload, model: ModelSpec, tr: TrainingSpec, stages: Stages, shape: tuple, *,
                         tp: np.ndarray, ep: np.ndarray, etp: np.ndarray, b: np.ndarray, dual: np.ndarray,
                         pair: np.ndarray, last: np.ndarray) -> np.ndarray:
    """framework_buffers (N, S) of Megatron-LM + TransformerEngine (moesim.memory_peak): TE's dummy weight gradients,
    one per distinct weight shape a device holds, and the output layer's all-gather buffer under SP."""
    # Weight shapes depend on (tp, ep, etp) only: found on the distinct triples, read back per candidate.
    columns = [np.asarray(x, dtype=float).reshape(-1) for x in np.broadcast_arrays(tp, ep, etp)]
    first_row, row_of = grouped_rows(columns)
    tp_u, ep_u, etp_u = (c[first_row] for c in columns)
    shapes = [peak.layer_weight_shapes(model, cls, tp_u, ep_u, etp_u) for cls in wl.classes]
    # The output layer, Megatron's ColumnParallelLinear [V/t, h] (layers.py l.594: TE's dummy weight gradient too).
    vocab = padded_vocab_size(model.vocab_size, tp_u, tr.framework)  # its padded shard (moesim.ops.vocab_padding)
    shapes.append([(vocab / tp_u, np.full(len(tp_u), float(model.d_model)))])
    # Which groups a device holds, bit g for group g (the classes, then the head); a DualPipe device also its pair's.
    code = sum((stages.counts[:, :, c] > 0).astype(np.int64) << c for c in range(len(wl.classes)))
    code = code + (np.broadcast_to(last, shape).astype(np.int64) << len(wl.classes))
    if np.any(dual):  # (code | 0 is code)
        code = code | np.where(dual, np.take_along_axis(code, pair, axis=1), 0)
    dummy_wgrads = peak.distinct_shape_bytes_by_pattern(code, shapes, row_of, tr.bytes_of("param"))
    head_held = (code >> len(wl.classes)) & 1 == 1
    gather = peak.gather_buffer_bytes(b, wl.output_tokens, model.d_model, tp, tr.sequence_parallel,
                                      tr.bytes_of("activation"))
    return dummy_wgrads + np.where(head_held, gather[:, None], 0.0)
