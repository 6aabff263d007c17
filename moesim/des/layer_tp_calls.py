"""The simulator's side of two layer-collective rules the estimate prices (one operator list, both engines): FP8
current scaling's amax all-reduces (moesim/estimate/amax_comms.py) and the shared experts' tensor-parallel
collectives (moesim/estimate/shared_tp_comms.py), issued on the comm stream where the run issues them. Kept apart
from des/schedule.py (over the house rule's 400 lines); the rules and their sources are in those two modules."""

from __future__ import annotations

from moesim.estimate.amax_comms import AMAX_ALL_REDUCE, amax_block_calls
from moesim.estimate.shared_tp_comms import SHARED_ALL_REDUCE, SHARED_GATHER, SHARED_SCATTER, SHARED_WGRAD_GATHER


def issue_amax(builder, lc, block: str, phase: str, layer: int, mb: int) -> None:
    """`block`'s amax all-reduces of this pass on the comm stream, before the cast and its gather (amax_block_calls);
    none where the layer prices none."""
    spec = lc.comms.get(AMAX_ALL_REDUCE)
    if spec is None:
        return
    for _ in range(amax_block_calls(builder.costs.builder.model, block, phase)):
        builder.comm(spec, phase, layer, mb)


def run_parts(builder, lc, order, parts, phase: str, layer: int, mb: int, stage_names: dict) -> None:
    """The MoE stage parts in `order`, the shared experts' between their collectives on the comm stream: forward (or
    replay) amax, gather, kernels, scatter; backward amax, gather, wgrad re-gather, kernels, scatter; an all-reduce
    after the kernels without sequence parallelism."""
    shared_calls = SHARED_ALL_REDUCE in lc.comms or SHARED_GATHER in lc.comms
    for part in order:
        if part != "shared_experts" or not shared_calls:
            builder.compute(stage_names[part], phase, layer, mb, parts[part])
            continue
        builder.comm(lc.comms.get(AMAX_ALL_REDUCE), phase, layer, mb)
        builder.comm(lc.comms.get(SHARED_GATHER), phase, layer, mb)
        if phase == "bwd":
            builder.comm(lc.comms.get(SHARED_WGRAD_GATHER), phase, layer, mb)
        builder.compute(stage_names[part], phase, layer, mb, parts[part])
        builder.comm(lc.comms.get(SHARED_SCATTER), phase, layer, mb)
        builder.comm(lc.comms.get(SHARED_ALL_REDUCE), phase, layer, mb)


__all__ = ["issue_amax", "run_parts"]
