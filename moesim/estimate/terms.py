"""Per-layer-class cost terms for a batch of candidates: compute time, FLOP, activations, collectives.

Shapes: every array is (N,) over candidates. All quantities are per device and per micro-batch.
Notation: b micro-batch sequences, n tokens per sequence in the layer's stack, t_dev tokens
entering an MoE layer on one device (b·n/tp: sequence parallelism splits tokens over tp), C expert
capacity per group (the device's tokens), r token slots the device sends (E·C padded, k·t_dev
dropless), q bytes per element.

Dense one-hot einsum dispatch (GShard Algorithm 2; Mesh-TF moe.py): per routing group of g tokens
the dispatch einsum GSEC,GSM->EGCM and the combine einsum GSEC,GECM->GSM are matmuls of 2·g·E·C·h
FLOP each (per device 2·t_dev·E·C·h each). Both run on the matrix unit: their arithmetic intensity
is about h FLOP per byte of the [g, E, C] one-hot operand (h = 768 for Switch-Base), above a TPU v3
core's ridge of 61.5 TFLOP/s / 450 GB/s ≈ 137, so they are priced as matmuls. In the backward pass
the dispatch einsum is differentiated only with respect to its tokens (the 0/1 dispatch mask is a
cast of the combine weights to bool: GShard §3.1, Mesh-TF `_rand_1_gating`), the combine einsum
with respect to the expert outputs and the combine weights (the router's gradient, Switch Eq. 2):
backward = 1 + 2 einsums against 2 forward, not 2 × 2.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moesim.arithmetic import ffn_params
from moesim.capacity import expert_capacity_array
from moesim.flops import BACKWARD_TO_FORWARD, FLOPS_PER_MAC
from moesim import memory as mem
from moesim.estimate import context_parallel as cpar
from moesim.specs.hardware import HardwareProfile
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec
from moesim.estimate.class_terms import MOE_PARTS, ClassTerms, CommCall, expand
from moesim.estimate.pricing import grouped_rows
from moesim.megatron_rules import runs_megatron_te
from moesim.ops.base import ATTENTION_BACKWARD_TO_FORWARD, PARTS, Op, gemm, memory
from moesim.estimate.selective import (core_recompute_code, moe_recomputed_ops, recomputed, recomputed_ops,
                                       stored_inputs)
from moesim.estimate.mla_tp_comms import MLA_GATHER, MLA_SCATTER, MLA_WGRAD_GATHER, mla_sp_widths
from moesim.estimate.shared_tp_comms import layer_tp_extras  # amax all-reduces, shared experts' tp calls
from moesim.estimate.precision_terms import (
    activation_dequantise_bytes, activation_quantise_bytes, activation_recompute_bytes, attention_output_cast_bytes,
    deepseek_casts_apply, norm_fed_cast_elements, quantise_parts_bytes, quantised_elements, sp_gather_element_bytes,
    te_cast_kernels, te_casts_apply, te_shard_casts, up_projection_cast_elements, weight_cast_bytes,
    weight_transpose_parts_bytes, UP_PROJ_CASTS, UP_PROJ_QUANTISE)
from moesim.collectives.dispatch import routing_shape
from moesim.ops.layer import FLEX_BACKENDS, LayerOps, backward_ops, logits_ops
from moesim.ops.mcore_moe import moe_impl, probs_all_to_all_calls
from moesim.ops.price import op_time_s, ops_time_by_part, ops_time_by_part_shared
from moesim.ops.sm_share import SHARED_KINDS, overlapped_compute_share, shared_extra_s, shared_time_s
from moesim.ops.vocab import embedding_ops
from moesim.workload import LayerClass

READ_WRITE = 2  # a copy reads and writes every byte
# Backward einsums per forward einsum of the dense dispatch (module docstring): the dispatch einsum's
# gradient w.r.t. its tokens only (its operator has no wgrad, moesim.ops.layer); the combine einsum's
# w.r.t. expert outputs and combine weights (dgrad and wgrad).
DISPATCH_EINSUM_BACKWARD = 1


class TermBuilder:
    """Builds ClassTerms for each layer class from the candidates' degrees.

    Times come from one operator list per layer class and pass (moesim.ops.layer), priced by
    moesim.ops.price; the simulator (moesim.des.costs) takes the same per-part times. The operator
    lists are built once per distinct (b, tp, ep, etp, recompute, capacity factor) row of the
    candidates (a layout search has few) and the results expanded back to every candidate."""

    def __init__(self, model: ModelSpec, hardware: HardwareProfile, training: TrainingSpec, b, tp, ep, etp,
                 recompute, capacity_factor, cp=None, cp_comm=None) -> None:
        """`b` is the sequences per micro-batch a device works on: with context parallelism the
        micro-batch's b sequences over cp (moesim.estimate.context_parallel.tokens_divisor)."""
        self.model, self.hw, self.tr = model, hardware, training
        self.b, self.tp, self.ep, self.etp = b, tp, ep, etp
        self.cp = np.ones_like(np.asarray(b, dtype=float)) if cp is None else np.asarray(cp, dtype=float)
        self.cp_comm = np.zeros(len(self.cp), dtype=np.int64) if cp_comm is None else np.asarray(cp_comm)
        self.recompute, self.cf = recompute, capacity_factor
        # Precision per tensor class (issue 12): the GEMM dtype's peak (MFU), activations on the wire (tp, pp) in the
        # activation dtype, dispatch bytes with FP8 scales, stored GEMM inputs in activation_storage (moesim.ops.dtypes)
        self.peak = hardware.chip.peak_for(training.dtype_for("gemm"))
        self.q_a = training.bytes_of("activation")  # the SP gathers': FP8 shards under TE (sp_gather_element_bytes)
        self.q_gather = sp_gather_element_bytes(training, runs_megatron_te(training.framework, hardware.device_kind))
        self.q_dispatch = training.element_bytes("dispatch")
        self.q_store = training.element_bytes("activation_storage")
        self.hbm_bw = hardware.chip.hbm_bw_bytes_per_s * hardware.efficiency.memory_bandwidth
        self.ops = LayerOps(model, training, b, tp, ep, etp, hardware.device_kind, hardware.gpu_arch)
        columns = [np.asarray(x, dtype=float).reshape(-1) for x in
                   np.broadcast_arrays(b, tp, ep, etp, recompute, capacity_factor)]
        self._n = len(columns[0])
        self._inverse = None
        if self._n > 1:
            first, inverse = grouped_rows(columns)
            if len(first) < self._n:
                self._inverse = inverse
                b, tp, ep, etp, recompute, capacity_factor = (c[first] for c in columns)
        self._rows = (b, tp, ep, etp, recompute, capacity_factor)

    def expert_ffn_time_s(self, slots, backward: bool = False, share: float = 1.0):
        """Time of the routed experts' operators on one device for `slots` token slots (forward, or with
        `backward` their dgrad, wgrad and activation backward): the expert_ffn part of the operator list; at
        `share` of the chip's SMs for the compute-bound ones (moesim.ops.sm_share.shared_time_s)."""
        fwd = self.ops.experts(slots)
        ops = backward_ops(fwd) if backward else fwd
        if self.tr.cuda_graph_scope:  # moesim.ops.graphs
            from moesim.ops.graphs import graphed  # imported where used (session 22)

            ops = graphed(ops, self.tr.cuda_graph_scope, True, self.tr.moe_a2a_overlap)
        if share == 1.0:
            return sum(np.asarray(op_time_s(op, self.hw), dtype=float) for op in ops)
        launch_s = self.hw.efficiency.kernel_launch_s or 0.0
        return sum(np.asarray(shared_time_s(op.kind, np.asarray(op_time_s(op, self.hw), dtype=float),
                                            op.launch_count * launch_s, share), dtype=float) for op in ops)

    def logits_time_s(self, output_tokens: int, heads: int = 1):
        """Forward + backward time of the output head on the last stage (moesim.ops.layer.logits_ops), once per
        head: the main model's and one per MTP module (Workload.logit_heads)."""
        return heads * self._priced(logits_ops, output_tokens, backward_only=False)

    def logits_bwd_time_s(self, output_tokens: int, heads: int = 1):
        """Backward part of `logits_time_s`."""
        return heads * self._priced(logits_ops, output_tokens, backward_only=True)

    def embedding_time_s(self, tokens: int, backward_only: bool = False):
        """Forward + backward (or backward only: all dW) time of the first stage's input embedding (moesim.ops.vocab)."""
        return self._priced(embedding_ops, tokens, backward_only)

    def _priced(self, build_ops, tokens: int, backward_only: bool):
        """Σ op_time_s of build_ops(model, training, b, tp, tokens, device kind)'s operators, on every candidate."""
        b, tp = self._rows[0], self._rows[1]
        fwd, bwd = build_ops(self.model, self.tr, b, tp, tokens, self.hw.device_kind)
        ops = bwd if backward_only else fwd + bwd
        if self.tr.cuda_graph_scope:
            from moesim.ops.graphs import FULL_ITERATION, graphed

            if FULL_ITERATION in self.tr.cuda_graph_scope:  # the head and embedding replay in the step's graph
                ops = graphed(ops, self.tr.cuda_graph_scope, False)
        n = len(np.asarray(b).reshape(-1))
        t = sum((np.broadcast_to(np.asarray(op_time_s(op, self.hw), dtype=float), (n,)) for op in ops), np.zeros(n))
        if self._inverse is not None:
            return t[self._inverse]
        return t.reshape(np.shape(self.b)) if np.ndim(self.b) else t

    def build(self, cls: LayerClass) -> ClassTerms:
        if self._inverse is None:
            return self._context_parallel(cls, self._build(cls, *self._rows))
        return self._context_parallel(cls, expand(self._build(cls, *self._rows), self._inverse))

    def memory_terms(self, cls: LayerClass) -> ClassTerms:
        """What stage memory reads of build(cls), the same figures: its activation bytes and, for an MoE layer, the
        routing's tokens, capacity and slots; no operator list is built or priced (times and FLOP are zeros).
        A layout search checks memory with these before it prices the layouts that fit (estimate.core)."""
        b, tp, ep, etp, rec, cf = self._rows
        routing = self._routing(cls, b, tp, cf) if cls.is_moe else None
        zero = np.zeros_like(b, dtype=float)
        terms = ClassTerms(zero, zero, zero, zero, zero, self._activation_bytes(cls, b, tp, etp, rec, routing))
        if routing is not None:
            terms.tokens_per_device, terms.capacity, terms.slots = routing
        return self._context_parallel(cls, terms if self._inverse is None else expand(terms, self._inverse))

    def _context_parallel(self, cls: LayerClass, terms: ClassTerms) -> ClassTerms:
        """The CP collectives of every attention block, the ring's KV buffers and a2a's second attention output, on
        every candidate row (moesim.estimate.context_parallel; the layer itself is priced on b/cp sequences)."""
        if not np.any(self.cp > 1):
            return terms
        model, b, n, h = self.model, np.asarray(self.b, dtype=float), cls.tokens, self.model.d_model
        full = np.asarray(self.recompute) == mem.RECOMPUTE_CODES["full"]
        kv_width = model.attention.num_kv_heads * model.attention.head_dim
        blocks = 2 if cls.cross_attention else 1
        for name, op, size, calls in cpar.comm_calls(b * self.cp, n, self.cp, self.cp_comm, h, kv_width, self.q_a,
                                                    full):
            terms.comms.append(CommCall(name, "cp", op, size / self.tp, calls * blocks))
        ring = (self.cp_comm == cpar.CP_COMM_CODES["p2p"]) & (self.cp > 1)
        terms.activation_bytes = terms.activation_bytes + cpar.ring_buffer_bytes(
            b * self.cp, n, self.cp, kv_width, self.q_a) * ring / self.tp
        # a2a keeps the attention output before and after its all-to-all; a recomputed core (selective with
        # core_attn) or layer (full) saves neither copy of the CP function (Megatron's checkpointed core_attention);
        # selective without core_attn keeps the core's state as no recomputation would (selective.core_recompute_code)
        a2a = (self.cp_comm == cpar.CP_COMM_CODES["a2a"]) & (self.cp > 1) & (
            core_recompute_code(self.tr, self.recompute) == mem.RECOMPUTE_CODES["none"])
        out_width = model.attention.num_heads * (model.attention.v_head_dim or model.attention.head_dim)
        terms.activation_bytes = terms.activation_bytes + blocks * cpar.a2a_output_copy_bytes(
            b * self.cp, n, self.cp, out_width, self.q_a) * a2a / self.tp
        return terms

    def _build(self, cls: LayerClass, b, tp, ep, etp, rec, cf) -> ClassTerms:
        model = self.model
        h, n, fl = model.d_model, cls.tokens, cls.flops
        n_rows = len(np.asarray(b).reshape(-1))
        ops = LayerOps(model, self.tr, b, tp, ep, etp, self.hw.device_kind, self.hw.gpu_arch)
        att_proj, scores = b * fl.attention_proj / tp, b * fl.attention_scores / tp
        fwd_flops = att_proj + scores
        padded_extra = np.zeros_like(b)
        blocks = 2 if cls.cross_attention else 1  # attention blocks needing tp collectives
        routing = self._routing(cls, b, tp, cf) if cls.is_moe else None
        act = self._activation_bytes(cls, b, tp, etp, rec, routing)
        zero = np.zeros_like(b, dtype=float)
        terms = ClassTerms(zero, zero, zero, fwd_flops, fwd_flops, act)
        fwd_ops = ops.attention(cls)
        if fl.mtp_projection:  # an MTP module's M_k GEMM [b·n, 2h]·[2h, h/tp], before its block (DeepSeek-V3 eq. 21)
            fwd_ops[1:1] = [ops.mtp_norms(cls),
                            gemm("attention", "mtp_projection", self.tr.dtype_for("gemm"), b * n, h / tp, 2 * h)]
            fwd_flops = fwd_flops + b * fl.mtp_projection / tp
        dense_einsum = cls.is_moe and self.tr.dispatch_impl == "dense_einsum"
        if not cls.is_moe:
            fwd_ops += ops.dense_ffn(cls)
            fwd_flops = fwd_flops + b * fl.dense_ffn / tp
            blocks += 1
        else:
            moe_ops, fwd_flops, padded_extra = self._moe(cls, terms, ops, fwd_flops, b, tp, rec, routing)
            fwd_ops += moe_ops
        # Host overhead: once per layer per pass, forward and backward alike (and in a full recompute,
        # which replays the forward); modeling.md §6 "host overheads: per-layer fixed cost".
        overhead = np.full_like(b, self.hw.efficiency.layer_overhead_s, dtype=float)
        host = Op("layer_overhead", "layer_overhead", "host", "fwd", "float32", time_s=overhead, kernels=0.0)
        fwd_ops = [host] + fwd_ops
        bwd_ops = [replace(host, pass_="bwd")] + backward_ops(fwd_ops[1:])
        extra_fwd, extra_bwd = self._precision_ops(cls, b, tp, ep, etp, terms.slots)
        fwd_ops, bwd_ops = fwd_ops + extra_fwd, bwd_ops + extra_bwd
        if self.tr.cuda_graph_scope:  # captured parts launch one graph a pass, not each kernel (moesim.ops.graphs)
            from moesim.ops.graphs import graphed

            fwd_ops, bwd_ops = (graphed(o, self.tr.cuda_graph_scope, cls.is_moe, self.tr.moe_a2a_overlap)
                                for o in (fwd_ops, bwd_ops))
        terms.ops_fwd, terms.ops_bwd = fwd_ops, bwd_ops
        share = overlapped_compute_share(self.hw, self.tr, ep, etp)
        if np.any(share != 1.0):  # the all-to-all's kernels run only where the experts are split over devices (ep > 1)
            share = np.broadcast_to(np.where(np.asarray(ep) > 1, share, 1.0), (n_rows,)).astype(float)
        if np.all(share == 1.0):
            fwd_parts = ops_time_by_part(fwd_ops, self.hw, n_rows)
            bwd_parts = ops_time_by_part(bwd_ops, self.hw, n_rows)
        else:  # the same operators beside the all-to-all's kernels too (an overlapped pair: moesim.ops.sm_share)
            fwd_parts, fwd_pair = ops_time_by_part_shared(fwd_ops, self.hw, n_rows, share)
            bwd_parts, bwd_pair = ops_time_by_part_shared(bwd_ops, self.hw, n_rows, share)
        order = [p for p in PARTS if p in fwd_parts or (cls.is_moe and p in MOE_PARTS)]
        zeros = np.zeros(n_rows)
        terms.fwd_parts_s = {p: fwd_parts.get(p, zeros) for p in order}
        terms.bwd_parts_s = {p: bwd_parts.get(p, zeros) for p in order}
        if not np.all(share == 1.0):
            terms.fwd_pair_parts_s = {p: fwd_pair.get(p, zeros) for p in order}
            terms.bwd_pair_parts_s = {p: bwd_pair.get(p, zeros) for p in order}
        terms.fwd_time_s = sum(terms.fwd_parts_s.values())
        terms.bwd_time_s = sum(terms.bwd_parts_s.values())
        terms.weight_grad_s = sum((np.broadcast_to(np.asarray(op_time_s(op, self.hw), dtype=float), (n_rows,))
                                   for op in bwd_ops if op.pass_ == "wgrad"), np.zeros(n_rows))
        full = rec == mem.RECOMPUTE_CODES["full"]
        selective = rec == mem.RECOMPUTE_CODES["selective"]
        core = next(op for op in fwd_ops if op.kind == "attention")
        score_time = np.broadcast_to(np.asarray(op_time_s(core, self.hw), dtype=float), (n_rows,))
        redo = recomputed_ops(self.tr, fwd_ops)  # the selective modules' forward operators, priced again
        redo_time = sum((np.broadcast_to(np.asarray(op_time_s(op, self.hw), dtype=float), (n_rows,)) for op in redo),
                        np.zeros(n_rows))
        redo_flops = sum((op.flops for op in redo if op.kind != "memory"), np.zeros(n_rows))
        terms.recompute_time_s = np.where(full, terms.fwd_time_s, np.where(selective, redo_time, 0.0))
        moe_redo = moe_recomputed_ops(self.tr, fwd_ops) if cls.is_moe else []
        if moe_redo:
            terms.moe_recompute_parts_s = {p: np.where(selective, t, 0.0)
                                           for p, t in ops_time_by_part(moe_redo, self.hw, n_rows).items()}
        if not np.all(share == 1.0):  # DeepSeek-V3 §3.2.1 Figure 4: a backward chunk's recompute beside DeepEP's SMs
            launch_s = self.hw.efficiency.kernel_launch_s or 0.0
            moe_ids = {id(op) for op in moe_redo}
            redo_extra = sum((shared_extra_s(np.broadcast_to(np.asarray(op_time_s(op, self.hw), dtype=float),
                                                             (n_rows,)), op.launch_count * launch_s, share)
                              for op in redo if op.kind in SHARED_KINDS and id(op) not in moe_ids), np.zeros(n_rows))
            full_pair = sum(terms.fwd_pair_parts_s.values())
            terms.recompute_pair_time_s = np.where(full, full_pair, np.where(selective, redo_time + redo_extra, 0.0))
        unpadded = fwd_flops - padded_extra
        terms.model_flops = (1 + BACKWARD_TO_FORWARD) * unpadded
        # Hardware FLOPs are what the kernels execute, the work their time is priced on: the attention core's
        # computed tiles (a causal mask skips about half the score matrix, moesim/ops/attention.py) and its
        # flash backward at 2.5x forward (moesim/ops/base.py), where model FLOPs count the full matrix and 2x
        # (PaLM convention). So HFU <= the highest operator efficiency <= 1; MFU <= HFU holds for full masks
        # only (a masked attention's model FLOPs include skipped tiles).
        executed = core.flops
        fwd_executed = fwd_flops - scores + executed
        recompute_flops = np.where(full, fwd_executed, np.where(selective, redo_flops, 0.0))
        einsum_saved = (BACKWARD_TO_FORWARD - DISPATCH_EINSUM_BACKWARD) * terms.dispatch_einsum_flops \
            if dense_einsum else 0.0
        terms.hardware_flops = (1 + BACKWARD_TO_FORWARD) * fwd_executed - einsum_saved + recompute_flops \
            + (ATTENTION_BACKWARD_TO_FORWARD - BACKWARD_TO_FORWARD) * executed
        # "mlp": the checkpointed dense MLP re-runs its gather and scatter (or all-reduce) in backward (selective.py)
        mlp_redo = np.where(recomputed(self.tr, rec, "mlp") & (not cls.is_moe), 1, 0)
        self._tp_comms(terms, cls, blocks, full, b, mlp_redo)
        terms.comms += layer_tp_extras(self, cls, blocks, full, b, mlp_redo, recomputed(self.tr, rec, "moe"))
        terms.attention_core_time_s = score_time
        return terms

    def _precision_ops(self, cls: LayerClass, b, tp, ep, etp, slots) -> tuple[list[Op], list[Op]]:
        """(forward, backward) memory-bound operators of the precision recipe (issue 12): FP8 quantise casts of
        GEMM inputs and output gradients, the MoE activation recomputed in backward, FP8 weight casts every
        micro-batch without a weight cache; each in the part whose GEMMs it feeds (precision_terms.py)."""
        tr, model, dt = self.tr, self.model, self.tr.dtype_for("activation")
        slots = slots if slots is not None else 0.0
        deepseek_casts = deepseek_casts_apply(tr)
        te = runs_megatron_te(tr.framework, self.hw.device_kind)
        elements = quantised_elements(model, cls, b, tp, etp, slots, deepseek_casts, te_casts_apply(tr, te),
                                      tr.sequence_parallel, te_shard_casts(tr, te))
        fwd_b, bwd_b = quantise_parts_bytes(tr, elements, norm_fed_cast_elements(model, tr, cls, b, tp, te))
        up_ops = []
        if deepseek_casts and up_projection_cast_elements(model, cls, 1, 1):
            # MLA's up-projections' input casts, an operator of their own that mla_up_proj recomputes (selective.py),
            # at the casts' measured rate where a profile has one
            up_b = quantise_parts_bytes(tr, {"attention": (up_projection_cast_elements(model, cls, b, tp), 0.0)})[0]
            fwd_b["attention"] = fwd_b["attention"] - up_b["attention"]
            up_ops = [replace(memory("attention", UP_PROJ_QUANTISE, dt, up_b["attention"], kernels=UP_PROJ_CASTS),
                              meta={"table_op": "fp8_quantise"})]
        # one kernel a part unless Megatron-LM + TE runs current scaling or MXFP8 (precision_terms.te_cast_kernels)
        kernels = te_cast_kernels(model, tr, cls, ep, te)
        fwd = [memory(part, "fp8_quantise", dt, nbytes, kernels=kernels.get(part, (1.0, 1.0))[0])
               for part, nbytes in fwd_b.items()] + up_ops
        bwd = [memory(part, "fp8_quantise", dt, nbytes, kernels=kernels.get(part, (1.0, 1.0))[1], pass_="bwd")
               for part, nbytes in bwd_b.items()]
        for part, nbytes in activation_quantise_bytes(model, tr, cls, b, tp, etp, slots).items():
            fwd.append(memory(part, "moe_activation_quantise", dt, nbytes))
        for part, nbytes in activation_dequantise_bytes(model, tr, cls, b, tp, etp, slots).items():
            bwd.append(memory(part, "moe_activation_dequantise", dt, nbytes, pass_="bwd"))
        for part, nbytes in activation_recompute_bytes(model, tr, cls, b, tp, etp, slots).items():
            bwd.append(memory(part, "moe_activation_recompute", dt, nbytes, pass_="bwd"))
        for part, nbytes in weight_cast_bytes(tr, cls, tp, ep, etp).items():
            fwd.append(memory(part, "fp8_weight_cast", dt, nbytes))
        fwd_t, bwd_t = weight_transpose_parts_bytes(tr, cls, tp, ep, etp)
        fwd += [memory(part, "fp8_weight_transpose", dt, nbytes) for part, nbytes in fwd_t.items()]
        bwd += [memory(part, "fp8_weight_transpose", dt, nbytes, pass_="bwd") for part, nbytes in bwd_t.items()]
        if tr.attention_output_storage_bits:  # its own storage format: a cast forward, a dequantise backward
            out_fwd, out_bwd = attention_output_cast_bytes(model, tr, cls, b, tp)
            fwd.append(memory("attention", "attention_output_cast", dt, out_fwd))
            bwd.append(memory("attention", "attention_output_dequantise", dt, out_bwd, pass_="bwd"))
        return fwd, bwd

    def _routing(self, cls: LayerClass, b, tp, cf) -> tuple:
        """(t_dev, C, r) of an MoE layer on one device: the tokens entering it, the expert capacity per routing
        group and the token slots it sends (module docstring)."""
        moe = self.model.moe
        E, k = moe.num_experts, moe.top_k
        t_dev = b * cls.tokens / tp
        # Routing groups (Switch §2.2 / T5X GROUP_SIZE): capacity is set per group of tokens.
        group = np.minimum(moe.group_size_tokens, t_dev) if moe.group_size_tokens else t_dev
        groups = t_dev / group
        capacity = expert_capacity_array(np.floor(group), E, k, cf, moe.capacity_rule, moe.min_expert_capacity)
        dropless = np.isnan(cf)
        slots = np.where(dropless, k * t_dev, groups * E * capacity)
        return t_dev, capacity, slots

    def _received_tokens(self, t_dev, ep):
        """Tokens one device receives from DeepEP's or HybridEP's dispatch: t_dev · Γ, each token once per GPU of
        the EP group it reaches (moesim.collectives.dispatch.routing_shape, node-limited where the model limits
        nodes); None for the other backends (their dispatch sends k·t_dev slots)."""
        if self.tr.dispatch_backend not in FLEX_BACKENDS or not self.model.moe:
            return None
        moe, g = self.model.moe, self.hw.interconnect[0].domain_devices
        eps = np.asarray(ep, dtype=float)
        gamma = {e: routing_shape(moe.num_experts, moe.top_k, int(e), g, moe.max_nodes_per_token).distinct_gpus
                 for e in np.unique(eps)}
        return t_dev * np.vectorize(gamma.__getitem__, otypes=[float])(eps)

    def _activation_bytes(self, cls: LayerClass, b, tp, etp, rec, routing) -> np.ndarray:
        """Bytes one layer of `cls` keeps for its backward per device per micro-batch (a full recompute: its input
        only); `routing`: _routing's (t_dev, C, r) of an MoE layer, None for a dense one. Context parallelism's
        ring buffers are added by _context_parallel."""
        model, tr = self.model, self.tr
        h, n = model.d_model, cls.tokens
        sp, q_st = tr.sequence_parallel, self.q_store
        kept = stored_inputs(model, tr, rec, q_st)  # recompute_modules, dropout (selective.py)
        att = model.attention  # the output projection's input: a·d_v per token (moesim/ops/layer.py out_proj)
        att_kw = dict(q_input=kept.q_gemm_input, mask=kept.mask, qkv_per_token=kept.qkv_per_token,
                      proj_in_per_token=att.num_heads * (att.v_head_dim or att.head_dim),
                      q_proj=tr.attention_output_storage_bytes, kernel=tr.attention_kernel)
        rec_core = core_recompute_code(tr, rec)  # selective without core_attn keeps the core's saved state
        act = mem.attention_activation_bytes(b, n, n, h, model.attention.num_heads, tp, sp, rec_core, q_st, **att_kw)
        if cls.cross_attention:
            act = act + mem.attention_activation_bytes(b, n, cls.encoder_tokens, h, model.attention.num_heads,
                                                       tp, sp, rec_core, q_st, **att_kw)
        act = act + mem.norm_activation_bytes(b, n, h, tp, sp, 3 if cls.cross_attention else 2)
        if cls.mtp:
            act = act + mem.mtp_input_activation_bytes(b, n, h, tp, sp, q_st, kept.q_gemm_input)
        if routing is None:
            mlp = mem.mlp_activation_bytes(b, n, h, model.d_ff, tp, sp, model.ffn_kind, q_st, False,
                                           kept.q_gemm_input, kept.mask)
            # "mlp": a checkpoint keeps the MLP's input only (a norm input, counted above); its dropout mask stays
            checkpointed = mem.mlp_activation_bytes(b, n, h, 0, tp, sp, model.ffn_kind, q_st, False, 0.0, kept.mask)
            act = act + np.where(recomputed(tr, rec, "mlp"), checkpointed, mlp)
        else:
            moe = model.moe
            t_dev, capacity, slots = routing
            dense_einsum = tr.dispatch_impl == "dense_einsum"
            args = (t_dev, slots, h, moe.expert_d_ff, moe.num_experts, etp, model.ffn_kind, dense_einsum, capacity,
                    q_st)
            experts = mem.moe_activation_bytes(*args, tr.moe_activation_recompute, kept.q_router_input, kept.mask,
                                               tr.moe_probs_in_activation)
            # "moe_act": FC1's output kept as computed (q_a), FC2's input and the expert outputs not (selective.py)
            moe_act = mem.moe_activation_bytes(*args, True, kept.q_router_input, kept.mask, True,
                                               q_act_input=tr.bytes_of("activation"))
            # "moe": the layer's checkpoint keeps its input (the router's, q_in) and the dropout mask of the
            # bias-dropout-add after it (outside the checkpoint) only (selective.py)
            layer_checkpoint = (kept.q_router_input + kept.mask) * t_dev * h
            moe_layer = recomputed(tr, rec, "moe")
            act = act + np.where(moe_layer, layer_checkpoint, np.where(recomputed(tr, rec, "moe_act"), moe_act,
                                                                       experts))
            if moe.num_shared_experts:
                shared = mem.mlp_activation_bytes(b, n, h, moe.num_shared_experts * moe.shared_expert_d_ff, tp,
                                                  sp, model.ffn_kind, q_st, tr.moe_activation_recompute,
                                                  kept.q_gemm_input, kept.mask)
                # "shared_experts" (or "moe"): their checkpoint's input is the router's, counted above
                act = act + np.where(moe_layer | recomputed(tr, rec, "shared_experts"), 0.0, shared)
        full = rec == mem.RECOMPUTE_CODES["full"]
        return np.where(full, mem.full_recompute_bytes(b, n, h, tp, sp), act)

    def _moe(self, cls: LayerClass, terms: ClassTerms, ops: LayerOps, fwd_flops, b, tp, rec, routing):
        model, moe = self.model, self.model.moe
        h, fl = model.d_model, cls.flops
        E = moe.num_experts
        etp = ops.etp
        t_dev, capacity, slots = routing
        per_expert = ffn_params(h, moe.expert_d_ff, model.ffn_kind)
        expert_flops = FLOPS_PER_MAC * slots * per_expert
        router = b * fl.router / tp
        shared = b * fl.shared_experts / tp
        padded_extra = expert_flops - b * fl.experts / tp
        fwd_flops = fwd_flops + expert_flops + router + shared
        dense_einsum = self.tr.dispatch_impl == "dense_einsum"
        permute, unpermute = ops.dispatch(slots, t_dev, capacity, dense_einsum, self._received_tokens(t_dev, ops.ep))
        if dense_einsum:
            # GShard Algorithm 2 dispatch and combine einsums: 2·t·E·C·h FLOP each (Tutel App. B), on
            # the matrix unit (module docstring).
            einsum = 2 * FLOPS_PER_MAC * t_dev * E * capacity * h
            fwd_flops = fwd_flops + einsum
            padded_extra = padded_extra + einsum
            terms.dispatch_einsum_flops = einsum / 2
        moe_ops = (ops.router(cls, t_dev) + permute + ops.experts(slots) + unpermute + ops.moe_residual(cls)
                   + ops.shared_experts(cls))
        terms.slots, terms.capacity, terms.tokens_per_device = slots, capacity, t_dev
        full = rec == mem.RECOMPUTE_CODES["full"]
        # the forward's collectives once more under a full recompute or the "moe" checkpoint (Megatron-LM 23e00ed0
        # moe_layer.py l.265-286: dispatch and combine inside custom_forward, re-run in backward)
        extra = np.where(full | recomputed(self.tr, rec, "moe"), 1, 0)
        q_c = self.tr.element_bytes("combine")
        # Dispatch and combine all-to-alls, forward and backward (Switch §5.4; FasterMoE §3.3: 4 per layer).
        terms.comms.append(CommCall("ep_all_to_all_dispatch", "ep", "all_to_all", slots * h * self.q_dispatch,
                                    2 + extra))
        terms.comms.append(CommCall("ep_all_to_all_combine", "ep", "all_to_all", slots * h * q_c, 2 + extra))
        if moe.router_impl:  # Megatron's alltoall dispatcher sends the probabilities in a call of their own
            impl = moe_impl(moe.router_impl)  # (mcore_moe.toml; none where DeepEP / HybridEP carry them: mcore_moe.py)
            if probs_calls := probs_all_to_all_calls(impl, self.tr.dispatch_backend):
                terms.comms.append(CommCall("ep_all_to_all_probs", "ep", "all_to_all",
                                            slots * impl.probs_bytes_per_slot, probs_calls * (2 + extra)))
        gathered = slots * etp * h
        # Expert tensor parallelism: A2A(EP) → AG(ETP) → experts → RS(ETP) → A2A(EP) (MCore token_dispatcher);
        # the gather moves dispatched tokens (dispatch dtype), the scatter expert outputs (combine dtype).
        terms.comms.append(CommCall("etp_all_gather", "etp", "all_gather", gathered * self.q_dispatch, 2 + extra))
        terms.comms.append(CommCall("etp_reduce_scatter", "etp", "reduce_scatter", gathered * q_c, 2 + extra))
        return moe_ops, fwd_flops, padded_extra

    def _tp_comms(self, terms: ClassTerms, cls: LayerClass, blocks: int, full, b, mlp_redo=0) -> None:
        """Megatron TP: per block an all-reduce forward and one backward, or with sequence parallelism an
        all-gather + reduce-scatter of the same volume (Korthikanti §4.2.2). With sequence parallelism the
        column-parallel GEMM keeps only its sequence shard of the input for backward and all-gathers it once
        more there for its weight gradient (Megatron-LM core/tensor_parallel/layers.py,
        LinearWithGradAccumulationAndAsyncCommunication.backward; TE's Linear likewise): tp_all_gather_wgrad, one per
        block per micro-batch; under TE + FP8 the gathers carry FP8 shards (sp_gather_element_bytes). `mlp_redo`: 1
        where a checkpointed dense MLP runs its forward again in backward (module "mlp"), its gather and scatter too."""
        size, calls = b * cls.tokens * self.model.d_model * self.q_a, blocks * (2 + np.where(full, 1, 0))
        gsize = b * cls.tokens * self.model.d_model * self.q_gather
        if self.tr.sequence_parallel:
            mla = mla_sp_widths(self.model)
            if mla is None:
                terms.comms.append(CommCall("tp_all_gather", "tp", "all_gather", gsize, calls + mlp_redo))
                terms.comms.append(CommCall("tp_reduce_scatter", "tp", "reduce_scatter", size, calls + mlp_redo))
                terms.comms.append(CommCall("tp_all_gather_wgrad", "tp", "all_gather", gsize,
                                            blocks * np.ones_like(calls)))
                return
            # MLA under SP (Megatron-LM 23e00ed0 multi_latent_attention.py get_query_key_value_tensors): the
            # duplicated down-projections read the layer input's shard, nothing gathers it; the up-projections
            # gather the latents and k_pos_emb (l.569), backward their reduce-scatters and the up-projections'
            # wgrad re-gathers; the out-projection's reduce-scatter (and backward gather) stays h (mla_sp_widths).
            gathered, wgrad = mla
            per_token = b * cls.tokens * self.q_a
            others = blocks - 1  # one MLA self-attention block per layer; the rest (the dense MLP) as above
            once = np.ones_like(calls)
            terms.comms.append(CommCall("tp_all_gather", "tp", "all_gather", gsize,
                                        others * (calls / blocks) + once + mlp_redo))
            terms.comms.append(CommCall("tp_reduce_scatter", "tp", "reduce_scatter", size,
                                        others * (calls / blocks) + 1 + np.where(full, 1, 0) + mlp_redo))
            if others:
                terms.comms.append(CommCall("tp_all_gather_wgrad", "tp", "all_gather", gsize, others * once))
            terms.comms.append(CommCall(MLA_GATHER, "tp", "all_gather", per_token * gathered,
                                        once + np.where(full, 1, 0)))
            terms.comms.append(CommCall(MLA_SCATTER, "tp", "reduce_scatter", per_token * gathered, once))
            terms.comms.append(CommCall(MLA_WGRAD_GATHER, "tp", "all_gather", per_token * wgrad, once))
        else:
            terms.comms.append(CommCall("tp_all_reduce", "tp", "all_reduce", size, calls + mlp_redo))
