"""The estimate speed-ups the search relies on give the figures of single estimates."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.collectives.select import default_model
from moesim.estimate import estimate, evaluate
from moesim.estimate import pricing
from moesim.estimate.stages import pipeline_stages
from moesim.search import enumerate_layouts
from moesim.workload import build_workload
from search_fixtures import ODD_MOE, build

FIGURES = ("step_time_s", "step_time_no_overlap_s", "compute_time_s", "communication_time_s",
           "exposed_communication_time_s", "bubble_time_s", "optimizer_time_s", "memory_total_bytes", "fits", "mfu",
           "tokens_per_s", "slowest_stage", "memory_stage")


def sample(scenario, size, seed):
    cands = enumerate_layouts(scenario).candidates
    rng = np.random.default_rng(seed)
    return cands.take(np.sort(rng.choice(len(cands), size=min(size, len(cands)), replace=False)))


@pytest.mark.parametrize("which", ["switch_base", "odd"])
def test_batch_equals_single_estimates_across_pipeline_degrees(which, switch_base):
    """One batch mixing pp = 1..8 (encoder-decoder Switch: stages of several kinds) against one
    `estimate` per candidate, and breakdown=False against the full evaluation."""
    scenario = switch_base if which == "switch_base" else build(ODD_MOE, devices=12)
    cands = sample(scenario, 60, seed=3)
    assert len(np.unique(cands.pp)) > 1
    model = default_model(scenario.hardware)
    full = evaluate(scenario, cands, model)
    lean = evaluate(scenario, cands, model, breakdown=False)
    assert lean.comms == {}
    for name in FIGURES:
        assert np.array_equal(getattr(full, name), getattr(lean, name)), name
    for i in range(len(cands)):
        single = estimate(scenario, cands.layout(i), cands.training(i, scenario.training))
        assert single.step_time_s == pytest.approx(full.step_time_s[i], rel=1e-12)
        assert single.memory_bytes_per_device["total"] == pytest.approx(full.memory_total_bytes[i], rel=1e-12)
    assert np.all(full.slowest_stage < cands.pp) and np.all(full.memory_stage < cands.pp)


def test_representative_stages_of_a_decoder_only_model():
    scenario = build(ODD_MOE, devices=12)
    wl = build_workload(scenario.model, *scenario.seq_lens)
    stages = pipeline_stages(wl, np.array([1, 2, 4]))
    assert stages.index.tolist() == [[0, -1, -1], [0, 1, -1], [0, 1, 3]]  # first, middle, last
    assert stages.counts[2, :3].sum(axis=1).tolist() == [1, 1, 1]


def test_distinct_rows_groups_like_numpy_unique(monkeypatch):
    rng = np.random.default_rng(0)
    sizes = rng.choice([1.0, 2.5, 4e6, 0.0], size=500)
    group = rng.choice([1, 2, 8], size=500)
    stride = rng.choice([1, 4], size=500)
    concurrent = 64 // group
    columns = [sizes, group, stride, concurrent]
    rows = np.stack(columns, axis=1)

    def check():
        first, inverse = pricing.distinct_rows(columns)
        assert np.array_equal(rows[first][inverse], rows)  # every row equals its representative
        assert len(first) == len(np.unique(rows, axis=0))  # and distinct rows stay apart

    check()
    monkeypatch.setattr(pricing, "_mix64", lambda x: np.zeros_like(x))  # every hash collides
    check()
