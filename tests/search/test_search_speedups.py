"""The search's batched shortcuts (run-folded pricing, the enumeration's order-free key, strides per run,
equivalent orders by (step, memory) first) give exactly what the plain per-row computations give."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.collectives.select import default_model
from moesim.estimate import estimate, evaluate
from moesim.estimate import pricing
from moesim.estimate.core import _order_free_rows
from moesim.estimate.strides import _strides, candidate_strides
from moesim.search import enumerate_layouts, search
from moesim.search.rank import _equivalent_orders
from moesim.specs.scenario import SearchSpace
from search_fixtures import DENSE, ODD_MOE, build, with_hbm

FIGURES = ("step_time_s", "memory_total_bytes", "mfu", "tokens_per_s", "fits", "slowest_stage", "memory_stage")


@pytest.fixture(scope="module")
def odd():
    return build(ODD_MOE, devices=12)


@pytest.fixture(scope="module")
def odd_wide():
    """Schedules, virtual stages and context parallelism in the space (schedule-free folding runs too)."""
    space = SearchSpace(pipeline_schedules=("1f1b", "interleaved", "zb-h1", "dualpipe"), virtual_stages=(2,),
                        context_parallel=(1, 2), cp_comms=("p2p", "a2a"))
    return build(ODD_MOE, devices=16, batch=32, search=space)


def _runs(rng, n, values):
    """n values drawn from `values` in runs of 1-6 equal neighbours (as a layout search lists them)."""
    out = np.repeat(rng.choice(values, size=n), rng.integers(1, 7, size=n))
    return out[:n]


@pytest.mark.parametrize("stages", [1, 3])
@pytest.mark.parametrize("with_costs", [False, True])
def test_price_runs_equals_price(stages, with_costs, switch_base):
    rng = np.random.default_rng(stages)
    n = 3000
    size = _runs(rng, n, [1, 2, 4, 8])
    stride = _runs(rng, n, [1, 2, 16])
    nbytes = np.stack([_runs(rng, n, [0.0, 1.0, 4096.0, 3e6, 7.5e7]) for _ in range(stages)], axis=1)
    nbytes = nbytes[:, 0] if stages == 1 else nbytes
    model = default_model(switch_base.hardware)
    devices = 64
    fresh = pricing.CollectivePricer(model, devices)
    runs = pricing.CollectivePricer(model, devices)
    groups = pricing.GroupRuns(size, stride, devices)
    for op in ("all_reduce", "all_to_all", "send_recv"):
        got_t, got_c = runs.price_runs(op, nbytes, groups, with_costs)
        columns = nbytes.reshape(n, -1).T
        want = [fresh.price(op, column, size, stride, devices // size, with_costs) for column in columns]
        want_t = np.stack([w[0] for w in want], axis=1).reshape(nbytes.shape)
        assert got_t.shape == nbytes.shape
        assert np.array_equal(got_t, want_t)
        if with_costs:
            want_c = np.stack([w[1] for w in want], axis=1).reshape(nbytes.shape)
            assert all(a == b for a, b in zip(got_c.reshape(-1), want_c.reshape(-1)))


@pytest.mark.parametrize("with_costs", [False, True])
def test_price_runs_scaled_equals_price_runs_at_each_scaled_size(with_costs, switch_base):
    """Session 23 (bucketspeed): the runs and distinct rows found once on the unscaled sizes price every (op, scale)
    exactly as price_runs on sizes × scale, a scale that merges neighbouring sizes (1/3 on sizes an ulp apart)
    included."""
    rng = np.random.default_rng(23)
    n = 3000
    size = _runs(rng, n, [1, 2, 4, 8])
    stride = _runs(rng, n, [1, 2, 16])
    close = np.nextafter(3e6, np.inf)  # 3e6 and the next double: equal or not after scaling, priced alike
    nbytes = np.stack([_runs(rng, n, [0.0, 1.0, 4096.0, 3e6, close, 7.5e7]) for _ in range(3)], axis=1)
    model = default_model(switch_base.hardware)
    groups = pricing.GroupRuns(size, stride, 64)
    priced = [("all_reduce", 2.0), ("reduce_scatter", 1.0 / 3), ("all_gather", None), ("all_reduce", 1.0 / 3)]
    got = pricing.CollectivePricer(model, 64).price_runs_scaled(priced, nbytes, groups, with_costs)
    for (op, scale), (got_t, got_c) in zip(priced, got):
        want_t, want_c = pricing.CollectivePricer(model, 64).price_runs(
            op, nbytes if scale is None else nbytes * scale, groups, with_costs)
        assert got_t.shape == nbytes.shape and np.array_equal(got_t, want_t)
        assert np.any(got_t > 0)
        if with_costs:
            assert all(a == b for a, b in zip(got_c.reshape(-1), want_c.reshape(-1)))


def test_order_free_key_used_only_when_it_holds(odd):
    cands = enumerate_layouts(odd).candidates
    assert cands.order_free_key is not None
    plain = dataclasses.replace(cands, order_free_key=None)
    with_key, without = _order_free_rows(cands), _order_free_rows(plain)
    # The same grouping (the rows may be numbered differently): equal rows share their group and no more.
    pairs = np.stack([with_key[1], without[1]], axis=1)
    assert len(np.unique(pairs, axis=0)) == len(np.unique(with_key[1])) == len(np.unique(without[1]))
    # A stale key (options changed after the enumeration) is noticed: the columns decide.
    stale = dataclasses.replace(cands, zero_stage=np.roll(cands.zero_stage, 1))
    stale_plain = dataclasses.replace(stale, order_free_key=None)
    model = default_model(odd.hardware)
    a = evaluate(odd, stale, model, breakdown=False)
    b = evaluate(odd, stale_plain, model, breakdown=False)
    for name in FIGURES:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_strides_per_run_equal_strides_per_candidate(odd_wide):
    cands = enumerate_layouts(odd_wide).candidates
    got, want = candidate_strides(cands), _strides(cands)
    assert set(got) == set(want)
    for axis in want:
        assert np.array_equal(got[axis], want[axis]), axis


def _equivalent_reference(cands, order, step, memory):
    """Every column at once, np.unique's grouping: the rule _equivalent_orders implements faster."""
    columns = [np.asarray(getattr(cands, name), dtype=float)[order] for name in
               ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute", "first_stage_layers",
                "last_stage_layers")]
    columns += [np.nan_to_num(np.asarray(cands.capacity_factor, dtype=float)[order], nan=-1.0), step[order],
                memory[order]]
    _, first, inverse, counts = np.unique(np.stack(columns, axis=1), axis=0, return_index=True,
                                          return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    is_first = np.zeros(len(order), dtype=bool)
    is_first[first] = True
    return is_first, counts[inverse]


@pytest.mark.parametrize("which", ["odd", "odd_wide"])
def test_equivalent_orders_equal_the_all_columns_grouping(which, request):
    scenario = request.getfixturevalue(which)
    result = search(scenario)
    cands = result.candidates
    order = np.arange(result.ranked)
    got = _equivalent_orders(cands, order, result.step_time_s, result.memory_bytes_per_device)
    want = _equivalent_reference(cands, order, result.step_time_s, result.memory_bytes_per_device)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert np.any(got[1] > 1)  # the case the prefilter exists for is exercised


@pytest.mark.parametrize("which", ["odd", "odd_wide"])
def test_search_figures_equal_single_estimates_exactly(which, request):
    """A search's ranked figures against one `estimate` per layout: bit for bit, on the best ranked and a
    sample of the rest (the batched shortcuts change no number)."""
    scenario = request.getfixturevalue(which)
    result = search(scenario)
    rng = np.random.default_rng(7)
    picks = np.unique(np.concatenate([np.arange(min(10, result.ranked)),
                                      rng.choice(result.ranked, size=min(30, result.ranked), replace=False)]))
    for i in picks:
        # The layout's training as the scenario's own (Scenario.check reads the schedule from there).
        single = estimate(dataclasses.replace(scenario, training=result.training(i)), result.layout(i))
        assert single.step_time_s == result.step_time_s[i]
        assert single.memory_bytes_per_device["total"] == result.memory_bytes_per_device[i]
        assert single.mfu == result.mfu[i]


@pytest.mark.parametrize("which", ["odd", "odd_wide"])
def test_fitting_only_evaluates_the_fitting_rows_alike(which, request):
    scenario = request.getfixturevalue(which)
    cands = enumerate_layouts(scenario).candidates
    model = default_model(scenario.hardware)
    every = evaluate(scenario, cands, model, breakdown=False)
    # Memory for about half of them (the reservation stays inside the median layout's total).
    median = float(np.median(every.memory_total_bytes))
    scenario = with_hbm(scenario, median / (1 - scenario.training.memory_headroom_fraction))
    every = evaluate(scenario, cands, model, breakdown=False)
    assert 0 < every.fits.sum() < len(cands)  # both kinds present
    some = evaluate(scenario, cands, model, breakdown=False, fitting_only=True)
    assert np.array_equal(some.rows, np.flatnonzero(every.fits))
    for name in FIGURES:
        assert np.array_equal(getattr(some, name), getattr(every, name)[some.rows]), name
    # Every memory part per stage too (read from the memory check's rows, not computed again: searchspeed19); the
    # fitting rows may need fewer stage columns (the rest is padding).
    assert set(some.memory) == set(every.memory)
    for key, part in some.memory.items():
        alike = every.memory[key][some.rows]
        assert np.array_equal(part, alike[:, :part.shape[1]] if np.ndim(part) == 2 else alike), key
    # Nothing fits: nothing is priced, every array empty (the search ranks none of them).
    tight = with_hbm(scenario, 1.0e6)
    assert not evaluate(tight, cands, model, breakdown=False).fits.any()
    none = evaluate(tight, cands, model, breakdown=False, fitting_only=True)
    assert none.rows.tolist() == [] and len(none.candidates) == 0
    for name in FIGURES:
        assert len(getattr(none, name)) == 0, name


def test_rank_order_is_lexsort():
    from moesim.search.rank import _rank_order

    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(1, 300))
        primary = rng.choice(rng.random(int(rng.integers(1, 12))), n) * (-1 if trial % 3 == 0 else 1)
        memory = rng.choice(rng.random(int(rng.integers(1, 5))), n)
        if trial % 50 == 0:
            memory[rng.integers(0, n)] = np.nan
        assert np.array_equal(_rank_order(primary, memory), np.lexsort((memory, primary))), trial


