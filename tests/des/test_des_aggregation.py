"""One representative device per pipeline stage gives exactly the full simulation's answer when
the devices of a stage cannot differ (see moesim/des/run.py)."""

from __future__ import annotations

import dataclasses

import pytest

from des_helpers import tiny_scenario
from moesim.des import SimOptions, simulate
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

CASES = [
    ("switch-base-128 on 32 TPU cores, chips shared by 2 cores", lambda: load_scenario("switch-base-128-tpu-v3"),
     None, SimOptions(steps=1, seed=2)),
    ("tiny MoE, tp2 ep4 pp2, 1F1B, ZeRO-1", lambda: tiny_scenario(16, micro_batches=4, zero_stage=1),
     Layout(dp=4, tp=2, ep=4, pp=2), SimOptions(steps=1)),
    ("tiny MoE dropless, expected loads, GPipe", lambda: tiny_scenario(16, dropless=True, micro_batches=2,
                                                                        pipeline_schedule="gpipe"),
     Layout(dp=8, ep=8, pp=2), SimOptions(expected_loads=True)),
]


@pytest.mark.parametrize("name, scenario, layout, options", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("contention", [True, False], ids=["contention", "no contention"])
def test_aggregated_equals_full(name, scenario, layout, options, contention):
    sc = scenario()
    options = dataclasses.replace(options, contention=contention)
    agg = simulate(sc, layout, dataclasses.replace(options, mode="aggregated"))
    full = simulate(sc, layout, dataclasses.replace(options, mode="full"))
    assert (agg.mode, full.mode) == ("aggregated", "full")
    assert agg.simulated_devices < full.simulated_devices == sc.devices
    assert agg.step_times_s == pytest.approx(full.step_times_s, rel=1e-12)
    assert agg.dropped_token_fraction == full.dropped_token_fraction
    for key in ("mean", "min", "max"):
        assert agg.idle_time_s[key] == pytest.approx(full.idle_time_s[key], rel=1e-9, abs=1e-15)
    # the representative's links carry what every device's links carry in the full run
    full_links = {r["link"]: r for r in full.busiest_links}
    for row in agg.busiest_links:
        twin = full_links.get(row["link"])
        if twin is not None:
            assert row["utilisation"] == pytest.approx(twin["utilisation"], rel=1e-9)
    assert agg.events < full.events


def test_auto_picks_aggregation_only_when_exact():
    sc = tiny_scenario(8, dropless=True)
    layout = Layout(dp=8, ep=8)
    assert simulate(sc, layout, SimOptions(expected_loads=True)).mode == "aggregated"
    assert simulate(sc, layout, SimOptions()).mode == "full"  # sampled dropless loads differ per device
    assert simulate(tiny_scenario(8), layout, SimOptions()).mode == "aggregated"  # capacity-padded
