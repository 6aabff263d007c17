"""FP8 current scaling's and MXFP8's casts as TransformerEngine v2.14 launches them (session 24, h100moe and
mxfp8casts): current scaling four kernels a tensor (amax zeroed, amax, scale, cast), three for a LayerNormLinear's
input (the norm computes the amax); MXFP8 one a tensor, the norm-fed input too; a GroupedLinear's input cast one
local expert at a time under both (moesim.estimate.precision_terms.te_cast_kernels). The kernel counts move, and
under current scaling a norm-fed cast's bytes lose the amax read the norm made (norm_fed_cast_elements); both
engines read the same operators."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.des import SimOptions, simulate
from moesim.estimate.precision_terms import (
    CURRENT_SCALING_CAST_KERNELS, CURRENT_SCALING_NORM_FED_CAST_KERNELS, MXFP8_CAST_KERNELS,
    MXFP8_NORM_FED_CAST_KERNELS, norm_fed_cast_elements, quantise_parts_bytes, quantised_elements, te_cast_kernels)
from moesim.estimate.terms import TermBuilder
from moesim.ops.price import op_time_s
from moesim.precision import quantise_pass_bytes
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware, load_scenario
from moesim.specs.training import TrainingSpec
from moesim.workload import build_workload

KEEP = ("global_batch_sequences", "seq_len", "micro_batches", "zero_stage", "recompute")


def with_precision(sc, **keys):
    """The scenario under the given precision keys; MXFP8 on B200 (moesim refuses it on a Hopper profile)."""
    base = {k: getattr(sc.training, k) for k in KEEP}
    hardware = load_hardware("b200") if keys.get("precision_recipe") == "mxfp8-blackwell" else sc.hardware
    return dataclasses.replace(sc, hardware=hardware, training=TrainingSpec.with_recipe(**base, **keys))


def casts(sc, ep: int) -> dict[tuple[str, str], object]:
    """(part, pass) -> the fp8_quantise operator of one Mixtral MoE layer at tp 1 and the given ep."""
    one = lambda v: np.array([float(v)])  # noqa: E731
    tb = TermBuilder(sc.model, sc.hardware, sc.training, one(1), one(1), one(ep), one(1), np.array([0]), one(np.nan))
    terms = tb.build(build_workload(sc.model, 4096, 0).classes[0])
    return {(op.part, op.pass_): op for op in terms.ops_fwd + terms.ops_bwd if op.name == "fp8_quantise"}


@pytest.fixture(scope="module")
def mixtral():
    return load_scenario("mixtral-8x7b-h100")


@pytest.mark.parametrize("ep", [2, 8])
def test_current_scaling_counts_te_kernels(mixtral, ep):
    """Mixtral (GQA, 8 experts, no shared expert): the attention casts linear_qkv's input (norm-fed, 3) and
    linear_proj's (4) forward, both output gradients (4 + 4) backward; the routed experts cast fc1's and fc2's
    inputs (forward) and output gradients (backward) once per local expert, 4 kernels each."""
    ops = casts(with_precision(mixtral, precision_recipe="te-current-scaling"), ep)
    local = 8 / ep
    plain, fed = CURRENT_SCALING_CAST_KERNELS, CURRENT_SCALING_NORM_FED_CAST_KERNELS
    assert (plain, fed) == (4, 3)
    assert float(np.ravel(ops["attention", "fwd"].kernels)[0]) == 7
    assert float(np.ravel(ops["attention", "bwd"].kernels)[0]) == 8
    assert float(np.ravel(ops["permute", "fwd"].kernels)[0]) == 2 * plain * local
    assert float(np.ravel(ops["permute", "bwd"].kernels)[0]) == 2 * plain * local


def test_other_scalings_and_frameworks_keep_one_kernel_a_part(mixtral):
    """Delayed scaling (its casts not re-counted by this lane), a framework other than Megatron-LM + TE, and current
    scaling with DeepSeek's transposed re-quantisation price one kernel a part, as before."""
    current = with_precision(mixtral, precision_recipe="te-current-scaling")
    for sc in (with_precision(mixtral, precision_recipe="te-delayed-scaling"),
               dataclasses.replace(current, training=dataclasses.replace(current.training, framework="none")),
               dataclasses.replace(current, training=dataclasses.replace(current.training,
                                                                         fp8_transpose="requantise"))):
        ops = casts(sc, 2)
        assert ops and all(float(np.ravel(op.kernels)[0]) == 1 for op in ops.values())


