"""The operators the CPU/GPU harness's Switch layer executes (validate/switch_layer.py, validate/routing.py),
phase by phase, as moesim.ops operators: what `moesim.calibrate.predict` prices when a profile has
operator tables for the record's dtype.

Every operator is one the harness runs, with the bytes it moves or the FLOP it does, and `kernels` = the
ATen operator calls it stands for (each pays the profile's `efficiency.kernel_launch_us`: on a CPU the
eager dispatch and autograd bookkeeping of one call; views, `.t()`, `detach` included). The call counts
were read off the code with a TorchDispatchMode counter (every `aten` call of each phase, forward and
autograd backward, over experts_per_rank 1-4, top-k 1-2, normalised gates on/off) and are the
`*_CALLS` constants below. Memory operators carry the name `validate.ops` times them under (MEMORY_OPS),
so a profile calibrated from `python -m validate.ops` prices each by its own measured bandwidth table.

Notation (per rank; LayerRecord): T tokens, d d_model, f d_ff, e experts per rank, E experts, k top-k,
q element bytes, R rows the rank's experts process (max), r rows the rank sends, I = 8 (int64 indices),
P = 4 (the float32 router).
"""

from __future__ import annotations

from dataclasses import replace

from moesim.calibrate.records import LayerRecord
from moesim.ops.base import Op, backward as backward_op, gemm, memory

ROUTER_DTYPE = "float32"  # validate/routing.py runs the router in float32 (Switch §2.4 selective precision)
INDEX_BYTES = 8  # int64 indices, one-hot and positions (validate/routing.py)
FP32_BYTES = 4
# Memory operators by the name validate.ops times them under (validate/ops.py MEMORY_CASES).
MEMORY_OPS = ("softmax", "permute", "gather", "index_put", "scatter_add", "fill", "add", "copy", "relu", "index")
# ATen calls per phase (module docstring): router_gating 37 (+2 with top-k > 1, +2 with normalised gates);
# expert_compute 6 with one local expert, else 17 + 6 per expert; combine_unpermute 4; the calling thread's
# part of the dispatch all-to-all phase 8 and of the combine 2; backward 52 with one local expert, else
# 43 + 15 per expert, +7 with normalised gates (+1 more with top-k > 1).
GATING_CALLS, GATING_TOPK_CALLS, GATING_NORMALIZE_CALLS = 37, 2, 2
EXPERT_ONE_CALLS, EXPERT_BASE_CALLS, EXPERT_PER_EXPERT_CALLS = 6, 17, 6
UNPERMUTE_CALLS = 4
BACKWARD_ONE_CALLS, BACKWARD_BASE_CALLS, BACKWARD_PER_EXPERT_CALLS = 52, 43, 15
BACKWARD_NORMALIZE_CALLS = 7
# Calling-thread calls of the phases around a gloo collective (counted alike): under the CPU clock these
# are all of those phases' work that the record holds (validate/timing.py).
DISPATCH_A2A_CALLS, COMBINE_A2A_CALLS = 8, 2
# Bytes of the routing bookkeeping per [k·T, E] int64 element: one_hot written (1), cumsum read + written
# (2), position = cumsum · one_hot (2 read, 1 written), its row sum read (1).
GATING_INDEX_PASSES = 7
SORT_PASSES = 10  # the expert regroup's int64 index work on R rows: repeat_interleave, %, //, *, +, argsort


def _mem(part: str, name: str, dtype: str, nbytes: float, kernels: float, pass_: str = "fwd") -> Op:
    return memory(part, name, dtype, float(nbytes), kernels=float(kernels), pass_=pass_)


