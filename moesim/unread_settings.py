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
