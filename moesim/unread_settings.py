"""One-line notes for a [training] key set where nothing priced reads it (as sweep's notes say of comm_sm_share /
a2a_kernel_sms, moesim.ops.sm_share.unmoved_setting_note): the run is priced as if it were not set."""

from __future__ import annotations

from moesim.megatron_rules import runs_megatron_te


def te_op_fuser_note(scenario) -> str | None:
    """Why training.te_op_fuser = true moves nothing in `scenario`, None where it is read or not set. It is read
    only where Megatron-Core's TEGroupedMLP adds a biased expert FC2's bias (moesim/ops/layer.py LayerOps.experts:
    model.ffn_bias, a mixture-of-experts model, training.framework "megatron-te" on a GPU)."""
    tr, model, hw = scenario.training, scenario.model, scenario.hardware
    if not tr.te_op_fuser:
        return None
    if model.moe is None:
        why = f"model '{model.name}' has no experts"
    elif not model.ffn_bias:
        why = f"the experts of model '{model.name}' have no FC2 bias (ffn_bias = false)"
    elif not runs_megatron_te(tr.framework, hw.device_kind):
        why = (f"training.framework is '{tr.framework}'" if tr.framework != "megatron-te"
               else f"hardware '{hw.name}' is not a GPU ({hw.device_kind})") + ": no Megatron-Core TEGroupedMLP runs"
    else:
        return None
    return (f"training.te_op_fuser = true moves nothing: it says where Megatron-Core adds the experts' FC2 bias "
            f"(inside TransformerEngine's fused ops), and {why}; priced as if it were not set")


# [training] keys read only through TrainingSpec.fp8_scaling, which is "none" without FP8 GEMMs, and the values that
# say nothing (defaults; "none", the bf16 recipe's gemm_scaling)
_FP8_GEMM_KEYS = (("gemm_scaling", ("", "none")), ("fp8_transpose", ("cast_transpose",)),
                  ("fp8_weight_transpose", ("cached",)))


def fp8_gemm_keys_note(scenario) -> str | None:
    """Why FP8-GEMM keys set off their defaults move nothing in `scenario` (GEMMs not in float8: fp8_scaling is
    "none", moesim/specs/training.py, so precision_terms.py and device_state.py read none of them); None otherwise."""
    tr = scenario.training
    gemm = tr.dtype_for("gemm")
    said = [f"{key} = {getattr(tr, key)!r}" for key, default in _FP8_GEMM_KEYS
            if gemm != "float8" and getattr(tr, key) not in default]
    if not said:
        return None
    one = len(said) == 1
    return (f"training.{' and '.join(said)} move{'s' * one} nothing: {'it says' if one else 'they say'} how FP8 GEMM "
            f"inputs are scaled and transposed, and this run's GEMMs are {gemm}; priced as if not set")


def sm_share_note(scenario, layout) -> str | None:
    """training.comm_sm_share / a2a_kernel_sms set where they move nothing at `layout` (no overlapped pair, ep 1, no
    SM count, or the defaults' SMs): moesim.ops.sm_share.unmoved_setting_note, as a sweep's notes word it."""
    from moesim.ops.sm_share import unmoved_setting_note

    text = unmoved_setting_note(scenario.hardware, scenario.training, layout.ep, layout.etp)
    return f"all-to-all SMs: {text}" if text else None


def zero_bubble_grad_reduce_note(training) -> str | None:
    """Why training.overlap_grad_reduce = true is not what a zero-bubble row runs (`training`: the row's, as the
    estimate prices it); None where it is off or the schedule is not zero bubble. sail-sg's runtime, which moesim's
    ZB-H1 / ZB-V follow, asserts it off with the distributed optimizer (zero-bubble-pipeline-parallelism @ 39f2c186
    megatron/core/zbpp_utils.py l.130-132, as it does overlap_param_gather, which specs/param_overlap.py refuses) and
    without it runs the whole schedule under no_sync; both engines price it off (estimate/grad_buckets.py
    SYNC_AFTER_PIPELINE). Said, not refused: the key is on by default, and bundled zero-bubble searches keep running."""
    from moesim.specs.param_overlap import DISTRIBUTED_OPTIMIZER_STAGES, ZERO_BUBBLE_SCHEDULES

    schedule = training.pipeline_schedule
    if not training.overlap_grad_reduce or schedule not in ZERO_BUBBLE_SCHEDULES:
        return None
    why = ("sail-sg's zero-bubble runtime asserts it off with the distributed optimizer (zero-bubble-pipeline-"
           "parallelism @ 39f2c186 zbpp_utils.py l.130-132)" if training.zero_stage in DISTRIBUTED_OPTIMIZER_STAGES
           else "sail-sg's zero-bubble runtime runs the whole schedule under no_sync (zero-bubble-pipeline-"
                "parallelism @ 39f2c186 runtime.py l.195)")
    return (f"training.overlap_grad_reduce = true is not run under pipeline_schedule '{schedule}' at zero_stage "
            f"{training.zero_stage}: {why}; priced as off (each stage's gradients synced in one bucket after its "
            f"last weight-gradient pass)")


def row_override_note(base, training) -> str | None:
    """The keys `base` (the scenario's training) sets that a search row (`training`, its schedule and ZeRO stage)
    runs without, as Megatron refuses them there (specs/param_overlap.py row_overrides); None where none is."""
    from moesim.specs.param_overlap import row_overrides

    off = row_overrides(base, training.pipeline_schedule, training.zero_stage)
    if not off:
        return None
    keys = " and ".join(f"training.{key} = true" for key in off)
    return (f"{keys} not run on this row (pipeline_schedule '{training.pipeline_schedule}', zero_stage "
            f"{training.zero_stage}): Megatron refuses {'it' if len(off) == 1 else 'them'} there (moesim/specs/"
            f"param_overlap.py cites each rule); priced without")
