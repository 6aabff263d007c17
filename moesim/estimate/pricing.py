"""Price many collectives at once through any CollectiveModel, each distinct one only once."""

from __future__ import annotations

import numpy as np

from moesim.collectives.base import CollectiveCost, CollectiveModel, Group


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood, OOPSLA 2014): every input bit reaches every output bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hashed(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """(first row of each run of equal neighbours, every row's run, the runs' columns as bits, their 64-bit hash)."""
    change = np.zeros(len(columns[0]), dtype=bool)
    change[:1] = True
    for column in columns:
        change[1:] |= column[1:] != column[:-1]
    starts = np.flatnonzero(change)
    run = np.cumsum(change) - 1
    bits = [np.ascontiguousarray(column[starts]).view(np.uint64) for column in columns]
    key = np.zeros(len(starts), dtype=np.uint64)
    for column in bits:
        key = _mix64(key ^ column)
    return starts, run, bits, key


def distinct_rows(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(index of one row per distinct row, distinct-row number of every row) of equal-length 64-bit columns.

    The grouping np.unique(rows, axis=0) finds, computed faster for the millions of rows a layout
    search prices: runs of equal neighbouring rows (candidates differing only in options that do
    not change a collective) collapse first; the remaining rows are grouped by one 1-D sort of a
    64-bit hash of their bits; a hash collision is detected and answered by the exact method."""
    starts, run, bits, key = _hashed(columns)
    order = np.argsort(key)  # introsort: several times faster than np.unique's stable sort here
    ordered = key[order]
    new_key = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    first = order[new_key]
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = np.cumsum(new_key) - 1
    if not all(np.array_equal(column[first][inverse], column) for column in bits):
        rows = np.stack([column.view(np.float64) if c.dtype.kind == "f" else column.view(np.int64)
                         for column, c in zip(bits, columns)], axis=1)
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    return starts[first], inverse[run]


def grouped_rows(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """distinct_rows' groups of equal rows, numbered in the order of the row heading each (not of the hash): for a
    caller that computes each group once, on its head's row, and reads it back by `inverse` (the collectives' pricing,
    LayerTerms' and the TE buffers' distinct rows), every figure is the one distinct_rows' grouping gives. The hash's
    rows are grouped through a table of slots (_heads) instead of a sort (session 23, coldsearch23: about half of
    distinct_rows' time in a warm DeepSeek-V3 search); a hash collision is answered as distinct_rows answers it."""
    starts, run, bits, key = _hashed(columns)
    head = _heads(key, 0)
    first = np.flatnonzero(head == np.arange(len(key)))
    number = np.empty(len(key), dtype=np.int64)
    number[first] = np.arange(len(first))
    inverse = number[head]
    if not all(np.array_equal(column[first][inverse], column) for column in bits):
        return distinct_rows(columns)
    return starts[first], inverse[run]


def _heads(key: np.ndarray, shift: int) -> np.ndarray:
    """head[i]: a row whose key equals key[i]; every row of one key points at the same row, which points at itself.
    Each row writes its index into a table at its slot (`bits` bits of its key from bit `shift`: 4 or more slots a
    row) and reads back the index that stayed there; the rows that find another key's row there (two keys on one
    slot) are grouped again on the key's next bits, and past its 64 bits by a sort."""
    n = len(key)
    bits = int(n).bit_length() + 2  # 4 or more slots a row: as fast as 16 on a search's rows, a quarter of the table
    if shift + bits > 64:
        order = np.argsort(key)
        ordered = key[order]
        new = np.empty(n, dtype=bool)
        new[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
        head = np.empty(n, dtype=np.int64)
        head[order] = order[new][np.cumsum(new) - 1]
        return head
    slot = (key >> np.uint64(shift)).view(np.int64) & ((1 << bits) - 1)
    table = np.empty(1 << bits, dtype=np.int64)  # only the slots written are read
    table[slot] = np.arange(n)
    head = table[slot]
    lost = np.flatnonzero(key[head] != key)
    if len(lost):
        head[lost] = lost[_heads(key[lost], shift + bits)]
    return head


def one_valued(column: np.ndarray) -> bool:
    """Whether `column` is a stride-0 view of one value (the enumeration's one-valued columns, session 22): every row
    holds column[0], known without a pass over its rows."""
    return column.ndim == 1 and len(column) > 0 and column.strides == (0,)


def rows_of_key(key: np.ndarray | None, columns: list[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """distinct_rows(columns) read off the enumeration's order-free key (a dense relabelling, no hashing),
    once every column is checked to be equal on equal keys; (None, None) without a key or when it is stale."""
    if key is None or not len(key):
        return None, None
    key = np.asarray(key, dtype=np.int64)
    low, span = key.min(), int(key.max() - key.min()) + 1
    if span > 4 * len(key):
        first, inverse = distinct_rows([key])
    else:
        present = np.zeros(span, dtype=bool)
        present[key - low] = True
        inverse = (np.cumsum(present) - 1)[key - low]
        first = np.full(int(present.sum()), len(key))
        np.minimum.at(first, inverse, np.arange(len(key)))
    if not all(one_valued(column) or  # one value at every row: equal on equal keys
               np.array_equal(column[first][inverse], column, equal_nan=column.dtype.kind == "f")
               for column in columns):
        return None, None
    return first, inverse


class GroupRuns:
    """One mesh axis's collective group per candidate of a batch (size, stride, concurrent groups), with
    where neighbouring candidates change group: built once per batch and axis, shared by every
    collective priced on the axis (`CollectivePricer.price_runs`)."""

    def __init__(self, size, stride, devices: int, concurrent=None) -> None:
        self.size = np.asarray(size, dtype=np.int64).reshape(-1)
        self.stride = np.broadcast_to(np.asarray(stride, dtype=np.int64), self.size.shape)
        # a mesh axis tiles the devices with its groups; `concurrent` where fewer run at once (embedding_sync.py)
        self.devices = devices
        self._concurrent = None if concurrent is None else \
            np.broadcast_to(np.asarray(concurrent, dtype=np.int64), self.size.shape)
        self.change = np.ones(len(self.size), dtype=bool)
        self.change[1:] = (self.size[1:] != self.size[:-1]) | (self.stride[1:] != self.stride[:-1])

    @property
    def concurrent(self) -> np.ndarray:
        """Concurrent groups per candidate: devices // size where not given."""
        return self.devices // self.size if self._concurrent is None else self._concurrent

    def concurrent_at(self, at: np.ndarray) -> np.ndarray:
        """concurrent[at], the division done on those rows only (session 24, searchspeed24: the same integers)."""
        return self.devices // self.size[at] if self._concurrent is None else self._concurrent[at]


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

    def price(self, op: str, size_bytes, size, stride, concurrent,
              with_costs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(time_s array, CollectiveCost object array or None without `with_costs`); size 1 or zero
        bytes cost nothing."""
        columns = np.broadcast_arrays(np.asarray(size_bytes, dtype=float), np.asarray(size, dtype=np.int64),
                                      np.asarray(stride, dtype=np.int64), np.asarray(concurrent, dtype=np.int64))
        columns = [c.reshape(-1) for c in columns]
        return self._price_distinct(op, columns, grouped_rows(columns), with_costs)

    def _price_distinct(self, op: str, columns: list[np.ndarray], grouping: tuple[np.ndarray, np.ndarray],
                        with_costs: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """`price` of the (size_bytes, size, stride, concurrent) `columns` given their grouped_rows
        `grouping`: each distinct row looked up in the memo once (the key `one` files it under)."""
        first, inverse = grouping
        cache, one = self._cache, self.one
        if not with_costs:  # the times alone (the layout search): no cost object kept (session 24, searchspeed24)
            times = []
            for row in zip(*(c[first].tolist() for c in columns)):  # (bytes float, size, stride, concurrent ints)
                if row[1] <= 1 or row[0] <= 0:
                    times.append(0.0)
                    continue
                cost = cache.get((op, *row))  # == one's key: tolist() gives Python floats / ints already
                times.append((cost or one(op, *row)).time_s)
            return np.array(times, dtype=float)[inverse.reshape(-1)], None
        costs, times = [], []
        for row in zip(*(c[first].tolist() for c in columns)):  # (bytes float, size, stride, concurrent ints)
            nbytes, n = row[0], row[1]
            if n <= 1 or nbytes <= 0:
                costs.append(CollectiveCost(op, nbytes, int(n), 0.0, "none", "none"))
                times.append(0.0)
                continue
            cost = cache.get((op, *row))  # == one's key: tolist() gives Python floats / ints already
            if cost is None:
                cost = one(op, *row)
            costs.append(cost)
            times.append(cost.time_s)
        inverse = inverse.reshape(-1)
        times_s = np.array(times, dtype=float).reshape(-1)
        cost_array = np.empty(len(costs), dtype=object)
        cost_array[:] = costs
        return times_s[inverse], cost_array[inverse]

    def price_runs(self, op: str, size_bytes: np.ndarray, groups: GroupRuns,
                   with_costs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """`price` of every (size_bytes[i], group i) or, for sizes (N, S), of every (size_bytes[i, s], group i):
        the same numbers, shaped as `size_bytes`. The group columns' changes between neighbours come
        precomputed with `groups`; each call compares only the sizes, prices the first row of each run of
        equal neighbours (every stage column of it at once, distinct ones once) and repeats it down the run."""
        return self.price_runs_scaled([(op, None)], size_bytes, groups, with_costs)[0]

    def price_runs_scaled(self, priced: list[tuple[str, float | None]], size_bytes: np.ndarray, groups: GroupRuns,
                          with_costs: bool = True) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """`price_runs` of each (op, scale) of `priced` at sizes `size_bytes` · scale (None: unscaled), the runs of
        equal neighbours and the distinct rows found once on `size_bytes`: sizes equal before scaling are equal
        after it, so each op is priced on groups no coarser than its own and every figure is price_runs' (session
        23, bucketspeed: a gradient sync's all-reduce, reduce-scatter and all-gather at one set of sizes)."""
        size_bytes = np.asarray(size_bytes, dtype=float)
        rows = size_bytes.reshape(len(groups.size), -1)  # (N, S)
        change = groups.change.copy()
        for column in rows.T:  # one column at a time: faster than a row-wise any() over a short axis
            change[1:] |= column[1:] != column[:-1]
        starts = np.flatnonzero(change)
        lengths = np.diff(starts, append=len(rows))
        k = rows.shape[1]
        at = starts.repeat(k)
        columns = [rows[starts].reshape(-1), groups.size[at], groups.stride[at], groups.concurrent_at(at)]
        # concurrent = devices // size: grouping by (bytes, size, stride) is grouping by all four.
        grouping = grouped_rows(columns[:3])
        priced_out = []
        for op, scale in priced:
            at_scale = columns if scale is None else [columns[0] * scale] + columns[1:]
            times, costs = self._price_distinct(op, at_scale, grouping, with_costs)
            times = np.repeat(times.reshape(-1, k), lengths, axis=0).reshape(size_bytes.shape)
            if with_costs:
                costs = np.repeat(costs.reshape(-1, k), lengths, axis=0).reshape(size_bytes.shape)
            priced_out.append((times, costs))
        return priced_out


def pricer_for(model: CollectiveModel, devices: int) -> CollectivePricer:
    """The model's own shared pricer when it keeps one (a layout search's memoising model: one cache for all
    its batches), else a new one."""
    shared = getattr(model, "pricer", None)
    return shared(devices) if callable(shared) else CollectivePricer(model, devices)
