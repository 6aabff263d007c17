"""With uniform expected routing, no stragglers, no noise and no contention the simulator adds
nothing the analytical model leaves out, so the two agree (within 2 %) over scenarios and layouts.

Where they still differ, the simulator's schedule is the finer one: a real 1F1B/GPipe pipeline
instead of (m + pp − 1)·max-stage, gradient buckets that overlap backward collectives too, and a
last bucket that nothing can hide (see benchmarks/RESULTS.md, Simulator)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moesim.des import SimOptions, simulate
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

TOLERANCE = 0.02
GLAM_1024 = str(Path(__file__).parent / "data" / "glam-64e-1024-h100.toml")

CASES = [
    # (id, scenario, training changes, layout or None for the scenario's)
    ("switch-base-128", "switch-base-128-tpu-v3", {}, None),
    ("switch-base-128 dp32 ep16", "switch-base-128-tpu-v3", {}, Layout(dp=32, ep=16)),
    ("switch-base-128 tp2 dp16 ep16", "switch-base-128-tpu-v3", {}, Layout(dp=16, tp=2, ep=16)),
    ("switch-base-128 zero1 index", "switch-base-128-tpu-v3", {"zero_stage": 1, "dispatch_impl": "index"}, None),
    ("switch-c-2048", "switch-c-2048-tpu-v3", {}, None),
    ("mixtral-8x7b pp4 m16 1f1b", "mixtral-8x7b-h100", {}, None),
    ("mixtral-8x7b pp4 m16 gpipe", "mixtral-8x7b-h100", {"pipeline_schedule": "gpipe"}, None),
    ("mixtral-8x7b full recompute", "mixtral-8x7b-h100", {"recompute": "full"}, None),
    ("mixtral-8x7b tp2 ep4 pp4", "mixtral-8x7b-h100", {"global_batch_sequences": 128}, Layout(dp=8, tp=2, ep=4, pp=4)),
    ("mixtral-8x7b etp2 pp4", "mixtral-8x7b-h100", {"global_batch_sequences": 128},
     Layout(dp=8, tp=2, ep=4, etp=2, pp=4)),
    ("st-moe-32b", "st-moe-32b-tpu-v3", {}, None),
    ("glam tpu-v4 zero3 recompute", "glam-64b-64e-tpu-v4", {}, None),
    ("gshard-600b", "gshard-600b-tpu-v3", {}, None),
    ("glam 1024 h100 pp4 m8", GLAM_1024, {}, None),
    # The model's ends (moesim.ops.vocab): the embedding's and the head's tp collectives, with and without SP.
    ("llama3-70b b200 tp8 sp", "llama3-70b-l12-b200-tp8", {}, None),
    ("llama3-70b b200 tp8 no sp, fused ce", "llama3-70b-l12-b200-tp8",
     {"sequence_parallel": False, "fused_cross_entropy": True}, None),
    ("llama3-70b b200 tp4 pp2 interleaved", "llama3-70b-l12-b200-tp8", {"pipeline_schedule": "interleaved"},
     Layout(dp=1, tp=4, pp=2, vp=2)),
]


@pytest.mark.parametrize("name, scenario, changes, layout", CASES, ids=[c[0] for c in CASES])
def test_simulated_step_agrees_with_the_estimate(name, scenario, changes, layout):
    sc = load_scenario(scenario)
    if changes:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes))
    result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.mode == "aggregated"
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=TOLERANCE)


OVERHEAD_CASES = [
    ("mixtral-8x7b pp4 m16 1f1b", "mixtral-8x7b-h100", {}),
    ("mixtral-8x7b full recompute", "mixtral-8x7b-h100", {"recompute": "full"}),
    ("switch-base-128", "switch-base-128-tpu-v3", {}),
]


@pytest.mark.parametrize("name, scenario, changes", OVERHEAD_CASES, ids=[c[0] for c in OVERHEAD_CASES])
def test_layer_overhead_keeps_the_simulator_in_agreement(name, scenario, changes):
    """A per-layer host overhead (here 200 µs per pass, large against these layers) runs in the simulator as
    one compute op per layer pass, so the two still agree and both grow."""
    sc = load_scenario(scenario)
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes))
    hw = sc.hardware
    slow = dataclasses.replace(sc, hardware=dataclasses.replace(
        hw, efficiency=dataclasses.replace(hw.efficiency, layer_overhead_s=200e-6)))
    options = SimOptions(contention=False, expected_loads=True, trace=False)
    base, result = simulate(sc, None, options), simulate(slow, None, options)
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=TOLERANCE)
    assert result.step_times_s[0] > base.step_times_s[0]
    assert result.analytical_step_time_s > base.analytical_step_time_s


UNEVEN_BOUND_SLACK = 0.002  # above the bound by at most this (test docstring: 0.03 % / 0.10 % measured)
UNEVEN_CASES = [
    # (id, scenario, devices, training changes, layout): pp ∤ layers, stages split by specs.layout.stage_layers
    ("mixtral-8x7b pp3 (11, 11, 10) 1f1b", "mixtral-8x7b-h100", 48, {}, Layout(dp=16, ep=8, pp=3)),
    ("mixtral-8x7b pp3 (11, 11, 10) gpipe", "mixtral-8x7b-h100", 48, {"pipeline_schedule": "gpipe"},
     Layout(dp=16, ep=8, pp=3)),
    ("deepseek-v3 61 layers pp16 (15 x 4, 1) + MTP, FP8 recipe, 1f1b", "deepseek-v3-h800", None,
     {"pipeline_schedule": "1f1b"}, Layout(dp=128, ep=64, pp=16, last_stage_layers=1)),
]


@pytest.mark.parametrize("name, scenario, devices, changes, layout", UNEVEN_CASES, ids=[c[0] for c in UNEVEN_CASES])
def test_uneven_stages_agree_with_the_estimate(name, scenario, devices, changes, layout):
    """Uneven stages: the estimate's (m + pp − 1) · slowest stage bounds the simulated pipeline from above
    (lighter stages fill and drain it faster) and stays within 2 % of it here. Nearly: since the input embedding is
    priced (session 18, b200val: 0.70 ms per micro-batch, mostly the fp32 main-gradient add of the [V, h] table)
    Mixtral's first stage (11 layers, one send, the embedding: 1.448 ms beside the layers) is just lighter than the
    middle one the estimate charges (11 layers, sends both ways: 1.491 ms), so the estimate does not move, while the
    first stage, whose forwards start the pipeline and whose backwards end it, now makes the simulated step 0.03 %
    (1F1B) and 0.10 % (GPipe) longer than the bound."""
    sc = load_scenario(scenario, devices=devices)
    if changes:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes))
    layout = layout or sc.resolve()
    assert len(set(layout.stage_layers(sc.model.num_layers))) >= 2
    result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False))
    # DeepSeek-V3 (two output heads, 129K vocabulary): -2.0 % since the unfused cross-entropy is priced by its
    # passes (issue 10), a heavier last stage; 2.5 % for it.
    tolerance = 0.025 if "deepseek" in scenario else TOLERANCE
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=tolerance)
    assert result.step_times_s[0] <= result.analytical_step_time_s * (1 + UNEVEN_BOUND_SLACK)
