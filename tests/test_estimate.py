"""The analytical step model: closed-form volumes, consistency of the breakdown, invariants."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from moesim.arithmetic import param_counts
from moesim.collectives.select import default_model
from moesim.estimate import estimate, evaluate
from moesim.estimate.candidates import Candidates, single
from moesim.estimate.tp_grad_sync import TP_GRAD_ALL_REDUCE
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware, load_model
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec

TINY = str(Path(__file__).parent / "data" / "tiny-moe-decoder.toml")


def tiny(devices=16, batch=64, **training) -> Scenario:
    spec = TrainingSpec(global_batch_sequences=batch, seq_len=1024, **training)
    return Scenario(name="tiny", model=load_model(TINY), hardware=load_hardware("h100-sxm"), devices=devices,
                    training=spec)


def test_breakdown_adds_up(switch_c, switch_base):
    for scenario in (switch_c, switch_base):
        e = estimate(scenario)
        parts = e.compute_time_s + e.exposed_communication_time_s + e.bubble_time_s + e.optimizer_time_s
        assert e.step_time_s == pytest.approx(parts, rel=1e-12)
        assert e.step_time_s <= e.step_time_no_overlap_s
        assert e.memory_bytes_per_device["total"] == pytest.approx(
            sum(v for k, v in e.memory_bytes_per_device.items() if k != "total"))
        assert 0 < e.mfu <= e.hfu < 1


def test_expert_all_to_all_volume_closed_form(switch_base):
    """Switch §5.4: each core sends [E, C, d_model] bf16 per dispatch; fwd + bwd = 2 calls per layer each
    way; (ep − 1)/ep of it leaves the core. Encoder: 2048·512/32 = 32768 tokens per core in groups of
    1024 (the scenario's Mesh-TF group size), C = floor(1024·1.25/128) = 10; decoder: 7296 tokens, the
    same groups (7296/1024 of them), C = 10."""
    e = estimate(switch_base)
    h, experts, ep, q = 768, 128, 32, 2
    enc_bytes = (32768 // 1024) * experts * 10 * h * q
    dec_bytes = (7296 / 1024) * experts * 10 * h * q
    expected = 6 * 2 * (enc_bytes + dec_bytes) * (ep - 1) / ep  # 6 sparse layers per stack
    dispatch = e.communication["ep_all_to_all_dispatch"]
    assert dispatch["bytes_per_device"] == pytest.approx(expected)
    assert dispatch["size_bytes"] == enc_bytes
    assert dispatch["calls_per_step"] == 24


def test_gradient_all_reduce_volume(switch_base):
    """Ring all-reduce sends 2(n−1)/n of the buffer (nccl-tests busbw factor); the buffer is every
    non-expert parameter in fp32 (tp = pp = 1), experts are not data-parallel here (edp = 1). Session 18
    (gradsync): reduced in MCore's buckets of >= 40e6 parameters closed at layer ends (moesim.estimate.grad_buckets),
    one call each: 167.5e6 parameters over 24 layers -> a bucket every 6 layers, 4 calls. Session 23 (buckets23):
    MCore's unequal buckets (grad_buckets.uniform_buckets, the model's ends in the first and last): the entry shows
    the largest, at least the bucket size; the volume is every parameter once."""
    e = estimate(switch_base)
    counts = param_counts(switch_base.model)
    ar = e.communication["dp_all_reduce"]
    assert ar["calls_per_step"] == 4
    assert 40e6 * 4 <= ar["size_bytes"] < counts.non_expert * 4 / 3
    assert ar["bytes_per_device"] == pytest.approx(2 * 31 / 32 * counts.non_expert * 4)
    assert "edp_all_reduce" not in e.communication


def test_batch_evaluation_equals_single_estimates():
    scenario = tiny()
    layouts = [Layout(dp=16, ep=16), Layout(dp=8, tp=2, ep=8), Layout(dp=4, tp=2, pp=2, ep=8),
               Layout(dp=16, ep=4, order=("tp", "dp", "ep", "pp"))]
    trainings = [scenario.training, dataclasses.replace(scenario.training, micro_batches=2, zero_stage=1),
                 dataclasses.replace(scenario.training, micro_batches=4, recompute="full"),
                 dataclasses.replace(scenario.training, zero_stage=3, recompute="selective")]
    singles = [single(scenario, lay, tr) for lay, tr in zip(layouts, trainings)]
    orders = tuple(dict.fromkeys(lay.order for lay in layouts))
    batch = Candidates(**{f: np.concatenate([getattr(c, f) for c in singles]) for f in
                          ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute",
                           "capacity_factor")},
                       order=np.array([orders.index(lay.order) for lay in layouts]), orders=orders)
    ev = evaluate(scenario, batch, default_model(scenario.hardware))
    for i, (lay, tr) in enumerate(zip(layouts, trainings)):
        one = estimate(scenario, lay, tr)
        assert ev.step_time_s[i] == pytest.approx(one.step_time_s, rel=1e-12)
        assert ev.memory_total_bytes[i] == pytest.approx(one.memory_bytes_per_device["total"], rel=1e-12)


def test_model_flops_linear_in_batch():
    small, large = estimate(tiny(batch=64)), estimate(tiny(batch=128))
    assert large.model_flops_per_step == pytest.approx(2 * small.model_flops_per_step)
    # Bigger kernels run at higher efficiency: time grows, but never faster than the FLOPs.
    assert small.compute_time_s < large.compute_time_s <= 2 * small.compute_time_s


def test_capacity_factor_scales_padded_expert_work():
    lo = estimate(tiny(), Layout(dp=16, ep=16), dataclasses.replace(tiny().training, capacity_factor=1.0))
    hi = estimate(tiny(), Layout(dp=16, ep=16), dataclasses.replace(tiny().training, capacity_factor=2.0))
    a2a_lo = lo.communication["ep_all_to_all_dispatch"]["bytes_per_device"]
    a2a_hi = hi.communication["ep_all_to_all_dispatch"]["bytes_per_device"]
    assert a2a_hi == pytest.approx(2 * a2a_lo, rel=0.01)  # Megatron ceil() rounding
    assert hi.hardware_flops_per_step > lo.hardware_flops_per_step and hi.mfu < lo.mfu


def test_without_overlap_grad_sync_is_exposed():
    scenario = tiny(overlap_grad_reduce=False)
    e = estimate(scenario, Layout(dp=16, ep=16))
    assert e.step_time_s == pytest.approx(e.step_time_no_overlap_s)


def test_pipeline_bubble():
    """1F1B: T_pipe = Σ_s T_mb(s) + (m − 1)·max_s T_mb(s) (Alpa, Zheng et al. OSDI 2022, §5 Eq. 2), so the bubble is
    the stages' summed time per micro-batch less the slowest one's; (pp − 1)/m of the m micro-batches' time
    (Narayanan et al. 2021, arXiv 2104.04473, §2.2) only at equal stages. Session 18 (pipebound): the two stages of
    pp = 2 are the model's ends (the embedding on one, the output head on the other), so the bubble is the lighter
    one's time, below (pp − 1)/m of the slowest's; and both stages together run the whole model of pp = 1 at the
    same micro-batch plus one pipeline send each per micro-batch."""
    m, pp = 4, 2
    e = estimate(tiny(micro_batches=m, overlap_grad_reduce=False), Layout(dp=4, tp=2, pp=pp, ep=8))
    one = estimate(tiny(devices=8, micro_batches=m, overlap_grad_reduce=False), Layout(dp=4, tp=2, pp=1, ep=8))

    def per_micro_batch(est):
        grad_sync = sum(c["time_s"] for c in est.communication.values() if c["overlapped_with_backward"])
        # the once-a-step tp all-reduce of the replicated gradients (SP, tp 2) follows the sync (tp_grad_sync.py)
        grad_sync += est.communication.get(TP_GRAD_ALL_REDUCE, {}).get("time_s", 0.0)
        return (est.compute_time_s + est.exposed_communication_time_s - grad_sync) / m

    slowest = per_micro_batch(e)
    assert e.bubble_time_s < (pp - 1) * slowest
    send = e.communication["pp_send_recv"]["time_s"] / m  # the slowest stage's one send per micro-batch
    assert e.bubble_time_s + slowest == pytest.approx(per_micro_batch(one) + pp * send, rel=1e-12)
    assert one.bubble_time_s == 0.0
    # Each stage of two sends once per micro-batch: activations forward, or input gradients backward.
    assert e.communication["pp_send_recv"]["calls_per_step"] == m


DEGREES = st.sampled_from([1, 2, 4])


@settings(max_examples=40, deadline=None)
@given(dp=DEGREES, tp=DEGREES, ep=DEGREES, pp=DEGREES, zero=st.sampled_from([0, 1, 2, 3]),
       recompute=st.sampled_from(["none", "selective", "full"]), axis=st.sampled_from(["dp", "tp", "ep", "pp"]))
def test_memory_never_rises_when_a_degree_grows(dp, tp, ep, pp, zero, recompute, axis):
    """Doubling one degree (and the device count with it) never raises memory per device."""
    base = Layout(dp=dp, tp=tp, ep=ep, pp=pp)
    grown = dataclasses.replace(base, **{axis: getattr(base, axis) * 2})
    if axis == "ep" and grown.ep > grown.dp * grown.tp:
        return
    results = []
    for layout in (base, grown):
        scenario = tiny(devices=layout.devices, batch=64, micro_batches=4, zero_stage=zero, recompute=recompute)
        if scenario.problems(layout):
            return
        results.append(estimate(scenario, layout).memory_bytes_per_device["total"])
    assert results[1] <= results[0] * (1 + 1e-12)


def _with_overhead(scenario: Scenario, overhead_s: float) -> Scenario:
    hw = scenario.hardware
    efficiency = dataclasses.replace(hw.efficiency, layer_overhead_s=overhead_s)
    return dataclasses.replace(scenario, hardware=dataclasses.replace(hw, efficiency=efficiency))


@pytest.mark.parametrize("recompute, passes", [("none", 2), ("selective", 2), ("full", 3)])
def test_layer_overhead_is_paid_once_per_layer_per_pass(recompute, passes):
    """pp = 1: T_step grows by L · passes · overhead · m (forward + backward, + the full recompute's
    forward); the grad sync is not overlapped so the window cannot absorb any of it."""
    m, overhead = 4, 70e-6
    scenario = tiny(micro_batches=m, overlap_grad_reduce=False, recompute=recompute)
    layout = Layout(dp=16, ep=16)
    base, slow = estimate(scenario, layout), estimate(_with_overhead(scenario, overhead), layout)
    layers = scenario.model.num_layers
    growth = layers * passes * overhead * m
    assert slow.step_time_s - base.step_time_s == pytest.approx(growth, rel=1e-9)
    assert slow.compute_time_s - base.compute_time_s == pytest.approx(growth, rel=1e-9)
    assert slow.model_flops_per_step == base.model_flops_per_step and slow.mfu < base.mfu


def test_layer_overhead_in_a_pipeline_scales_with_m_plus_pp_minus_1():
    """T_pipe = (m + pp − 1) · max_s T_mb(s): each stage's T_mb grows by its L/pp layers' two passes."""
    m, pp, overhead = 4, 2, 70e-6
    scenario = tiny(micro_batches=m, overlap_grad_reduce=False)
    layout = Layout(dp=4, tp=2, pp=pp, ep=8)
    base, slow = estimate(scenario, layout), estimate(_with_overhead(scenario, overhead), layout)
    per_stage = scenario.model.num_layers // pp * 2 * overhead
    assert slow.step_time_s - base.step_time_s == pytest.approx((m + pp - 1) * per_stage, rel=1e-9)


def test_zero_layer_overhead_changes_nothing():
    scenario = tiny(micro_batches=2)
    layout = Layout(dp=4, tp=2, pp=2, ep=8)
    assert estimate(_with_overhead(scenario, 0.0), layout) == estimate(scenario, layout)


def _moe_terms(scenario):
    """The TermBuilder terms of the first MoE layer class of `scenario` at its own layout."""
    from moesim.estimate.terms import TermBuilder
    from moesim.memory import RECOMPUTE_CODES
    from moesim.workload import build_workload

    tr, layout = scenario.training, scenario.resolve()
    one = lambda x: np.array([float(x)])  # noqa: E731
    builder = TermBuilder(scenario.model, scenario.hardware, tr, one(tr.global_batch_sequences / layout.dp),
                          one(layout.tp), one(layout.ep), one(layout.etp), np.array([RECOMPUTE_CODES[tr.recompute]]),
                          one(tr.capacity_factor or scenario.model.moe.capacity_factor_train))
    cls = next(c for c in build_workload(scenario.model, *scenario.seq_lens).classes if c.is_moe)
    return builder.build(cls)


def test_einsum_dispatch_backward_is_one_einsum_combine_two(switch_base):
    """Dense dispatch backward: the 0/1 dispatch mask takes no gradient (GShard §3.1), so the dispatch
    einsum is differentiated once (w.r.t. its tokens), the combine einsum twice (expert outputs, combine
    weights); the parts add up to the backward time, and the hardware FLOPs drop by one einsum."""
    from moesim.ops.price import op_time_s

    t = _moe_terms(switch_base)
    fwd, bwd = t.fwd_parts_s, t.bwd_parts_s
    hw = switch_base.hardware
    # Per operator (the unpermute part also holds the MoE residual add, a memory op with no backward).
    time = lambda ops, name: sum(op_time_s(o, hw) for o in ops if o.name == name)  # noqa: E731
    dispatch, combine = time(t.ops_fwd, "dispatch_einsum"), time(t.ops_fwd, "combine_einsum")
    assert dispatch == pytest.approx(combine) and dispatch[0] > 0
    assert time(t.ops_bwd, "dispatch_einsum") == pytest.approx(dispatch)
    assert time(t.ops_bwd, "combine_einsum") == pytest.approx(2 * combine)
    assert bwd["permute"] == pytest.approx(fwd["permute"])
    assert bwd["unpermute"] == pytest.approx(2 * combine)
    assert t.bwd_time_s == pytest.approx(sum(bwd.values()), rel=1e-12)
    index = _moe_terms(dataclasses.replace(switch_base, training=dataclasses.replace(
        switch_base.training, dispatch_impl="index")))
    assert index.bwd_parts_s["permute"] == pytest.approx(index.fwd_parts_s["permute"])
    einsum_flops = 2 * 2 * t.tokens_per_device * 128 * t.capacity * 768 / 2  # one of the two forward einsums
    assert t.hardware_flops - index.hardware_flops == pytest.approx(
        (1 + 2) * 2 * einsum_flops - einsum_flops, rel=1e-9)  # both einsums fwd + bwd, less the dispatch's 2nd


def test_combine_all_to_all_carries_the_combine_dtype():
    """GShard keeps activations in float32 (§4.3) both ways through the all-to-all; left empty the
    combine dtype is the compute dtype (bfloat16 here: half the bytes)."""
    from moesim.specs.load import load_scenario

    sc = load_scenario("gshard-600b-tpu-v3")
    comm = estimate(sc).communication
    assert comm["ep_all_to_all_combine"]["size_bytes"] == comm["ep_all_to_all_dispatch"]["size_bytes"]
    default = dataclasses.replace(sc, training=dataclasses.replace(sc.training, combine_dtype=""))
    assert estimate(default).communication["ep_all_to_all_combine"]["size_bytes"] == \
        comm["ep_all_to_all_dispatch"]["size_bytes"] / 2


ORDERS = [("tp", "ep", "dp", "pp"), ("tp", "dp", "ep", "pp"), ("ep", "tp", "dp", "pp"), ("pp", "tp", "ep", "dp")]


@settings(max_examples=60, deadline=None)
@given(dp=DEGREES, tp=DEGREES, ep=DEGREES, pp=DEGREES, etp=st.sampled_from([1, 2]), order=st.sampled_from(ORDERS))
def test_vectorised_strides_equal_the_mapping(dp, tp, ep, pp, etp, order):
    """estimate/strides.py is the batch form of topology.mapping.mesh_strides: they must agree."""
    from moesim.estimate.strides import candidate_strides
    from moesim.topology.mapping import mesh_strides

    layout = Layout(dp=dp, tp=tp, ep=ep, pp=pp, etp=etp, order=order)
    if (tp * dp) % (etp * ep):
        return
    batch = single(tiny(devices=layout.devices), layout)
    vectorised = {axis: int(v[0]) for axis, v in candidate_strides(batch).items()}
    scalar = mesh_strides(layout)
    assert {axis: vectorised[axis] for axis in scalar} == scalar


def test_zero3_working_memory_is_the_gathered_shard_of_one_layer_twice(switch_c):
    """ZeRO-3 keeps the current and the prefetched layer gathered (ZeRO arXiv 1910.02054 §7.2.2): per device its
    tp shard of the dense part and its ep·etp share of the experts, not a whole layer with every expert."""
    from moesim.workload import build_workload  # noqa: PLC0415
    dp, tp, ep = 1024, 2, 2048
    e2, e3 = (estimate(switch_c, Layout(dp=dp, tp=tp, ep=ep, pp=1), dataclasses.replace(switch_c.training, zero_stage=z))
              for z in (2, 3))
    wl = build_workload(switch_c.model, *switch_c.seq_lens)
    q_p = switch_c.training.bytes_of("param")
    n = np.bincount(wl.layer_class_index, minlength=len(wl.classes))
    dense = sum(k * (c.params_shardable / tp + c.params_replicated) for k, c in zip(n, wl.classes)) + (
        wl.embedding_params / tp + wl.position_params + wl.lm_head_params / tp + wl.final_norm_params)
    experts = sum(k * c.params_experts / ep for k, c in zip(n, wl.classes))  # etp = 1
    edp = dp * tp // ep
    assert e2.memory_bytes_per_device["weights"] == pytest.approx(q_p * (dense + experts), rel=1e-9)
    layer = max(c.params_shardable / tp + c.params_replicated + c.params_experts / ep for c in wl.classes)
    working = e3.memory_bytes_per_device["weights"] - q_p * (dense / dp + experts / edp)
    assert working == pytest.approx(2 * layer * q_p, rel=1e-9)
    # The old charge, a whole layer with all 2048 experts over tp, was larger than ZeRO-2's whole stage.
    whole = max(c.params_shardable + c.params_replicated + c.params_experts for c in wl.classes)
    assert 2 * whole * q_p / tp > e2.memory_bytes_per_device["weights"]
    assert e3.memory_bytes_per_device["total"] < e2.memory_bytes_per_device["total"]
