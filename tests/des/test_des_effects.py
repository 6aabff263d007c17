"""What the simulator adds, in the direction and size it should: skew, capacity, contention,
overlap, stragglers, noise, seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from des_helpers import tiny_scenario
from moesim.des import SimOptions, simulate
from moesim.errors import SpecError
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

EP8 = Layout(dp=8, ep=8)


@pytest.fixture(scope="module")
def dropless():
    return tiny_scenario(8, dropless=True)


def _mean(result) -> float:
    return result.step_time_stats["mean"]


def test_skew_raises_step_time_when_dropless(dropless):
    expected = simulate(dropless, EP8, SimOptions(expected_loads=True))
    uniform = simulate(dropless, EP8, SimOptions(steps=2, seed=3))
    skewed = simulate(dropless, EP8, SimOptions(steps=2, seed=3, routing="zipf:1.2"))
    assert expected.mode == "aggregated" and uniform.mode == "full"
    # sampling noise alone makes the busiest expert wait; Zipf skew makes it much worse (modeling.md §5.1)
    assert _mean(expected) < _mean(uniform) < _mean(skewed)
    assert _mean(skewed) > 1.3 * _mean(uniform)
    assert uniform.dropped_token_fraction == skewed.dropped_token_fraction == 0.0


def test_skew_drops_tokens_when_capacity_padded():
    scenario = tiny_scenario(8)  # megatron rule, CF 1.25
    uniform = simulate(scenario, EP8, SimOptions(steps=2))
    skewed = simulate(scenario, EP8, SimOptions(steps=2, routing="zipf:1.2"))
    assert skewed.dropped_token_fraction > 0.2 > 0.01 > uniform.dropped_token_fraction
    # padded slots are computed and sent whatever the loads (Switch Fig. 3): same step time
    assert skewed.step_times_s == uniform.step_times_s


def test_smaller_capacity_factor_drops_more_and_matches_the_binomial_formula():
    base = load_scenario("switch-base-128-tpu-v3")
    drops, times = [], []
    for cf in (0.8, 1.0, 1.25, 2.0):
        sc = dataclasses.replace(base, training=dataclasses.replace(base.training, capacity_factor=cf))
        r = simulate(sc, None, SimOptions(steps=2, seed=5))
        drops.append(r.dropped_token_fraction)
        times.append(r.step_times_s[0])
        # 2 steps × 12 MoE layers × 32 devices × 32 routing groups of 1024 tokens (Mesh-TF) over 128 experts
        assert r.dropped_token_fraction == pytest.approx(r.expected_drop_fraction_uniform, rel=0.05)
    assert drops[0] > drops[1] > drops[2] > drops[3] > 0.0  # CF 2.0, C = 16 for a mean load of 8: still a few
    assert times == sorted(times)  # padding costs compute and communication


def test_contention_slows_concurrent_collectives():
    sc = load_scenario("mixtral-8x7b-h100")
    off = simulate(sc, None, SimOptions(expected_loads=True, contention=False, trace=False))
    on = simulate(sc, None, SimOptions(expected_loads=True, contention=True, trace=False))
    # gradient buckets and pipeline sends meet the all-to-alls on the same NICs
    assert on.step_times_s[0] > off.step_times_s[0] * 1.005


def test_chunked_all_to_all_overlaps_expert_compute():
    sc = load_scenario("switch-c-2048-tpu-v3")
    times = [simulate(sc, None, SimOptions(expected_loads=True, contention=False, chunks=c, trace=c == 2))
             for c in (1, 2, 4)]
    assert times[0].step_times_s[0] > times[1].step_times_s[0] > times[2].step_times_s[0]
    layer0 = [r for r in times[1].trace_records if r[4] == 0 and r[3] == "fwd"]
    second_dispatch = [r for r in layer0 if r[2] == "dispatch all-to-all"][1]
    first_expert = [r for r in layer0 if r[2] == "expert FFN"][0]
    assert first_expert[6] < second_dispatch[7] and second_dispatch[6] < first_expert[7]  # they overlap


def test_same_seed_same_result_and_other_seeds_differ(dropless):
    a = simulate(dropless, EP8, SimOptions(steps=2, seed=42, routing="zipf:0.8"))
    b = simulate(dropless, EP8, SimOptions(steps=2, seed=42, routing="zipf:0.8"))
    c = simulate(dropless, EP8, SimOptions(steps=2, seed=43, routing="zipf:0.8"))
    assert a.step_times_s == b.step_times_s and a.trace_records == b.trace_records
    assert a.step_times_s != c.step_times_s


def test_stragglers_and_noise_spread_the_step_time(dropless):
    calm = simulate(dropless, EP8, SimOptions(expected_loads=True))
    slow = simulate(dropless, EP8, SimOptions(expected_loads=True, straggler_fraction=0.25, straggler_slowdown=1.5))
    noisy = simulate(dropless, EP8, SimOptions(expected_loads=True, noise_sigma=0.3, steps=6, seed=1))
    # stragglers fold into two classes (slow, not slow; fold.py); noise makes every device its own
    assert (slow.mode, slow.simulated_devices, noisy.mode) == ("aggregated", 2, "full")
    assert _mean(slow) > 1.2 * _mean(calm)  # everyone waits for the slow devices at each collective
    stats = noisy.step_time_stats
    assert stats["max"] > stats["min"] and stats["p99"] >= stats["p50"]
    assert len(set(noisy.step_times_s)) == 6
    assert np.isclose(np.mean(noisy.step_times_s), stats["mean"])


def test_aggregation_is_refused_when_every_device_differs(dropless):
    with pytest.raises(SpecError, match="cannot aggregate devices: every device differs .*kernel noise"):
        simulate(dropless, EP8, SimOptions(mode="aggregated", expected_loads=True, noise_sigma=0.1))
    with pytest.raises(SpecError, match="routing loads set the work"):
        simulate(dropless, EP8, SimOptions(mode="aggregated"))


@pytest.mark.parametrize("field, value", [("steps", 0), ("chunks", 0), ("straggler_fraction", 1.5),
                                          ("straggler_slowdown", 0.5), ("noise_sigma", -1), ("mode", "fast"),
                                          ("sampler", "exact"), ("engine", "numba")])
def test_bad_options_are_spec_errors(field, value):
    with pytest.raises(SpecError, match=f"field '{field}'"):
        SimOptions(**{field: value})


def test_the_simpy_engine_does_not_aggregate():
    with pytest.raises(SpecError, match="field 'mode'.*simpy engine simulates every device"):
        SimOptions(engine="simpy", mode="aggregated")
