"""CUDA graphs in training: which operators a captured module holds, and the launches it is charged; and the
whole-iteration graph (FULL_ITERATION).

Megatron-LM (NVIDIA/Megatron-LM @ d98e8a64, docs/user-guide/features/cuda_graph.md): "CUDA Graphs reduce
kernel-launch overhead by recording GPU operations once and replaying the recording"; --cuda-graph-modules picks
what a per-layer graph captures (training.cuda_graph_scope, CUDA_GRAPH_MODULES). moesim charges each kernel the
profile's kernel_launch_us (moesim.ops.price); a captured module's operators are replayed as one graph, so they are
charged one launch per part and pass (the graph's replay), not one per kernel (DERIVED: the replay's own cost is
taken as one kernel launch). Nothing else changes: the kernels' own times, and what the capture cannot hold (the
dispatch all-to-alls and the permute / expert work of a dropless MoE layer, whose shapes change every step) stay.

  module          moesim parts captured                         source (cuda_graph.md, "--cuda-graph-modules options")
  attn            attention                                     TransformerLayer._forward_attention()
  mlp             dense_ffn (dense layers)                      _forward_mlp() for dense layers
  moe             router, permute, expert_ffn, unpermute,       _forward_mlp() for MoE layers (drop-and-pad only)
                  shared_experts (MoE layers)
  moe_router      router, shared_experts (no shared             MoE router + shared experts (if not EP-comm-overlapped)
                  experts with training.moe_a2a_overlap)
  moe_preprocess  none priced apart                             MoELayer.preprocess(): its metadata kernels are not
                                                                operators of moesim's list (the permute copies run in
                                                                the dispatch, outside it)

The whole-iteration graph (training.cuda_graph_scope = ["full_iteration"]: Megatron-LM `--cuda-graph-impl
full_iteration`, whose --cuda-graph-modules "must be empty"; cuda_graph.md "Full-Iteration Training CUDA Graph":
"Captures the entire training iteration (excluding optimizer) as a single CUDA graph"). FullCudaGraphWrapper
(megatron/core/full_cuda_graph.py) captures `forward_backward_func`, every micro-batch's forward and backward on
the device, pipeline sends and gradient reductions included, and replays it once a step; the optimizer step runs
outside it, eager. So every operator of a layer pass, its head and its embedding is charged no launch, and the
host's per-layer cost (efficiency.layer_overhead_s: launches, the dropless dispatcher's host sync, framework
dispatch) is not paid: the replay runs no Python and no host sync (a host-device sync cannot be captured:
cuda_graph.md requires --no-check-for-nan-in-loss-and-grad for that reason). The one replay launch a step is not
charged (one kernel_launch_us a step: under 1e-5 of any step priced). Kernel times, memory and every communication
stay. What it requires of a dropless MoE model: static shapes, which Megatron gets from HybridEP with
moe_expert_rank_capacity_factor (token_dispatcher.py: "Static upper bound on permuted tokens passed to HybridEP
(dropless EP rank budget) ... num_permuted_tokens stays None; HybridEP sizes buffers dynamically (CPU sync in
dispatch)") and the paged stash (cuda_graph.md: "With paged stash ... expert dispatch shapes become static ...
which allows full-iteration CUDA graphs to be used on MoE models"); moesim.specs.scenario refuses it on a dropless
model dispatched otherwise. The capacity budget sizes buffers, not work: the fused grouped GEMM reads the routed
count on the device (experts.py, `num_tokens_tensor=tokens_per_expert.sum()`), so the experts stay priced on the
routed tokens (the paged stash's memory is not priced here).
"""

from __future__ import annotations

from dataclasses import replace

from moesim.ops.base import Op

CAPTURED_PARTS = {"attn": ("attention",), "mlp": ("dense_ffn",),
                  "moe": ("router", "permute", "expert_ffn", "unpermute", "shared_experts"),
                  "moe_router": ("router", "shared_experts"), "moe_preprocess": ()}
MOE_ONLY = ("moe", "moe_router", "moe_preprocess")
DENSE_ONLY = ("mlp",)
FULL_ITERATION = "full_iteration"  # the whole-iteration graph (module docstring); alone in a scope


def captured_parts(scope: tuple[str, ...], is_moe: bool, a2a_overlap: bool = False) -> frozenset[str]:
    """The parts of a layer (moesim.ops.base.PARTS) that `scope`'s modules capture on a MoE or a dense layer;
    `a2a_overlap` (training.moe_a2a_overlap): moe_router leaves the shared experts out (module docstring's table)."""
    out: set[str] = set()
    for module in scope:
        if (module in MOE_ONLY and not is_moe) or (module in DENSE_ONLY and is_moe):
            continue
        parts = CAPTURED_PARTS[module]
        if module == "moe_router" and a2a_overlap:  # cuda_graph.md l.70: shared experts "if not EP-comm-overlapped"
            parts = tuple(p for p in parts if p != "shared_experts")
        out.update(parts)
    return frozenset(out)


def graphed(ops: list[Op], scope: tuple[str, ...], is_moe: bool, a2a_overlap: bool = False) -> list[Op]:
    """`ops` (one pass of a layer) with each captured part charged one launch, its first operator's (the graph's
    replay), and its other operators none (module docstring); host operators and other parts unchanged. Under the
    whole-iteration graph every operator is charged no launch and the host operators no time."""
    if FULL_ITERATION in scope:
        return [replace(op, time_s=op.time_s * 0.0) if op.kind == "host" else replace(op, launches=0.0) for op in ops]
    parts = captured_parts(scope, is_moe, a2a_overlap)
    seen: set[str] = set()
    out = []
    for op in ops:
        if op.part in parts and op.kind != "host":
            out.append(replace(op, launches=0.0 if op.part in seen else 1.0))
            seen.add(op.part)
        else:
            out.append(op)
    return out
