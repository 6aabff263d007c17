"""The last search's enumeration is kept for the next search of the same space (search.rank._enumeration): keyed by
what the enumeration reads, its arrays read-only, and a search that reuses it ranks exactly as one enumerated afresh."""

import dataclasses

import numpy as np
import pytest

from moesim.search import enumerate_layouts, rank, search
from search_fixtures import build


def _same(a, b):
    assert a.ranked == b.ranked and a.considered == b.considered and a.rejected == b.rejected
    for name in ("step_time_s", "memory_bytes_per_device", "mfu", "tokens_per_s", "objective_value", "pareto",
                 "equivalent_orders"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert [a.layout_arg(i) for i in range(a.ranked)] == [b.layout_arg(i) for i in range(b.ranked)]


def test_equal_spaces_share_one_enumeration_and_rank_as_a_fresh_one(monkeypatch):
    rank._enumerations.clear()
    one, two = build(), build()  # equal scenarios, built apart
    kept = rank._enumeration(one)
    assert rank._enumeration(two) is kept
    assert not kept.candidates.dp.flags.writeable and not kept.candidates.order_free_key.flags.writeable
    with pytest.raises(ValueError):
        kept.candidates.micro_batches[0] = 7  # nobody may change what the next search reads
    again = search(two, threads=1)  # from the kept enumeration
    assert again.candidates.dp.flags.writeable  # the ranking's own copy, not the kept arrays
    monkeypatch.setattr(rank, "_enumeration", enumerate_layouts)  # every search enumerates afresh
    _same(again, search(two, threads=1))


def test_another_space_is_enumerated_afresh_and_only_the_last_is_kept():
    rank._enumerations.clear()
    base = build()
    first = rank._enumeration(base)
    other = dataclasses.replace(base, search=dataclasses.replace(base.search, max_micro_batches=2))
    second = rank._enumeration(other)
    assert second is not first and len(second.candidates) < len(first.candidates)
    assert len(rank._enumerations) == 1 and rank._enumeration(other) is second
    assert rank._enumeration(build(devices=24)) is not second  # the device count is part of the key
    # Only the hardware differs: the enumeration does not read it, so the kept one serves.
    renamed = dataclasses.replace(base, hardware=dataclasses.replace(base.hardware, name="renamed"))
    assert rank._enumeration(renamed) is rank._enumeration(base)


def test_an_enumeration_over_its_bound_is_not_kept(monkeypatch):
    rank._enumerations.clear()
    monkeypatch.setattr(rank, "ENUMERATION_BYTES_KEPT", 0)
    base = build()
    found = rank._enumeration(base)
    assert not rank._enumerations and found.candidates.dp.flags.writeable
    assert rank._enumeration(base) is not found


def test_release_kept_drops_the_kept_enumeration_and_memos_and_the_next_search_ranks_the_same():
    from moesim.search import release_kept

    base = build()
    first = search(base, threads=1)
    assert rank._enumerations and rank._memos  # a search keeps both for the next one
    release_kept()
    assert not rank._enumerations and not rank._memos
    _same(first, search(base, threads=1))  # enumerated and priced afresh: the same ranking


def test_another_space_drops_the_kept_one_even_when_its_own_is_not_kept(monkeypatch):
    """A search of another space does not hold the last space's enumeration while it builds its own (peak memory),
    nor after, when its own is over the bound and not kept."""
    rank._enumerations.clear()
    base = build()
    rank._enumeration(base)
    seen = []

    def enumerate_and_look(scenario):
        seen.append(len(rank._enumerations))
        return enumerate_layouts(scenario)

    monkeypatch.setattr(rank, "enumerate_layouts", enumerate_and_look)
    monkeypatch.setattr(rank, "ENUMERATION_BYTES_KEPT", 0)
    rank._enumeration(build(devices=24))
    assert seen == [0] and not rank._enumerations
