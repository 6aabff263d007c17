"""Megatron-LM's "mlp", "moe_act", "moe" and "shared_experts" recompute modules (moesim/estimate/selective.py):
what each stops keeping, what each runs again in backward, and the set-ups Megatron refuses (Megatron-LM 23e00ed0
transformer_config.py, transformer_layer.py l.425-427 / l.605-620, moe/experts.py l.804-806 / l.908-914,
moe/moe_layer.py l.115-121 / l.204-220 / l.265-286)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.errors import SpecError
from moesim.estimate.terms import TermBuilder
from moesim.memory import RECOMPUTE_CODES
from moesim.ops.price import op_time_s
from moesim.specs.load import load_scenario
from moesim.specs.training import TrainingSpec
from moesim.workload import build_workload

DSV2 = "deepseek-v2-l4-b200-ep8"  # 1 dense + 3 MoE layers, 2 shared experts, BF16, no dropout


@pytest.fixture(scope="module")
def dsv2():
    return load_scenario(DSV2)


def _terms(sc, modules: tuple[str, ...], ep: int = 8, tp: int = 1) -> dict[bool, object]:
    """One layer's terms of each class (keyed by is_moe), selective with `modules`, micro-batch 1."""
    tr = dataclasses.replace(sc.training, recompute="selective", recompute_modules=modules)
    one = lambda v: np.array([float(v)])  # noqa: E731
    builder = TermBuilder(sc.model, sc.hardware, tr, one(1), one(tp), one(ep), one(1),
                          np.array([RECOMPUTE_CODES["selective"]]), one(np.nan))
    return {cls.is_moe: builder.build(cls) for cls in build_workload(sc.model, *sc.seq_lens).classes}


def _fwd(terms, part: str, names: tuple[str, ...]) -> list:
    return [op for op in terms.ops_fwd if op.part == part and op.name in names]


def test_mlp_keeps_only_the_checkpoint_input_and_reruns_the_dense_mlp(dsv2):
    base, mlp = _terms(dsv2, ("core_attn",)), _terms(dsv2, ("core_attn", "mlp"))
    n, h, f = dsv2.training.seq_len, dsv2.model.d_model, dsv2.model.d_ff
    assert dsv2.training.bytes_of("activation_storage") == 2 and not dsv2.training.dropout
    # BF16 SwiGLU MLP, no dropout: FC1's input 2h, FC1's output 2·2f and the SwiGLU output 2f per token go
    assert (base[False].activation_bytes - mlp[False].activation_bytes)[0] == pytest.approx(n * (2 * h + 6 * f))
    assert mlp[True].activation_bytes[0] == base[True].activation_bytes[0]  # an MoE layer is not an MLP
    redo = _fwd(base[False], "dense_ffn", ("mlp_norm", "fc1", "activation", "fc2"))
    assert len(redo) == 4  # the residual add after the MLP is outside Megatron's checkpoint
    extra_s = sum(np.asarray(op_time_s(op, dsv2.hardware), dtype=float).ravel()[0] for op in redo)
    assert (mlp[False].recompute_time_s - base[False].recompute_time_s)[0] == pytest.approx(extra_s)
    assert extra_s > 0
    gemm_flops = 2 * n * 3 * h * f  # FC1 (2f wide, gated) and FC2 run again
    assert (mlp[False].hardware_flops - base[False].hardware_flops)[0] == pytest.approx(gemm_flops)
    assert mlp[True].recompute_time_s[0] == base[True].recompute_time_s[0]


def _added_calls(sc, ep: int, tp: int) -> dict[str, float]:
    """Collective calls per micro-batch of the dense layer that "mlp" adds to core_attn alone."""
    calls = [{c.name: float(np.asarray(c.calls).ravel()[0]) for c in _terms(sc, mods, ep, tp)[False].comms}
             for mods in (("core_attn",), ("core_attn", "mlp"))]
    return {k: calls[1][k] - calls[0][k] for k in calls[0]}