@pytest.mark.parametrize("ep", [2, 8])
def test_mxfp8_counts_te_kernels(mixtral, ep):
    """MXFP8 (one nvte_quantize_v2 a tensor; the norm writes BF16 and the cast follows): the attention casts
    linear_qkv's and linear_proj's inputs forward (1 + 1) and both output gradients backward (1 + 1); the routed
    experts cast fc1's and fc2's inputs and output gradients once per local expert (TE cast.cpp l.330-362), where
    one kernel a part was priced before."""
    ops = casts(with_precision(mixtral, precision_recipe="mxfp8-blackwell"), ep)
    local = 8 / ep
    assert (MXFP8_CAST_KERNELS, MXFP8_NORM_FED_CAST_KERNELS) == (1, 1)
    assert float(np.ravel(ops["attention", "fwd"].kernels)[0]) == 2
    assert float(np.ravel(ops["attention", "bwd"].kernels)[0]) == 2
    assert float(np.ravel(ops["permute", "fwd"].kernels)[0]) == 2 * local
    assert float(np.ravel(ops["permute", "bwd"].kernels)[0]) == 2 * local


@pytest.mark.parametrize("recipe, fwd, bwd", [("te-current-scaling", 3 * 4 + 2 * 3, 5 * 4),
                                               ("mxfp8-blackwell", 5, 5)])
def test_mla_counts_its_five_linears(recipe, fwd, bwd):
    """DeepSeek-V3's MLA under Megatron-LM + TE (mla_down_proj_fusion off, qk_layernorm on): forward casts the
    inputs of linear_q_down_proj, linear_kv_down_proj and linear_proj (plain) and of the two LayerNormLinear up
    projections (norm-fed); backward the five output gradients. Before: one kernel each way."""
    sc = with_precision(load_scenario("deepseek-v3-h800", devices=256), precision_recipe=recipe)
    assert sc.training.framework == "megatron-te" and sc.model.attention.q_lora_rank
    ops = casts(sc, 8)
    assert float(np.ravel(ops["attention", "fwd"].kernels)[0]) == fwd
    assert float(np.ravel(ops["attention", "bwd"].kernels)[0]) == bwd
    without_q_lora = dataclasses.replace(sc.model, attention=dataclasses.replace(sc.model.attention, q_lora_rank=0))
    cls = build_workload(sc.model, 4096, 0).classes[0]
    plain, fed = (4, 3) if recipe == "te-current-scaling" else (1, 1)
    # without a q LoRA rank: linear_q_proj (plain) in place of q_down, kv_down and linear_proj plain, kv_up
    # norm-fed: four Linears, four output gradients (review24: q_proj was not counted, (2p + f, 3p) before)
    assert te_cast_kernels(without_q_lora, sc.training, cls, 8, True)["attention"] == (3 * plain + fed, 4 * plain)


@pytest.mark.parametrize("recipe", ["te-current-scaling", "mxfp8-blackwell"])
def test_only_the_launches_and_the_norm_fed_amax_move(mixtral, recipe):
    """The casts' bytes are quantise_parts_bytes' less, under current scaling, one BF16 read of linear_qkv's input
    (its amax is the norm's: norm_fed_cast_elements); the time is that memory pass plus each kernel's launch."""
    sc = with_precision(mixtral, precision_recipe=recipe)
    none = dataclasses.replace(sc, training=dataclasses.replace(sc.training, framework="none"))
    te_ops, one_ops = casts(sc, 2), casts(none, 2)
    cls = build_workload(sc.model, 4096, 0).classes[0]
    slots = 4096 * mixtral.model.moe.top_k
    fwd, bwd = quantise_parts_bytes(sc.training, quantised_elements(sc.model, cls, 1, 1, 1, slots))
    taken = norm_fed_cast_elements(sc.model, sc.training, cls, 1, 1, True)
    assert taken == ({"attention": 4096 * sc.model.d_model} if recipe == "te-current-scaling" else {})
    launch_s = sc.hardware.efficiency.kernel_launch_s
    assert launch_s > 0
    for (part, pass_), op in te_ops.items():
        expected = float(np.ravel((fwd if pass_ == "fwd" else bwd)[part])[0])
        if pass_ == "fwd":
            expected -= 2.0 * taken.get(part, 0.0)  # BF16 activations
        assert float(np.ravel(op.bytes)[0]) == pytest.approx(expected)
        assert float(np.ravel(one_ops[part, pass_].bytes)[0]) == pytest.approx(
            float(np.ravel((fwd if pass_ == "fwd" else bwd)[part])[0]))
        extra = float(np.ravel(op.kernels)[0]) - 1
        assert extra > 0
        assert float(np.ravel(op_time_s(op, sc.hardware))[0]) == pytest.approx(
            float(np.ravel(op_time_s(dataclasses.replace(op, kernels=1.0), sc.hardware))[0]) + extra * launch_s)


