"""Where ZeRO ≥ 1's parameter all-gather runs: after the optimizer step, as Megatron-Core's distributed optimizer.

MCore's distributed optimizer reduce-scatters each gradient bucket as its gradients are ready (param_and_grad_buffer.py
`start_grad_sync`), updates its shard, then gathers the updated parameters bucket by bucket: with
`overlap_param_gather` off (Megatron's default: arguments.py `--overlap-param-gather`, default False) the gathers are
launched synchronously right after the optimizer step (NVIDIA/Megatron-LM d98e8a64 core/optimizer/distrib_optimizer.py
l.3168-3199, `step_with_ready_grads`: `should_sync_params = not self.ddp_config.overlap_param_gather`, then
`start_param_sync_for_bucket_group_subset`, every bucket group of every model chunk, dense and expert; each
`_ParamAndGradBucketGroup.start_param_sync` with `async_op` False, param_and_grad_buffer.py l.383-408). Nothing runs
beside them: the step ends when the last gather ends. Both engines place them so (`gathers_after_step`): the
simulator as operations on the grad stream after its optimizer step (moesim/des/schedule.py `build_stage_program`),
the estimate as a part of the step after `optimizer_time_s` (moesim/estimate/core.py), each bucket the one its
reduce-scatter reduced (grad_buckets.mcore_buckets), priced as before.

With `--overlap-param-gather` MCore dispatches each bucket's gather ahead of the next iteration's forward (the forward
pre-hook waits on it: distributed_data_parallel.py l.517-551, `finish_param_sync` starting the next bucket's,
param_and_grad_buffer.py l.538-575). moesim has no such setting: not priced (docs/collectives-history.md, Session 24
(zero1ag)).
"""

from __future__ import annotations

# The names the gathers are priced under, one per gradient axis (the estimate's ledger, the simulator's CommSpec).
PARAM_GATHER_NAMES = ("dp_all_gather", "edp_all_gather")
# Its label on the simulator's grad stream, per axis.
PARAM_GATHER_LABEL = "parameter all-gather ({axis})"


def gathers_after_step(zero_stage):
    """Whether a step gathers its buckets' parameters after the optimizer step (scalar or array): every ZeRO stage
    that reduce-scatters them (>= 1, the distributed optimizer keeping a shard of the updated parameters; ZeRO-3's
    per-layer gathers are priced apart, as before, core.py `zero3_mb`); ZeRO-0 all-reduces and keeps them whole."""
    return zero_stage >= 1