def test_mlp_reruns_its_tp_collectives():
    """Megatron's checkpoint re-runs the MLP's forward whole: under SP its all-gather before FC1 and its
    reduce-scatter after FC2 (without SP the all-reduce), once more per micro-batch."""
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    for sp in (True, False):
        sc_sp = dataclasses.replace(sc, training=dataclasses.replace(sc.training, sequence_parallel=sp))
        added = _added_calls(sc_sp, 1, 8)
        names = ("tp_all_gather", "tp_reduce_scatter") if sp else ("tp_all_reduce",)
        assert added == {k: float(k in names) for k in added}
    dsv2 = load_scenario(DSV2)  # an MLA dense layer under SP: the MLP's h-wide gather and scatter, not the latents'
    dsv2 = dataclasses.replace(dsv2, training=dataclasses.replace(dsv2.training, sequence_parallel=True))
    added = _added_calls(dsv2, 4, 2)
    assert added == {k: float(k in ("tp_all_gather", "tp_reduce_scatter")) for k in added}


def test_moe_act_drops_fc2_input_and_reruns_the_routed_activation(dsv2):
    base, act = _terms(dsv2, ("core_attn",)), _terms(dsv2, ("core_attn", "moe_act"))
    slots, f_e = base[True].slots[0], dsv2.model.moe.expert_d_ff
    assert dsv2.training.moe_probs_in_activation  # the expert outputs are not kept either way here
    # per routed slot (ep 8, etp 1): FC2's input f_e at 2 bytes goes; the SwiGLU input 2·f_e stays at 2 bytes
    assert (base[True].activation_bytes - act[True].activation_bytes)[0] == pytest.approx(slots * 2 * f_e)
    (redo,) = _fwd(base[True], "expert_ffn", ("expert_activation",))
    assert (act[True].recompute_time_s - base[True].recompute_time_s)[0] == \
        pytest.approx(np.asarray(op_time_s(redo, dsv2.hardware), dtype=float).ravel()[0])
    # the shared experts (their bytes and activation, inside both differences above) and the dense layer are untouched
    assert act[False].activation_bytes[0] == base[False].activation_bytes[0]


def test_moe_act_keeps_expert_outputs_without_probs_in_activation(dsv2):
    """With the routing weight applied in the combine, moe_act moves it inside the activation (Megatron-LM
    23e00ed0 experts.py activation_func_with_probs): the expert outputs (2h per slot) are not kept either."""
    sc = dataclasses.replace(dsv2, training=dataclasses.replace(dsv2.training, moe_probs_in_activation=False))
    base, act = _terms(sc, ("core_attn",)), _terms(sc, ("core_attn", "moe_act"))
    slots, h, f_e = base[True].slots[0], sc.model.d_model, sc.model.moe.expert_d_ff
    assert (base[True].activation_bytes - act[True].activation_bytes)[0] == pytest.approx(slots * (2 * h + 2 * f_e))


def test_modules_that_do_not_apply_are_refused():
    sc = load_scenario("llama3-70b-l12-b200-tp8")  # dense
    with pytest.raises(SpecError, match="no MoE layers") as err:
        dataclasses.replace(sc, training=dataclasses.replace(sc.training, recompute="selective",
                                                             recompute_modules=("moe_act",)))
    assert err.value.field == "training.recompute_modules"
    mixtral = load_scenario("mixtral-8x7b-h100")  # every layer an MoE layer
    with pytest.raises(SpecError, match="every layer of 'mixtral-8x7b' is an MoE layer"):
        dataclasses.replace(mixtral, training=dataclasses.replace(mixtral.training, recompute_modules=("mlp",)))
    with pytest.raises(SpecError, match="choose one"):
        TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("moe_act",),
                     moe_activation_recompute=True)
    with pytest.raises(SpecError, match="delayed scaling") as err:
        TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("moe_act",),
                     gemm_dtype="float8", gemm_scaling="per_tensor_delayed")
    assert err.value.field == "training.gemm_scaling"
    with pytest.raises(SpecError, match="layernorm recompute does not run with FP8 delayed scaling"):
        TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("layernorm",),
                     gemm_dtype="float8")  # FP8 without a scaling named: delayed
    TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("moe_act",),
                 gemm_dtype="float8", gemm_scaling="mxfp8")  # current / block scalings run it
    with pytest.raises(SpecError, match="not allowed"):
        TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("mhc",))  # no such layer


