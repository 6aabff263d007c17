"""Session 22 (coldsearch22): a column of the enumeration that holds one value at every row (DeepSeek-V3's capacity
factor, vp, cp, cp variant and schedule; the end stages' layer counts everywhere) is a read-only stride-0 view of that
value, not n x 8 bytes of fresh memory; its values, dtype and length are those np.repeat / np.tile gave, and a search
over it ranks bit for bit as one over every column filled in."""

import dataclasses

import numpy as np
import pytest

from moesim.estimate import Candidates
from moesim.search import enumerate as enum_mod
from moesim.search import enumerate_layouts, rank, search
from moesim.specs.load import load_scenario
from search_fixtures import MOE_64E_SCENARIO, build

COLUMNS = [f.name for f in dataclasses.fields(Candidates) if f.name not in ("orders", "pipeline_layout")]


def _filled(found):
    """The enumeration with every column a fresh contiguous, writeable copy (what np.repeat / np.tile gave)."""
    cands = found.candidates
    return dataclasses.replace(found, candidates=dataclasses.replace(
        cands, **{name: np.array(getattr(cands, name)) for name in COLUMNS}))


@pytest.mark.parametrize("scenario", [build(), build(search=dataclasses.replace(build().search, zero_stages=(1,))),
                                      load_scenario(MOE_64E_SCENARIO)], ids=["odd-moe", "one-zero-stage", "moe-64e"])
def test_one_valued_columns_are_stride_0_views_and_the_rest_filled(scenario):
    cands = enumerate_layouts(scenario).candidates
    n = len(cands)
    assert n > 0
    for name in COLUMNS:
        column = getattr(cands, name)
        assert column.shape == (n,), name
        bits = np.ascontiguousarray(column).view(np.uint64)
        if np.all(bits == bits[0]):  # one value (NaN counted as equal to NaN): no pages
            assert column.strides == (0,) and not column.flags.writeable, name
        else:
            assert column.flags.c_contiguous, name
    assert cands.first_stage_layers.strides == (0,) and not cands.first_stage_layers.any()
    assert cands.dp.dtype == np.int64 and cands.capacity_factor.dtype == np.float64 and cands.vp.dtype == np.int64


def test_one_value_compares_bits():
    assert enum_mod._one_value(np.array([np.nan, np.nan]))  # a dropless capacity factor
    assert not enum_mod._one_value(np.array([0.0, -0.0]))  # equal as numbers, not as bits: filled, as before
    assert not enum_mod._one_value(np.array([1, 2], dtype=np.int64))
    assert not enum_mod._one_value(np.zeros(0, dtype=np.int64))
    column = enum_mod._constant(np.array([5, 6], dtype=np.int64), 4)
    assert column.tolist() == [5, 5, 5, 5] and column.strides == (0,) and column.dtype == np.int64


@pytest.mark.parametrize("scenario", [build(), load_scenario(MOE_64E_SCENARIO)], ids=["odd-moe", "moe-64e"])
def test_a_search_over_stride_0_columns_ranks_as_one_over_filled_columns(monkeypatch, scenario):
    rank._enumerations.clear()
    found = enumerate_layouts(scenario)
    assert any(getattr(found.candidates, name).strides == (0,) for name in COLUMNS)
    monkeypatch.setattr(rank, "_enumeration", lambda _: found)
    views = search(scenario, threads=1)
    monkeypatch.setattr(rank, "_enumeration", lambda _: _filled(found))
    filled = search(scenario, threads=1)
    assert views.ranked == filled.ranked > 0 and views.rejected == filled.rejected
    for name in ("step_time_s", "memory_bytes_per_device", "mfu", "tokens_per_s", "objective_value", "pareto",
                 "equivalent_orders"):
        assert getattr(views, name).tobytes() == getattr(filled, name).tobytes(), name
    for name in COLUMNS:
        assert getattr(views.candidates, name).tobytes() == getattr(filled.candidates, name).tobytes(), name
    assert views.to_dict(top=3) == filled.to_dict(top=3)


@pytest.mark.parametrize("scenario", [build(), load_scenario(MOE_64E_SCENARIO)], ids=["odd-moe", "moe-64e"])
def test_the_folds_read_stride_0_columns_as_filled_ones(scenario):
    """order_free_rows / schedule_free_rows (estimate.folds) skip the pass over a one-valued column (its + k, its
    any(), the key's check on it) and fold every slice of the search's batches as they fold the filled columns."""
    from moesim.estimate.folds import order_free_rows, schedule_free_rows

    found = enumerate_layouts(scenario)
    views, filled = found.candidates, _filled(found).candidates
    n = len(views)
    for index in (slice(0, n), slice(n // 3, n), slice(1, max(2, n // 2))):
        for fold in (order_free_rows, schedule_free_rows):
            a, b = fold(views.take(index)), fold(filled.take(index))
            assert a[0].tobytes() == b[0].tobytes(), fold.__name__
            assert (a[1] is None) == (b[1] is None) and (a[1] is None or a[1].tobytes() == b[1].tobytes())


def test_a_key_is_still_checked_on_every_column_that_varies():
    from moesim.estimate.pricing import one_valued, rows_of_key

    key = np.array([0, 0, 1, 1], dtype=np.int64)
    same = np.broadcast_to(np.array([7], dtype=np.int64), (4,))
    assert one_valued(same) and not one_valued(np.array([7, 7, 7, 7])) and not one_valued(same[:0])
    first, inverse = rows_of_key(key, [np.array([3, 3, 4, 4]), same])
    assert first.tolist() == [0, 2] and inverse.tolist() == [0, 0, 1, 1]
    assert rows_of_key(key, [np.array([3, 5, 4, 4]), same]) == (None, None)  # stale on a varying column: refused
