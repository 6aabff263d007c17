"""Folding a batch of candidates to the rows that price alike, so `evaluate` computes each only once.

Up to the collectives nothing depends on the mesh order (order_free_rows); no collective's size
depends on the pipeline schedule or its virtual stages (schedule_free_rows). Each returns one
index per distinct row and every candidate's row among them (None when all are distinct already).
"""

from __future__ import annotations

import numpy as np

from moesim.estimate.candidates import Candidates
from moesim.estimate.pricing import distinct_rows, one_valued, rows_of_key


def _plus(column: np.ndarray, k: int) -> np.ndarray:
    """column + k; a one-valued (stride-0) column stays one, without a pass over its rows (session 22)."""
    return np.broadcast_to(column[:1] + k, column.shape) if one_valued(column) else column + k


def _any(column: np.ndarray) -> bool:
    """column.any(), read off the first row of a one-valued (stride-0) column."""
    return bool(column[0]) if one_valued(column) else bool(column.any())


def order_free_rows(cands: Candidates) -> tuple[np.ndarray, np.ndarray | None]:
    """(one index per distinct candidate ignoring the mesh order, each candidate's row among them);
    (all indices, None) when every candidate is distinct already."""
    columns = [np.asarray(getattr(cands, name), dtype=np.int64) for name in
               ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute")]
    columns += [np.asarray(c, dtype=np.int64) for c in (cands.first_stage_layers, cands.last_stage_layers) if _any(c)]
    columns += [np.asarray(c, dtype=np.int64) for c in (_plus(cands.vp, -1), _plus(cands.cp, -1), cands.cp_comm,
                                                        _plus(cands.schedule, 1)) if _any(c)]
    columns.append(np.asarray(cands.capacity_factor, dtype=float))
    first, inverse = rows_of_key(cands.order_free_key, columns)
    if first is None:
        first, inverse = distinct_rows(columns)
    if len(first) == len(cands):
        return np.arange(len(cands)), None
    return first, inverse


def schedule_free_rows(cands: Candidates, chunks=None, v=None,
                       one_bucket=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(one index per distinct candidate ignoring schedule and vp, each candidate's row among them), as
    order_free_rows: no collective's size depends on the schedule (its counts do: see evaluate) but the gradient
    buckets', which depend on the chunks a stage syncs apart (`chunks` (N,): v interleaved, else 1; None: all 1),
    whether a stage syncs in one bucket after its pipeline (`one_bucket` (N,) bool: the zero-bubble rows,
    grad_buckets.SYNC_AFTER_PIPELINE; None: none), and the layers a device holds: ZB-V's two V pieces where they
    differ from contiguous stages (`v` (N,) bool, estimate.stages.v_rows; None: none)."""
    if len(cands) and all(one_valued(c) or np.all(c == c[0])
                          for c in (np.asarray(cands.schedule), np.asarray(cands.vp))):
        return np.arange(len(cands)), None  # one schedule and vp: nothing to fold (duplicates price alike)
    columns = [np.asarray(getattr(cands, name), dtype=np.int64) for name in
               ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute", "order")]
    if chunks is not None and _any(np.asarray(chunks) - 1):
        columns.append(np.asarray(chunks, dtype=np.int64))
    for mask in (v, one_bucket):
        if mask is not None:
            columns.append(np.asarray(mask, dtype=np.int64))
    columns += [np.asarray(c, dtype=np.int64) for c in (cands.first_stage_layers, cands.last_stage_layers,
                                                        _plus(cands.cp, -1), cands.cp_comm) if _any(c)]
    columns.append(np.asarray(cands.capacity_factor, dtype=float))
    first, inverse = distinct_rows(columns)
    if len(first) == len(cands):
        return np.arange(len(cands)), None
    return first, inverse


def take_rows(a, rows: np.ndarray):
    """a[rows] (np.take: faster than a[rows] on 2-D); a scalar as it is, a one-valued (stride-0) column as a view of
    its value (session 24, searchspeed24: the same numbers, no pass over the rows)."""
    if not np.ndim(a):
        return a
    return np.broadcast_to(a[:1], (len(rows),)) if isinstance(a, np.ndarray) and one_valued(a) \
        else np.take(a, rows, axis=0)


def as_float(a) -> np.ndarray:
    """np.asarray(a, dtype=float); a one-valued (stride-0) column stays a view of its value (searchspeed24)."""
    return np.broadcast_to(np.asarray(a[:1], dtype=float), a.shape) if isinstance(a, np.ndarray) and one_valued(a) \
        else np.asarray(a, dtype=float)
