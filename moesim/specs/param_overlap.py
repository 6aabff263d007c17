"""The training keys of Megatron's parameter all-gather overlap, checked against what Megatron-LM accepts
(NVIDIA/Megatron-LM d98e8a64 megatron/training/arguments.py; moesim/estimate/param_gather.py prices them).
Kept apart from specs/training.py (over the house rule's 400 lines) and free of numpy (`moesim --help`)."""

from __future__ import annotations

from moesim.errors import SpecError

_BOOL_KEYS = ("overlap_param_gather", "overlap_param_gather_with_optimizer_step")
# --overlap-param-gather-with-optimizer-step: "only supported with interleaved pipeline parallelism"
# (arguments.py l.1071-1072, virtual_pipeline_model_parallel_size set: moesim's interleaved schedule)
WITH_STEP_SCHEDULES = ("interleaved",)
# --overlap-param-gather: "only supported with distributed optimizer, megatron fsdp, or dist_muon" (l.1024-1027)
DISTRIBUTED_OPTIMIZER_STAGES = (1, 2, 3)
# --overlap-param-gather-with-optimizer-step: "only supported with distributed optimizer" (l.1067-1068): ZeRO 1 / 2
WITH_STEP_STAGES = (1, 2)
ZERO_BUBBLE_SCHEDULES = ("zb-h1", "zb-v")  # moesim/estimate/grad_buckets.py SYNC_AFTER_PIPELINE: sail-sg's runtime


def check_param_overlap(tr) -> None:
    """One SpecError naming the field for a combination Megatron-LM refuses (its assertion cited beside each)."""
    for name in _BOOL_KEYS:
        value = getattr(tr, name)
        if not isinstance(value, bool):
            raise SpecError(f"must be true or false, got {value!r}", field=f"training.{name}", value=value,
                            allowed=(True, False))
    if tr.overlap_param_gather and tr.zero_stage not in DISTRIBUTED_OPTIMIZER_STAGES:
        # Megatron-LM d98e8a64 arguments.py l.1024-1027: --overlap-param-gather asserts the distributed optimizer,
        # Megatron FSDP or dist_muon (ZeRO 1 / 2, 3 here; moesim/estimate/param_gather.py gathers_after_step)
        raise SpecError("overlap_param_gather needs the distributed optimizer or FSDP (zero_stage 1, 2 or 3; "
                        "Megatron-LM d98e8a64 arguments.py l.1024-1027 asserts it), got zero_stage "
                        f"{tr.zero_stage}", field="training.overlap_param_gather", value=True, allowed=(False,))
    if tr.overlap_param_gather and not tr.overlap_grad_reduce:
        # Megatron-LM d98e8a64 arguments.py l.1024-1029: --overlap-param-gather asserts --overlap-grad-reduce
        raise SpecError("overlap_param_gather needs overlap_grad_reduce (Megatron-Core asserts it)",
                        field="training.overlap_param_gather", value=True, allowed=(False,))
    if tr.overlap_param_gather and tr.zero_stage >= 1 and tr.pipeline_schedule in ZERO_BUBBLE_SCHEDULES:
        # sail-sg/zero-bubble-pipeline-parallelism @ 39f2c186 megatron/core/zbpp_utils.py l.121-122 (ZB-V enables zero
        # bubble) and l.130-132: with the distributed optimizer, "assert not args.overlap_param_gather"
        raise SpecError("overlap_param_gather cannot run with a zero-bubble schedule and the distributed optimizer "
                        f"(zero_stage >= 1; sail-sg's zero bubble asserts it), got '{tr.pipeline_schedule}'",
                        field="training.overlap_param_gather", value=True, allowed=(False,))
    if not tr.overlap_param_gather_with_optimizer_step:
        return
    field = "training.overlap_param_gather_with_optimizer_step"
    if tr.zero_stage not in WITH_STEP_STAGES:
        # arguments.py l.1067-1068: "only supported with distributed optimizer" (ZeRO 1 / 2 here)
        raise SpecError("overlap_param_gather_with_optimizer_step needs the distributed optimizer (zero_stage 1 or "
                        f"2; Megatron-LM asserts it), got zero_stage {tr.zero_stage}", field=field, value=True,
                        allowed=(False,))
    if not tr.overlap_param_gather:
        # arguments.py l.1069-1070: "Must use --overlap-param-gather-with-optimizer-step with --overlap-param-gather"
        raise SpecError("overlap_param_gather_with_optimizer_step needs overlap_param_gather (Megatron-LM asserts "
                        "it)", field=field, value=True, allowed=(False,))
    if tr.pipeline_schedule not in WITH_STEP_SCHEDULES:
        # arguments.py l.1071-1072: "only supported with interleaved pipeline parallelism"
        raise SpecError("overlap_param_gather_with_optimizer_step runs only with the interleaved schedule (Megatron-LM "
                        f"asserts it), got pipeline_schedule '{tr.pipeline_schedule}'",
                        field="training.pipeline_schedule", value=tr.pipeline_schedule, allowed=WITH_STEP_SCHEDULES)


def row_overrides(base, schedule: str, zero_stage: int) -> dict:
    """A search row's changes to `base`'s keys where the row's schedule or ZeRO stage is one Megatron refuses them
    with (`check_param_overlap`): the row runs without them, as the estimate prices it (estimate/param_gather.py
    `with_step_rows`, `forward_gathers_s`: such rows keep the other placement)."""
    out = {}
    if base.overlap_param_gather_with_optimizer_step and (schedule not in WITH_STEP_SCHEDULES
                                                          or zero_stage not in WITH_STEP_STAGES):
        out["overlap_param_gather_with_optimizer_step"] = False
    if base.overlap_param_gather and (zero_stage not in DISTRIBUTED_OPTIMIZER_STAGES
                                      or schedule in ZERO_BUBBLE_SCHEDULES):  # ZeRO 0: priced without it anyway
        out["overlap_param_gather"] = False
    return out
