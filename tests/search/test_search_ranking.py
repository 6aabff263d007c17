"""The ranking: complete against brute force, valid and fitting, known optima, Pareto front, objectives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from brute_force import fitting_step_times, result_key
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.search import search
from moesim.search.pareto import dominated, pareto_front
from moesim.search.refine import des_step_time, refine
from moesim.specs.load import load_model, load_scenario
from moesim.specs.scenario import SearchSpace
from search_fixtures import DENSE, MOE_64E_SCENARIO, ODD_MOE, TINY_MOE, build, with_hbm

BRUTE = SearchSpace(zero_stages=(0, 3), recompute_modes=("selective",), capacity_factors=(1.0, 1.5),
                    max_micro_batches=2)
DEFAULT_ORDER_ONLY = SearchSpace(orders=(("tp", "ep", "dp", "pp"),))


def assert_valid_and_fitting(result, indices) -> None:
    scenario = result.scenario
    for i in indices:
        i = int(i)
        assert scenario.problems(result.layout(i), int(result.candidates.micro_batches[i])) == []
        assert result.memory_bytes_per_device[i] <= result.memory_capacity_bytes


@pytest.mark.parametrize("make", [
    lambda: with_hbm(build(ODD_MOE, devices=8, batch=12, search=BRUTE), 3.75 * 2**30),
    lambda: build(DENSE, devices=8, batch=8, seq_len=1024,
                  search=dataclasses.replace(BRUTE, capacity_factors=())),
    # pp 3 splits the 4 layers unevenly (1, 2, 1); pp 6 has more stages than layers.
    lambda: build(ODD_MOE, devices=6, batch=12, search=BRUTE),
], ids=["odd-moe-8-tight-memory", "dense-8", "odd-moe-6-uneven-pp"])
def test_ranking_matches_brute_force(make):
    """A brute-force enumeration (loops, one `estimate` per layout) finds no valid fitting layout
    the search misses, and the same step time for each; the search ranks nothing else."""
    scenario = make()
    result = search(scenario)
    brute = fitting_step_times(scenario)
    ranked = {result_key(result, i): float(result.step_time_s[i]) for i in range(result.ranked)}
    assert result.ranked == len(ranked)  # no placement twice
    assert set(ranked) == set(brute)
    for key, step in brute.items():
        assert ranked[key] == pytest.approx(step, rel=1e-12), key
    assert np.all(np.diff(result.step_time_s) >= 0)
    if "tight" in scenario.name or result.rejected["out_of_memory"]:
        assert result.rejected["out_of_memory"] > 0


def test_uneven_pipelines_are_ranked():
    """pp ∤ layers is a valid layout now: the 4-layer model on 12 devices ranks pp = 3 (stages of 1, 2, 1
    layers) with the estimate's step time, and counts pp = 6 and 12 as more stages than layers."""
    scenario = build(ODD_MOE, devices=12)
    result = search(scenario)
    uneven = [i for i in range(result.ranked) if int(result.candidates.pp[i]) == 3]
    assert uneven
    for i in uneven[:3]:
        layout = result.layout(i)
        assert layout.stage_layers(scenario.model.num_layers) == (1, 2, 1)
        training = result.candidates.training(i, scenario.training)
        step = estimate(dataclasses.replace(scenario, training=training), layout).step_time_s
        assert float(result.step_time_s[i]) == pytest.approx(step, rel=1e-12)
    assert result.rejected["more_stages_than_layers"] > 0
    assert "layers_not_divisible_by_pp" not in result.rejected


def test_every_ranked_layout_valid_and_fitting_small():
    result = search(build(ODD_MOE, devices=12))
    assert result.ranked > 0
    assert_valid_and_fitting(result, range(result.ranked))


def test_large_gpu_search_results_valid():
    """The 64-expert model on 1024 H100: top results and a seeded sample are valid and fit; each
    top estimate equals a fresh `estimate` of that layout."""
    result = search(load_scenario(MOE_64E_SCENARIO))
    rng = np.random.default_rng(5)
    sample = np.concatenate([np.arange(20), rng.choice(result.ranked, size=200, replace=False)])
    assert_valid_and_fitting(result, sample)
    assert result.ranked + sum(result.rejected.values()) == result.considered
    for i, est in enumerate(result.estimates(range(3))):
        fresh = estimate(result.scenario, result.layout(i), result.training(i))
        assert est.step_time_s == fresh.step_time_s == result.step_time_s[i]
        assert est.memory_bytes_per_device == fresh.memory_bytes_per_device


