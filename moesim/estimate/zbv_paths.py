"""ZB-V's paths through the V (moesim.estimate.schedules.zbv_pipe_s): micro-batch 0's forward down the whole V
(`_zbv_return_s`), its I held behind later micro-batches' second-leg forwards (`_zbv_turn_s`), its first-leg I queued
behind second-leg I's (`_zbv_queue_s`), the three together (`_zbv_paths_s`), and the order-free sum of a time over the
pipeline's stages (`_stage_sum_s`). Split out of schedules.py (session 25, zbvgroup) when the return and turn paths
took each run of like stages (stages.v_runs) where the kinds interleave."""

from __future__ import annotations

import numpy as np


def _stage_sum_s(short, weight, prepared=None) -> np.ndarray:
    """Σ_k weight_k·short_k over the last axis (a time per stage, its stages), each distinct value's integer weight
    summed first and the values added in the order they first appear: the same float whether like stages stand as
    one representative (weight their count) or as one column each (tests/test_pipeline_stages.py: representatives
    give every figure). `prepared`: `_stage_sum_prep(short)`, reused by the loops over d that sum one `short` under
    many weights (session 25, zbvspeed: the same operations, so the same floats)."""
    same, first = _stage_sum_prep(short) if prepared is None else prepared
    # Σ_j same_kj·weight_j: integers, exact in any order (an einsum: no (…, S, S) temporary of the weights)
    total = np.einsum("...j,...kj->...k", np.asarray(weight, dtype=float), same)
    term = np.where(first, total * short, 0.0)
    out = np.zeros(np.broadcast_shapes(short.shape, weight.shape)[:-1])
    for k in range(short.shape[-1]):
        out = out + term[..., k]
    return out


def _stage_sum_prep(short) -> tuple[np.ndarray, np.ndarray]:
    """(same as float, first) of `_stage_sum_s`: which stages hold equal values, and which is each value's first."""
    same = short[..., :, None] == short[..., None, :]
    first = ~np.any(same & np.tri(short.shape[-1], k=-1, dtype=bool), axis=-1)
    return same.astype(float), first


def _zbv_return_s(m, p, f, f1, start, position, count, exists, h, shorts, runs=None) -> np.ndarray:
    """R of `zbv_pipe_s`, (N, 1): micro-batch 0's forward through the whole V, the largest over devices d of
    Σ_{s<d} F_s + 2d·h + k_d·F¹_d + F²_d. Along a run of like stages a..b (a kind's stages `start` to `position`)
    the term is (d − a)·F + 2d·h + k_d·F¹ + F² plus the stages before a: linear in d either side of
    d* = p − 1 − (m − 1)/2, where k_d stops being m, so its largest lies at a, b or the integers around d*. A kind
    whose stages are not one run is taken at its first stage alone; the stages before a are counted only for the
    kinds that end before a (a lower bound where kinds interleave). The 2d hops, d first-leg sends (devices 0 to
    d − 1) and d second-leg ones (devices d to 1), each less its shortfall (`shorts`: the first-leg ones, then the
    second-leg ones, `zbv_pipe_s`; a stage before a of a kind that does not end before a taken at h). `runs`
    (stages.v_runs: each run's first and last stage, its column, (N, R, S) the stages of each column before it):
    every run of every kind at its own ends, the stages before it all counted, exact where kinds interleave (session
    25, zbvgroup; the same figure as above where they do not: integer counts, one run per kind)."""
    if runs is None:
        # Σ F over the stages before each run, and the hops' shortfalls there: the kinds that end before it starts
        ended = (position[:, None, :] < start[:, :, None]) & exists[:, None, :]
        ahead = np.where(ended, count[:, None, :], 0.0)  # (N, run, S): the stages of each kind before the run
        own = np.eye(f.shape[1], dtype=bool)[None]  # the run's own column
        end = np.where(position - start + 1 == count, position, start)  # a run: its last stage; else its first only
        f_run, f1_run, ok = f, f1, exists
    else:
        start, end, column, ahead = runs[:4]
        own = runs[4] > 0  # (N, R, S): each run's column
        f_run, f1_run = np.take_along_axis(f, column, axis=1), np.take_along_axis(f1, column, axis=1)
        ok = end >= 0
    before = _stage_sum_s(f[:, None, :], ahead)
    short_runs = shorts[:, None, :]
    prepared = _stage_sum_prep(short_runs)  # one `shorts` under the four d's weights
    kink = p - 1 - (m - 1) / 2
    best = np.full(f_run.shape, -np.inf)
    for d in (start, end, np.floor(kink) + 0 * start, np.ceil(kink) + 0 * start):
        d = np.clip(d, start, end)
        k = np.minimum(m, 2 * (p - 1 - d) + 1)
        weight = np.concatenate([ahead + own * (d - start)[:, :, None], ahead + own * (d - start + 1)[:, :, None]], 2)
        hops = 2 * d * h - _stage_sum_s(short_runs, weight, prepared)
        best = np.maximum(best, before + (d - start) * f_run + k * f1_run + (f_run - f1_run) + hops)
    return np.max(np.where(ok, best, -np.inf), axis=1, keepdims=True)


