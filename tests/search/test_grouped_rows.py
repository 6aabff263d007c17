"""The collectives' pricing, LayerTerms and the TE buffers group equal rows through a table of hash slots instead of
a sort (session 23, coldsearch23: estimate.pricing.grouped_rows): the same groups as distinct_rows (NaN with NaN,
-0.0 with 0.0 where they neighbour), each group's rows pointing at one of them, slots two keys share and hash
collisions answered."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.estimate import pricing


def _same_groups(columns, ascending=True):
    """grouped_rows' grouping is distinct_rows': the same partition of the rows, every row equal to its head."""
    first, inverse = pricing.grouped_rows(columns)
    want_first, want_inverse = pricing.distinct_rows(columns)
    assert len(first) == len(want_first)
    assert np.array_equal(want_inverse[first][inverse], want_inverse)  # a group of ours within one of theirs
    assert np.array_equal(inverse[want_first][want_inverse], inverse)  # and the other way
    assert np.all(np.diff(first) > 0) or not ascending  # numbered in the order of the rows heading them
    for column in columns:  # as values (runs of equal neighbours are compared so: -0.0 runs on with 0.0)
        assert np.array_equal(column[first][inverse], column, equal_nan=column.dtype.kind == "f")
    return first, inverse


@pytest.mark.parametrize("seed", range(6))
def test_the_groups_are_distinct_rows_groups(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40_000))
    sizes = rng.choice([0.0, -0.0, 1.0, 2.5, 4e6, np.nan, 3e9], size=n)
    group = rng.choice([1, 2, 8, 64, 256], size=n).astype(np.int64)
    stride = rng.choice([1, 4, 8], size=n).astype(np.int64)
    if seed % 2:  # runs of equal neighbours, as a batch's candidates come
        at = np.repeat(np.arange(n), rng.integers(1, 60, size=n))[:n]
        sizes, group, stride = sizes[at], group[at], stride[at]
    _same_groups([sizes, group, stride])


def test_every_hash_colliding_falls_back_to_the_exact_grouping(monkeypatch):
    rng = np.random.default_rng(7)
    columns = [rng.choice([1.0, 2.5, 4e6], size=3000), rng.choice([2, 8], size=3000).astype(np.int64)]
    monkeypatch.setattr(pricing, "_mix64", lambda x: np.zeros_like(x))
    first, inverse = _same_groups(columns, ascending=False)  # distinct_rows' own answer, in np.unique's order
    assert len(first) == 6


@pytest.mark.parametrize("shift", [0, 8, 20, 40, 59])
def test_keys_sharing_slots_at_every_round_are_told_apart(shift):
    """Keys equal in every bit but a few high ones share a slot in each round of the table, then the sort parts them."""
    rng = np.random.default_rng(shift)
    for _ in range(50):
        n = int(rng.integers(1, 500))
        keys = (rng.integers(0, int(rng.integers(1, 30)), size=n).astype(np.uint64) << np.uint64(shift))
        head = pricing._heads(keys, 0)
        assert np.array_equal(keys[head], keys)  # each row's head holds its key
        assert np.array_equal(head[head], head)  # a head heads itself
        assert len(np.unique(head)) == len(np.unique(keys))  # one head per key
