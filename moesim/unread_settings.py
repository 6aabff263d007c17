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