MOE_LAYER_PARTS = ("router", "permute", "expert_ffn", "unpermute", "shared_experts")


def _time_s(ops, hw) -> float:
    return sum(np.asarray(op_time_s(op, hw), dtype=float).ravel()[0] for op in ops)


def test_moe_keeps_only_the_layer_input_and_reruns_the_layer_with_its_all_to_alls(dsv2):
    """Megatron's "moe": MoELayer.forward under one checkpoint (moe_layer.py l.265-286). It keeps the layer's input
    (the pre-MLP norm's output, the router's) and the dropout mask after it; router, permute, experts, unpermute and
    shared experts run again, and with them the dispatch, combine and probabilities' all-to-alls."""
    base, moe = _terms(dsv2, ("core_attn",)), _terms(dsv2, ("core_attn", "moe"))
    t, h = base[True].tokens_per_device[0], dsv2.model.d_model
    assert not dsv2.training.dropout  # no mask: the layer keeps its 2-byte input only
    expected = base[True].activation_bytes[0] - _moe_layer_bytes(base[True], dsv2) + 2 * t * h
    assert moe[True].activation_bytes[0] == pytest.approx(expected)
    redo = [op for op in base[True].ops_fwd
            if op.part in MOE_LAYER_PARTS and op.name not in ("moe_norm", "moe_residual")]
    assert {op.name for op in redo} >= {"router", "permute", "expert_fc1", "expert_activation", "expert_fc2",
                                        "unpermute", "shared_fc1", "shared_fc2"}
    assert (moe[True].recompute_time_s - base[True].recompute_time_s)[0] == pytest.approx(_time_s(redo, dsv2.hardware))
    assert sum(v[0] for v in moe[True].moe_recompute_parts_s.values()) == pytest.approx(_time_s(redo, dsv2.hardware))
    gemm_flops = sum(np.asarray(op.flops, dtype=float).ravel()[0] for op in redo if op.kind != "memory")
    assert (moe[True].hardware_flops - base[True].hardware_flops)[0] == pytest.approx(gemm_flops)
    calls = [{c.name: float(np.asarray(c.calls).ravel()[0]) for c in terms[True].comms} for terms in (base, moe)]
    added = {k: calls[1][k] - calls[0][k] for k in calls[0]}
    ep = ("ep_all_to_all_dispatch", "ep_all_to_all_combine", "ep_all_to_all_probs", "etp_all_gather",
          "etp_reduce_scatter")
    # and the shared experts' own tp collectives (session 25, sharedtp: replayed with them, moe_layer.py l.599-613)
    assert added == {k: float(k in ep or k.endswith("_shared_experts")) for k in added}
    assert added["tp_all_reduce_shared_experts"] == 1.0
    assert "ep_all_to_all_probs" in added  # the scenario's dispatcher sends the probabilities in a call of their own
    assert moe[False].activation_bytes[0] == base[False].activation_bytes[0]  # the dense layer is no MoELayer
    assert moe[False].recompute_time_s[0] == base[False].recompute_time_s[0]


def _moe_layer_bytes(terms, sc) -> float:
    """What one MoE layer of `sc` keeps (core_attn recompute, no layernorm recompute): the routed part and the
    shared experts, hand-counted from moesim.memory as the estimate does."""
    from moesim import memory as mem
    moe, h, n = sc.model.moe, sc.model.d_model, sc.training.seq_len
    routed = mem.moe_activation_bytes(terms.tokens_per_device[0], terms.slots[0], h, moe.expert_d_ff, moe.num_experts,
                                      1, sc.model.ffn_kind, False, 0, 2, False, 2, 0.0,
                                      sc.training.moe_probs_in_activation)
    shared = mem.mlp_activation_bytes(1, n, h, moe.num_shared_experts * moe.shared_expert_d_ff, 1, False,
                                      sc.model.ffn_kind, 2, False, 2, 0.0)
    return routed + shared


