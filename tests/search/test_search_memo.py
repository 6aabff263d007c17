"""The default model's memoised costs are shared by searches of equal models (search.rank._default_memo) and only
by those: a search that reuses them ranks exactly as one priced by a fresh model of its own."""

import dataclasses

import numpy as np

from moesim.search import rank, search
from search_fixtures import build


def _same(a, b):
    assert a.ranked == b.ranked and a.considered == b.considered and a.rejected == b.rejected
    for name in ("step_time_s", "memory_bytes_per_device", "mfu", "tokens_per_s", "objective_value", "pareto"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert [a.layout_arg(i) for i in range(a.ranked)] == [b.layout_arg(i) for i in range(b.ranked)]


def test_equal_models_share_one_memo_and_rank_as_a_fresh_model():
    rank._memos.clear()
    one, two = build(), build()  # equal scenarios, built apart
    assert rank._default_memo(one) is rank._default_memo(two)
    first = search(one, threads=1)
    memo = rank._default_memo(one)
    kept = memo.entries()
    assert kept > 0  # the first search left its costs
    again = search(two, threads=1)  # priced from the kept costs
    fresh = search(two, collective_model=rank.model_for(two), threads=1)  # its own memo, nothing kept
    _same(first, again)
    _same(again, fresh)


def test_other_models_do_not_share_and_few_are_kept():
    rank._memos.clear()
    base = build()
    def renamed(k: int):
        return dataclasses.replace(base, hardware=dataclasses.replace(base.hardware, name=f"{base.hardware.name}-{k}"))

    assert rank._default_memo(base) is not rank._default_memo(renamed(0))
    assert rank._default_memo(build(devices=24)) is rank._default_memo(base)  # the device count is not the model's
    for k in range(1, 7):
        rank._default_memo(renamed(k))
    assert len(rank._memos) == rank.MEMOS_KEPT
    assert list(rank._memos) == [repr(rank.model_for(renamed(k))) for k in range(3, 7)]  # the most recent ones


def test_a_memo_over_its_bound_starts_afresh(monkeypatch):
    rank._memos.clear()
    base = build()
    search(base, threads=1)
    memo = rank._default_memo(base)
    assert memo.entries() > 0
    monkeypatch.setattr(rank, "MEMO_ENTRIES_KEPT", memo.entries() - 1)
    fresh = rank._default_memo(base)
    assert fresh is not memo and fresh.entries() == 0
