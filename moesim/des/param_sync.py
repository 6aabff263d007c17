"""The simulator's optimizer step and what follows it on the grad stream: ZeRO >= 1's parameter all-gathers after the
step (Megatron-Core's default), none (overlap_param_gather: in the next forward, schedule.py `param_wait`), or chunk 0's
right after its own optimizer step (overlap_param_gather_with_optimizer_step). The rule and its sources:
moesim/estimate/param_gather.py, which the estimate prices by; moved out of des/schedule.py (over 400 lines)."""

from __future__ import annotations

from moesim.des.program import COLLECTIVE, COMPUTE
from moesim.estimate.param_gather import PARAM_GATHER_LABEL, WITH_STEP_LABEL, chunk_step_share


def device_step_share(costs, stage: int) -> float:
    """Chunk 0's share of the device's optimizer step (param_gather.chunk_step_share: the device's dense parameters
    over v, against its dense and expert parameters after ZeRO's shard, the estimate's even-chunk rule)."""
    lay = costs.layout
    pieces = [costs.stages[c * lay.pp + stage] for c in range(max(lay.vp, 1))]
    dense = sum(p.param_dense_bytes for p in pieces) / (lay.dp * lay.cp)
    expert = sum(p.param_expert_bytes for p in pieces) / lay.edp
    return float(chunk_step_share(dense, expert, max(lay.vp, 1)))


def optimizer_step(b, costs) -> None:
    """The optimizer step after the last grad-stream operation, then the parameter all-gathers it launches:
    default, each bucket's after the step, in the buckets' order (Megatron-LM d98e8a64 distrib_optimizer.py
    l.3168-3199 step_with_ready_grads); with_optimizer_step, chunk 0's optimizer first, its gathers dispatched
    after it (every bucket, dense then expert: `dispatch_chunk`), the rest of the step beside them (optimizer.py
    l.1667-1676 ChainedOptimizer._step); with overlap_param_gather alone, none here."""
    grads = [op.index for op in b.ops if op.stream == "grad"]
    deps, optimizer_s = tuple(grads[-1:]), costs.optimizer_s
    if b.with_step:
        share = device_step_share(costs, b.stage)
        b.add("compute", COMPUTE, WITH_STEP_LABEL, "step", -1, -1, deps, duration_s=optimizer_s * share)
        b.dispatch_chunk(b.stage)  # chunk 0 of this stage: piece `stage`, after its optimizer step
        deps, optimizer_s = (), optimizer_s * (1.0 - share)
    step = b.add("compute", COMPUTE, "optimizer", "step", -1, -1, deps, duration_s=optimizer_s)
    for axis, nbytes in () if b.forward_gathers else b.gathers:
        spec = costs.price(f"{axis}_all_gather", axis, "all_gather", nbytes)
        if spec is not None:
            b.add("grad", COLLECTIVE, PARAM_GATHER_LABEL.format(axis=axis), "step", -1, -1, (step,), chain=False,
                  comm=spec)
