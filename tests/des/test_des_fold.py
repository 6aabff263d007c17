"""The fast engine gives the simpy engine's timelines, and folding devices into classes gives the
unfolded run's answer (moesim/des/kernel.py, fold.py), on cases small enough to run all three."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from des_helpers import tiny_scenario
from moesim.des import SimOptions, simulate
from moesim.des.fabric import PortFabric
from moesim.des.fold import refine
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware, load_scenario

SKEW = dict(routing="zipf:1.2", straggler_fraction=0.25, straggler_slowdown=1.5, steps=2, seed=5)
CASES = [
    ("tiny dropless ep8, zipf + stragglers", lambda: tiny_scenario(8, dropless=True), Layout(dp=8, ep=8),
     SimOptions(**SKEW)),
    ("tiny tp2 ep4 pp2 1F1B, capacity padded, stragglers", lambda: tiny_scenario(16, micro_batches=4, zero_stage=1),
     Layout(dp=4, tp=2, ep=4, pp=2), SimOptions(straggler_fraction=0.2, straggler_slowdown=2.0, seed=1)),
    ("tiny dropless pp2 GPipe, expected zipf loads + stragglers",
     lambda: tiny_scenario(16, dropless=True, micro_batches=2, pipeline_schedule="gpipe"),
     Layout(dp=8, ep=8, pp=2), SimOptions(expected_loads=True, routing="zipf:1.0", straggler_fraction=0.1,
                                          straggler_slowdown=1.4, seed=3)),
    ("switch-base-128, chips shared by 2 cores, stragglers", lambda: load_scenario("switch-base-128-tpu-v3"), None,
     SimOptions(straggler_fraction=0.1, straggler_slowdown=1.3, seed=2)),
    ("tiny dropless ep4 etp2 pp2, 2 chunks, noise", lambda: tiny_scenario(16, dropless=True, micro_batches=2),
     Layout(dp=4, tp=2, ep=4, etp=2, pp=2), SimOptions(chunks=2, noise_sigma=0.2, seed=7)),
]
IDS = [c[0] for c in CASES]


def _same(a, b) -> None:
    assert a.step_times_s == pytest.approx(b.step_times_s, rel=1e-12)
    assert a.dropped_token_fraction == b.dropped_token_fraction
    for key in ("mean", "min", "max"):
        assert a.idle_time_s[key] == pytest.approx(b.idle_time_s[key], rel=1e-9, abs=1e-15)
    assert a.idle_time_s["devices"] == b.idle_time_s["devices"]


@pytest.mark.parametrize("name, scenario, layout, options", CASES, ids=IDS)
@pytest.mark.parametrize("contention", [True, False], ids=["contention", "no contention"])
def test_fast_engine_equals_simpy_engine(name, scenario, layout, options, contention):
    sc = scenario()
    options = dataclasses.replace(options, contention=contention, mode="full")
    fast = simulate(sc, layout, options)
    ref = simulate(sc, layout, dataclasses.replace(options, engine="simpy"))
    assert (fast.mode, ref.mode, ref.simulated_devices) == ("full", "full", sc.devices)
    _same(fast, ref)
    _traces_equal(fast.trace_records, ref.trace_records)
    assert [r["link"] for r in fast.busiest_links] == [r["link"] for r in ref.busiest_links]
    for x, y in zip(fast.busiest_links, ref.busiest_links):
        assert x["utilisation"] == pytest.approx(y["utilisation"], rel=1e-9)
        assert x["peak_concurrent_flows"] == y["peak_concurrent_flows"]


def _traces_equal(a, b) -> None:
    key = lambda r: (r[0], r[1], round(r[6], 9), r[2], r[4], r[5])  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[:6] == y[:6]
        assert x[6:] == pytest.approx(y[6:], rel=1e-9, abs=1e-15)


FOLD_CASES = [
    ("tiny dropless dp32 ep4, expected zipf loads + a straggler",
     lambda: tiny_scenario(32, dropless=True, global_batch_sequences=32), Layout(dp=32, ep=4),
     SimOptions(**(SKEW | {"straggler_fraction": 1 / 32}))),
    ("tiny dp16 ep4 pp2 1F1B, capacity padded, 2 stragglers",
     lambda: tiny_scenario(32, micro_batches=2, global_batch_sequences=32),
     Layout(dp=16, ep=4, pp=2), SimOptions(straggler_fraction=2 / 32, straggler_slowdown=2.0, seed=1)),
    ("switch-base-128 on 32 cores: chips of 2 cores, a straggler", lambda: load_scenario("switch-base-128-tpu-v3"),
     None, SimOptions(straggler_fraction=1 / 32, straggler_slowdown=1.3, seed=2)),
    ("tiny dropless pp2 GPipe, expected uniform loads", lambda: tiny_scenario(16, dropless=True, micro_batches=2,
                                                                              pipeline_schedule="gpipe"),
     Layout(dp=8, ep=8, pp=2), SimOptions()),
]


@pytest.mark.parametrize("name, scenario, layout, options", FOLD_CASES, ids=[c[0] for c in FOLD_CASES])
@pytest.mark.parametrize("contention", [True, False], ids=["contention", "no contention"])
def test_folded_equals_unfolded(name, scenario, layout, options, contention):
    sc = scenario()
    options = dataclasses.replace(options, contention=contention, expected_loads=True)
    folded = simulate(sc, layout, dataclasses.replace(options, mode="auto"))
    full = simulate(sc, layout, dataclasses.replace(options, mode="full"))
    assert folded.mode == "aggregated" and full.mode == "full"
    assert all(k < sc.devices for k in folded.simulated_per_step)
    assert folded.events < full.events
    assert "classes" in folded.mode_reason and "exact" in folded.mode_reason
    _same(folded, full)
    util = {r["link"]: r["utilisation"] for r in full.busiest_links}
    for row in folded.busiest_links:
        if row["link"] in util:
            assert row["utilisation"] == pytest.approx(util[row["link"]], rel=1e-9)


def test_sampled_dropless_loads_do_not_fold():
    sc = tiny_scenario(8, dropless=True)
    result = simulate(sc, Layout(dp=8, ep=8), SimOptions(**SKEW))
    assert result.mode == "full" and result.simulated_per_step == (8, 8)
    assert result.mode_reason.startswith("every device differs (routing loads set the work")


def test_refinement_splits_by_groups_links_and_neighbours():
    """Two devices with equal work stay one class only while their groups, chip mates and pipeline
    neighbours hold the same classes."""
    fabric = PortFabric(load_hardware("tpu-v3"), 8)  # chips of 2 cores
    sizes, strides = {"ep": 4, "dp": 4, "pp": 2}, {"ep": 1, "dp": 1, "pp": 4}
    work = np.zeros(8, dtype=int)
    # first and last stage differ by their pipeline neighbours alone
    assert list(refine(work, sizes, strides, fabric, 2)) == [0, 0, 0, 0, 1, 1, 1, 1]
    work[1] = 1  # one straggler on stage 0 (chip 0)
    labels = refine(work, sizes, strides, fabric, 2)
    # device 1's chip mate 0 differs from 2 and 3; stage 1 devices differ from one another by their
    # pipeline neighbour (5 receives from the straggler) and by chip (4 shares a chip with 5)
    assert len(set(labels[[0, 1, 2, 3]])) == 3 and labels[2] == labels[3]
    assert labels[5] != labels[4] and labels[6] == labels[7] != labels[4]


def test_routing_loads_are_kept_per_stage():
    """Kept loads hold a stage's devices only (memory grows with a stage, not the cluster)."""
    from moesim.collectives.select import default_model
    from moesim.des.costs import build_costs
    from moesim.des.run import _Router

    sc = tiny_scenario(16, dropless=True, micro_batches=2)
    layout = Layout(dp=8, ep=8, pp=2)
    costs = build_costs(sc, layout, sc.training, default_model(sc.hardware), 0.0)
    router = _Router(costs, SimOptions(), np.random.default_rng(0), keep=True)
    loads, dropped, assigned = router.step()
    assert len(loads) == 2 and dropped == 0 and assigned > 0
    for stage, per_stage in enumerate(loads):
        layers = {n for n, _ in per_stage}
        assert per_stage and all(len(a) == 8 for arrays in per_stage.values() for a in arrays)
        assert all(router.stage_of_layer[router.layers[n]] == stage for n in layers)


def test_mode_reason_says_one_class_not_one_classes():
    """Session 20 (whyrank): `simulate` printed "1 classes" (newuser3's log); one class is singular."""
    from types import SimpleNamespace

    from moesim.des.run import _mode_reason

    one, three = (SimpleNamespace(folded=True, classes=k) for k in (1, 3))
    assert _mode_reason(one, [], SimOptions()).startswith("1 class of devices with identical timelines")
    assert _mode_reason(three, [], SimOptions()).startswith("3 classes of devices with identical timelines")