def harness_ops(rec: LayerRecord) -> dict[str, list[Op]]:
    """Operators per phase of one measured layer (module docstring), forward and autograd backward."""
    T, d, f, e, E = rec.tokens_per_rank, rec.d_model, rec.d_ff, rec.experts_per_rank, rec.num_experts
    k, q, R, r, dt = rec.top_k, rec.element_bytes, rec.received_rows, rec.sent_rows, rec.dtype
    normalize = bool(rec.config.get("normalize_gates", False))
    cast = dt != ROUTER_DTYPE  # x.float() before the router: one copy
    router = replace(gemm("router", "router", ROUTER_DTYPE, float(T), float(E), float(d)), kernels=2.0 + cast)
    gating_calls = GATING_CALLS + GATING_TOPK_CALLS * (k > 1) + GATING_NORMALIZE_CALLS * normalize
    gating = [_mem("router", "softmax", ROUTER_DTYPE, 2 * T * E * FP32_BYTES, 1),
              _mem("router", "index", ROUTER_DTYPE, GATING_INDEX_PASSES * k * T * E * INDEX_BYTES, gating_calls - 1)]
    if cast:
        gating.append(_mem("router", "copy", dt, T * d * (q + FP32_BYTES), 0))
    permute = _mem("permute", "gather", dt, 2 * r * d * q, 1)  # x[token_index]
    rows = max(R / e, 1.0)
    fc1 = replace(gemm("expert_ffn", "expert_fc1", dt, rows, float(f), float(d), count=float(e)), kernels=2.0 * e)
    relu = replace(_mem("expert_ffn", "relu", dt, 2 * R * f * q, 2 * e), meta={"bwd_bytes_factor": 1.5})
    fc2 = replace(gemm("expert_ffn", "expert_fc2", dt, rows, float(d), float(f), count=float(e)), kernels=2.0 * e)
    experts = [fc1, relu, fc2]
    if e > 1:  # regroup rows by local expert, run each, concatenate, restore the arrival order
        experts += [_mem("expert_ffn", "index", "float32", SORT_PASSES * R * INDEX_BYTES, EXPERT_BASE_CALLS - 3),
                    _mem("expert_ffn", "gather", dt, 2 * R * d * q, 1),  # received[order]
                    _mem("expert_ffn", "copy", dt, 2 * R * d * q, 1),  # torch.cat of the experts' outputs
                    _mem("expert_ffn", "gather", dt, 2 * R * d * q, 1)]  # y_sorted[inverse]
    unpermute = [_mem("unpermute", "add", dt, 3 * R * d * q, 2),  # back · gate (and the unsqueeze)
                 _mem("unpermute", "fill", dt, T * d * q, 1),  # zeros_like(x)
                 _mem("unpermute", "scatter_add", dt, 3 * R * d * q, 1)]  # index_add
    # backward, in autograd order: unpermute, experts, the expert weights' select_backward, permute, router
    bwd = [_mem("unpermute", "permute", dt, 2 * R * d * q, 1, "bwd"),  # index_add backward: gather dy rows
           _mem("unpermute", "add", dt, 5 * R * d * q, 3, "bwd")]  # dy·gate, d gate = Σ dy·back
    bwd += [b for op in (fc2, relu, fc1) for b in backward_op(op)]
    weight_bytes = e * d * f * q  # the stacked [e, d, f] W_in (and W_out)
    # w[j] is a select of the stacked weight: its backward zero-fills a whole [e, d, f] tensor and copies
    # the expert's slice in; the e results are summed into the stack's gradient (e − 1 adds), per matrix
    bwd += [_mem("expert_ffn", "fill", dt, 2 * e * weight_bytes, 0, "bwd"),
            _mem("expert_ffn", "copy", dt, 2 * 2 * e * d * f * q, 0, "bwd"),
            _mem("expert_ffn", "add", dt, 2 * 3 * (e - 1) * weight_bytes, 0, "bwd")]
    if e > 1:  # the regroup's index backwards: zero-filled gradients with rows scattered in (twice)
        bwd += [_mem("expert_ffn", "fill", dt, 2 * R * d * q, 0, "bwd"),
                _mem("expert_ffn", "index_put", dt, 2 * 3 * R * d * q, 0, "bwd")]
    bwd += [_mem("permute", "fill", dt, T * d * q, 0, "bwd"),  # x[token_index] backward
            _mem("permute", "index_put", dt, 3 * r * d * q, 0, "bwd"),
            _mem("router", "softmax", ROUTER_DTYPE, 3 * T * E * FP32_BYTES, 0, "bwd"),
            _mem("router", "fill", ROUTER_DTYPE, T * E * FP32_BYTES, 0, "bwd")]  # top-k / gate gather backward
    bwd += backward_op(router)
    bwd.append(_mem("permute", "add", dt, 3 * T * d * q, 0, "bwd"))  # dx = router dgrad + permute backward
    calls = (BACKWARD_ONE_CALLS if e == 1 else BACKWARD_BASE_CALLS + BACKWARD_PER_EXPERT_CALLS * e)
    calls += (BACKWARD_NORMALIZE_CALLS + (k > 1)) * normalize
    counted = sum(op.kernels for op in bwd)
    # the rest of the backward's calls (views, transposes, the autograd bookkeeping, the reverse
    # all-to-alls' calling-thread part) on the small index operator
    bwd.append(_mem("router", "index", ROUTER_DTYPE, T * k * INDEX_BYTES, max(calls - counted, 0.0), "bwd"))
    return {"router_matmul": [router], "router_gating": gating, "router": [router] + gating,
            "dispatch_permute": [permute], "expert_compute": experts, "combine_unpermute": unpermute,
            "backward": bwd}


def a2a_calling_thread_ops(rec: LayerRecord) -> dict[str, list[Op]]:
    """The calling thread's share of the collective phases (CPU clock): their ATen calls, no bytes."""
    dt = rec.dtype
    return {"dispatch_a2a": [_mem("permute", "index", dt, 1.0, DISPATCH_A2A_CALLS)],
            "combine_a2a": [_mem("unpermute", "index", dt, 1.0, COMBINE_A2A_CALLS)]}
