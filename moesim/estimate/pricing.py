"""Price many collectives at once through any CollectiveModel, each distinct one only once."""

from __future__ import annotations

import numpy as np

from moesim.collectives.base import CollectiveCost, CollectiveModel, Group


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
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
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
