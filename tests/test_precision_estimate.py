"""Precision per tensor class in the step model: FP8 GEMMs leave attention and the head at BF16 speed, FP8
casts cost memory-bound time, bytes on the wire follow the dispatch/combine/activation dtypes, and both
engines agree. Measured FP8 speed-ups for scale: ../shared/reference/wave2.md §6.3."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.des import SimOptions, simulate
from moesim.estimate import estimate
from moesim.estimate.precision_terms import quantise_parts_bytes, quantised_elements
from moesim.estimate.terms import TermBuilder
from moesim.ops.price import op_time_s
from moesim.precision import recipe_values
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario
from moesim.specs.training import TrainingSpec
from moesim.workload import build_workload

KEEP = ("global_batch_sequences", "seq_len", "micro_batches", "zero_stage", "recompute")


def with_precision(sc, **keys):
    """`sc` with its batch, recompute and ZeRO settings and the precision `keys` (a recipe name or keys)."""
    base = {k: getattr(sc.training, k) for k in KEEP}
    return dataclasses.replace(sc, training=TrainingSpec.with_recipe(**base, **keys))


def builder(sc):
    one = lambda v: np.array([float(v)])  # noqa: E731
    return TermBuilder(sc.model, sc.hardware, sc.training, one(1), one(1), one(8), one(1), np.array([0]),
                       one(np.nan))


@pytest.fixture(scope="module")
def mixtral():
    return load_scenario("mixtral-8x7b-h100")


def test_fp8_gemms_do_not_speed_up_attention_or_the_head(mixtral):
    """In the operator list: projections and FFN GEMMs at FP8, the attention core and the output head at BF16
    (DeepSeek-V3 §3.3, TE recipes), FP8 casts as memory-bound operators in the attention part."""
    bf16, fp8 = with_precision(mixtral), with_precision(mixtral, precision_recipe="te-delayed-scaling")
    cls = build_workload(mixtral.model, 4096, 0).classes[0]
    tb, tf = builder(bf16), builder(fp8)
    terms_b, terms_f = tb.build(cls), tf.build(cls)
    core_b, core_f = (next(op for op in t.ops_fwd if op.kind == "attention") for t in (terms_b, terms_f))
    assert core_f.dtype == "bfloat16" and op_time_s(core_f, fp8.hardware) == op_time_s(core_b, bf16.hardware)
    gemms = {op.name: op.dtype for op in terms_f.ops_fwd if op.kind in ("gemm", "grouped_gemm")}
    assert gemms["qkv_proj"] == gemms["out_proj"] == gemms["expert_fc1"] == "float8" and gemms["router"] == "float32"
    casts = [op for op in terms_f.ops_fwd if op.name == "fp8_quantise"]
    assert {op.part for op in casts} == {"attention", "permute"} and not any(
        op.name == "fp8_quantise" for op in terms_b.ops_fwd)
    assert tf.peak == pytest.approx(2 * tb.peak, rel=0.01)
    assert terms_f.fwd_parts_s["attention"] > terms_b.fwd_parts_s["attention"] / 2
    assert tf.logits_time_s(4096) == pytest.approx(tb.logits_time_s(4096))  # the head stays BF16


def test_quantise_casts_are_priced_in_the_parts_that_consume_them(mixtral):
    sc = with_precision(mixtral, precision_recipe="te-current-scaling")
    cls = build_workload(sc.model, 4096, 0).classes[0]
    terms = builder(sc).build(cls)
    plain = builder(with_precision(mixtral, gemm_dtype="float8", gemm_scaling="per_tensor_current")).build(cls)
    assert terms.fwd_time_s == pytest.approx(plain.fwd_time_s)  # the same casts: storage dtype does not change time
    fwd, bwd = quantise_parts_bytes(sc.training, quantised_elements(sc.model, cls, 1, 1, 1, terms.slots))
    assert set(fwd) == {"attention", "permute"} and all(v > 0 for v in fwd.values())
    assert sum(terms.fwd_parts_s.values()) == pytest.approx(terms.fwd_time_s)
    assert sum(terms.bwd_parts_s.values()) == pytest.approx(terms.bwd_time_s)
    assert quantise_parts_bytes(mixtral.training, {"attention": (1e6, 1e6)}) == ({}, {})  # BF16: no casts


@pytest.mark.parametrize("hardware", ["b200", "h100-sxm"])
def test_fp8_runs_are_no_longer_twice_bf16_speed(hardware):
    """FP8 peak is 2× BF16 on both chips; attention, head, casts and communication keep the step well short of 2×.
    Measured end to end for scale: +20 % to +25 % on 8×B200 (torchao Llama3-8B), +25 % on 8×H100 (wave2.md §6.3)."""
    sc = load_scenario("mixtral-8x7b-h100", hardware=hardware)
    bf16 = estimate(with_precision(sc)).step_time_s
    # MXFP8 on Blackwell only (TransformerEngine refuses it on Hopper: tests/cli/test_newuser5_walk.py)
    blackwell = ("mxfp8-blackwell",) if hardware == "b200" else ()
    for recipe in ("te-delayed-scaling", "te-current-scaling") + blackwell:
        speedup = bf16 / estimate(with_precision(sc, precision_recipe=recipe)).step_time_s
        assert 1.0 < speedup < 1.6, (recipe, speedup)
    # Current scaling reads every tensor twice: slower than delayed scaling.
    assert estimate(with_precision(sc, precision_recipe="te-current-scaling")).step_time_s > \
        estimate(with_precision(sc, precision_recipe="te-delayed-scaling")).step_time_s


def test_wire_bytes_follow_dispatch_combine_and_activation_dtypes(mixtral):
    bf16 = estimate(with_precision(mixtral))
    fp8 = estimate(with_precision(mixtral, precision_recipe="deepseek-v3-fp8"))
    both = estimate(with_precision(mixtral, precision_recipe="deepseek-v3-fp8", combine_dtype="float8"))
    size = lambda e, name: e.communication[name]["size_bytes"]  # noqa: E731
    assert size(fp8, "ep_all_to_all_dispatch") == pytest.approx(size(bf16, "ep_all_to_all_dispatch") * (1 + 4 / 128) / 2)
    assert size(fp8, "ep_all_to_all_combine") == size(bf16, "ep_all_to_all_combine")  # BF16 combine
    assert size(both, "ep_all_to_all_combine") == size(fp8, "ep_all_to_all_dispatch")
    assert size(fp8, "pp_send_recv") == size(bf16, "pp_send_recv")  # activations cross stages in BF16


def test_fp8_storage_lowers_activation_memory(mixtral):
    bf16 = estimate(with_precision(mixtral, precision_recipe="te-delayed-scaling", activation_storage_dtype="bfloat16"))
    fp8 = estimate(with_precision(mixtral, precision_recipe="te-delayed-scaling"))
    assert fp8.memory_bytes_per_device["activations"] < 0.9 * bf16.memory_bytes_per_device["activations"]
    assert fp8.memory_bytes_per_device["weights"] == bf16.memory_bytes_per_device["weights"]


def test_bf16_adam_moments_halve_the_optimizer_states(mixtral):
    fp32 = estimate(with_precision(mixtral))
    dsv3 = estimate(with_precision(mixtral, precision_recipe="deepseek-v3-fp8"))
    # K = 2·4 + 4 (FP32 m, v, master) against 2·2 + 4 (BF16 m, v; DeepSeek-V3 §3.3.3).
    assert dsv3.memory_bytes_per_device["optimizer_states"] == pytest.approx(
        fp32.memory_bytes_per_device["optimizer_states"] * 8 / 12)


@pytest.mark.parametrize("recipe", ["te-delayed-scaling", "deepseek-v3-fp8"])
def test_the_simulator_agrees_with_fp8_recipes(recipe):
    """No pipeline (pp = 1), uniform routing, no contention: the two engines run the same costs (within 2 %)."""
    sc = with_precision(load_scenario("mixtral-8x7b-h100", devices=16), precision_recipe=recipe)
    result = simulate(sc, Layout(dp=16, ep=8), SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)


def test_recipe_values_are_what_the_scenario_runs():
    sc = load_scenario("deepseek-v3-h800")
    assert all(getattr(sc.training, k) == v for k, v in recipe_values("deepseek-v3-fp8").items())


def test_moe_activation_recompute_costs_a_memory_bound_pass_in_backward():
    """Per routed slot: read the SwiGLU input 2f at 1 + 4/128 bytes, write its output f in BF16 (DeepSeek-V3 §3.3.4);
    before it, under the recipe's re-quantisation (§3.5.2), the stored input dequantised: read 2f at 1 + 4/128,
    write 2f in BF16 (the H800 trace's cast_back_impl). In forward, the input stored in FP8: read 2f in BF16, write
    2f at 1 + 4/128 (the trace's per_token_cast at the end of mlp(F); session 22, dsv3ops)."""
    sc = load_scenario("deepseek-v3-h800")
    kept = dataclasses.replace(sc, training=dataclasses.replace(sc.training, moe_activation_recompute=False))
    cls = build_workload(sc.model, 4096, 0).classes[1]
    b = builder(sc)
    on, off = b.build(cls), builder(kept).build(cls)
    f = sc.model.moe.expert_d_ff
    per_slot = f * (2 * (1 + 4 / 128) + 2) + 2 * f * ((1 + 4 / 128) + 2)
    # k = 8 routed slots per token plus the one shared expert (d_ff 2048) per token
    launch = sc.hardware.efficiency.kernel_launch_s  # two memory operators each for routed and shared experts
    assert on.bwd_time_s - off.bwd_time_s == pytest.approx((on.slots + 4096) * per_slot / b.hbm_bw + 4 * launch)
    assert on.fwd_time_s - off.fwd_time_s == pytest.approx(
        (on.slots + 4096) * 2 * f * ((1 + 4 / 128) + 2) / b.hbm_bw + 2 * launch)
    shared = on.bwd_parts_s["shared_experts"] - off.bwd_parts_s["shared_experts"]
    assert shared == pytest.approx(4096 * sc.model.moe.shared_expert_d_ff * (2 * (1 + 4 / 128) + 2 + 2 * (3 + 4 / 128))
                                   / b.hbm_bw + 2 * launch)


def test_fp8_weight_copies_cost_memory_when_cached_and_time_when_not(mixtral):
    """Cached (TE is_first_microbatch): 2 FP8 copies per FP8 GEMM weight in memory (not the embedding, head, router
    and norms, which stay BF16), one cast per step in the optimizer pass.
    Not cached: no memory, a cast of every layer's weights in every micro-batch's forward."""
    from moesim.precision import fp8_weight_copy_bytes, weight_scale_bytes_per_element

    bf16 = estimate(with_precision(mixtral, precision_recipe="te-delayed-scaling", gemm_dtype="bfloat16"))
    cached = estimate(with_precision(mixtral, precision_recipe="te-delayed-scaling"))
    recast = estimate(with_precision(mixtral, precision_recipe="te-delayed-scaling", fp8_weight_cache=False))
    # By hand: 8 layers a stage (32 / pp 4), tp 1, one expert a device (8 / ep 8): q, o 4096 x 4096, k, v 4096 x 1024
    # (GQA, 8 KV heads), the expert's three 4096 x 14336 matrices.
    gemm_params = 8 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
    assert gemm_params == 1_744_830_464
    assert cached.memory_bytes_per_device["weights"] - bf16.memory_bytes_per_device["weights"] == \
        pytest.approx(fp8_weight_copy_bytes(gemm_params, "per_tensor_delayed")) == pytest.approx(2 * gemm_params)
    assert recast.memory_bytes_per_device["weights"] == bf16.memory_bytes_per_device["weights"]
    assert cached.optimizer_time_s > recast.optimizer_time_s
    assert recast.compute_time_s > cached.compute_time_s
    assert weight_scale_bytes_per_element("blockwise") == 4 / (128 * 128)  # DeepSeek-V3 128×128 weight blocks


@pytest.mark.parametrize("profile, pass_", [("h100-sxm", "dgrad"), ("h100-sxm", "wgrad")])
def test_fp8_backward_gemms_read_the_fp8_table_at_their_own_shape(profile, pass_):
    """A profile with FP8 GEMM tables for the forward pass only (H100's DeepGEMM-derived tables in every backward
    pass): an FP8 dgrad / wgrad GEMM reads them at its own M×N×K (DeepSeek-V3 §3.3.1 runs all three passes in FP8),
    not the FLOP-keyed prior nor a BF16 table. H800's wgrad has its own tables since session 21 (dsv3rest) and its
    dense dgrad since session 22 (dsv3ops) and its forward since session 24 (dsv3fwd); its grouped dgrad reads
    DeepGEMM's README table, pass "any" (tests/ops/test_dsv3_trace.py)."""
    from moesim.ops.base import gemm, grouped_gemm  # noqa: PLC0415
    from moesim.ops.price import op_efficiency  # noqa: PLC0415
    from moesim.ops.tables import select_table, table_efficiency  # noqa: PLC0415
    from moesim.specs.load import load_hardware  # noqa: PLC0415
    hw = load_hardware(profile)
    assert select_table(hw.efficiency.op_tables, "gemm", "float8", pass_, ("qkv",)) is None
    for op in (gemm("attention", "qkv", "float8", 4096, 7168, 16384, pass_=pass_),
               grouped_gemm("expert_ffn", "fc1", "float8", 4, 8192, 4096, 7168, pass_=pass_)):
        table = select_table(hw.efficiency.op_tables, op.kind, "float8", "fwd", (op.name,))
        assert table is not None and table.dtype == "float8"
        assert op_efficiency(op, hw) == pytest.approx(table_efficiency(table, op.shape))
    # The measured point itself: 1426 of 1979 TFLOPS at 4096 x 7168 x 16384 (DeepGEMM README).
    point = np.ravel(op_efficiency(gemm("attention", "o", "float8", 4096, 7168, 16384, pass_=pass_), hw))
    assert point.tolist() == pytest.approx([0.7206], abs=1e-4)


def test_an_fp8_table_on_a_profile_prices_fp8_gemms_in_every_pass():
    """The pricing picks a profile's FP8 tables for FP8 GEMMs wherever they exist (B200 has BF16 tables only
    today, so FP8 reuses them): a float8 table added to b200 takes over the forward, dgrad and wgrad GEMMs,
    while the BF16 GEMMs keep theirs."""
    from moesim.ops.base import gemm  # noqa: PLC0415
    from moesim.ops.price import op_efficiency  # noqa: PLC0415
    from moesim.specs.hardware import OpTable  # noqa: PLC0415
    from moesim.specs.load import load_hardware  # noqa: PLC0415
    hw = load_hardware("b200")
    probe = lambda h, dt, p: np.ravel(op_efficiency(gemm("attention", "qkv", dt, 4096, 4096, 4096, pass_=p), h))[0]  # noqa: E731
    before = {p: probe(hw, "float8", p) for p in ("fwd", "dgrad", "wgrad")}
    assert before == {p: probe(hw, "bfloat16", p) for p in before}  # no FP8 table: BF16's fraction
    fp8 = OpTable(kind="gemm", dtype="float8", pass_="fwd", points=((4096.0, 4096.0, 4096.0, 0.123),),
                  status="derived", source="test")
    eff = dataclasses.replace(hw.efficiency, op_tables=hw.efficiency.op_tables + (fp8,))
    with_fp8 = dataclasses.replace(hw, efficiency=eff)
    assert {p: probe(with_fp8, "float8", p) for p in before} == pytest.approx(dict.fromkeys(before, 0.123))
    assert probe(with_fp8, "bfloat16", "fwd") == before["fwd"]


def test_deepseek_casts_only_under_deepseeks_recipe(mixtral):
    """quantised_elements' DeepSeek casts (session 22, dsv3ops: the MoE input cast per token before an FP8 dispatch,
    MLA's input cast by both down-projections) apply where the recipe re-quantises transposed and dispatches in FP8:
    the deepseek-v3-fp8 recipe, not TransformerEngine's (whose casts price as before) nor DeepSeek's recipe with a
    BF16 dispatch; with them the forward's routed input is the tokens', not the slots'."""
    from moesim.estimate.precision_terms import deepseek_casts_apply

    dsv3 = load_scenario("deepseek-v3-h800")
    assert deepseek_casts_apply(dsv3.training)
    assert not deepseek_casts_apply(with_precision(mixtral, precision_recipe="te-delayed-scaling").training)
    assert not deepseek_casts_apply(dataclasses.replace(dsv3.training, dispatch_dtype="bfloat16"))
    cls = build_workload(dsv3.model, 4096, 0).classes[1]
    h, slots = dsv3.model.d_model, 32768.0
    plain = quantised_elements(dsv3.model, cls, 1, 1, 1, slots)
    ours = quantised_elements(dsv3.model, cls, 1, 1, 1, slots, deepseek_casts=True)
    assert ours["permute"][0] == plain["permute"][0] - (slots - 4096) * h
    assert ours["shared_experts"][0] == plain["shared_experts"][0] - 4096 * h
    assert ours["attention"][0] == plain["attention"][0] + 4096 * h
    assert all(ours[p][1] == plain[p][1] for p in plain)