def _zbv_turn_s(m, p, f, f1, b, i1, w1, start, position, count, exists, h, shorts, runs=None) -> np.ndarray:
    """A bound of `zbv_pipe_s` on device 0's end, (N, 1): device d runs k_d = min(m, d + 1) second-leg forwards
    before micro-batch 0's second-leg I (sail-sg's walk, des.zbv_order, at all 2,604 points tried: p 2, 3, 4, 5, 6,
    8, m 1 to 3p − 1, six F : I : W ratios; session 24, zbfollow), so that I waits for micro-batch j = k_d − 1's
    forward: down the first leg to the turn (Σ_{s<p−1} F¹_s), where device p − 1 runs both its pieces' forwards of
    micro-batches 0 to j ((j + 1)·F_{p−1}, each piece's forwards in micro-batch order), back up the second leg to
    device d (Σ_{d≤s<p−1} F²_s); then micro-batch 0's I from device d's second-leg piece down the V
    (Σ_{s≥d} I²_s + Σ_s I¹_s) and device 0's first-leg piece's m I's and W's, as the return term (I² = B − I¹,
    F² = F − F¹), 4(p − 1) − 2d device boundaries. A kind's stages at or past d are counted at least
    count − (d − its first stage) (exact for a run, a lower bound where kinds interleave); (N, S) arrays as
    `zbv_pipe_s`, `start` each kind's first stage. The hops: every first-leg send twice (down, then the I back),
    the second-leg sends of devices d + 1 to p − 1 twice, each less its shortfall (`shorts`: the first-leg ones, then
    the second-leg ones, `zbv_pipe_s`; a kind's stages past d counted as at or past). `runs` (as `_zbv_return_s`):
    each column's stages at or past d counted run by run, exact where kinds interleave (session 25, zbvgroup)."""
    f2, i2 = f - f1, b - i1
    last, first = exists & (position == p - 1), exists & (position == 0)
    total = lambda a, where=exists: np.sum(np.where(where, a, 0.0), axis=1, keepdims=True)  # noqa: E731
    down = total(count * f1) - total(f1, last)  # the first leg up to the turn device
    turn, all_i1 = total(f, last), total(count * i1)
    tail = m * (total(i1, first) + total(w1, first)) - total(i1, first)  # I0.0 among device 0's m I's
    best = np.full(m.shape, -np.inf)
    prepared = _stage_sum_prep(shorts)
    for d in range(1, int(np.max(p))):
        at_or_past, past = _held_from(runs, d, exists, count, start), _held_from(runs, d + 1, exists, count, start)
        between = np.maximum(at_or_past - last, 0.0)  # stages d to p − 2
        path = (down + np.minimum(m, d + 1) * turn + total(between * f2) + total(at_or_past * i2) + all_i1 + tail
                + ((4 * (p - 1) - 2 * d) * h
                   - 2 * _stage_sum_s(shorts, np.concatenate([count, past], 1), prepared)[:, None]))
        best = np.maximum(best, np.where(d <= p - 1, path, -np.inf))
    return best


def _held_from(runs, d: int, exists, count, start) -> np.ndarray:
    """(N, S) each kind's stages at or past position d: run by run (`_from_s`) with `runs`, else count − (d − the
    kind's first stage), clipped to [0, count] (exact for a run, a lower bound where kinds interleave)."""
    if runs is not None:
        return _from_s(runs, d, exists)
    return np.where(exists, np.clip(count - np.maximum(0.0, d - start), 0.0, count), 0.0)


def _from_s(runs, d: int, exists) -> np.ndarray:
    """(N, S) the stages of each column at or past position d, summed over `runs` (stages.v_runs, with its (N, R, S)
    one-hot columns and a memo of this call's positions, `zbv_pipe_s`): a run a..b holds max(0, b − max(d, a) + 1)
    of them (integers: exact)."""
    start, end, _, _, own, memo = runs
    if d not in memo:
        held = np.where(end >= 0, np.maximum(0.0, end - np.maximum(d, start) + 1), 0.0)
        memo[d] = np.where(exists, np.einsum("nr,nrs->ns", held, own), 0.0)
    return memo[d]