def free_network(hardware):
    levels = tuple(dataclasses.replace(level, link_bw_bytes_per_s=1e15, latency_s=0.0)  # the largest allowed
                   for level in hardware.interconnect)
    return dataclasses.replace(hardware, interconnect=levels)


def test_dense_model_with_free_communication_prefers_pure_data_parallelism():
    """No communication cost: tp only shrinks GEMMs, pp only adds a bubble, recomputation only adds
    work, micro-batches only shrink GEMMs — so the fastest layout is pure dp, one micro-batch."""
    scenario = build(DENSE, devices=8, batch=64, seq_len=1024)
    scenario = dataclasses.replace(scenario, hardware=free_network(scenario.hardware))
    best = search(scenario).layout_dict(0)
    assert (best["dp"], best["tp"], best["pp"]) == (8, 1, 1)
    assert best["recompute"] == "none" and best["micro_batches"] == 1


def test_memory_so_tight_that_one_layout_fits():
    """HBM between the smallest and the second-smallest memory any layout needs: exactly that one
    fits, and it is the one construction predicts: every weight split by tp = 8, full recomputation,
    the smallest micro-batches (ZeRO 0 and one order, so that no equivalent layout ties with it)."""
    space = SearchSpace(zero_stages=(0,), orders=(("tp", "ep", "dp", "pp"),))
    roomy = search(build(DENSE, devices=8, batch=16, seq_len=1024, search=space))
    needs = np.unique(roomy.memory_bytes_per_device)
    headroom = roomy.scenario.training.memory_headroom_fraction
    tight = search(with_hbm(roomy.scenario, (needs[0] + needs[1]) / 2 / (1 - headroom)))
    assert tight.ranked == 1
    best = tight.layout_dict(0)
    assert (best["dp"], best["tp"], best["pp"], best["micro_batches"], best["recompute"]) == (1, 8, 1, 16, "full")
    assert tight.memory_bytes_per_device[0] == needs[0]
    assert tight.rejected["out_of_memory"] == roomy.ranked - 1


def test_model_that_fits_only_with_pipeline_parallelism():
    """7 heads forbid tp on 8 devices and ZeRO-0 replicates model states over dp: only pp splits them."""
    model = load_model(DENSE)
    model = dataclasses.replace(model, attention=dataclasses.replace(model.attention, num_heads=7, num_kv_heads=7))
    space = SearchSpace(zero_stages=(0,), recompute_modes=("full",))
    roomy = dataclasses.replace(build(DENSE, devices=8, batch=8, seq_len=1024, search=space), model=model)
    wide = search(roomy)
    pp = wide.candidates.pp
    assert set(wide.candidates.tp.tolist()) == {1}
    need_pp1, need_pp2 = wide.memory_bytes_per_device[pp == 1].min(), wide.memory_bytes_per_device[pp >= 2].min()
    assert need_pp2 < need_pp1
    headroom = roomy.training.memory_headroom_fraction
    result = search(with_hbm(roomy, (need_pp1 + need_pp2) / 2 / (1 - headroom)))
    assert result.ranked > 0 and np.all(result.candidates.pp >= 2)
    assert result.layout_dict(0)["pp"] >= 2


def test_pareto_front_non_dominated_with_both_extremes():
    result = search(build(ODD_MOE, devices=12))
    t, m = result.step_time_s, result.memory_bytes_per_device
    front = result.pareto
    assert len(front) > 1 and list(front) == sorted(front, key=lambda i: (t[i], m[i]))
    for i in front:
        assert not dominated(t, m, int(i))
    assert front[0] == 0  # the fastest layout (least memory among the fastest)
    assert m[front[-1]] == m.min() and t[front[-1]] == t[m == m.min()].min()
    # every layout off the front is dominated by, or equal to, a front point
    on = set(front.tolist())
    for i in range(0, result.ranked, 97):
        if i not in on:
            assert np.any((t[front] <= t[i]) & (m[front] <= m[i]))


