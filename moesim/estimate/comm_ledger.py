"""The step's collectives per named entry: priced on each axis's device groups, counted per stage, totalled.

Notation as moesim.estimate.core: arrays (N, S) over candidates and representative stages; the axes
tp, dp (dp·cp as one group), pp, ep, etp, edp, cp, embd (the first and last stage); `breakdown=False` prices
without recording entries (the layout search), every returned time the same.
"""

from __future__ import annotations

import numpy as np

from moesim.collectives.base import CollectiveModel, wire_factor
from moesim.collectives.call_model import model_for_call
from moesim.estimate.embedding_sync import EMBEDDING_AXIS
from moesim.estimate.evaluation import CommTotal, per_micro_batch
from moesim.estimate.pricing import GroupRuns, pricer_for


def _bus_factor(op: str, group_sizes: np.ndarray, model=None) -> np.ndarray:
    """Bytes sent per byte of S per group size: the busbw factor, or the model's own (collectives.base.wire_factor)."""
    unique, inverse = np.unique(group_sizes, return_inverse=True)
    return np.array([wire_factor(model, op, int(n)) for n in unique])[inverse.reshape(-1)]


class CommLedger:
    """Prices collectives on the candidates' groups (`sizes`, `strides` per axis) and records each named
    one per stage: `entries[name]` = [axis, op, overlappable, sizes, calls, bytes sent, times, costs], the
    last five lists of (N, S) arrays, one per `add`."""

    def __init__(self, collective_model: CollectiveModel, devices: int, sizes: dict[str, np.ndarray],
                 strides: dict[str, np.ndarray], exists: np.ndarray, breakdown: bool,
                 concurrent: dict[str, np.ndarray] | None = None):
        self.collective_model, self.sizes, self.exists, self.breakdown = collective_model, sizes, exists, breakdown
        self.n_cand, self.n_stages = exists.shape
        self.pricer = pricer_for(collective_model, devices)
        self.devices = devices
        self._pricers: dict[int, object] = {}  # per other model (call_model.model_for_call: expert a2a, NCCL's)
        self.groups = {axis: GroupRuns(sizes[axis], strides[axis], devices, (concurrent or {}).get(axis))
                       for axis in sizes}  # once per axis
        self.entries: dict[str, list] = {}
        self.multiples: dict[str, list] = {}  # per entry, the schedule multiple of each `add` (expand)
        self._gates: dict[str, np.ndarray] = {}

    def gate(self, axis: str) -> np.ndarray:
        """1.0 where the stage exists and `axis` has a group (size > 1), else 0.0: (N, S)."""
        if axis not in self._gates:
            self._gates[axis] = (self.exists & (self.sizes[axis] > 1)[:, None]).astype(float)
        return self._gates[axis]

    def _pricer(self, name: str, op: str):
        """(model, pricer) of collective `name` (`op`): the expert all-to-alls' directed model, any other all-to-all's
        NCCL model (collectives.call_model.model_for_call)."""
        model = model_for_call(self.collective_model, name, op)
        if model is self.collective_model:
            return model, self.pricer
        return model, self._pricers.get(id(model)) or \
            self._pricers.setdefault(id(model), pricer_for(model, self.devices))

    def add(self, name: str, axis: str, op: str, size_bytes, calls_stage, overlappable=False, gated=False,
            multiple: str | None = None) -> np.ndarray:
        """Price `op` on `axis` and add calls (N, S) of it (`gated`: already 0 where gate(axis) is); returns
        time per stage (N, S). `multiple`: the name of the schedule multiple `expand` scales these calls by
        (default: pipeline sends × `sends`, gradient syncs × `pm`)."""
        n_cand, n_stages, breakdown = self.n_cand, self.n_stages, self.breakdown
        size_bytes = np.broadcast_to(np.asarray(size_bytes, dtype=float), (n_cand,)) if np.ndim(size_bytes) <= 1 \
            else size_bytes
        model, pricer = self._pricer(name, op)
        # Every stage column at once (estimate.pricing.price_runs: runs of equal neighbouring rows priced once).
        t, costs = pricer.price_runs(op, size_bytes, self.groups[axis], breakdown)
        if np.ndim(size_bytes) == 2:
            per_call_size = size_bytes
        else:
            t = t[:, None]
            costs = costs[:, None].repeat(n_stages, axis=1) if breakdown else None
            per_call_size = np.broadcast_to(size_bytes[:, None], (n_cand, n_stages))
        calls_stage = calls_stage if gated else np.asarray(calls_stage, dtype=float) * self.gate(axis)
        if not breakdown:
            return calls_stage * t
        factor = _bus_factor(op, np.asarray(self.sizes[axis], dtype=float), model)[:, None]
        entry = self.entries.setdefault(name, [axis, op, overlappable, [], [], [], [], []])
        self.multiples.setdefault(name, []).append(multiple)
        entry[3].append(per_call_size * (calls_stage > 0))
        entry[4].append(calls_stage)
        entry[5].append(calls_stage * per_call_size * factor)
        entry[6].append(calls_stage * t)
        entry[7].append(costs)
        return calls_stage * t

    def time_of(self, name: str, axis: str, op: str, size_bytes: np.ndarray) -> np.ndarray:
        """One call's time of `op` on `axis` at `size_bytes` (N, S), recording nothing: a size the step's entries
        already count at another grouping (ZB-V's sends per boundary, `add`'s pp_send_recv per stage)."""
        return self._pricer(name, op)[1].price_runs(op, size_bytes, self.groups[axis], False)[0]

    def add_packed(self, axis: str, priced: list[tuple[str, str, float, np.ndarray]], size_bytes: np.ndarray,
                   owner: np.ndarray) -> list[np.ndarray]:
        """`add` of each (name, op, bytes per size unit, calls (N, K)) of `priced` at sizes `size_bytes` (N, K) ×
        that factor, column k belonging to stage column owner[k] (several columns may share a stage: the gradient
        buckets' tail on every stage, then the first stage's lead and middle buckets, grad_buckets.uniform_buckets),
        priced in one pass (CollectivePricer.price_runs_scaled: one set of runs for every op of one pricer); returns
        each one's time (N, K). Recorded as one `add` of the first n_stages columns (owner 0..S−1) and one per
        further column, on its stage (overlappable)."""
        gate = np.empty(size_bytes.shape)  # gate(axis)[:, owner], a column at a time (session 23, bucketspeed)
        for k, s in enumerate(owner):
            gate[:, k] = self.gate(axis)[:, s]
        by_pricer: dict[int, list[int]] = {}
        pricers = [self._pricer(name, op) for name, op, _, _ in priced]
        for i, (_, pricer) in enumerate(pricers):
            by_pricer.setdefault(id(pricer), []).append(i)
        priced_t: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for ids in by_pricer.values():
            pricer = pricers[ids[0]][1]
            each = pricer.price_runs_scaled([(priced[i][1], priced[i][2]) for i in ids], size_bytes,
                                            self.groups[axis], self.breakdown)
            priced_t.update(zip(ids, each))
        times = []
        for i, (name, op, scale, calls) in enumerate(priced):
            (t, costs), model = priced_t[i], pricers[i][0]
            calls = calls * gate
            if self.breakdown:
                self._record_packed(name, axis, op, model, size_bytes * scale, calls, t, costs, owner)
            times.append(calls * t)
        return times

    def _record_packed(self, name: str, axis: str, op: str, model, size_bytes: np.ndarray, calls: np.ndarray,
                       t: np.ndarray, costs: np.ndarray, owner: np.ndarray) -> None:
        """add_packed's entries: one `add` of the first n_stages columns and one per further column, on its stage."""
        factor = _bus_factor(op, np.asarray(self.sizes[axis], dtype=float), model)[:, None]
        entry = self.entries.setdefault(name, [axis, op, True, [], [], [], [], []])
        n = self.n_stages
        for k in range(n - 1, size_bytes.shape[1]):
            cols = slice(0, n) if k == n - 1 else slice(k, k + 1)
            at = slice(0, n) if k == n - 1 else slice(owner[k], owner[k] + 1)
            block = [np.zeros((self.n_cand, n)) for _ in range(3)]
            block_costs = np.zeros((self.n_cand, n), dtype=costs.dtype)
            block[0][:, at], block[1][:, at] = size_bytes[:, cols], calls[:, cols]
            block[2][:, at] = t[:, cols]
            block_costs[:, at] = costs[:, cols]
            self.multiples.setdefault(name, []).append(None)
            entry[3].append(block[0] * (block[1] > 0))
            entry[4].append(block[1])
            entry[5].append(block[1] * block[0] * factor)
            entry[6].append(block[1] * block[2])
            entry[7].append(block_costs)

    def expand(self, z, sends: np.ndarray, pm: np.ndarray, **multiples: np.ndarray) -> None:
        """Entries back to every candidate (`z`: rows → candidates); pipeline sends × `sends`, gradient syncs
        × `pm`, an `add` that named a multiple × `multiples[that name]`."""
        for name, entry in self.entries.items():
            scale = sends if name == "pp_send_recv" else pm if entry[0] in ("dp", "edp") else 1.0
            scales = [scale if key is None else multiples[key] for key in self.multiples[name]]
            entry[3] = [z(a) for a in entry[3]]
            entry[4:7] = [[z(a) * k for a, k in zip(lst, scales)] for lst in entry[4:7]]
            entry[7] = [z(a) for a in entry[7]]


