"""The shared experts' tensor-parallel collectives (session 25, sharedtp), and the layer's amax all-reduces with them.

Read at NVIDIA/Megatron-LM core_v0.17.0 (9539a12e). SharedExpertMLP is Megatron's MLP on the tensor-parallel group
(megatron/core/transformer/moe/shared_experts.py l.59: `super().__init__(..., tp_group=pg_collection.tp)`):
linear_fc1 column-parallel, linear_fc2 row-parallel, as a dense MLP (models/gpt/moe_module_specs.py l.53-63).
MoELayer runs it on the layer's own input, the sequence shard under SP (moe_layer.py l.559
`shared_experts_compute(hidden_states)` before route / dispatch, l.441-466; l.546 forbids tp > 1 without SP in
training), not on anything the routed path gathered: so with SP its fc1 all-gathers its input [s, h] and its fc2
reduce-scatters its output [s, h] forward, and backward the other way round plus fc1's wgrad re-gather of its saved
shard (TE's Linear, as every column-parallel GEMM: terms.TermBuilder._tp_comms); without SP an all-reduce a pass.
Recomputed with the layer (full) or with the "moe" checkpoint (moe_layer.py l.599-613, the whole custom_forward).
Under FP8 current scaling fc1's input and fc2's output gradient reduce their amax over tp, 1 a pass as a dense MLP
(amax_comms.py). Under TE + FP8 with SP fc1 is a TE Linear like a dense MLP's (moe_module_specs.py l.53-63:
backend.column_parallel_linear()): its input is cast on the shard and gathered in FP8, the wgrad re-gather too, and
fc2's output gradient is cast on its shard and gathered in FP8 (TE v2.14 f031cf87 linear.py l.182-215, base.py
l.1228-1233; precision_terms.sp_gather_element_bytes); the reduce-scatters stay BF16 (session 25, sharedfp8).

Not priced: `moe_shared_expert_overlap` (shared_experts.py l.88-119: parallel_mode None and explicit
gather_from_sequence_parallel_region / reduce_scatter_to_sequence_parallel_region on a stream of its own, l.150-170 /
l.239-255, beside the dispatcher's all-to-alls); moesim has no such key, and Megatron's default is off. A
"shared_experts"-only checkpoint's replay (its forward runs in the attention recompute lump of the simulator).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from moesim.estimate.amax_comms import amax_layer_comms
from moesim.estimate.class_terms import CommCall

# The breakdown's entries (both engines)
SHARED_GATHER = "tp_all_gather_shared_experts"
SHARED_SCATTER = "tp_reduce_scatter_shared_experts"
SHARED_WGRAD_GATHER = "tp_all_gather_wgrad_shared_experts"
SHARED_ALL_REDUCE = "tp_all_reduce_shared_experts"


def has_shared(model, cls) -> bool:
    """Whether a layer class runs shared experts (a MoE layer of a model with num_shared_experts > 0)."""
    return bool(cls.is_moe and model.moe is not None and model.moe.num_shared_experts)


def shared_comm_calls(sequence_parallel: bool, size_bytes, full, moe_redo, gather_bytes=None) -> list:
    """The shared experts' CommCalls per layer per micro-batch, all on tp of `size_bytes` (the [t, h] activations of
    the layer's TP blocks; the SP gathers `gather_bytes`, FP8 shards under TE + FP8, else `size_bytes`): forward
    passes 1 + full + moe_redo, backward 1 (module docstring)."""
    gather_bytes = size_bytes if gather_bytes is None else gather_bytes
    fwd = 1 + np.where(full, 1, 0) + moe_redo
    if not sequence_parallel:
        return [CommCall(SHARED_ALL_REDUCE, "tp", "all_reduce", size_bytes, fwd + 1)]
    once = np.ones_like(fwd)
    return [CommCall(SHARED_GATHER, "tp", "all_gather", gather_bytes, fwd + once),
            CommCall(SHARED_SCATTER, "tp", "reduce_scatter", size_bytes, fwd + once),
            CommCall(SHARED_WGRAD_GATHER, "tp", "all_gather", gather_bytes, once)]


def layer_tp_extras(tb, cls, blocks: int, full, b, mlp_redo, moe_redo) -> list:
    """The layer's amax all-reduces (amax_comms.amax_layer_comms, with the shared experts' 1 a pass added) and the
    shared experts' collectives; `tb` the terms.TermBuilder, `moe_redo` 1 where the "moe" checkpoint replays."""
    size = b * cls.tokens * tb.model.d_model * tb.q_a  # as terms.TermBuilder._tp_comms
    shared = has_shared(tb.model, cls)
    out = []
    if tb.tr.sequence_parallel:
        for call in amax_layer_comms(tb.model, tb.tr, tb.hw.device_kind, cls, size, blocks, full, mlp_redo):
            if shared:  # fc1's input each forward, fc2's output gradient backward
                call = dataclasses.replace(call, calls=call.calls + 2 + np.where(full, 1, 0) + moe_redo)
            out.append(call)
    if shared:
        gather = b * cls.tokens * tb.model.d_model * tb.q_gather  # FP8 shards under TE + FP8 (module docstring)
        out += shared_comm_calls(tb.tr.sequence_parallel, size, full, np.where(cls.is_moe, moe_redo, 0), gather)
    return out


__all__ = ["SHARED_ALL_REDUCE", "SHARED_GATHER", "SHARED_SCATTER", "SHARED_WGRAD_GATHER", "has_shared",
           "layer_tp_extras", "shared_comm_calls"]
