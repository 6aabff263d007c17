"""table_efficiency keeps whole answers (moesim/ops/tables.py `_calls`): a kept answer is the computed one, a caller
that writes into its answer does not change the kept one, and different coordinates are not answered from it."""

import numpy as np

from moesim.ops import tables
from moesim.specs.efficiency import OpTable

TABLE = OpTable(kind="gemm", dtype="bfloat16", measured_on="test", source="test",
                points=((1024.0, 1024.0, 1024.0, 0.5), (4096.0, 1024.0, 1024.0, 0.7), (1024.0, 4096.0, 1024.0, 0.6),
                        (4096.0, 4096.0, 4096.0, 0.8), (1024.0, 1024.0, 4096.0, 0.55)))


def _shape(m_scale: float = 1.0):
    m = np.array([1024.0, 2048.0, 2048.0, 3000.0, 4096.0]) * m_scale
    return (m, 2048.0, np.array([1024.0, 1024.0, 2048.0, 2048.0, 4096.0]))


def test_kept_answer_is_the_computed_one_and_stays_unwritten():
    tables._calls.clear()
    fresh = tables._table_values(TABLE, np.broadcast_arrays(*[np.asarray(c, dtype=float) for c in _shape()]))
    first = tables.table_efficiency(TABLE, _shape())
    assert len(tables._calls) == 1
    first[:] = -1.0  # a caller writing into its answer
    second = tables.table_efficiency(TABLE, _shape())
    assert len(tables._calls) == 1  # answered from the kept call
    np.testing.assert_array_equal(second, fresh)
    assert second.flags.writeable


def test_other_coordinates_are_priced_not_kept_ones():
    tables._calls.clear()
    a = tables.table_efficiency(TABLE, _shape())
    b = tables.table_efficiency(TABLE, _shape(1.5))
    assert len(tables._calls) == 2
    fresh = tables._table_values(TABLE, np.broadcast_arrays(*[np.asarray(c, dtype=float) for c in _shape(1.5)]))
    np.testing.assert_array_equal(b, fresh)
    assert not np.array_equal(a, b)
    # n broadcasts a one-row answer, kept or not
    one = tables.table_efficiency(TABLE, (2048.0, 2048.0, 2048.0), n=4)
    again = tables.table_efficiency(TABLE, (2048.0, 2048.0, 2048.0), n=4)
    assert one.shape == again.shape == (4,) and np.array_equal(one, again)


def test_kept_answers_stay_within_their_byte_budget(monkeypatch):
    tables._calls.clear()
    tables._kept_bytes[0] = 0
    monkeypatch.setattr(tables, "CALL_BYTES_KEPT", 200)  # one call of five rows keeps 40 + 40 + 8 + 40 bytes
    tables.table_efficiency(TABLE, _shape())
    assert len(tables._calls) == 1 and tables._kept_bytes[0] == 5 * 8 + 5 * 8 + 8 + 5 * 8
    tables.table_efficiency(TABLE, _shape(1.5))  # over the budget: the kept answers are dropped first
    assert len(tables._calls) == 1 and tables._kept_bytes[0] <= 200


def test_long_columns_with_one_fingerprint_are_not_answered_from_each_other():
    """Columns over KEY_BYTES_MAX are keyed by the sum of their bits: a permutation has the same sum, so the kept
    call must be compared element by element (session 16, dsv3speed2) and priced afresh when it differs."""
    tables._calls.clear()
    tables._kept_bytes[0] = 0
    m = np.geomspace(512.0, 16384.0, tables.KEY_BYTES_MAX + 7)
    k = np.full(len(m), 2048.0)
    forward = tables.table_efficiency(TABLE, (m, 2048.0, k))
    backward = tables.table_efficiency(TABLE, (m[::-1], 2048.0, k))  # same fingerprint, other coordinates
    fresh = tables._table_values(TABLE, np.broadcast_arrays(m[::-1], np.asarray(2048.0), k))
    np.testing.assert_array_equal(backward, fresh)
    np.testing.assert_array_equal(backward, forward[::-1])
    assert not np.array_equal(backward, forward)
    again = tables.table_efficiency(TABLE, (m[::-1], 2048.0, k))  # the kept call now holds these columns
    np.testing.assert_array_equal(again, fresh)
    assert len(tables._calls) == 1