def test_pareto_front_function():
    x = np.array([3.0, 1.0, 2.0, 1.0, 4.0, 2.0])
    y = np.array([1.0, 5.0, 2.0, 5.0, 0.5, 3.0])
    assert pareto_front(x, y).tolist() == [1, 2, 0, 4]
    assert pareto_front(np.zeros(0), np.zeros(0)).tolist() == []


def test_objectives_and_units():
    scenario = build(ODD_MOE, devices=12)
    # h100-sxm carries a list price now: take it away to see the unpriced unit
    scenario = dataclasses.replace(scenario, hardware=dataclasses.replace(scenario.hardware,
                                                                          price_per_device_hour_usd=None))
    by_time = search(scenario, "step_time")
    by_cost = search(scenario, "cost")
    assert by_cost.objective_unit == "device-s/step"
    assert np.allclose(by_cost.objective_value, by_cost.step_time_s * 12)
    priced = dataclasses.replace(scenario, hardware=dataclasses.replace(scenario.hardware,
                                                                        price_per_device_hour_usd=3.6))
    usd = search(priced, "cost")
    assert usd.objective_unit == "USD/step"
    assert np.allclose(usd.objective_value, usd.step_time_s * 12 * 3.6 / 3600)
    by_mfu = search(scenario, "mfu")
    assert np.all(np.diff(by_mfu.objective_value) <= 0)
    assert by_mfu.step_time_s[0] == by_time.step_time_s[0]
    with pytest.raises(SpecError, match="objective"):
        search(scenario, "speed")


def test_search_is_deterministic_and_thread_independent():
    scenario = build(ODD_MOE, devices=12)
    a, b = search(scenario, threads=1), search(scenario, threads=2)
    assert a.ranked == b.ranked
    assert np.array_equal(a.step_time_s, b.step_time_s)
    assert all(a.layout_dict(i) == b.layout_dict(i) for i in range(0, a.ranked, 50))


def test_no_layout_fits():
    result = search(with_hbm(build(ODD_MOE, devices=12), 2**20))  # 1 MiB: not even one layer's weights
    assert result.ranked == 0 and result.pareto.size == 0
    assert result.rejected["out_of_memory"] + sum(v for k, v in result.rejected.items()
                                                  if k != "out_of_memory") == result.considered


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(devices=st.integers(1, 32), batch=st.sampled_from([8, 12, 16, 48]),
       model=st.sampled_from([ODD_MOE, TINY_MOE, DENSE]))
def test_property_small_device_counts(devices, batch, model):
    """Any device count: counts add up, and a seeded sample of the ranking is valid and fits."""
    result = search(build(model, devices=devices, batch=batch, seq_len=512))
    assert result.ranked + sum(result.rejected.values()) == result.considered
    rng = np.random.default_rng(devices)
    if result.ranked:
        assert_valid_and_fitting(result, rng.choice(result.ranked, size=min(40, result.ranked), replace=False))


def test_refine_with_a_step_time_hook():
    result = search(build(ODD_MOE, devices=12))
    hook = _Hook(result, {0: 2.0, 1: 1.0, 2: 1.5})
    refined = refine(result, 3, hook)
    assert [r.rank for r in refined] == [1, 2, 0]
    assert refined[0].simulated_step_time_s == pytest.approx(1.0 * result.step_time_s[1])
    assert len(hook.calls) == 3 and hook.calls[0][1] == result.layout(0)


class _Hook:
    """A stand-in simulator: the analytical step time times a factor per rank."""

    def __init__(self, result, factor):
        self.result, self.factor, self.calls = result, factor, []

    def __call__(self, scenario, layout, training):
        rank = len(self.calls)
        self.calls.append((scenario, layout, training))
        return self.factor[rank] * float(self.result.step_time_s[rank])


def _simulator_available() -> bool:
    try:
        des_step_time()
    except SpecError:
        return False
    return True


def test_refine_with_the_simulator_or_say_it_is_missing():
    """With moesim.des the default hook simulates; without it, refining says moesim.des is missing."""
    result = search(build(ODD_MOE, devices=12))
    if not _simulator_available():
        with pytest.raises(SpecError, match="moesim.des"):
            refine(result, 2)
        return
    refined = refine(result, 2)
    assert sorted(r.rank for r in refined) == [0, 1]
    assert all(r.simulated_step_time_s > 0 for r in refined)
