"""The small operators a layer's blocks are built of (moesim.ops.layer.LayerOps builds them): a norm, a residual add,
a norm feeding several operators, an activation, a dense FFN block, Megatron-Core's unfused expert bias, and the
facts of a class's self-attention (its mask, sinks, mask parameters) and of a gated FFN. Moved from layer.py unchanged
(session 24, tidy24)."""

from __future__ import annotations

from dataclasses import replace

from moesim.arithmetic import ffn_matrices
from moesim.flops import FLOPS_PER_MAC
from moesim.ops.base import GRAD_ACCUMULATE, Op, gemm, memory
from moesim.specs.model import ModelSpec
from moesim.workload import LayerClass

READ_WRITE = 2
RESIDUAL_PASSES = 3  # a + b -> c: two reads, one write
NORM_BACKWARD_FACTOR = 1.5  # reads x and dy, writes dx: 3 passes against the forward's 2
# TransformerEngine's norm backward is two kernels: the main one (dx and per-CTA dgamma partials) and a finalize
# that sums the partials into dgamma (TE v2.11 common/normalization/rmsnorm/rmsnorm_bwd_semi_cuda_kernel.cu
# launch_rmsnorm_bwd_tuned_ / _general_: `kernel<<<...>>>` then `kernel_f<<<...>>>` / `kernel_final<<<...>>>`;
# layernorm/ln_bwd_semi_cuda_kernel.cu the same pair). Only the launch is priced: the partials the finalize reads,
# ctas_per_col·h·4 B, scale with ctas_per_col = SMs · occupancy (cudaOccupancyMaxActiveBlocksPerMultiprocessor at
# run time, no figure of the source), and the dgamma it writes is h elements.
TE_NORM_BACKWARD_KERNELS = 2.0
FP32_BYTES = 4
# An attention sink's share of its softmax row (sink_flops): subtract the row max, exponentiate, add to the sum.
SINK_FLOPS_PER_ROW = 3
# Megatron-Core's unfused expert FC2 bias (expert_bias_op): bytes per element of the expert output (slots x h) in FP32
# (the FP32 routing probability p promotes the sum; Megatron-LM core_v0.17.0 moe/experts.py l.251-267) and passes of
# the output's own q bytes. Forward: b*p writes 4; t + bp reads q + 4, writes 4; torch.cat reads 4, writes 4;
# .to(t.dtype) reads 4, writes q.
EXPERT_BIAS_FWD_FP32_BYTES, EXPERT_BIAS_FWD_Q_PASSES = 4 + 8 + 8 + 4, 2
# Backward: the cast's gradient back to FP32 (read q, write 4); per expert the add's gradient to t cast to t's dtype
# (read 4, write q), the mul's gradients grad*p and grad*b (read 4, write 4 each) and their sums to b's and p's shapes
# (read 4 each); the split's backward cats t's gradients (read q, write q).
EXPERT_BIAS_BWD_FP32_BYTES, EXPERT_BIAS_BWD_Q_PASSES = 4 + 4 + 16 + 8, 4


def gate_factor(model: ModelSpec) -> int:
    """Matrices in fc1: 2 for a gated FFN (SwiGLU/GeGLU: gate and up projections), else 1."""
    return ffn_matrices(model.ffn_kind) - 1


def self_attention_mask(model: ModelSpec, cls: LayerClass) -> str:
    """The mask of a class's self-attention: its layer_pattern entry, the model's, or causal in a decoder, full in an
    encoder."""
    if cls.mask:
        return cls.mask
    if model.attention.mask:
        return model.attention.mask
    return "causal" if cls.stack == "decoder" else "full"


def sink_flops(att, n_q: int) -> float:
    """Forward FLOPs of the attention sinks over n_q query rows: SINK_FLOPS_PER_ROW per row and head, 0 without
    sinks. The sink is one more logit in each softmax row with no value vector (openai/gpt-oss a194b990
    gpt_oss/torch/model.py `sdpa`: QK concatenated with the sink column S, softmax, the column dropped), so no matmul
    work: its softmax share only ("off-by-one" a fixed zero logit, the same work)."""
    return SINK_FLOPS_PER_ROW * n_q * att.num_heads if att.softmax_type != "vanilla" else 0.0


def mask_params(model: ModelSpec) -> dict:
    att = model.attention
    return {"window_tokens": att.window_tokens, "stride_tokens": att.sparse_stride_tokens,
            "summary_tokens": att.sparse_summary_tokens}


