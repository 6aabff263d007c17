"""FP8 current scaling's amax all-reduce over the tensor-parallel group under sequence parallelism (session 25, amaxtp).

Read at NVIDIA/TransformerEngine v2.14 (f031cf87): Float8CurrentScalingQuantizer::quantize_impl computes the local
amax, then, where `with_amax_reduction`, all-reduces the one-FP32 amax over `amax_reduction_group` with a MAX and
waits before the scale and the cast (pytorch/csrc/quantizer.cpp l.882-888); quantize_with_amax (a LayerNormLinear's
norm-fed input) reaches the same reduction (l.903-909). The modules set it only under sequence parallelism: a
column-parallel Linear / LayerNormLinear's forward input quantizer, a row-parallel one's backward grad-output
quantizer (module/linear.py l.1615-1621 / l.1632-1638, module/layernorm_linear.py l.1743-1749 / l.1760-1766), the
group `self.tp_group`. Each such tensor is cast on its sequence shard and then gathered in FP8: the forward input
(linear.py l.182-215: input_quantizer(inputmat), then gather_along_first_dim -> distributed.py _all_gather_fp8
l.977-1020), the backward grad output (module/base.py l.1186 / l.1228-1233); the wgrad re-gather of the saved input
gathers the FP8 shard already cast (linear.py l.624-628), no second reduction. Megatron-Core core_v0.17.0
(9539a12e) passes the tensor-parallel group (extensions/transformer_engine.py: TEColumnParallelLinear l.1165 /
TERowParallelLinear l.1275 get_tensor_model_parallel_group_if_none -> TELinear l.798 / l.825; TELayerNormColumnParallel
Linear l.950 / l.1028; not tp x cp); routed experts' linears get none (l.808-818: explicit expert communication,
tp_group None). Delayed scaling reduces its amax history otherwise (one concatenated
all-reduce per autocast exit over Megatron's amax-reduction group, TE quantization.py l.498-520 / l.602-611: not
priced here); MXFP8 and blockwise FP8 scale per block inside the cast (no quantizer sets the flag).

So per layer-micro-batch, under current scaling with SP at tp > 1: each attention block 1 forward (linear_qkv's input)
and 1 backward (linear_proj's output gradient); MLA 2 forward (linear_q_up_proj and linear_kv_up_proj, or
linear_q_proj without a q LoRA rank: their inputs gathered; the down-projections are `duplicated`, no group) and 1
backward; a dense MLP 1 and 1 (fc1's input, fc2's output gradient); a forward replayed (full recompute, the "mlp"
checkpoint) its forward ones again. Each is a collective of its own, on the tp axis, before the cast that precedes
the gather (the simulator issues it there: des/layer_tp_calls.py), latency-bound: the collective model's price at 4
bytes. The shared experts' (Megatron's SharedExpertMLP, TE column / row linears on the tp group: 1 and 1 a pass) are
added with their other tp calls (shared_tp_comms.layer_tp_extras). Left: an MTP projection's.
"""

from __future__ import annotations

import numpy as np

from moesim.estimate.class_terms import CommCall
from moesim.megatron_rules import runs_megatron_te
from moesim.specs.dtypes import DTYPE_BYTES

# The breakdown's entry (both engines)
AMAX_ALL_REDUCE = "tp_amax_all_reduce"
# fp8_scaling values whose quantizer reduces its amax over tp under SP (quantizer.cpp l.882-888, Float8CurrentScaling)
AMAX_TP_SCALINGS = ("per_tensor_current",)
# One FP32 amax a tensor (quantizer.cpp l.886 `tensors = {amax}`; pytorch/tensor/float8_tensor.py l.278-279:
# torch.empty(1, dtype=torch.float32))
AMAX_BYTES = DTYPE_BYTES["float32"]


def amax_reduced(training, te: bool) -> bool:
    """Whether a run's FP8 casts all-reduce their amax over tp: Megatron-LM + TE (`te`), current scaling, SP."""
    return bool(te and training.fp8_scaling in AMAX_TP_SCALINGS and training.sequence_parallel)


def amax_block_calls(model, block: str, phase: str) -> int:
    """Amax all-reduces of one TP block's pass (`block` "attention" or "dense FFN"; `phase` "fwd", "recompute" or
    "bwd"): MLA's forward 2 (its two gathered up-projection inputs), every other block and pass 1 (module docstring)."""
    if phase != "bwd" and block == "attention" and model.attention.kind == "mla":
        return 2
    return 1


def amax_comm_calls(model, cls, blocks: int, full, mlp_redo) -> np.ndarray:
    """Amax all-reduces per layer per micro-batch: each TP block's forward (again under a full recompute, a dense
    MLP's again under the "mlp" checkpoint, `mlp_redo`) and backward (amax_block_calls); `blocks` counts the
    attention blocks and a dense MLP as terms.TermBuilder._build does."""
    attention = blocks - (0 if cls.is_moe else 1)
    fwd = attention * amax_block_calls(model, "attention", "fwd") + (0 if cls.is_moe else 1)
    bwd = attention + (0 if cls.is_moe else 1)
    return fwd * (1 + np.where(full, 1, 0)) + bwd + mlp_redo


def amax_layer_comms(model, training, device_kind: str, cls, size_bytes, blocks: int, full, mlp_redo) -> list:
    """The layer's amax all-reduces, [] unless amax_reduced (Megatron-LM + TE: runs_megatron_te): one CommCall on tp of
    AMAX_BYTES a call (rows shaped as `size_bytes`, the TP blocks' gather size), amax_comm_calls calls."""
    if not amax_reduced(training, runs_megatron_te(training.framework, device_kind)):
        return []
    return [CommCall(AMAX_ALL_REDUCE, "tp", "all_reduce", np.full(np.shape(size_bytes), float(AMAX_BYTES)),
                     amax_comm_calls(model, cls, blocks, full, mlp_redo))]


__all__ = ["AMAX_ALL_REDUCE", "AMAX_BYTES", "AMAX_TP_SCALINGS", "amax_block_calls", "amax_comm_calls",
           "amax_layer_comms", "amax_reduced"]