def test_equivalent_orders_by_runs_when_ranked_by_step(odd):
    result = search(odd)
    args = (result.candidates, np.arange(result.ranked), result.step_time_s, result.memory_bytes_per_device)
    by_runs, by_hash = _equivalent_orders(*args, adjacent=True), _equivalent_orders(*args)
    assert np.array_equal(by_runs[0], by_hash[0]) and np.array_equal(by_runs[1], by_hash[1])


@pytest.mark.parametrize("which", ["odd", "odd_wide", "dense"])
def test_memory_terms_are_builds_memory(which, request):
    """TermBuilder.memory_terms (the search's memory check before pricing) gives build's activation bytes and
    routing figures bit for bit, on every candidate row (context parallelism's ring buffers included)."""
    from moesim.estimate.context_parallel import tokens_divisor
    from moesim.estimate.terms import TermBuilder
    from moesim.workload import build_workload

    scenario = build(DENSE, devices=8) if which == "dense" else request.getfixturevalue(which)
    cands = enumerate_layouts(scenario).candidates
    tr, f = scenario.training, (lambda a: np.asarray(a, dtype=float))
    b = tr.global_batch_sequences / (f(cands.dp) * f(cands.micro_batches)) / tokens_divisor(f(cands.cp))
    builder = TermBuilder(scenario.model, scenario.hardware, tr, b, f(cands.tp), f(cands.ep), f(cands.etp),
                          cands.recompute, f(cands.capacity_factor), f(cands.cp), cands.cp_comm)
    for cls in build_workload(scenario.model, *scenario.seq_lens).classes:
        built, held = builder.build(cls), builder.memory_terms(cls)
        assert held.ops_fwd == [] and not np.any(held.fwd_time_s)  # nothing priced
        for name in ("activation_bytes", "slots", "capacity", "tokens_per_device"):
            want, got = getattr(built, name), getattr(held, name)
            assert (want is None) == (got is None), name
            if want is not None:
                assert np.array_equal(np.asarray(got), np.asarray(want)), name


@pytest.mark.parametrize("which", ["odd", "odd_wide"])
def test_schedule_name_is_schedule_names_row(which, request):
    """Session 19 (coldsearch2): one row's schedule name (the report's layouts) equals that row of every
    candidate's names, the training's own schedule (-1) included."""
    scenario = request.getfixturevalue(which)
    found = enumerate_layouts(scenario).candidates
    unset = np.where(np.arange(len(found)) % 3 == 0, -1, found.schedule)  # every third row the training's
    for cand in (found, dataclasses.replace(found, schedule=unset)):
        names = cand.schedule_names(scenario.training)
        assert [cand.schedule_name(i, scenario.training) for i in range(len(cand))] == [str(n) for n in names]