def test_mla_norm_fed_amax_is_the_up_projections_inputs():
    """DeepSeek-V3's MLA under current scaling: the up projections' inputs (r_q + r_kv per token over tp) are read
    once, not twice; the forward bytes of the attention casts fall by one BF16 read of them (less the second down
    projection's own cast of the layer input, test_mla_down_projections_each_cast_the_layer_input), the
    backward's not."""
    sc = with_precision(load_scenario("deepseek-v3-h800", devices=256), precision_recipe="te-current-scaling")
    none = dataclasses.replace(sc, training=dataclasses.replace(sc.training, framework="none"))
    att = sc.model.attention
    te_ops, one_ops = casts(sc, 8), casts(none, 8)
    drop = float(np.ravel(one_ops["attention", "fwd"].bytes)[0]) - float(np.ravel(te_ops["attention", "fwd"].bytes)[0])
    second_copy = quantise_pass_bytes(4096.0 * sc.model.d_model, 0.0, sc.training.fp8_scaling, 2.0,
                                      sc.training.fp8_transpose)[0]
    assert drop == pytest.approx(2.0 * 4096 * (att.q_lora_rank + att.kv_lora_rank) - second_copy)
    assert float(np.ravel(te_ops["attention", "bwd"].bytes)[0]) == pytest.approx(
        float(np.ravel(one_ops["attention", "bwd"].bytes)[0]))


@pytest.mark.parametrize("recipe", ["te-current-scaling", "mxfp8-blackwell"])
@pytest.mark.parametrize("q_lora", [True, False])
def test_mla_down_projections_each_cast_the_layer_input(recipe, q_lora):
    """Under Megatron-LM + TE (mla_down_proj_fusion off) linear_q_down_proj (linear_q_proj without a q LoRA rank)
    and linear_kv_down_proj each cast their own copy of the layer input, as te_cast_kernels counts two kernels:
    the forward casts move one more cast of 4096 x h than the same layer outside TE (one copy, shared), less the
    norm-fed amax read under current scaling; the backward's bytes (their output gradients) do not move. Before
    (session 24, mxfp8casts / review24 left it): the forward counted the input once."""
    sc = with_precision(load_scenario("deepseek-v3-h800", devices=256), precision_recipe=recipe)
    if not q_lora:
        att = dataclasses.replace(sc.model.attention, q_lora_rank=0)
        sc = dataclasses.replace(sc, model=dataclasses.replace(sc.model, attention=att))
    none = dataclasses.replace(sc, training=dataclasses.replace(sc.training, framework="none"))
    te_ops, one_ops = casts(sc, 8), casts(none, 8)
    tr, h = sc.training, sc.model.d_model
    second_copy = quantise_pass_bytes(4096.0 * h, 0.0, tr.fp8_scaling, 2.0, tr.fp8_transpose)[0]
    assert second_copy > 4096 * h
    cls = build_workload(sc.model, 4096, 0).classes[0]
    amax_read = 2.0 * norm_fed_cast_elements(sc.model, tr, cls, 1, 1, True).get("attention", 0.0)
    grown = float(np.ravel(te_ops["attention", "fwd"].bytes)[0]) - float(np.ravel(one_ops["attention", "fwd"].bytes)[0])
    assert grown == pytest.approx(second_copy - amax_read)
    assert float(np.ravel(te_ops["attention", "bwd"].bytes)[0]) == pytest.approx(
        float(np.ravel(one_ops["attention", "bwd"].bytes)[0]))
    slots = 4096 * sc.model.moe.top_k
    plain = quantised_elements(sc.model, cls, 1, 1, 1, slots)
    ours = quantised_elements(sc.model, cls, 1, 1, 1, slots, te_casts=True)
    assert ours["attention"][0] - plain["attention"][0] == 4096 * h
    assert ours["attention"][1] == plain["attention"][1]


