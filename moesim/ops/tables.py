"""Per-operator efficiency tables: linear interpolation in log-shape space, the nearest measured shape outside.

A table's points are shapes (OP_DIMS[kind] coordinates) with a measured efficiency. Coordinates are
taken as logarithms (GEMM efficiency varies with the order of magnitude of m, n, k: tile and wave
quantisation, NVIDIA Matrix Multiplication Background guide); coordinates constant over the whole
table are dropped. Inside the convex hull of the measured shapes the efficiency is the linear
interpolation on their Delaunay triangulation (as scipy.interpolate.LinearNDInterpolator); outside it,
the efficiency of the nearest measured shape (NearestNDInterpolator); one varying coordinate is
np.interp, which clamps to the end points (the same rule). Attention tables are never interpolated
across head_dim (EXACT_COORDINATE below): a query reads its own head_dim's points, or the nearest
measured head_dim's. A degenerate table (points on a plane of
fewer dimensions than it varies in) is answered by the nearest shape. The barycentric coordinates are
computed here with numpy (one batched inverse per triangulation) rather than by scipy's lazily built
`Delaunay.transform`, whose per-simplex LAPACK calls took seconds on a loaded 2-core host.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from moesim.ops.qhull import qhull_module
from moesim.specs.hardware import OpTable

INSIDE_TOL = 1e-9  # barycentric coordinates this far below 0 still count as inside (shapes on a face)
QUERY_CHUNK = 256
MEMO_LIMIT = 200_000  # answered shapes kept per table
CALL_BYTES_KEPT = 64 << 20  # table_efficiency answers kept (whole calls, keyed by their input columns' bytes)
CALL_ROWS_KEPT = 1 << 16  # calls with more rows than this (the simulator's expert shapes) are not kept
_calls: dict[tuple, tuple] = {}  # key -> (table, long columns kept for the comparison, answer, bytes counted)
_kept_bytes = [0]


class _Linear:
    """Piecewise-linear interpolation on a Delaunay triangulation (scipy.spatial.Delaunay, qhull; loaded by
    moesim/ops/qhull.py without the scipy.spatial package); NaN outside."""

    def __init__(self, points: np.ndarray, values: np.ndarray) -> None:
        tri = qhull_module().Delaunay(points)
        verts = points[tri.simplices]  # (s, d + 1, d)
        edges = (verts[:, :-1] - verts[:, -1:]).transpose(0, 2, 1)  # columns v_i − v_d
        det = np.linalg.det(edges)
        ok = np.abs(det) > 1e-12
        self.inv = np.linalg.inv(edges[ok])
        self.origin = verts[ok, -1]
        self.values = values[tri.simplices[ok]]  # (s, d + 1)
        self.lo, self.hi = verts[ok].min(axis=1), verts[ok].max(axis=1)  # (s, d) bounding boxes

    def __call__(self, q: np.ndarray) -> np.ndarray:
        out = np.full(len(q), np.nan)
        for start in range(0, len(q), QUERY_CHUNK):
            x = q[start:start + QUERY_CHUNK]
            # Only simplices whose bounding box holds the query can hold it: barycentric coordinates for those.
            near = ((x[:, None, :] >= self.lo[None] - INSIDE_TOL)
                    & (x[:, None, :] <= self.hi[None] + INSIDE_TOL)).all(axis=2)
            qi, si = np.nonzero(near)
            if not len(qi):
                continue
            lam = np.einsum("pij,pj->pi", self.inv[si], x[qi] - self.origin[si])
            lam = np.concatenate([lam, 1 - lam.sum(axis=1, keepdims=True)], axis=1)  # (pairs, d + 1)
            inside = (lam >= -INSIDE_TOL).all(axis=1)
            qi, si, lam = qi[inside], si[inside], lam[inside]
            rows, first = np.unique(qi, return_index=True)  # the first simplex holding each query
            out[start + rows] = (lam[first] * self.values[si[first]]).sum(axis=1)
        return out


class _Nearest:
    """The value of the nearest point: scipy.interpolate.NearestNDInterpolator's answer (scipy 1.17
    interpolate/_ndgriddata.py, NearestNDInterpolator.__call__: a cKDTree's query, NaN where its distance is not
    finite), bit for bit, without importing scipy.spatial (~1,150 M instructions of a cold `moesim search`, session 19).
    numpy computes every query's squared distance to every point, coordinate by coordinate as the tree does.
    A table of at most LEAFSIZE points is one leaf of the tree, whose points the query visits in index order, a later
    one replacing the nearest only when strictly nearer (scipy 1.17 spatial/ckdtree/src/query.cxx,
    query_single_point): the first of the nearest, numpy's argmin, ties included. In a larger table the tree's order
    of visits decides ties, so a query whose second nearest point is within NEAR_TIE of its nearest goes to the tree
    itself; so do queries that are not finite (the tree refuses them with its ValueError, as it did) and calls of
    more than BRUTE_PAIRS query-point pairs (the simulator's millions of expert shapes: the tree's O(log n) a query
    is cheaper there)."""

    LEAFSIZE = 16  # cKDTree's default leafsize (scipy 1.17 spatial/_ckdtree.pyx), NearestNDInterpolator's tree
    MAX_DIM = 4  # up to 4 coordinates the tree sums (x0 - y0)^2 + ... in index order (ckdtree distance_base.h)
    NEAR_TIE = 1e-9  # relative and absolute margin in squared log-shape distance, far above the tree's rounding
    BRUTE_PAIRS = 1 << 22  # query-point pairs per call answered by numpy; more go to the tree

    def __init__(self, points: np.ndarray, values: np.ndarray) -> None:
        self.points = np.asarray(points, dtype=float)
        self.values = np.asarray(values, dtype=float)
        self.tree = None

    def _tree_query(self, q: np.ndarray) -> np.ndarray:
        if self.tree is None:
            from scipy.spatial import cKDTree

            self.tree = cKDTree(self.points)
        dist, index = self.tree.query(q)
        out = np.full(len(q), np.nan)
        found = np.isfinite(dist)
        out[found] = self.values[index[found]]
        return out

    def __call__(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        if len(q) * len(self.points) > self.BRUTE_PAIRS or len(self.points) < 2 or q.shape[1] > self.MAX_DIM:
            return self._tree_query(q)
        # Squared distance summed coordinate by coordinate, in the tree's order (scipy 1.17
        # spatial/ckdtree/src/distance_base.h sqeuclidean_distance_double).
        d2 = np.zeros((len(q), len(self.points)))
        for j in range(self.points.shape[1]):
            d2 += (q[:, j, None] - self.points[None, :, j]) ** 2
        rows = np.arange(len(q))
        best = d2.argmin(axis=1)
        best_d2 = d2[rows, best]
        clear = np.isfinite(best_d2)
        if len(self.points) > self.LEAFSIZE:
            d2[rows, best] = np.inf
            clear &= d2.min(axis=1) > best_d2 * (1 + self.NEAR_TIE) + self.NEAR_TIE  # the second nearest
        if clear.all():
            return self.values[best]
        out = np.empty(len(q))
        out[clear] = self.values[best[clear]]
        out[~clear] = self._tree_query(q[~clear])
        return out


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
        self.memo: dict[bytes, float] = {}
        if self.dim == 1:
            order = np.argsort(uniq[:, 0])
            self.x, self.y = uniq[order, 0], mean[order]
        elif self.dim >= 2:
            self.nearest = _Nearest(uniq, mean)
            if len(uniq) > self.dim:
                try:
                    self.linear = _Linear(uniq, mean)
                except (qhull_module().QhullError, np.linalg.LinAlgError):
                    self.linear = None

    def __call__(self, log_coords: np.ndarray) -> np.ndarray:
        if self.const is not None:
            return np.full(len(log_coords), self.const)
        q = log_coords[:, self.keep]
        if self.dim == 1:
            return np.interp(q[:, 0], self.x, self.y)
        if self.linear is None:  # nearest point only: a k-d tree query per row, cheaper than the memo's keys
            # (the simulator prices ~3 M distinct expert shapes a DeepSeek-V3 step; same values either way)
            return np.asarray(self.nearest(q), dtype=float)
        # Shapes answered before are not looked up again: a layout search asks the same few hundred shapes
        # once per pipeline degree and pass (the triangulation walk is the costly part of a search's pricing).
        keys = [row.tobytes() for row in np.ascontiguousarray(q)]
        todo = [i for i, k in enumerate(keys) if k not in self.memo]
        if todo:
            sub = q[todo]
            got = self.linear(sub) if self.linear is not None else np.full(len(sub), np.nan)
            missing = np.isnan(got)
            if missing.any():
                got[missing] = self.nearest(sub[missing])
            if len(self.memo) > MEMO_LIMIT:  # keep this call's answered shapes: only the others are dropped
                kept = {k: self.memo[k] for k in keys if k in self.memo}
                self.memo.clear()
                self.memo.update(kept)
            self.memo.update(zip((keys[i] for i in todo), got.tolist()))
        return np.array([self.memo[k] for k in keys])


@lru_cache(maxsize=256)
def _interpolant(table: OpTable) -> _Interpolant:
    return _Interpolant(table)


# Coordinates a table never interpolates or extrapolates across (kind: index in OP_DIMS order): an attention
# kernel's head dimension selects a different kernel configuration (tile sizes, registers per thread), so its
# efficiency at one head_dim says little about another; FlashAttention-3's Table 2 / Fig. 5 put head 256 above
# head 128 at every length (Shah et al. 2024, arXiv 2407.08608). A query reads the points of its own head_dim,
# or of the nearest measured one (in log) when its own was not measured.
EXACT_COORDINATE = {"attention": 2}


@lru_cache(maxsize=256)
def _slices(table: OpTable, axis: int) -> tuple[np.ndarray, tuple[OpTable, ...]]:
    """(the distinct values of coordinate `axis`, the table restricted to each of them)."""
    pts = np.asarray(table.points, dtype=float)
    values = np.unique(pts[:, axis])
    subsets = tuple(replace(table, points=tuple(tuple(p) for p in table.points if float(p[axis]) == v))
                    for v in values)
    return values, subsets


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `a` and each row's index among them, like np.unique(axis=0, return_inverse=True)
    but by a numeric lexsort (np.unique sorts rows as raw bytes, ~10x slower on the simulator's long columns);
    the rows come out in another order, which no caller depends on."""
    if len(a) == 0:
        return a, np.zeros(0, dtype=np.intp)
    order = np.lexsort(a.T[::-1])
    ordered = a[order]
    new = np.empty(len(a), dtype=bool)
    new[0] = True
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(len(a), dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


KEY_BYTES_MAX = 64  # input columns up to this size are keyed by their bytes; longer ones by a 64-bit sum of them


def _column_key(a: np.ndarray) -> tuple:
    """One input column's part of a call key: its shape and, short, its float64 bytes (exact), long, the sum of
    its bits as uint64 (a fingerprint: `_same_columns` then compares the kept column element by element)."""
    if a.size <= KEY_BYTES_MAX:
        return a.shape, a.tobytes()
    return a.shape, int(a.view(np.uint64).sum())


def _call_key(table: OpTable, arrays: list[np.ndarray], n: int | None) -> tuple:
    """A table_efficiency call's key: the table (by identity: an entry keeps its table, so the id stays its own),
    n, and per input column `_column_key`. Equal keys and `_same_columns`: the same table at the same coordinates,
    so the same answer."""
    return (id(table), n) + tuple(_column_key(a) for a in arrays)


def _same_columns(kept: tuple, arrays: list[np.ndarray]) -> bool:
    """Whether the long columns a kept call was keyed by a fingerprint of equal `arrays` bit for bit."""
    return all(np.array_equal(k.view(np.uint64), a.view(np.uint64)) for k, a in zip(kept, arrays) if k is not None)


def table_efficiency(table: OpTable, shape: tuple, n: int | None = None) -> np.ndarray:
    """Efficiency of `table` at `shape` (coordinates as arrays or scalars, broadcast together)."""
    arrays = [np.asarray(c, dtype=float) for c in shape]
    columns = np.broadcast_arrays(*arrays)
    size = columns[0].size if n is None else n
    if len(table.points) == 1:  # one measured figure (e.g. a memory op's bandwidth fraction): no lookup
        return np.full(size, float(table.points[0][-1]))
    # A layout search asks the same table at the same columns several times (forward, backward and
    # recomputation passes, once per pipeline degree and per search): such a call's answer is kept whole.
    key = _call_key(table, arrays, n) if columns[0].size <= CALL_ROWS_KEPT else None
    entry = _calls.get(key) if key is not None else None
    if entry is not None and entry[0] is table and _same_columns(entry[1], arrays):
        kept = entry[2]
        return kept.copy() if kept.size == size else np.broadcast_to(kept, (size,))
    values = _table_values(table, columns)
    if key is not None:
        size_bytes = values.nbytes + sum(a.nbytes for a in arrays)
        if _kept_bytes[0] + size_bytes > CALL_BYTES_KEPT:
            _calls.clear()
            _kept_bytes[0] = 0
        elif entry is not None:  # a fingerprint shared with other columns: this call's answer replaces it
            _kept_bytes[0] -= entry[3]
        long_columns = tuple(a.copy() if a.size > KEY_BYTES_MAX else None for a in arrays)
        _calls[key] = (table, long_columns, values, size_bytes)
        _kept_bytes[0] += size_bytes
        values = values.copy()
    return values if values.size == size else np.broadcast_to(values, (size,))


def _table_values(table: OpTable, columns: list[np.ndarray]) -> np.ndarray:
    """table_efficiency's answer per row of the broadcast `columns`, before its broadcast to n rows."""
    coords = np.column_stack([np.broadcast_to(c, columns[0].shape).reshape(-1) for c in columns])
    coords = np.log(np.maximum(coords, 1e-30))
    uniq, inverse = _unique_rows(coords)
    axis = EXACT_COORDINATE.get(table.kind)
    if axis is None:
        values = _interpolant(table)(uniq)
    else:
        measured, subsets = _slices(table, axis)
        pick = np.abs(uniq[:, axis][:, None] - np.log(measured)[None, :]).argmin(axis=1)
        values = np.empty(len(uniq))
        for i in np.unique(pick):
            rows = pick == i
            values[rows] = _interpolant(subsets[i])(uniq[rows])
    return values[inverse.reshape(-1)]


def select_table(tables: tuple[OpTable, ...], kind: str, dtype: str, pass_: str,
                 names: tuple[str, ...]) -> OpTable | None:
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
