"""Megatron-Core's MoE layer as a named implementation runs it: the kernels moesim's generic router and dispatcher
operators leave out (data: moesim/ops/mcore_moe.toml, read off Megatron-LM and TransformerEngine; session 20)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from moesim.errors import SpecError
from moesim.ops.base import Op, memory
from moesim.paths import read_versioned_toml

IMPL_FILE = Path(__file__).with_name("mcore_moe.toml")
FP32_BYTES = 4
INDEX_BYTES = 8  # torch.long counts (token_dispatcher.py torch.full(..., dtype=torch.long))
ADD_PASSES = 3  # output += shared: two reads, one write
# The dispatch backends Megatron-LM's MoEFlexTokenDispatcher runs (d98e8a64 token_dispatcher.py l.1835-1852:
# _DeepepManager, _HybridEPManager): DeepEP's normal kernels and HybridEP (moesim/ops/layer.py _flex_dispatch).
FLEX_BACKENDS = ("deepep", "hybridep")


@dataclass(frozen=True)
class MoEImpl:
    """One implementation's kernel counts and bytes per (token, expert) element (mcore_moe.toml comments)."""

    gating_fwd_kernels: int
    gating_fwd_bytes_per_token_expert: float
    gating_bwd_kernels: int
    gating_bwd_bytes_per_token_expert: float
    row_id_map_kernels: int
    row_id_map_bytes_per_token_expert: float
    dispatch_fill_kernels: int
    probs_sort_kernels: int
    shared_add_kernels: int
    probs_all_to_all_calls: int
    probs_bytes_per_slot: float


_FIELDS = set(MoEImpl.__dataclass_fields__)


@lru_cache(maxsize=1)
def _impls() -> dict[str, MoEImpl]:
    data = read_versioned_toml(IMPL_FILE)
    out = {}
    for name, table in data.get("impl", {}).items():
        figures = {k: v for k, v in table.items() if k not in ("source", "flags")}
        if set(figures) != _FIELDS:
            raise SpecError("unknown or missing keys", file=str(IMPL_FILE), field=f"impl.{name}",
                            value=sorted(set(figures) ^ _FIELDS), allowed=sorted(_FIELDS))
        out[name] = MoEImpl(**figures)
    return out


def impl_names() -> tuple[str, ...]:
    """The implementations a scenario's [moe] router_impl may name."""
    return tuple(_impls())


def moe_impl(name: str) -> MoEImpl:
    try:
        return _impls()[name]
    except KeyError:
        raise SpecError("unknown MoE implementation", file=str(IMPL_FILE), field="moe.router_impl", value=name,
                        allowed=impl_names()) from None


def gating_op(impl: MoEImpl, t_dev, num_experts) -> Op:
    """The router's gating (softmax, group-limited top-k, capacity drop, seq aux loss) as the implementation's
    kernels: bytes = kernels' HBM passes per (token, expert) × t·E (mcore_moe.toml), forward and backward apart."""
    elements = t_dev * num_experts
    op = memory("router", "router_gating", "float32", impl.gating_fwd_bytes_per_token_expert * elements,
                kernels=float(impl.gating_fwd_kernels))
    bwd_factor = impl.gating_bwd_bytes_per_token_expert / impl.gating_fwd_bytes_per_token_expert
    return replace(op, meta={"bwd_bytes_factor": bwd_factor, "bwd_kernels": float(impl.gating_bwd_kernels)})


def dispatch_ops(impl: MoEImpl, t_dev, slots, num_experts, tp, sorted_) -> list[Op]:
    """The dispatcher's kernels before the token copy: the GPU fill of the per-expert counts
    (num_experts·tp longs), TE's row id map (three passes over [t, E]) and, with several local experts, the
    probs' sort by local expert (read and write `slots` probabilities in the router's dtype, the implementation's
    probs_bytes_per_slot: TE v2.11 triton/permutation.py l.158 permutes them in probs.dtype; `sorted_` is 1 there,
    else 0)."""
    fill = replace(memory("permute", "dispatch_counts_fill", "int64", num_experts * tp * INDEX_BYTES,
                          kernels=float(impl.dispatch_fill_kernels)), meta={"bwd_bytes_factor": 0.0})
    row_map = replace(memory("permute", "permute_row_id_map", "int32",
                             impl.row_id_map_bytes_per_token_expert * t_dev * num_experts,
                             kernels=float(impl.row_id_map_kernels)), meta={"bwd_bytes_factor": 0.0})
    # bytes: one read + one write of each slot's probability (token_dispatcher.py l.679-690 view/transpose/contiguous)
    probs_dtype = "float32" if impl.probs_bytes_per_slot == FP32_BYTES else "bfloat16"
    probs = replace(memory("permute", "permute_probs_sort", probs_dtype,
                           sorted_ * 2 * slots * impl.probs_bytes_per_slot, kernels=sorted_ * impl.probs_sort_kernels),
                    meta={"table_op": "permute"})
    return [fill, row_map, probs]


def probs_all_to_all_calls(impl: MoEImpl, dispatch_backend: str) -> int:
    """All-to-alls of the routing probabilities of their own per pass (forward; the backward reverses each):
    the alltoall dispatcher's `impl.probs_all_to_all_calls` (Megatron-LM @ d98e8a64 token_dispatcher.py l.705 the
    tokens', l.718 `global_probs = all_to_all(self.ep_group, permuted_probs, ...)`), none under the flex dispatcher's
    DeepEP / HybridEP (FLEX_BACKENDS): their dispatch carries the probabilities with the tokens (fused_a2a.py l.116-119
    `buffer.dispatch(x, topk_idx=..., topk_weights=token_probs)`, its backward's combine l.152-156; HybridEP
    l.425-428 `dispatch_with_permute(..., probs=probs)`, l.454-456 `combine_with_unpermute(..., probs=grad_probs)`;
    token_dispatcher.py l.1320-1323, l.1151-1154), their bytes already priced with the dispatch (deepep.toml
    [records] per_topk_bytes; HybridEP's rate was measured with them: hybridep.toml, module docstring)."""
    return 0 if dispatch_backend in FLEX_BACKENDS else impl.probs_all_to_all_calls


def shared_add_op(impl: MoEImpl, tokens, h, q) -> Op:
    """combine_postprocess's `output += shared_expert_output` over the layer's tokens (forward only)."""
    op = memory("unpermute", "shared_expert_add", "bfloat16", ADD_PASSES * tokens * h * q,
                kernels=float(impl.shared_add_kernels))
    return replace(op, meta={"bwd_bytes_factor": 0.0})


__all__ = ["FLEX_BACKENDS", "MoEImpl", "dispatch_ops", "gating_op", "impl_names", "moe_impl", "probs_all_to_all_calls",
           "shared_add_op"]