@pytest.mark.parametrize("q_lora", [True, False])
def test_mla_down_projections_cast_the_sequence_shard_under_sp(q_lora):
    """Under sequence parallelism MLA's down projections (TELinear, parallel_mode 'duplicated') read the layer
    input's sequence shard [s/t, h] (Megatron-LM 23e00ed0 multi_latent_attention.py l.526-530): each cast is
    4096 · h / t on a rank. At tp 2 with a q LoRA rank both copies halve (4096 · h less forward); without one only
    kv_down's does (linear_q_proj is column-parallel and reads the gathered input). The backward does not move.
    Before (session 24, mladown, left it): both copies counted whole, the 25.09 H100 tp 2 row's casts twice."""
    sc = with_precision(load_scenario("deepseek-v3-h800", devices=256), precision_recipe="te-current-scaling")
    if not q_lora:
        att = dataclasses.replace(sc.model.attention, q_lora_rank=0)
        sc = dataclasses.replace(sc, model=dataclasses.replace(sc.model, attention=att))
    cls = build_workload(sc.model, 4096, 0).classes[0]
    h, slots, tp = sc.model.d_model, 4096 * sc.model.moe.top_k, 2
    whole = quantised_elements(sc.model, cls, 1, tp, 1, slots, te_casts=True)
    shard = quantised_elements(sc.model, cls, 1, tp, 1, slots, te_casts=True, sequence_parallel=True)
    copies = 2 if q_lora else 1
    assert whole["attention"][0] - shard["attention"][0] == copies * 4096 * h / tp
    assert whole["attention"][1] == shard["attention"][1]
    assert quantised_elements(sc.model, cls, 1, 1, 1, slots, te_casts=True, sequence_parallel=True) == \
        quantised_elements(sc.model, cls, 1, 1, 1, slots, te_casts=True)  # tp 1: the shard is the whole input
    # the operator both engines read, at tp 2 with SP on and off
    one = lambda v: np.array([float(v)])  # noqa: E731
    fwd = {}
    for sp in (True, False):
        tr = dataclasses.replace(sc.training, sequence_parallel=sp)
        tb = TermBuilder(sc.model, sc.hardware, tr, one(1), one(tp), one(8), one(1), np.array([0]), one(np.nan))
        ops = tb.build(cls).ops_fwd
        fwd[sp] = [float(np.ravel(op.bytes)[0]) for op in ops if op.name == "fp8_quantise" and op.part == "attention"]
    # the operator: without a q LoRA rank q_proj's column-parallel input is cast on the shard too under TE + SP
    # (session 25, spcasts: precision_terms.te_shard_casts), so two shard copies either way
    shard_bytes = quantise_pass_bytes(2 * 4096.0 * h / tp, 0.0, tr.fp8_scaling, 2.0, tr.fp8_transpose)[0]
    assert fwd[False][0] - fwd[True][0] == pytest.approx(shard_bytes)


def test_mla_sp_leaves_other_attention_kinds_alone(mixtral):
    """Outside MLA the first input is linear_qkv's gathered input, whole under SP: nothing moves."""
    cls = build_workload(mixtral.model, 4096, 0).classes[0]
    slots = 4096 * mixtral.model.moe.top_k
    assert quantised_elements(mixtral.model, cls, 1, 2, 1, slots, te_casts=True, sequence_parallel=True) == \
        quantised_elements(mixtral.model, cls, 1, 2, 1, slots, te_casts=True)


def test_te_casts_leave_other_attention_kinds_alone(mixtral):
    """Outside MLA a layer input feeds one Linear (linear_qkv): te_casts adds nothing."""
    cls = build_workload(mixtral.model, 4096, 0).classes[0]
    slots = 4096 * mixtral.model.moe.top_k
    assert quantised_elements(mixtral.model, cls, 1, 1, 1, slots, te_casts=True) == \
        quantised_elements(mixtral.model, cls, 1, 1, 1, slots)


@pytest.mark.parametrize("recipe", ["te-current-scaling", "mxfp8-blackwell"])
def test_the_simulator_agrees_with_te_casts(recipe):
    """No pipeline, uniform routing, no contention: both engines read the same casts (within 2 %, as the other
    FP8 recipes in tests/test_precision_estimate.py)."""
    sc = with_precision(load_scenario("mixtral-8x7b-h100", devices=16), precision_recipe=recipe)
    result = simulate(sc, Layout(dp=16, ep=8), SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)