def ffn_ops(part: str, prefix: str, model: ModelSpec, dtype: str, q: float, tokens, d_ff, tp, norm_tokens,
             with_norm: bool, te_norm: bool = False) -> list[Op]:
    """norm (optional), fc1, activation, fc2, residual of a dense FFN block over `tokens` rows."""
    h, g = model.d_model, gate_factor(model)
    f = d_ff / tp
    fallback = FLOPS_PER_MAC * tokens * (g + 1) * h * d_ff / tp / ffn_matrices(model.ffn_kind)
    ops = []
    if with_norm:
        ops.append(norm(part, f"{prefix}norm", dtype, q, norm_tokens, h, te_norm))
    ops.append(gemm(part, f"{prefix}fc1", dtype, tokens, g * f, h, fallback=fallback))
    ops.append(activation(part, f"{prefix}activation", dtype, q, tokens * f, g))
    ops.append(gemm(part, f"{prefix}fc2", dtype, tokens, h, f, fallback=fallback))
    return ops


def norm(part, name, dtype, q, tokens, h, te: bool = False) -> Op:
    """A norm over [tokens, h]; `te`: TransformerEngine's two-kernel backward (TE_NORM_BACKWARD_KERNELS)."""
    op = memory(part, name, dtype, READ_WRITE * tokens * h * q)
    # every norm reads a profile's "norm" table where it has one (h800.toml: DeepSeek's trace, scripts/dsv3_trace.py)
    meta = {"bwd_bytes_factor": NORM_BACKWARD_FACTOR, "table_op": "norm"}
    return replace(op, meta={**meta, "bwd_kernels": op.kernels * TE_NORM_BACKWARD_KERNELS} if te else meta)


def residual(part, name, dtype, q, tokens, h, grad_adds: bool) -> Op:
    """x + f(x): forward one add; backward, with `grad_adds`, autograd's sum at x of the skip's gradient and f's
    (one add, the same 2 reads + 1 write of t_n·h·q: moesim.ops.base.grad_accumulate), else nothing (the add's own
    backward passes the gradient to both inputs; an XLA program fuses the sum into its neighbours)."""
    op = memory(part, name, dtype, RESIDUAL_PASSES * tokens * h * q)
    return replace(op, meta={"bwd_bytes_factor": 1.0 if grad_adds else 0.0, "bwd_name": GRAD_ACCUMULATE})


def fanned_out(op: Op, consumers: int, q, tokens, h, grad_adds: bool) -> Op:
    """A norm whose [tokens, h] output feeds `consumers` operators: with `grad_adds`, autograd sums their
    gradients before the norm's backward, consumers − 1 adds of 2 reads + 1 write each (base.grad_accumulate)."""
    if not grad_adds or consumers < 2:
        return op
    adds = consumers - 1
    return replace(op, meta={**op.meta, "grad_add_kernels": float(adds),
                             "grad_add_bytes": adds * RESIDUAL_PASSES * tokens * h * q})


def activation(part, name, dtype, q, elements, g) -> Op:
    op = memory(part, name, dtype, (g + 1) * elements * q)
    return replace(op, meta={"bwd_bytes_factor": (2 * g + 1) / (g + 1)})


def expert_bias_op(part: str, slots, h, local_experts, q) -> Op:
    """A biased expert FC2's bias as Megatron-Core adds it after the grouped GEMM when TE's op fuser is off
    (training.te_op_fuser): TEGroupedMLP builds FC2 with skip_bias_add=True and `_apply_bias` loops over the local
    experts, `t + b * p` per expert in FP32 (the FP32 routing probability promotes it), then `torch.cat` and a cast
    back (Megatron-LM core_v0.17.0 megatron/core/transformer/moe/experts.py l.214 skip_bias_add, l.251-267
    _apply_bias, l.398 its call; core_v0.16.0 l.572, l.609-626, l.758 the same), over the device's `slots` rows of
    width h and q bytes: 24 + 2·q bytes per element in 2·g + 2 kernels. Backward (PyTorch autograd, each gradient
    cast to its input's dtype): 32 + 4·q bytes per element in 6·g + 3 kernels (the module's EXPERT_BIAS_* constants)."""
    elements = slots * h
    fwd_bytes = EXPERT_BIAS_FWD_FP32_BYTES + EXPERT_BIAS_FWD_Q_PASSES * q
    bwd_bytes = EXPERT_BIAS_BWD_FP32_BYTES + EXPERT_BIAS_BWD_Q_PASSES * q
    op = memory(part, "expert_fc2_bias", "float32", fwd_bytes * elements, kernels=2 * local_experts + 2)
    return replace(op, meta={"bwd_bytes_factor": bwd_bytes / fwd_bytes, "bwd_kernels": 6 * local_experts + 3})


def no_weights(op: Op) -> Op:
    return replace(op, meta={**op.meta, "weights": False})
