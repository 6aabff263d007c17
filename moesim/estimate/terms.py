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

from dataclasses import dataclass, field

import numpy as np

from moesim.arithmetic import ffn_matrices, ffn_params
from moesim.capacity import expert_capacity_array
from moesim.flops import BACKWARD_TO_FORWARD, FLOPS_PER_MAC
from moesim import memory as mem
from moesim.estimate.selective import recompute_extra, stored_inputs
from moesim.estimate.precision_terms import (
    activation_recompute_s, quantise_parts_s, quantised_elements, weight_cast_s,
)
from moesim.specs.hardware import HardwareProfile
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec
from moesim.workload import LayerClass

ATTENTION_PROJECTIONS = 4  # Q, K, V, O matmuls per attention block
PERMUTE_PASSES = 2  # permute before dispatch, unpermute after combine (Tutel App. B index dispatch)
READ_WRITE = 2  # a copy reads and writes every byte
# Backward einsums per forward einsum of the dense dispatch (module docstring): the dispatch einsum's
# gradient w.r.t. its tokens only; the combine einsum's w.r.t. expert outputs and combine weights.
DISPATCH_EINSUM_BACKWARD = 1
COMBINE_EINSUM_BACKWARD = 2


@dataclass
class CommCall:
    """A collective issued per layer of a class per micro-batch."""

    name: str
    axis: str
    op: str
    size_bytes: np.ndarray
    calls: np.ndarray  # per layer per micro-batch


@dataclass
class ClassTerms:
    """Cost terms of one layer of a class, per device per micro-batch."""

    fwd_time_s: np.ndarray
    bwd_time_s: np.ndarray
    recompute_time_s: np.ndarray
    model_flops: np.ndarray  # fwd + bwd, no padding or recompute
    hardware_flops: np.ndarray  # what the device executes: padding, einsum dispatch, recompute
    activation_bytes: np.ndarray
    comms: list[CommCall] = field(default_factory=list)
    slots: np.ndarray | None = None
    capacity: np.ndarray | None = None
    tokens_per_device: np.ndarray | None = None
    dispatch_einsum_flops: np.ndarray | float = 0.0  # forward FLOP of the dense dispatch einsum (one of two)
    # Forward and backward time by MoE pipeline stage (layer_overhead, attention, dense_ffn, router,
    # permute, expert_ffn, unpermute, shared_experts), in execution order; they sum to fwd/bwd_time_s.
    # layer_overhead is the profile's fixed host cost per layer per pass (the same both ways).
    # The simulator (moesim.des) runs them as separate kernels.
    fwd_parts_s: dict[str, np.ndarray] = field(default_factory=dict)
    bwd_parts_s: dict[str, np.ndarray] = field(default_factory=dict)