def _zbv_queue_s(m, p, f, f1, b, i1, w1, start, position, count, exists, h, shorts, back, runs=None) -> np.ndarray:
    """A bound of `zbv_pipe_s` on device 0's end, (N, 1): device d runs n_d = min(m, p − d) second-leg I's before
    micro-batch 0's first-leg I (sail-sg's walk, des.zbv_order, at all 2,604 points tried: p 2, 3, 4, 5, 6, 8, m 1 to
    3p − 1, six F : I : W ratios; session 25, zbvgroup), so that I waits for micro-batch j = n_d − 1's second-leg I:
    device 0 runs its V-end piece's F and I of micro-batches 0 to j after micro-batch 0 reached it (R − F²_0 +
    n_d·(F²_0 + I²_0), R `back` as in `_zbv_return_s`), micro-batch j's I climbs the second leg to device d (Σ_{1≤s≤d}
    I²_s), micro-batch 0's first-leg I comes down from device d (Σ_{1≤s≤d} I¹_s), and device 0's first-leg piece runs
    its m I's and W's; 2d device boundaries (the second-leg sends of devices 1 to d, the first-leg ones of devices 0
    to d − 1, each less its shortfall `shorts`, as `_zbv_turn_s`). Llama-3-70B slice tp 2 · pp 4, m 2, free sends: the
    order's makespan to the digit (I1.7 I1.6 I1.5 I0.2 I0.1 I0.0 on the walk). (N, S) arrays as `_zbv_turn_s`."""
    first = exists & (position == 0)
    total = lambda a, where=first: np.sum(np.where(where, a, 0.0), axis=1, keepdims=True)  # noqa: E731
    f2_0, i2_0 = total(f - f1), total(b - i1)
    tail = m * (total(i1) + total(w1))
    best = np.full(m.shape, -np.inf)
    b_here = np.where(exists, b, 0.0)
    prepared, prepared_b = _stage_sum_prep(shorts), _stage_sum_prep(b_here)
    for d in range(int(np.max(p))):
        at_or_past, past = _held_from(runs, d, exists, count, start), _held_from(runs, d + 1, exists, count, start)
        upto = np.where(exists & ~first, count - past, 0.0)  # stages 1 to d
        weight = np.concatenate([count - at_or_past, count - past], 1)
        hops = 2 * d * h - _stage_sum_s(shorts, weight, prepared)[:, None]
        climb = _stage_sum_s(b_here, upto, prepared_b)[:, None]  # I² up and I¹ down over devices 1 to d
        path = back - f2_0 + np.minimum(m, p - d) * (f2_0 + i2_0) + climb + tail + hops
        best = np.maximum(best, np.where(d <= p - 1, path, -np.inf))
    return best


def _zbv_paths_s(m, p, f, f1, b, i1, w1, start, position, count, exists, h, shorts, runs=None, paths_s=None):
    """(R, turn, queue) of `zbv_pipe_s`, each (N, 1): `_zbv_return_s`, `_zbv_turn_s`, `_zbv_queue_s`. With `runs`
    (stages.v_runs plus its one-hot columns and a memo) only the rows whose kinds interleave (more runs than kinds)
    go run by run, their runs cut to the most any of them holds; the other rows take the one-run-a-kind form, the
    same floats there (integer counts, each kind one run: session 25, zbvgroup) at the cost of their own columns
    (session 25, zbvspeed: a GLaM search with ZB-V paid the runs path on every row). `paths_s`: the three functions
    (schedules passes its own names, which tests patch to take a path out)."""
    return_s, turn_s, queue_s = paths_s or (_zbv_return_s, _zbv_turn_s, _zbv_queue_s)

    def paths(rows, sub_runs):
        cut = [a if rows is None else a[rows] for a in (m, p, f, f1, b, i1, w1, start, position, count, exists, h,
                                                         shorts)]
        m_, p_, f_, f1_, b_, i1_, w1_, start_, position_, count_, exists_, h_, shorts_ = cut
        back = return_s(m_, p_, f_, f1_, start_, position_, count_, exists_, h_, shorts_, sub_runs)
        return (back, turn_s(m_, p_, f_, f1_, b_, i1_, w1_, start_, position_, count_, exists_, h_, shorts_,
                             sub_runs),
                queue_s(m_, p_, f_, f1_, b_, i1_, w1_, start_, position_, count_, exists_, h_, shorts_, back,
                        sub_runs))

    if runs is None:
        return paths(None, None)
    held = np.sum(runs[1] >= 0, axis=1)  # each row's runs (v_runs packs them first, −1 pads after)
    interleaved = held > np.sum(exists, axis=1)
    if interleaved.all():
        return paths(None, runs)
    out = tuple(np.empty((f.shape[0], 1)) for _ in range(3))
    for rows, run in ((~interleaved, False), (interleaved, True)):
        if not rows.any():
            continue
        width = int(np.max(held[rows])) if run else 0
        sub_runs = (*(a[rows, :width] for a in runs[:5]), {}) if run else None
        for whole, part in zip(out, paths(rows, sub_runs)):
            whole[rows] = part
    return out
