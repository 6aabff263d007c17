"""Pareto front of two quantities to minimise (step time and memory per device)."""

from __future__ import annotations

import numpy as np


def front_of_sorted(y_sorted: np.ndarray) -> np.ndarray:
    """Mask of the front among points already sorted by (x, y): each y below every y before it."""
    y_sorted = np.asarray(y_sorted, dtype=float)
    if y_sorted.size == 0:
        return np.zeros(0, dtype=bool)
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(y_sorted)[:-1]])
    return y_sorted < best_before


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats in both x and y (smaller is better), by ascending x.

    Sorted by (x, y), a point is on the front when its y is below every y before it. Of points
    with equal (x, y) only the first (lowest index) is kept: the front lists distinct trade-offs.
    The first entry is the smallest x (least y among ties), the last the smallest y.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.lexsort((np.arange(x.size), y, x))
    return order[front_of_sorted(y[order])]


def dominated(x: np.ndarray, y: np.ndarray, i: int) -> bool:
    """Whether some point is at least as good as point i in both and better in one."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return bool(np.any((x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))))