class TermBuilder:
    """Builds ClassTerms for each layer class from the candidates' degrees."""

    def __init__(self, model: ModelSpec, hardware: HardwareProfile, training: TrainingSpec, b, tp, ep, etp,
                 recompute, capacity_factor) -> None:
        self.model, self.hw, self.tr = model, hardware, training
        self.b, self.tp, self.ep, self.etp = b, tp, ep, etp
        self.recompute, self.cf = recompute, capacity_factor
        # Precision per tensor class (issue 12): GEMMs at the GEMM dtype's peak, the attention core and the
        # output head at theirs; activations on the wire (tp, pp, etp) in the working activation dtype;
        # dispatch bytes with their FP8 scales; GEMM inputs stored for backward in activation_storage.
        self.peak = hardware.chip.peak_for(training.dtype_for("gemm"))
        self.peak_attention = hardware.chip.peak_for(training.dtype_for("attention"))
        self.peak_head = hardware.chip.peak_for(training.dtype_for("head"))
        self.q_a = training.bytes_of("activation")
        self.q_dispatch = training.element_bytes("dispatch")
        self.q_store = training.element_bytes("activation_storage")
        self.hbm_bw = hardware.chip.hbm_bw_bytes_per_s * hardware.efficiency.memory_bandwidth

    def _matmul_time(self, flops, kernel_flops, peak=None):
        eff = self.hw.efficiency.matmul.at_array(kernel_flops)
        return flops / ((peak or self.peak) * eff)

    def expert_ffn_time_s(self, slots):
        """Forward time of the routed experts on one device for `slots` token slots:
        2·slots·P_expert FLOP at the efficiency of one expert's GEMM, (2·slots·P_expert)/(E/ep)/matrices FLOP."""
        model, moe = self.model, self.model.moe
        expert_flops = FLOPS_PER_MAC * slots * ffn_params(model.d_model, moe.expert_d_ff, model.ffn_kind)
        kernel = expert_flops / (moe.num_experts / self.ep) / ffn_matrices(model.ffn_kind)
        return self._matmul_time(expert_flops, kernel)

    def logits_time_s(self, output_tokens: int, heads: int = 1):
        """Forward + backward time of the output logits (last stage): heads·(1 + 2)·(2·b·n_out·h·V/tp) FLOP at
        the efficiency of that one GEMM and the head dtype's peak (backward ≈ 2 × forward, Kaplan et al. 2020
        §2.1; as moesim.estimate.core); heads = 1 + MTP modules (Workload.logit_heads)."""
        flops = FLOPS_PER_MAC * self.b * output_tokens * self.model.d_model * self.model.vocab_size / self.tp
        return heads * (1 + BACKWARD_TO_FORWARD) * self._matmul_time(flops, flops, self.peak_head)

    def build(self, cls: LayerClass) -> ClassTerms:
        model, b, tp = self.model, self.b, self.tp
        h, n, fl = model.d_model, cls.tokens, cls.flops
        rec = self.recompute
        att_proj, scores = b * fl.attention_proj / tp, b * fl.attention_scores / tp
        t_att = self._matmul_time(att_proj, att_proj / ATTENTION_PROJECTIONS) \
            + self._matmul_time(scores, scores, self.peak_attention)
        if fl.mtp_projection:  # an MTP module's M_k GEMM, run just before its block (DeepSeek-V3 eq. 21)
            mtp_proj = b * fl.mtp_projection / tp
            t_att, att_proj = t_att + self._matmul_time(mtp_proj, mtp_proj), att_proj + mtp_proj
        fwd_flops = att_proj + scores
        fwd_time = t_att
        mem_time = np.zeros_like(b)
        padded_extra = np.zeros_like(b)
        blocks = 2 if cls.cross_attention else 1  # attention blocks needing tp collectives
        sp = self.tr.sequence_parallel
        q_st = self.q_store
        kept = self.kept = stored_inputs(model, self.tr, rec, q_st)  # recompute_modules, dropout (selective.py)
        att_kw = dict(q_input=kept.q_gemm_input, mask=kept.mask, qkv_per_token=kept.qkv_per_token)
        act = mem.attention_activation_bytes(b, n, n, h, model.attention.num_heads, tp, sp, rec, q_st, **att_kw)
        if cls.cross_attention:
            act = act + mem.attention_activation_bytes(b, n, cls.encoder_tokens, h, model.attention.num_heads,
                                                       tp, sp, rec, q_st, **att_kw)
        act = act + mem.norm_activation_bytes(b, n, h, tp, sp, 3 if cls.cross_attention else 2)
        if cls.mtp:
            act = act + mem.mtp_input_activation_bytes(b, n, h, tp, sp, q_st, kept.q_gemm_input)
        terms = ClassTerms(fwd_time, fwd_time, fwd_time, fwd_flops, fwd_flops, act)
        terms.fwd_parts_s["attention"] = t_att
        if not cls.is_moe:
            dense = b * fl.dense_ffn / tp
            terms.fwd_parts_s["dense_ffn"] = self._matmul_time(dense, dense / ffn_matrices(model.ffn_kind))
            fwd_time = fwd_time + terms.fwd_parts_s["dense_ffn"]
            fwd_flops = fwd_flops + dense
            act = act + mem.mlp_activation_bytes(b, n, h, model.d_ff, tp, sp, model.ffn_kind, q_st, False,
                                                 kept.q_gemm_input, kept.mask)
            blocks += 1
        else:
            fwd_time, fwd_flops, act, mem_time, padded_extra = self._moe(cls, terms, fwd_time, fwd_flops, act)
        matmul_time = fwd_time
        # Host overhead: once per layer per pass, forward and backward alike (and in a full recompute,
        # which replays the forward); modeling.md §6 "host overheads: per-layer fixed cost".
        overhead = np.full_like(b, self.hw.efficiency.layer_overhead_s, dtype=float)
        fwd_time = fwd_time + mem_time + overhead
        terms.fwd_time_s = fwd_time
        dense_einsum = cls.is_moe and self.tr.dispatch_impl == "dense_einsum"
        # Backward multiple of each forward part: matmuls 2 (Kaplan §2.1), index permutes and the host
        # overhead 1, the einsum dispatch and combine as in the module docstring.
        multiple = {"layer_overhead": 1, "permute": 1, "unpermute": 1}
        if dense_einsum:
            multiple.update(permute=DISPATCH_EINSUM_BACKWARD, unpermute=COMBINE_EINSUM_BACKWARD)
        saved = (BACKWARD_TO_FORWARD - DISPATCH_EINSUM_BACKWARD) * terms.fwd_parts_s["permute"] if dense_einsum else 0.0
        terms.bwd_time_s = BACKWARD_TO_FORWARD * matmul_time - saved + mem_time + overhead
        terms.fwd_parts_s = {"layer_overhead": overhead, **terms.fwd_parts_s}
        terms.bwd_parts_s = {name: multiple.get(name, BACKWARD_TO_FORWARD) * part
                             for name, part in terms.fwd_parts_s.items()}
        # FP8 quantise casts (issue 12): memory-bound time in the parts whose GEMMs consume them.
        slots = terms.slots if terms.slots is not None else 0.0
        q_fwd, q_bwd = quantise_parts_s(self.tr, self.hbm_bw, quantised_elements(model, cls, b, tp, self.etp, slots))
        for name, extra in activation_recompute_s(model, self.tr, self.hbm_bw, cls, b, tp, self.etp, slots).items():
            q_fwd.setdefault(name, 0.0)
            q_bwd[name] = q_bwd.get(name, 0.0) + extra  # the expert activation recomputed in backward
        for name, extra in weight_cast_s(self.tr, self.hbm_bw, cls, tp, self.ep, self.etp).items():
            q_fwd[name] = q_fwd.get(name, 0.0) + extra  # FP8 weights cast again every micro-batch
            q_bwd.setdefault(name, 0.0)
        for name in q_fwd:
            terms.fwd_parts_s[name] = terms.fwd_parts_s[name] + q_fwd[name]
            terms.bwd_parts_s[name] = terms.bwd_parts_s[name] + q_bwd[name]
        fwd_time = fwd_time + sum(q_fwd.values(), 0.0)
        terms.fwd_time_s = fwd_time
        terms.bwd_time_s = terms.bwd_time_s + sum(q_bwd.values(), 0.0)
        full = rec == mem.RECOMPUTE_CODES["full"]
        selective = rec == mem.RECOMPUTE_CODES["selective"]
        score_time = self._matmul_time(scores, scores, self.peak_attention)
        extra_time, extra_flops = recompute_extra(model, self.tr, cls, b, tp, rec, self.hbm_bw, self._matmul_time)
        terms.recompute_time_s = np.where(full, fwd_time, np.where(selective, score_time + extra_time, 0.0))
        unpadded = fwd_flops - padded_extra
        terms.model_flops = (1 + BACKWARD_TO_FORWARD) * unpadded
        recompute_flops = np.where(full, fwd_flops, np.where(selective, scores + extra_flops, 0.0))
        einsum_saved = (BACKWARD_TO_FORWARD - DISPATCH_EINSUM_BACKWARD) * terms.dispatch_einsum_flops \
            if dense_einsum else 0.0
        terms.hardware_flops = (1 + BACKWARD_TO_FORWARD) * fwd_flops - einsum_saved + recompute_flops
        terms.activation_bytes = np.where(full, mem.full_recompute_bytes(b, n, h, tp, sp), act)
        self._tp_comms(terms, cls, blocks, full)
        return terms

    def _moe(self, cls: LayerClass, terms: ClassTerms, fwd_time, fwd_flops, act):
        model, moe, b, tp = self.model, self.model.moe, self.b, self.tp
        h, n, fl = model.d_model, cls.tokens, cls.flops
        E, k = moe.num_experts, moe.top_k
        t_dev = b * n / tp
        # Routing groups (Switch §2.2 / T5X GROUP_SIZE): capacity is set per group of tokens.
        group = np.minimum(moe.group_size_tokens, t_dev) if moe.group_size_tokens else t_dev
        groups = t_dev / group
        capacity = expert_capacity_array(np.floor(group), E, k, self.cf, moe.capacity_rule, moe.min_expert_capacity)
        dropless = np.isnan(self.cf)
        slots = np.where(dropless, k * t_dev, groups * E * capacity)
        per_expert = ffn_params(h, moe.expert_d_ff, model.ffn_kind)
        expert_flops = FLOPS_PER_MAC * slots * per_expert
        router = b * fl.router / tp
        router_peak = self.hw.chip.peak_for(moe.router_dtype)
        shared = b * fl.shared_experts / tp
        parts = terms.fwd_parts_s
        parts["router"] = self._matmul_time(router, router, router_peak)
        expert_time = self.expert_ffn_time_s(slots)
        fwd_time = fwd_time + expert_time + parts["router"]
        shared_time = self._matmul_time(shared, shared / ffn_matrices(model.ffn_kind))
        fwd_time = fwd_time + shared_time
        padded_extra = expert_flops - b * fl.experts / tp
        fwd_flops = fwd_flops + expert_flops + router + shared
        dense_einsum = self.tr.dispatch_impl == "dense_einsum"
        if dense_einsum:
            # GShard Algorithm 2 dispatch and combine einsums: 2·t·E·C·h FLOP each (Tutel App. B), on
            # the matrix unit (module docstring).
            einsum = 2 * FLOPS_PER_MAC * t_dev * E * capacity * h
            einsum_time = self._matmul_time(einsum, einsum / 2)
            fwd_time = fwd_time + einsum_time
            fwd_flops = fwd_flops + einsum
            padded_extra = padded_extra + einsum
            mem_time = np.zeros_like(b)
            permute = einsum_time / 2  # dispatch einsum, then the same-sized combine einsum
            terms.dispatch_einsum_flops = einsum / 2
        else:
            mem_time = PERMUTE_PASSES * READ_WRITE * slots * h * self.q_dispatch / self.hbm_bw
            permute = mem_time / PERMUTE_PASSES
        parts["permute"], parts["expert_ffn"], parts["unpermute"] = permute, expert_time, permute
        parts["shared_experts"] = shared_time
        recompute_act_fn = self.tr.moe_activation_recompute
        kept = self.kept
        act = act + mem.moe_activation_bytes(t_dev, slots, h, moe.expert_d_ff, E, self.etp, model.ffn_kind,
                                             dense_einsum, capacity, self.q_store, recompute_act_fn,
                                             kept.q_router_input, kept.mask)
        if moe.num_shared_experts:
            act = act + mem.mlp_activation_bytes(b, n, h, moe.num_shared_experts * moe.shared_expert_d_ff, tp,
                                                 self.tr.sequence_parallel, model.ffn_kind, self.q_store,
                                                 recompute_act_fn, kept.q_gemm_input, kept.mask)
        terms.slots, terms.capacity, terms.tokens_per_device = slots, capacity, t_dev
        full = self.recompute == mem.RECOMPUTE_CODES["full"]
        extra = np.where(full, 1, 0)
        q_c = self.tr.element_bytes("combine")
        # Dispatch and combine all-to-alls, forward and backward (Switch §5.4; FasterMoE §3.3: 4 per layer).
        terms.comms.append(CommCall("ep_all_to_all_dispatch", "ep", "all_to_all", slots * h * self.q_dispatch,
                                    2 + extra))
        terms.comms.append(CommCall("ep_all_to_all_combine", "ep", "all_to_all", slots * h * q_c, 2 + extra))
        gathered = slots * self.etp * h
        # Expert tensor parallelism: A2A(EP) → AG(ETP) → experts → RS(ETP) → A2A(EP) (MCore token_dispatcher);
        # the gather moves dispatched tokens (dispatch dtype), the scatter expert outputs (combine dtype).
        terms.comms.append(CommCall("etp_all_gather", "etp", "all_gather", gathered * self.q_dispatch, 2 + extra))
        terms.comms.append(CommCall("etp_reduce_scatter", "etp", "reduce_scatter", gathered * q_c, 2 + extra))
        return fwd_time, fwd_flops, act, mem_time, padded_extra

    def _tp_comms(self, terms: ClassTerms, cls: LayerClass, blocks: int, full) -> None:
        """Megatron TP: per block an all-reduce forward and one backward, or with sequence parallelism an
        all-gather + reduce-scatter of the same volume (Korthikanti §4.2.2)."""
        size = self.b * cls.tokens * self.model.d_model * self.q_a
        calls = blocks * (2 + np.where(full, 1, 0))
        if self.tr.sequence_parallel:
            terms.comms.append(CommCall("tp_all_gather", "tp", "all_gather", size, calls))
            terms.comms.append(CommCall("tp_reduce_scatter", "tp", "reduce_scatter", size, calls))
        else:
            terms.comms.append(CommCall("tp_all_reduce", "tp", "all_reduce", size, calls))
