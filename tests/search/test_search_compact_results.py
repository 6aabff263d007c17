"""search() keeps each batch's figures for the rows it evaluated (session 21, coldsearch21) instead of filling arrays
over every candidate: its ranking, figures, rejection counts, folded orders and closest misses are those of the
plain rule written out here, every candidate evaluated in one batch (fitting_only off) into full arrays."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.collectives.select import model_for
from moesim.estimate import evaluate
from moesim.search import enumerate_layouts, search
from moesim.search import rank
from moesim.specs.scenario import SearchSpace
from search_fixtures import ODD_MOE, build, with_hbm


@pytest.fixture(scope="module")
def odd_wide():
    space = SearchSpace(pipeline_schedules=("1f1b", "interleaved", "dualpipe"), virtual_stages=(2,))
    return build(ODD_MOE, devices=16, batch=32, search=space)


@pytest.fixture(scope="module")
def partly_fits(odd_wide):
    """(scenario, its candidates, every candidate evaluated in one batch): a capacity that rejects ~a quarter."""
    scenario = with_hbm(odd_wide, 4.0e9)
    cands = enumerate_layouts(scenario).candidates
    return scenario, cands, evaluate(scenario, cands, model_for(scenario), breakdown=False)


@pytest.mark.parametrize(("objective", "threads"), [("step_time", 1), ("step_time", 3), ("cost", 3), ("mfu", 1)])
def test_compact_results_equal_the_full_array_rule(partly_fits, objective, threads, monkeypatch):
    monkeypatch.setattr(rank, "CHUNK_CANDIDATES", 97)  # many batches, some with no fitting row
    scenario, cands, ev = partly_fits
    got = search(scenario, objective, threads=threads)
    # The rule over full arrays: fitting rows ranked by (objective, memory), ties in enumeration order.
    value = rank.objective_values(scenario, objective, ev.step_time_s, ev.mfu)
    keep = np.flatnonzero(ev.fits)
    assert 0 < len(keep) < len(cands)  # both kinds of row present
    primary = -value[keep] if objective == "mfu" else value[keep]
    order = keep[np.lexsort((ev.memory_total_bytes[keep], primary))]
    first, counts = rank._equivalent_orders(cands, order, ev.step_time_s, ev.memory_total_bytes)
    assert got.rejected["out_of_memory"] == len(cands) - len(keep)
    want = cands.take(order)
    for name in ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute", "order", "schedule", "vp"):
        np.testing.assert_array_equal(getattr(got.candidates, name), getattr(want, name), err_msg=name)
    for name, expected in (("step_time_s", ev.step_time_s), ("memory_bytes_per_device", ev.memory_total_bytes),
                           ("mfu", ev.mfu), ("tokens_per_s", ev.tokens_per_s), ("objective_value", value)):
        assert getattr(got, name).tobytes() == np.asarray(expected, dtype=float)[order].tobytes(), name
    np.testing.assert_array_equal(got.equivalent_orders, np.where(first, counts, 0))


def test_nothing_fits_gives_the_closest_misses_of_the_full_arrays(odd_wide, monkeypatch):
    monkeypatch.setattr(rank, "CHUNK_CANDIDATES", 97)
    scenario = with_hbm(odd_wide, 3.5e9)  # nothing fits (the runtime reservation still held)
    got = search(scenario, threads=1)
    cands = enumerate_layouts(scenario).candidates
    ev = evaluate(scenario, cands, model_for(scenario), breakdown=False)
    assert got.ranked == 0 and not ev.fits.any()
    near = np.flatnonzero(~ev.fits)
    near = near[np.lexsort((ev.step_time_s[near], ev.memory_total_bytes[near]))]
    near = near[rank._equivalent_orders(cands, near, np.zeros_like(ev.step_time_s), ev.memory_total_bytes)[0]]
    near = near[:rank.MISSES_KEPT]
    assert got.miss_memory_bytes.tobytes() == ev.memory_total_bytes[near].tobytes()
    assert got.miss_step_time_s.tobytes() == ev.step_time_s[near].tobytes()
    np.testing.assert_array_equal(got.misses.dp, cands.dp[near])
    np.testing.assert_array_equal(got.misses.order, cands.order[near])
    assert got.rejected["out_of_memory"] == len(cands)
