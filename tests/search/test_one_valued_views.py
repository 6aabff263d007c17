"""Session 24 (searchspeed24): the search's shortcuts for one-valued (stride-0) columns and single-key batches give
the arrays the plain computations give, bit for bit: Candidates.take, schedule codes and tests, evaluate's row
folds, one (pp, first, last) key's stages, a group's concurrency on its runs' heads, the times-only pricing, the
equivalent orders, and a whole evaluation over views against one over every column filled in (ZeRO-3 gathers left
unpriced where no row runs ZeRO-3)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.collectives.select import default_model
from moesim.estimate import Candidates, evaluate
from moesim.estimate import pricing
from moesim.estimate.folds import as_float, take_rows
from moesim.estimate.schedules import is_schedule
from moesim.estimate.stages import pipeline_stages
from moesim.search import enumerate_layouts
from moesim.search.rank import _equivalent_orders
from moesim.specs.scenario import SearchSpace
from moesim.workload import build_workload
from search_fixtures import ODD_MOE, build

COLUMNS = [f.name for f in dataclasses.fields(Candidates) if f.name not in ("orders", "pipeline_layout")]
FIGURES = ("step_time_s", "step_time_no_overlap_s", "memory_total_bytes", "mfu", "hfu", "tokens_per_s", "fits",
           "slowest_stage", "memory_stage", "bubble_time_s", "exposed_communication_time_s", "communication_time_s")


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _filled(cands: Candidates) -> Candidates:
    """`cands` with every column a fresh contiguous copy (no stride-0 view left)."""
    return dataclasses.replace(cands, **{name: np.array(getattr(cands, name)) for name in COLUMNS})


@pytest.fixture(scope="module")
def odd():
    return build(ODD_MOE, devices=12)


@pytest.fixture(scope="module")
def wide():
    """Several schedules, virtual stages and ZeRO stages up to 3: nothing one-valued but the end stages."""
    space = SearchSpace(pipeline_schedules=("1f1b", "interleaved", "zb-h1", "dualpipe"), virtual_stages=(2,),
                        zero_stages=(0, 1, 3))
    return build(ODD_MOE, devices=16, batch=32, search=space)


def test_take_keeps_one_valued_columns_as_views_with_the_values_of_a_gather(odd):
    cands = enumerate_layouts(odd).candidates
    assert any(getattr(cands, name).strides == (0,) for name in COLUMNS)
    rng = np.random.default_rng(24)
    filled = _filled(cands)
    for index in (rng.permutation(len(cands))[: len(cands) // 2], rng.random(len(cands)) < 0.3,
                  np.arange(0), np.zeros(len(cands), dtype=bool), [], slice(3, 11)):
        got, want = cands.take(index), filled.take(index)
        for name in COLUMNS:
            assert _same_bits(getattr(got, name), getattr(want, name)), name
            if getattr(cands, name).strides == (0,) and len(getattr(got, name)):
                assert getattr(got, name).strides == (0,), name


def test_schedule_codes_and_tests_of_one_schedule_are_views_of_the_filled_results(odd):
    cands = enumerate_layouts(odd).candidates
    assert cands.schedule.strides == (0,)
    codes, filled = cands.schedule_codes(odd.training), _filled(cands).schedule_codes(odd.training)
    assert codes.strides == (0,) and _same_bits(codes, filled)
    for name in ("1f1b", "interleaved", "zb-v", "dualpipe"):
        got = is_schedule(codes, name)
        assert got.strides == (0,) and _same_bits(got, is_schedule(filled, name))
    names = np.broadcast_to(np.array(["zb-h1"]), (5,))
    assert _same_bits(is_schedule(names, "zb-h1"), np.ones(5, dtype=bool))
    assert not is_schedule(np.zeros(0, dtype=np.int64), "1f1b").size


def test_take_rows_and_as_float_keep_views_and_values():
    view = np.broadcast_to(np.array([7], dtype=np.int64), (9,))
    rows = np.array([8, 0, 3, 3])
    assert _same_bits(take_rows(view, rows), np.array(view)[rows]) and take_rows(view, rows).strides == (0,)
    two_d = np.arange(18.0).reshape(9, 2)
    assert _same_bits(take_rows(two_d, rows), two_d[rows])
    assert take_rows(2.5, rows) == 2.5
    assert _same_bits(as_float(view), np.array(view, dtype=float)) and as_float(view).strides == (0,)
    assert _same_bits(as_float(np.arange(4)), np.arange(4, dtype=float))


def test_one_key_stages_equal_the_gathered_rows(odd):
    wl = build_workload(odd.model, *odd.seq_lens)
    pp = np.array([1, 2, 3, 2, 3, 3, 1])
    mixed = pipeline_stages(wl, pp)
    for p in (1, 2, 3):
        rows = np.flatnonzero(pp == p)
        one = pipeline_stages(wl, np.full(len(rows), p), np.zeros(len(rows), dtype=np.int64),
                              np.broadcast_to(np.zeros(1, dtype=np.int64), (len(rows),)))
        width = one.index.shape[1]
        assert width == int((mixed.index[rows] >= 0).sum(axis=1).max())
        for field in dataclasses.fields(one):
            got, want = getattr(one, field.name), getattr(mixed, field.name)[rows][:, :width]
            assert _same_bits(got, want) and got.flags.writeable, field.name


def test_concurrency_on_runs_and_times_only_pricing(odd):
    size = np.array([1, 2, 2, 4, 4, 4, 8, 2])
    groups = pricing.GroupRuns(size, np.ones(8, dtype=np.int64), 64)
    at = np.array([7, 0, 3, 6])
    assert _same_bits(groups.concurrent_at(at), (64 // size)[at]) and _same_bits(groups.concurrent, 64 // size)
    given = pricing.GroupRuns(size, np.ones(8, dtype=np.int64), 64, concurrent=3)
    assert _same_bits(given.concurrent_at(at), np.full(4, 3))
    model = default_model(odd.hardware)
    nbytes = np.array([0.0, 4096.0, 4096.0, 3e6, 3e6, 7.5e7, 1.0, 2e5])
    for op in ("all_reduce", "all_gather", "all_to_all"):
        times, none = pricing.CollectivePricer(model, 64).price_runs(op, nbytes, groups, False)
        with_costs, costs = pricing.CollectivePricer(model, 64).price_runs(op, nbytes, groups, True)
        assert none is None and _same_bits(times, with_costs)
        assert [c.time_s for c in costs] == times.tolist()


@pytest.mark.parametrize("case", ["odd", "wide"])
def test_evaluation_over_views_is_the_evaluation_over_filled_columns(case, odd, wide):
    scenario = {"odd": odd, "wide": wide}[case]
    cands = enumerate_layouts(scenario).candidates
    model = default_model(scenario.hardware)
    for breakdown in (False, True):
        for fitting_only in (False, True):
            got = evaluate(scenario, cands, model, breakdown=breakdown, fitting_only=fitting_only)
            want = evaluate(scenario, _filled(cands), model, breakdown=breakdown, fitting_only=fitting_only)
            for name in FIGURES:
                assert _same_bits(getattr(got, name), getattr(want, name)), (name, breakdown, fitting_only)
            assert list(got.comms) == list(want.comms)
            for key, total in got.comms.items():
                assert _same_bits(total.time_s, want.comms[key].time_s), key
    zero3 = (np.asarray(cands.zero_stage) >= 3).any()
    names = evaluate(scenario, cands, model, breakdown=True).comms
    assert ("dp_param_all_gather" in names) == bool(zero3 and (np.asarray(cands.dp) > 1).any())


def test_equivalent_orders_without_one_valued_columns_group_alike(odd):
    cands = enumerate_layouts(odd).candidates
    ev = evaluate(odd, cands, default_model(odd.hardware), breakdown=False)
    order = np.lexsort((ev.memory_total_bytes, ev.step_time_s))
    step, memory = ev.step_time_s[order], ev.memory_total_bytes[order]
    got = _equivalent_orders(cands, order, step, memory, adjacent=True, ordered=True)
    want = _equivalent_orders(_filled(cands), order, step, memory, adjacent=True, ordered=True)
    assert _same_bits(got[0], want[0]) and _same_bits(got[1], want[1])
    assert got[1].max() > 1  # some layouts do repeat in another order
