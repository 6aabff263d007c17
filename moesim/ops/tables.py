"""Per-operator efficiency tables: linear interpolation in log-shape space, the nearest measured shape outside.

A table's points are shapes (OP_DIMS[kind] coordinates) with a measured efficiency. Coordinates are
taken as logarithms (GEMM efficiency varies with the order of magnitude of m, n, k: tile and wave
quantisation, NVIDIA Matrix Multiplication Background guide); coordinates constant over the whole
table are dropped. Inside the convex hull of the measured shapes the efficiency is the linear
interpolation on their Delaunay triangulation (scipy.interpolate.LinearNDInterpolator); outside it,
the efficiency of the nearest measured shape (NearestNDInterpolator); one varying coordinate is
np.interp, which clamps to the end points (the same rule). A degenerate table (points on a plane of
fewer dimensions than it varies in) is answered by the nearest shape.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator
from scipy.spatial import QhullError

from moesim.specs.hardware import OpTable


class _Interpolant:
    def __init__(self, table: OpTable) -> None:
        pts = np.asarray(table.points, dtype=float)
        coords, eff = np.log(pts[:, :-1]), pts[:, -1]
        keep = np.ptp(coords, axis=0) > 1e-12
        self.keep = keep
        coords = coords[:, keep]
        # Duplicate shapes (a table may list one shape twice): their mean.
        uniq, inverse = np.unique(np.round(coords, 9), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        mean = np.bincount(inverse, weights=eff) / np.bincount(inverse)
        self.dim = uniq.shape[1]
        self.const = float(mean.mean()) if self.dim == 0 else None
        self.linear = self.nearest = None
        if self.dim == 1:
            order = np.argsort(uniq[:, 0])
            self.x, self.y = uniq[order, 0], mean[order]
        elif self.dim >= 2:
            self.nearest = NearestNDInterpolator(uniq, mean)
            if len(uniq) > self.dim:
                try:
                    self.linear = LinearNDInterpolator(uniq, mean)
                except QhullError:
                    self.linear = None

    def __call__(self, log_coords: np.ndarray) -> np.ndarray:
        if self.const is not None:
            return np.full(len(log_coords), self.const)
        q = log_coords[:, self.keep]
        if self.dim == 1:
            return np.interp(q[:, 0], self.x, self.y)
        out = self.linear(q) if self.linear is not None else np.full(len(q), np.nan)
        missing = np.isnan(out)
        if missing.any():
            out[missing] = self.nearest(q[missing])
        return out


@lru_cache(maxsize=256)
def _interpolant(table: OpTable) -> _Interpolant:
    return _Interpolant(table)


def table_efficiency(table: OpTable, shape: tuple, n: int | None = None) -> np.ndarray:
    """Efficiency of `table` at `shape` (coordinates as arrays or scalars, broadcast together)."""
    columns = np.broadcast_arrays(*[np.asarray(c, dtype=float) for c in shape])
    size = columns[0].size if n is None else n
    coords = np.column_stack([np.broadcast_to(c, columns[0].shape).reshape(-1) for c in columns])
    coords = np.log(np.maximum(coords, 1e-30))
    uniq, inverse = np.unique(coords, axis=0, return_inverse=True)
    values = _interpolant(table)(uniq)[inverse.reshape(-1)]
    return values if values.size == size else np.broadcast_to(values, (size,))


def select_table(tables: tuple[OpTable, ...], kind: str, dtype: str, pass_: str, names: tuple[str, ...]) -> OpTable | None:
    """The table for an operator: same kind and dtype (memory tables serve every dtype: a copy's bandwidth
    does not depend on what it copies, though one of the operator's own dtype is preferred); a table of its
    own pass before one for "any", one for its name (or mask) before one for "any" operator; None when the
    profile has none."""
    best, best_score = None, -1
    for t in tables:
        if t.kind != kind or (t.dtype != dtype and kind != "memory") or t.pass_ not in (pass_, "any") \
                or t.op not in names + ("any",):
            continue
        score = 4 * (t.pass_ == pass_) + 2 * (t.op != "any") + (t.dtype == dtype)
        if score > best_score:
            best, best_score = t, score
    return best
