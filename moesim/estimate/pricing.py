"""Price many collectives at once through any CollectiveModel, each distinct one only once."""

from __future__ import annotations

import numpy as np

from moesim.collectives.base import CollectiveCost, CollectiveModel, Group


_MIX = np.int64(0x9E3779B97F4A7C15 - (1 << 64))  # odd 64-bit multiplier (golden ratio); wraps


def _distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of one row per distinct row, distinct-row number of every row) of a float array (R, k).

    The grouping of np.unique(rows, axis=0), found by one 1-D sort of a 64-bit mix of each row's
    bits instead of a sort of rows as byte strings (the layout search prices millions of rows);
    a collision of the mix is detected and answered by the exact method."""
    bits = np.ascontiguousarray(rows).view(np.int64)
    key = np.zeros(len(rows), dtype=np.int64)
    with np.errstate(over="ignore"):
        for column in bits.T:
            key = (key ^ column) * _MIX
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not np.array_equal(bits[first][inverse], bits):
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    return first, inverse


class CollectivePricer:
    """Memoising front of a CollectiveModel for arrays of (size, group size, stride, concurrency)."""

    def __init__(self, model: CollectiveModel, devices: int) -> None:
        self.model = model
        self.devices = devices
        self._cache: dict[tuple, CollectiveCost] = {}

    def one(self, op: str, size_bytes: float, size: int, stride: int, concurrent: int) -> CollectiveCost:
        key = (op, float(size_bytes), int(size), int(stride), int(concurrent))
        cost = self._cache.get(key)
        if cost is None:
            group = Group(size=int(size), stride=int(stride), concurrent=int(concurrent), devices=self.devices)
            cost = self.model.cost(op, float(size_bytes), group)
            self._cache[key] = cost
        return cost

    def price(self, op: str, size_bytes, size, stride, concurrent) -> tuple[np.ndarray, np.ndarray]:
        """(time_s array, CollectiveCost object array); size 1 or zero bytes cost nothing."""
        size_bytes, size, stride, concurrent = np.broadcast_arrays(
            np.asarray(size_bytes, dtype=float), np.asarray(size), np.asarray(stride), np.asarray(concurrent))
        rows = np.stack([size_bytes, size, stride, concurrent], axis=1)
        first, inverse = _distinct_rows(rows)
        unique = rows[first]
        costs = np.empty(len(unique), dtype=object)
        times = np.zeros(len(unique))
        for i, (nbytes, n, st, conc) in enumerate(unique):
            if n <= 1 or nbytes <= 0:
                costs[i] = CollectiveCost(op, nbytes, int(n), 0.0, "none", "none")
                continue
            costs[i] = self.one(op, nbytes, int(n), int(st), int(conc))
            times[i] = costs[i].time_s
        inverse = inverse.reshape(-1)
        return times[inverse], costs[inverse]