def comm_totals(entries: dict[str, list], slow: np.ndarray, dp_stage: np.ndarray, m: np.ndarray,
                pair_t: np.ndarray | None, dual_t: np.ndarray) -> dict[str, CommTotal]:
    """Each entry's per-step total on the stage the step charges it to: per-micro-batch collectives (and the
    ZeRO-3 parameter gathers, recorded per step) on the slowest stage `slow`, the gradient sync on its busiest
    stage `dp_stage`; DualPipe (`pair_t`, `dual_t`): the mean of the device's two stages."""
    n_cand = len(slow)
    comms: dict[str, CommTotal] = {}
    for name, (axis, op, overlappable, size_l, calls_l, bytes_l, time_l, cost_l) in entries.items():
        per_mb = per_micro_batch(name, axis)
        on_pipe = per_mb or "param_all_gather" in name
        at = slow if on_pipe else dp_stage
        if axis == EMBEDDING_AXIS:  # the first stage's (and the last's) embedding all-reduce: the first with calls
            at = np.argmax(sum(calls_l) > 0, axis=1)
        one_at = lambda a, cols: np.take_along_axis(a, cols[:, None], axis=1)[:, 0]  # noqa: E731
        pick_at = lambda a: one_at(a, at)  # noqa: E731,B023
        col = at  # the column whose sizes and algorithm the entry shows
        if on_pipe and pair_t is not None:  # DualPipe: half the micro-batches through each of the device's stages
            partner = one_at(pair_t, at)
            pick_at = lambda a: np.where(dual_t, (one_at(a, at) + one_at(a, partner)) / 2, one_at(a, at))  # noqa: E731,B023
            biggest = np.max(np.stack(size_l), axis=0)
            col = np.where(dual_t & (one_at(biggest, partner) > one_at(biggest, at)), partner, at)
        calls = pick_at(sum(calls_l))
        if not np.any(calls > 0):
            continue
        # Per-layer collectives are recorded per micro-batch; the ZeRO-3 gathers' calls (2·m) are per step.
        scale = m if per_mb else 1.0
        size = one_at(np.max(np.stack(size_l), axis=0), col)
        big = np.argmax(np.stack([one_at(s, col) for s in size_l]), axis=0)
        costs = np.stack([one_at(c, col) for c in cost_l])[big, np.arange(n_cand)]
        comms[name] = CommTotal(axis, op, size, calls * scale, pick_at(sum(bytes_l)) * scale,
                                pick_at(sum(time_l)) * scale, costs, overlappable)
    return comms
