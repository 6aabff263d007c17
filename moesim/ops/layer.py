"""The operators of one layer class, forward and backward, per device per micro-batch.

Notation as moesim.estimate.terms: b sequences per micro-batch, n tokens per sequence, h d_model, tp
tensor-parallel degree, t = b·n/tp tokens entering an MoE layer, r token slots the device processes in
its experts (E·C padded, k·t dropless), g = E/ep local experts, q bytes per element. Shapes are per
device: Megatron column-parallel GEMMs split n by tp, row-parallel ones k (Shoeybi et al. 2019 §3).

Forward operators, in execution order, by stage part:
  attention       attn_norm (memory: read + write t_n·h·q), qkv_proj (gemm m = b·n, k = h), attention_core
                  (flash attention, the mask's computed tiles: moesim/ops/attention.py), out_proj (gemm
                  m = b·n, n = h, k = a·d_v/tp), attn_residual (memory: 2 reads + 1 write of t_n·h·q)
  dense_ffn       mlp_norm, fc1 (m = b·n, k = h, n = G·f/tp; G = 2 gated), activation (memory: read G, write
                  1 of b·n·f/tp·q), fc2 (m = b·n, k = f/tp, n = h), mlp_residual
  router          moe_norm, router (gemm [t, h]·[h, E] in the router dtype), router_gating (memory: softmax,
                  top-k and aux loss over the [t, E] float32 scores: 3 passes of t·E·4 bytes + t·k·12 for the
                  indices and weights; 4 kernels)
  permute         permute (memory, (t + r)·h·q) and, with several local experts behind an all-to-all, permute_sort
                  (2·r·h·q); after DeepEP's / HybridEP's dispatch the R received tokens expanded into the r rows,
                  (R + r)·h·q, no sort, and with DeepSeek's framework its dispatch_mapping first (_flex_dispatch);
                  or the dense dispatch einsum (GShard Alg. 2; moesim.estimate.terms)
  expert_ffn      expert_fc1 (grouped gemm: g groups of m = r·etp/g rows, n = G·f_e/etp, k = h), expert_activation,
                  expert_fc2 (n = h, k = f_e/etp); under Megatron-LM + TE on Hopper each a gemm of count g, one
                  cuBLAS GEMM and launch per local expert (LayerOps.expert_gemm)
  unpermute       unpermute (memory; after DeepEP / HybridEP the r rows reduced to the R tokens) or the combine
                  einsum; moe_residual (routed + shared output + residual, summed once the combine is back)
  shared_experts  shared_fc1, shared_activation, shared_fc2 (as fc1/fc2 with f = shared d_ff, split by tp)
  layer_overhead  the profile's fixed host cost per layer pass (efficiency.layer_overhead_us)
The last stage's head (logits_ops, once per output head): final_norm (as attn_norm), logits (gemm), cross-entropy.
t_n = b·n/tp with sequence parallelism (norms and residuals on the sequence shard, Korthikanti et al. 2022
§4.2.2), b·n without. GEMM FLOP totals equal moesim.flops' per-layer figures. Backward: moesim.ops.base.backward
(dgrad and wgrad per GEMM, flash backward, memory ops at a bytes factor: norms and activations read the
input and the output gradient and write the input gradient, ~1.5× forward; a residual add's own backward
passes the gradient through, and autograd then sums the skip's gradient with the block's at the residual's input:
`grad_accumulate`, the forward add's bytes, one kernel). Every tensor two or more operators read gets its
gradients summed so (PyTorch torch/csrc/autograd/input_buffer.cpp `accumulate`, one add per gradient after the
first): each residual's input; MLA's norm output (q and kv down-projections); the MoE norm's output (router,
dispatch, shared experts). Not on TPUs, whose XLA program fuses them (LayerOps.grad_adds).
Not priced as operators: dropout (0 in the models moesim ships), rotary embeddings other than MLA's (fused into
attention in FlashAttention-2/-3 pipelines; MLA's decoupled RoPE and its Q/K/V copies are `rope_and_copies`),
bias adds (fused into GEMM epilogues), but a biased expert FC2's as Megatron-Core adds it without TE's op fuser
(`expert_fc2_bias`, expert_ffn, after expert_fc2: expert_bias_op).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moesim.arithmetic import ffn_matrices
from moesim.flops import FLOPS_PER_MAC, _score_flops
from moesim.megatron_rules import DEEPEP_BACKENDS, runs_megatron_te, te_expert_gemm_loop
from moesim.ops.attention import work_fraction
from moesim.ops.base import Op, backward, gemm, grouped_gemm, memory
from moesim.ops.block_ops import (FP32_BYTES, READ_WRITE, activation as _activation, expert_bias_op,
                                  fanned_out as _fanned_out, ffn_ops as _ffn_ops, gate_factor, mask_params,
                                  no_weights as _no_weights, norm as _norm, residual as _residual, self_attention_mask,
                                  sink_flops)
from moesim.ops.dtypes import op_dtype
from moesim.ops.mcore_moe import FLEX_BACKENDS, dispatch_ops, gating_op, moe_impl, shared_add_op
from moesim.ops.output_head import logits_ops
# importable from here as before the split (tests/ops/test_expert_bias.py, tests/ops/test_attention_pattern.py)
from moesim.ops.block_ops import EXPERT_BIAS_BWD_FP32_BYTES, EXPERT_BIAS_BWD_Q_PASSES  # noqa: F401
from moesim.ops.block_ops import EXPERT_BIAS_FWD_FP32_BYTES, EXPERT_BIAS_FWD_Q_PASSES, SINK_FLOPS_PER_ROW  # noqa: F401
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec
from moesim.workload import LayerClass

ATTENTION_PROJECTIONS = 4  # Q, K, V, O: the FLOP-keyed fallback reads its table at a quarter of their FLOP
INDEX_AND_WEIGHT_BYTES = 12  # int64 expert index + float32 combine weight per (token, choice)
GATING_KERNELS = 4  # softmax, top-k, aux loss, capacity/position bookkeeping
MLA_ROPE_KERNELS = 4  # rotary on q, rotary on k_pe, K's assembly, V's copy (LayerOps._mla_rope_and_copies)
# The dispatch backends after whose dispatch the received tokens are expanded into expert order and reduced back
# (LayerOps._flex_dispatch): DeepEP's normal kernels and HybridEP, as Megatron-LM's flex dispatcher runs them
# (d98e8a64 token_dispatcher.py _DeepepManager, _HybridEPManager). Not deepep_ll: its kernels write and read the
# experts' layout themselves (priced as before). FLEX_BACKENDS lives in mcore_moe.py (probs_all_to_all_calls reads it).
DISPATCH_MAPPING_KERNELS = 2.0  # DeepSeek's clean_and_count_expert and get_fused_mapping (LayerOps._dispatch_mapping)
TOPK_INDEX_BYTES = 8  # DeepEP's topk_idx_t, int64 unless built with EP_NUM_TOPK_IDX_BITS (compiled.cuh l.54-55)


class LayerOps:
    """Builds the forward operator list of a layer class over arrays of candidates (module docstring)."""

    def __init__(self, model: ModelSpec, training: TrainingSpec, b, tp, ep, etp, device_kind: str = "gpu",
                 gpu_arch: str = "") -> None:
        """`gpu_arch`: the profile's GPU architecture (HardwareProfile.gpu_arch; "" none stated)."""
        self.model, self.tr = model, training
        self.b, self.tp, self.ep, self.etp = b, tp, ep, etp
        # autograd's gradient sums run as kernels of their own in an eager framework (GPU, CPU); an XLA program
        # (TPU) fuses them into neighbouring fusions (the cross-entropy's convention, logits_ops)
        self.grad_adds = not device_kind.startswith("tpu")
        self.te = runs_megatron_te(training.framework, device_kind)  # TransformerEngine's norms (TE_NORM_...)
        self.expert_gemm_loop = te_expert_gemm_loop(training.framework, device_kind, gpu_arch)
        self.dtype = {kind: op_dtype(training, kind) for kind in ("gemm", "grouped_gemm", "attention", "memory")}
        self.q = training.bytes_of("activation")  # working activations (BF16 under FP8 GEMMs)
        self.q_dispatch = training.element_bytes("dispatch")  # with FP8 scales
        self.q_combine = training.element_bytes("combine")

    def norm_tokens(self, n):
        return self.b * n / self.tp if self.tr.sequence_parallel else self.b * n

    def attention(self, cls: LayerClass) -> list[Op]:
        """Attention block(s) of the class: self-attention, and cross-attention in a decoder that has it."""
        model, b, tp = self.model, self.b, self.tp
        att, h, n, q = model.attention, model.d_model, cls.tokens, self.q
        dt, dt_att, dt_mem = self.dtype["gemm"], self.dtype["attention"], self.dtype["memory"]
        tn = self.norm_tokens(n)
        blocks = 2 if cls.cross_attention else 1
        d_v = att.v_head_dim or att.head_dim
        proj = b * cls.flops.attention_proj / tp
        out_flops = blocks * FLOPS_PER_MAC * b * n * h * att.num_heads * d_v / tp
        fallback = proj / ATTENTION_PROJECTIONS  # the estimate's convention before operator tables
        m = b * n
        ops = [_norm("attention", "attn_norm", dt_mem, q, tn, h, self.te)]
        if att.kind == "mla":  # the norm's output feeds the q and kv down-projections (or q_proj): one gradient sum
            ops[0] = _fanned_out(ops[0], 2, q, tn, h, self.grad_adds)
            ops += self._mla_projections(m, tn, dt, dt_mem, fallback) * blocks
        else:
            qkv_n = (proj - out_flops) / (FLOPS_PER_MAC * m * h)
            ops.append(gemm("attention", "qkv_proj", dt, m, qkv_n, h, fallback=fallback))
        mask = self_attention_mask(model, cls)
        self_scores = _score_flops(model, n, n)
        frac = work_fraction(mask, n, n, **mask_params(model))
        cross = cls.flops.attention_scores - self_scores
        work = b * (self_scores * frac + cross + sink_flops(att, n)) / tp
        heads = att.num_heads
        d_qk = att.head_dim + att.qk_rope_head_dim
        core = Op("attention", "attention_core", "attention", "fwd", dt_att, flops=work,
                  shape=(n, b * heads / tp, d_qk), fallback_kernel_flops=b * cls.flops.attention_scores / tp,
                  kernels=float(blocks), mask=mask,
                  meta={"full_matrix_flops": b * cls.flops.attention_scores / tp, "work_fraction": frac})
        ops.append(core)
        ops.append(gemm("attention", "out_proj", dt, m, h, heads * d_v / tp * blocks, fallback=fallback))
        ops.append(_residual("attention", "attn_residual", dt_mem, q, tn * blocks, h, self.grad_adds))
        return ops

    def _mla_projections(self, m, tn, dt, dt_mem, fallback) -> list[Op]:
        """MLA's projections as the separate GEMMs and norms they run as (DeepSeek-V2 §2.1.2, Eq. 9-14;
        Megatron-LM MLASelfAttention: linear_q_down_proj, q_layernorm, linear_q_up_proj, linear_kv_down_proj,
        kv_layernorm, linear_kv_up_proj): down-projections h -> r_q and h -> r_kv + d_r, RMSNorm of the
        latents, up-projections r_q -> a·(d + d_r) and r_kv -> a·(d + d_v). The up-projections are
        column-parallel (widths split by tp, all m tokens). The down-projections are whole on every tp rank
        (TELinear parallel_mode='duplicated', Megatron-LM d98e8a6 multi_latent_attention.py l.526-527,
        573-574) over the layer input as it arrives, `tn` tokens: the sequence shard m/tp with sequence
        parallelism (no gather before them, l.641-645), all m without; the latent norms likewise (l.777-781).
        With sequence parallelism their FLOPs sum to moesim.flops'; without, each tp rank repeats the
        down-projections' m·(r_q + r_kv + d_r)·h MACs."""
        att, h, tp, q = self.model.attention, self.model.d_model, self.tp, self.q
        a, d, d_r, d_v = att.num_heads, att.head_dim, att.qk_rope_head_dim, att.v_head_dim
        ops = []
        if att.q_lora_rank:
            ops += [gemm("attention", "q_down_proj", dt, tn, att.q_lora_rank, h, fallback=fallback),
                    _norm("attention", "q_norm", dt_mem, q, tn, att.q_lora_rank, self.te),
                    gemm("attention", "q_up_proj", dt, m, a * (d + d_r) / tp, att.q_lora_rank, fallback=fallback)]
        else:
            ops.append(gemm("attention", "q_proj", dt, m, a * (d + d_r) / tp, h, fallback=fallback))
        ops += [gemm("attention", "kv_down_proj", dt, tn, att.kv_lora_rank + d_r, h, fallback=fallback),
                _norm("attention", "kv_norm", dt_mem, q, tn, att.kv_lora_rank, self.te),
                gemm("attention", "kv_up_proj", dt, m, a * (d + d_v) / tp, att.kv_lora_rank, fallback=fallback),
                self._mla_rope_and_copies(m, dt_mem)]
        return ops

    def _mla_rope_and_copies(self, m, dt_mem) -> Op:
        """MLA's decoupled RoPE and the copies that give the attention kernel contiguous Q, K, V (DeepSeek-V2
        §2.1.3 eq. 14-17; Megatron-LM 23e00ed0 multi_latent_attention.py qkv_up_proj_and_rope_apply; DeepSeek's
        H800 trace, tests/data/dsv3_trace: rotary_kernel x2, _copy_tensor_kernel, elementwise_kernel over 65536
        blocks in attn(F)), per token over a/tp heads: RoPE in place on q's rope part and on k_pe (read + write
        a·d_r + d_r), K assembled from k_nope and k_pe expanded to every head (read a·d + d_r, write a·(d + d_r)),
        V made contiguous (read + write a·d_v). Backward: the same bytes (each copy's gradient split back)."""
        att, tp, q = self.model.attention, self.tp, self.q
        a, d, d_r, d_v = att.num_heads / tp, att.head_dim, att.qk_rope_head_dim, att.v_head_dim
        per_token = READ_WRITE * (a * d_r + d_r) + (a * d + d_r) + a * (d + d_r) + READ_WRITE * a * d_v
        op = memory("attention", "rope_and_copies", dt_mem, m * per_token * q, kernels=MLA_ROPE_KERNELS)
        return replace(op, meta={"bwd_bytes_factor": 1.0})

    def mtp_norms(self, cls: LayerClass) -> Op:
        """An MTP module's two RMSNorms before M_k, of the previous depth's hidden state and of the token
        embedding (DeepSeek-V3 §2.2 eq. 21; Megatron-LM MultiTokenPredictionLayer enorm / hnorm): as attn_norm
        over twice the tokens."""
        n = self.norm_tokens(cls.tokens)
        return _norm("attention", "mtp_norms", self.dtype["memory"], self.q, 2 * n, self.model.d_model,
                     self.te)

    def dense_ffn(self, cls: LayerClass) -> list[Op]:
        n = cls.tokens
        ops = _ffn_ops("dense_ffn", "", self.model, self.dtype["gemm"], self.q, self.b * n, self.model.d_ff,
                       self.tp, self.norm_tokens(n), with_norm=True, te_norm=self.te)
        return [replace(ops[0], name="mlp_norm")] + ops[1:] + [
            _residual("dense_ffn", "mlp_residual", self.dtype["memory"], self.q, self.norm_tokens(n),
                      self.model.d_model, self.grad_adds)]

    def router(self, cls: LayerClass, t_dev) -> list[Op]:
        model, moe = self.model, self.model.moe
        h, E, k, dt_mem = model.d_model, moe.num_experts, moe.top_k, self.dtype["memory"]
        tn = self.norm_tokens(cls.tokens)
        # the norm's output feeds the router, the dispatch and the shared experts (Megatron-LM 23e00ed0
        # moe_layer.py l.177-220: router(hidden_states), dispatch_preprocess(hidden_states), shared_experts(residual))
        consumers = 2 + (1 if moe.num_shared_experts else 0)
        ops = [_fanned_out(_norm("router", "moe_norm", dt_mem, self.q, tn, h, self.te), consumers, self.q, tn, h,
                           self.grad_adds)]
        router = gemm("router", "router", moe.router_dtype, t_dev, E, h)
        if moe.router_bwd_dtype:  # its dgrad / wgrad in their own dtype (moesim/ops/base.py `backward`)
            router = replace(router, meta={"bwd_dtype": moe.router_bwd_dtype})
        ops.append(router)
        if moe.router_impl:  # the framework's own gating kernels (moesim/ops/mcore_moe.toml)
            return ops + [gating_op(moe_impl(moe.router_impl), t_dev, E)]
        gating_bytes = 3 * t_dev * E * FP32_BYTES + t_dev * k * INDEX_AND_WEIGHT_BYTES
        ops.append(replace(memory("router", "router_gating", "float32", gating_bytes, kernels=GATING_KERNELS),
                           meta={"bwd_bytes_factor": 1.0}))
        return ops

    def experts(self, slots, part: str = "expert_ffn") -> list[Op]:
        """Routed experts on one device for `slots` token slots (grouped GEMMs over its E/ep experts)."""
        model, moe = self.model, self.model.moe
        h, f, g = model.d_model, moe.expert_d_ff, gate_factor(model)
        groups = moe.num_experts / self.ep
        rows = slots * self.etp / groups
        fe = f / self.etp
        dt = self.dtype["grouped_gemm"]
        total = FLOPS_PER_MAC * slots * (g + 1) * h * f
        fallback = total / groups / ffn_matrices(model.ffn_kind)
        ops = [self.expert_gemm(part, "expert_fc1", dt, groups, rows, g * fe, h, fallback),
               _activation(part, "expert_activation", self.dtype["memory"], self.q, slots * f, g),
               self.expert_gemm(part, "expert_fc2", dt, groups, rows, h, fe, fallback)]
        if model.ffn_bias and self.te and not self.tr.te_op_fuser:
            # on FC2's output, groups x rows = slots·etp rows of h (the etp group's tokens: experts.py l.387-398)
            ops.append(expert_bias_op(part, slots * self.etp, h, groups, self.q))
        return ops

    def expert_gemm(self, part: str, name: str, dtype: str, groups, m, n, k, fallback) -> Op:
        """The `groups` local experts' GEMMs [m, k]·[k, n]: one grouped kernel, or under TE on Hopper
        (te_expert_gemm_loop) one cuBLAS GEMM per expert, each at its own shape from the profile's `gemm` tables and
        charged its launch (TE v2.14 common/gemm/cublaslt_gemm.cu multi_stream_cublas_gemm l.969-1010: a loop of
        nvte_cublas_gemm_v2 calls). They run one after another: the loop deals them over
        nvte_get_num_compute_streams() = 4 streams (common/util/multi_stream.cpp get_num_compute_streams, `static
        constexpr int num_compute_streams = 4`; `i % num_streams`), and no source measures how far GEMMs on
        several streams overlap, so none is credited. A per-tensor FP8 cuBLAS GEMM has no table of its own in any
        profile (h100-sxm's FP8 `gemm` table is DeepGEMM's blockwise kernel): it reads the BF16 `gemm` table's
        fraction at the FP8 peak (meta table_dtype; moesim.ops.price.op_efficiency)."""
        if not self.expert_gemm_loop:
            return grouped_gemm(part, name, dtype, groups, m, n, k, fallback=fallback)
        op = gemm(part, name, dtype, m, n, k, count=groups)
        return replace(op, meta={"table_dtype": "bfloat16"}) if dtype == "float8" else op

    def dispatch(self, slots, t_dev, capacity, dense_einsum: bool, received=None) -> tuple[list[Op], list[Op]]:
        """(permute ops, unpermute ops): index copies, or GShard's dispatch and combine einsums. `received`: the
        tokens one device receives from the dispatch (t_dev · Γ, moesim.collectives.dispatch.routing_shape) where
        the dispatch backend is DeepEP's normal kernels or HybridEP (FLEX_BACKENDS: `_flex_dispatch`); else None."""
        moe = self.model.moe
        h, E, dt_mem = self.model.d_model, moe.num_experts, self.dtype["memory"]
        if received is not None and not dense_einsum and self.tr.dispatch_backend in FLEX_BACKENDS:
            return self._flex_dispatch(slots, t_dev, received)
        if dense_einsum:
            # Per routing group: [E·C, S]·[S, h] (dispatch) and [S, E·C]·[E·C, h] (combine); Σ S = t.
            einsum = FLOPS_PER_MAC * t_dev * E * capacity * h
            dispatch = gemm("permute", "dispatch_einsum", self.dtype["gemm"], E * capacity, h, t_dev,
                            fallback=einsum)
            combine = gemm("unpermute", "combine_einsum", self.dtype["gemm"], t_dev, h, E * capacity,
                           fallback=einsum)
            dispatch = _no_weights(dispatch)  # the 0/1 mask gets no gradient (terms.py docstring)
            permute, unpermute = [dispatch], [combine]
        else:
            # Megatron's all-to-all dispatcher (core/transformer/moe/token_dispatcher.py): permute the t tokens
            # into k·t expert-ordered rows (read t, write r), all-to-all, then with several local experts sort
            # the received chunks by expert (sort_chunks_by_idxs: read r, write r); the combine mirrors it.
            # The sorts read SimuMax's measured permute efficiency (its B200 cost model prices them alike).
            q_d, q_c = self.q_dispatch, self.q_combine
            sorted_ = np.where((np.asarray(self.ep) > 1) & (E / np.asarray(self.ep) > 1), 1.0, 0.0)
            pre = dispatch_ops(moe_impl(moe.router_impl), t_dev, slots, E, self.tp, sorted_) if moe.router_impl else []
            permute = pre + [memory("permute", "permute", dt_mem, (t_dev + slots) * h * q_d),
                       replace(memory("permute", "permute_sort", dt_mem, sorted_ * READ_WRITE * slots * h * q_d,
                                      kernels=sorted_), meta={"table_op": "permute"})]
            unpermute = [replace(memory("unpermute", "unpermute_sort", dt_mem, sorted_ * READ_WRITE * slots * h * q_c,
                                        kernels=sorted_), meta={"table_op": "unpermute"}),
                         memory("unpermute", "unpermute", dt_mem, (slots + t_dev) * h * q_c)]
        return permute, unpermute

    def _flex_dispatch(self, slots, t_dev, received) -> tuple[list[Op], list[Op]]:
        """(permute ops, unpermute ops) after DeepEP's or HybridEP's dispatch, as Megatron's flex dispatcher and
        DeepSeek's trace run them: the dispatch sends each token once per GPU it reaches, unsorted (no permute
        before it, no chunk sort after it: the sorts are `MoEAlltoAllTokenDispatcher`'s, Megatron-LM d98e8a64
        token_dispatcher.py l.782 / 817); the `received` tokens are then expanded into the `slots` expert-ordered
        rows (`_DeepepManager.get_permuted_hidden_states_by_experts`, l.1424-1457: one permute of the received
        tokens; HybridEP's `dispatch_with_permute`, fused_a2a.py l.425; the trace's expand_to_fused_with_scales,
        grid = rows / 16) and the expert outputs reduced back to the received tokens before the combine
        (l.1459-1468 `unpermute`; HybridEP's `combine_with_unpermute`, fused_a2a.py l.454; the trace's
        reduce_fused_impl, grid = the received tokens). Bytes: read received, write slots (permute, dispatch
        dtype) and read slots, write received (unpermute, combine dtype); each backward moves the gradient the
        other way in the other direction's dtype (the combine's backward is a dispatch, estimate/terms.py CommCall
        counts; the trace: expand FP8, reduce BF16 in mlp(B)). The sorts keep their place at zero bytes and
        launches. DeepSeek's own framework (not Megatron-LM + TE) counts and maps the received tokens' top-k
        indices first (`dispatch_mapping`)."""
        h, dt_mem = self.model.d_model, self.dtype["memory"]
        q_d, q_c = self.q_dispatch, self.q_combine
        no_sort = np.zeros_like(np.asarray(slots, dtype=float))
        permute = [replace(memory("permute", "permute", dt_mem, (received + slots) * h * q_d),
                           meta={"bwd_bytes_factor": q_c / q_d}),
                   replace(memory("permute", "permute_sort", dt_mem, no_sort, kernels=no_sort),
                           meta={"table_op": "permute"})]
        if not self.te and self.tr.dispatch_backend in DEEPEP_BACKENDS:
            permute.insert(0, self._dispatch_mapping(received))
        unpermute = [replace(memory("unpermute", "unpermute_sort", dt_mem, no_sort, kernels=no_sort),
                             meta={"table_op": "unpermute"}),
                     replace(memory("unpermute", "unpermute", dt_mem, (slots + received) * h * q_c),
                             meta={"bwd_bytes_factor": q_d / q_c})]
        return permute, unpermute

    def _dispatch_mapping(self, received) -> Op:
        """DeepSeek's counting and mapping of the received tokens before the expand (its H800 trace, mlp(F):
        cuda::clean_and_count_expert, then cuda::get_fused_mapping, 4-block grids, 241 us a layer; no backward
        kernel: the backward reuses the forward's map). Bytes: each kernel reads the received tokens' top-k
        indices once (DeepEP's topk_idx_t, int64 by default: deepseek-ai/DeepEP dd758ca
        deep_ep/include/deep_ep/common/compiled.cuh l.54-72); the counts and the map they write are left out. On 4
        blocks the kernels run far below the HBM rate: the H800 table `op = "dispatch_mapping"` is the trace's
        (scripts/dsv3_trace.py --points; keyed, as the other memory tables, by the memory dtype); a profile without one
        prices the bytes at its default rate."""
        k = self.model.moe.top_k
        op = memory("permute", "dispatch_mapping", self.dtype["memory"],
                    DISPATCH_MAPPING_KERNELS * received * k * TOPK_INDEX_BYTES, kernels=DISPATCH_MAPPING_KERNELS)
        return replace(op, meta={"bwd_bytes_factor": 0.0})

    def shared_experts(self, cls: LayerClass) -> list[Op]:
        moe = self.model.moe
        if not moe.num_shared_experts:
            return []
        return _ffn_ops("shared_experts", "shared_", self.model, self.dtype["gemm"], self.q, self.b * cls.tokens,
                        moe.num_shared_experts * moe.shared_expert_d_ff, self.tp, 0, with_norm=False)

    def moe_residual(self, cls: LayerClass) -> list[Op]:
        """The residual add after the combine, and, where the framework adds the shared experts' output to the
        routed one in a kernel of its own (moesim/ops/mcore_moe.toml), that add."""
        moe, h = self.model.moe, self.model.d_model
        residual = _residual("unpermute", "moe_residual", self.dtype["memory"], self.q, self.norm_tokens(cls.tokens), h,
                             self.grad_adds)
        if not (moe.router_impl and moe.num_shared_experts):
            return [residual]
        return [shared_add_op(moe_impl(moe.router_impl), self.b * cls.tokens / self.tp, h, self.q), residual]


def backward_ops(forward: list[Op]) -> list[Op]:
    """The backward operators of a forward list, in reverse execution order."""
    out: list[Op] = []
    for op in reversed(forward):
        out += backward(op)
    return out


__all__ = ["LayerOps", "backward_ops", "logits_ops", "self_attention_mask"]