def test_shared_experts_drop_their_activations_and_rerun(dsv2):
    base, shared = _terms(dsv2, ("core_attn",)), _terms(dsv2, ("core_attn", "shared_experts"))
    n, h = dsv2.training.seq_len, dsv2.model.d_model
    f_s = dsv2.model.moe.num_shared_experts * dsv2.model.moe.shared_expert_d_ff
    # BF16 SwiGLU, no dropout: FC1's input 2h, FC1's output 2·2f_s and the SwiGLU output 2f_s per token go
    assert (base[True].activation_bytes - shared[True].activation_bytes)[0] == pytest.approx(n * (2 * h + 6 * f_s))
    redo = [op for op in base[True].ops_fwd if op.part == "shared_experts"]
    assert {op.name for op in redo} == {"shared_fc1", "shared_activation", "shared_fc2"}
    assert (shared[True].recompute_time_s - base[True].recompute_time_s)[0] == \
        pytest.approx(_time_s(redo, dsv2.hardware))
    assert [c.calls for c in shared[True].comms] == [c.calls for c in base[True].comms]  # tp 1: no collective
    assert not shared[True].moe_recompute_parts_s
    assert shared[False].activation_bytes[0] == base[False].activation_bytes[0]


def test_modules_nested_in_moe_run_twice(dsv2):
    """Inside the re-run MoE forward, moe_act discards the activation again and recomputes it before FC2's
    backward, and the shared experts' checkpoint runs its forward again in its own backward: each once more."""
    moe = _terms(dsv2, ("core_attn", "moe"))[True]
    act = _terms(dsv2, ("core_attn", "moe", "moe_act"))[True]
    shared = _terms(dsv2, ("core_attn", "moe", "shared_experts"))[True]
    (activation,) = [op for op in moe.ops_fwd if op.name == "expert_activation"]
    assert (act.recompute_time_s - moe.recompute_time_s)[0] == pytest.approx(_time_s([activation], dsv2.hardware))
    shared_ops = [op for op in moe.ops_fwd if op.part == "shared_experts"]
    assert (shared.recompute_time_s - moe.recompute_time_s)[0] == pytest.approx(_time_s(shared_ops, dsv2.hardware))
    assert act.activation_bytes[0] == moe.activation_bytes[0] == shared.activation_bytes[0]


def test_moe_and_shared_experts_refusals():
    llama = load_scenario("llama3-70b-l12-b200-tp8")  # dense
    with pytest.raises(SpecError, match="moe recomputes MoE layers: 'llama") as err:
        dataclasses.replace(llama, training=dataclasses.replace(llama.training, recompute="selective",
                                                                recompute_modules=("moe",)))
    assert err.value.field == "training.recompute_modules"
    mixtral = load_scenario("mixtral-8x7b-h100")  # no shared experts
    with pytest.raises(SpecError, match="shared_experts recomputes the shared experts: 'mixtral-8x7b' has none"):
        dataclasses.replace(mixtral, training=dataclasses.replace(mixtral.training,
                                                                  recompute_modules=("shared_experts",)))
    with pytest.raises(SpecError, match="does not run under moe_a2a_overlap") as err:
        TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("moe",),
                     pipeline_schedule="interleaved", moe_a2a_overlap=True)
    assert err.value.field == "training.recompute_modules"
    TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("shared_experts",),
                 pipeline_schedule="interleaved", moe_a2a_overlap=True)  # the overlap calls shared_experts_compute
    with pytest.raises(SpecError, match="moe_router CUDA graph") as err:
        TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("moe",),
                     cuda_graph_scope=("moe_router",))
    assert err.value.field == "training.cuda_graph_scope"
    with pytest.raises(SpecError, match="needs dropout off") as err:
        TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("moe",),
                     cuda_graph_scope=("moe",), dropout=True)
    assert err.value.field == "training.dropout"
    TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("moe",),
                 cuda_graph_scope=("moe",), dropout=False)
    TrainingSpec(global_batch_sequences=8, recompute="none", recompute_modules=("moe",),
                 pipeline_schedule="interleaved", moe_a2a_overlap=True)  # listed, not selective: nothing checkpointed
    TrainingSpec(global_batch_sequences=8, recompute="selective", recompute_modules=("moe", "moe_act"),
                 gemm_dtype="float8", gemm_scaling="mxfp8")  # te_checkpoint under FP8; moe_act nests in it
