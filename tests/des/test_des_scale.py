"""Full training steps at scale finish in well under a minute (one core): Switch-C on a 2048-core
TPU v3 pod and a 64-expert model on 1024 H100s. Figures: benchmarks/bench_des.py, RESULTS.md."""

from __future__ import annotations

import time

import pytest

from moesim.des import SimOptions, simulate
from moesim.specs.load import load_scenario

BUDGET_S = 60.0


@pytest.mark.parametrize("which", ["switch-c-2048", "glam-64e-1024-h100"])
def test_full_step_at_scale_within_a_minute(which, glam_1024):
    scenario = load_scenario("switch-c-2048-tpu-v3") if which == "switch-c-2048" else glam_1024
    started = time.perf_counter()
    result = simulate(scenario, None, SimOptions(steps=1, seed=0))  # sampled routing, contention on
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_S
    assert result.mode == "aggregated" and result.devices in (1024, 2048)
    assert result.events > 0 and result.dropped_token_fraction > 0
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.05)
