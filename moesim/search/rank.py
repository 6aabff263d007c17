"""Layout search: enumerate, evaluate in a few vectorised batches, reject what does not fit, rank.

Objectives (smaller is better after the sign): `step_time` s per step; `cost` per step,
step time × devices × price per device-hour / 3600 in USD when the hardware profile has a price,
else device-seconds per step; `mfu` (larger is better). Ties go to less memory per device, then
to the enumeration order, so a search is deterministic.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from moesim.collectives.base import CollectiveCost, CollectiveModel, Group
from moesim.collectives.dispatch import DispatchModel
from moesim.collectives.select import model_for
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.estimate import Candidates, StepEstimate, evaluate, step_estimate
from moesim.estimate.candidates import RECOMPUTE_NAMES
from moesim.estimate.pricing import CollectivePricer, distinct_rows, one_valued
from moesim.search.enumerate import Enumeration, enumerate_layouts
from moesim.search.pareto import front_of_sorted, pareto_front
from moesim.specs.layout import Layout, layout_arg
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec

OBJECTIVES = ("step_time", "cost", "mfu")
SECONDS_PER_HOUR = 3600.0
CHUNK_CANDIDATES = 200_000  # evaluate at most this many at once: bounds the memory of one batch
MAX_THREADS = 4  # evaluation threads by default (a few batches; more threads only add memory)
MISSES_KEPT = 5  # when nothing fits: the valid layouts needing the least memory that a search reports
MEMOS_KEPT = 4  # default models' memoised costs kept across searches (the most recently used ones)
MEMO_ENTRIES_KEPT = 100_000  # a kept memo with more costs than this starts afresh (a sweep's searches on one model)
ENUMERATION_BYTES_KEPT = 256 * 2**20  # the last search's enumeration is kept for the next one up to this size


def objective_unit(scenario: Scenario, objective: str) -> str:
    """The unit the objective's figures are in."""
    if objective == "step_time":
        return "s/step"
    if objective == "mfu":
        return "fraction of peak"
    return "USD/step" if scenario.hardware.price_per_device_hour_usd else "device-s/step"


def objective_values(scenario: Scenario, objective: str, step_time_s: np.ndarray, mfu: np.ndarray) -> np.ndarray:
    """The objective's figure per candidate, in `objective_unit`."""
    if objective == "step_time":
        return step_time_s
    if objective == "mfu":
        return mfu
    device_seconds = step_time_s * scenario.devices
    price = scenario.hardware.price_per_device_hour_usd
    return device_seconds * price / SECONDS_PER_HOUR if price else device_seconds


def cost_figures(scenario: Scenario, step_time_s: float) -> dict:
    """Device-hours per trillion tokens (a budget in devices and time, priced or not: DeepSeek-V3 §1 states its
    run as 180K H800 GPU hours per trillion tokens), and USD per step and per trillion tokens at the profile's list
    price (None without a price)."""
    tokens = scenario.training.global_batch_sequences * sum(scenario.seq_lens)
    device_hours = step_time_s * scenario.devices / SECONDS_PER_HOUR  # per step
    out = {"device_hours_per_trillion_tokens": device_hours / tokens * 1e12}
    price = scenario.hardware.price_per_device_hour_usd
    if not price:
        return out | {"usd_per_step": None, "usd_per_trillion_tokens": None}
    usd = step_time_s * scenario.devices * price / SECONDS_PER_HOUR  # main's order of operations: the same bits
    return out | {"usd_per_step": usd, "usd_per_trillion_tokens": usd / tokens * 1e12}


def cost_note(scenario: Scenario) -> str:
    """Where the cost objective's figures come from, or that the profile has no price."""
    hw = scenario.hardware
    if hw.price_per_device_hour_usd:
        return (f"{hw.name} at {hw.price_per_device_hour_usd:g} USD per device-hour "
                f"({hw.price_source or 'no source given'})")
    return (f"hardware profile '{hw.name}' has no price_per_device_hour_usd: the cost objective ranks by "
            "device-seconds per step (step time x devices), not dollars (give a price in USD per device-hour: "
            "`moesim sweep SCENARIO --vary hardware.price_per_device_hour_usd=USD --objective cost`, or a copy of "
            "the profile with price_per_device_hour_usd set, passed as --hardware FILE)")


@dataclass(frozen=True)
class SearchResult:
    """Every fitting layout, best first, with the counts of what was considered and rejected."""

    scenario: Scenario
    objective: str
    objective_unit: str
    considered: int
    rejected: dict[str, int]
    candidates: Candidates  # ranked, best first
    step_time_s: np.ndarray
    memory_bytes_per_device: np.ndarray
    mfu: np.ndarray
    tokens_per_s: np.ndarray
    objective_value: np.ndarray
    pareto: np.ndarray  # indices into the ranking, by ascending step time
    memory_capacity_bytes: float
    collective_model: CollectiveModel | None = None  # the one the search was given (None: the default)
    # Per ranked layout, how many mesh orders give it the same figures (itself included) on its first,
    # best-ranked row, and 0 on the later rows that repeat it in another order (reports fold those).
    equivalent_orders: np.ndarray | None = None
    misses: Candidates | None = None  # when nothing fits: the valid layouts needing the least memory, least first
    miss_memory_bytes: np.ndarray | None = None
    miss_step_time_s: np.ndarray | None = None

    @property
    def ranked(self) -> int:
        return len(self.candidates)

    def distinct(self, k: int | None = None) -> np.ndarray:
        """Indices of the first k ranked layouts that are not another order of a better-ranked one with the
        same figures (all of them when k is None)."""
        keep = np.flatnonzero(self.equivalent_orders > 0) if self.equivalent_orders is not None \
            else np.arange(self.ranked)
        return keep if k is None else keep[:k]

    @property
    def best_layout_arg(self) -> str | None:
        """The best layout as `--layout` / moesim.estimate(layout=...) takes it (None when nothing fits)."""
        return self.summary(0)["layout_arg"] if self.ranked else None

    def to_dict(self, top: int = 5) -> dict:
        """The `moesim search --json` form: top layouts with breakdowns, rejections, Pareto front, closest miss."""
        from moesim.search.report import describe_search

        return describe_search(self, top=top)

    def __repr__(self) -> str:
        from moesim.api_repr import search_repr

        return search_repr(self)

    def _repr_html_(self) -> str:
        from moesim.api_repr import search_html

        return search_html(self)

    def layout(self, i: int) -> Layout:
        return self.candidates.layout(i)

    def training(self, i: int) -> TrainingSpec:
        return self.candidates.training(i, self.scenario.training)

    def layout_dict(self, i: int) -> dict:
        """Degrees, order and execution options of the i-th ranked layout."""
        c = self.candidates
        cf = float(c.capacity_factor[i])
        return self.layout(i).as_dict() | {
            "micro_batches": int(c.micro_batches[i]), "zero_stage": int(c.zero_stage[i]),
            "recompute": RECOMPUTE_NAMES[int(c.recompute[i])], "capacity_factor": None if np.isnan(cf) else cf,
            "pipeline_schedule": c.schedule_name(i, self.scenario.training),
        }

    def layout_arg(self, i: int) -> str:
        """The `--layout` line of the i-th ranked layout (a dense model's has no capacity factor)."""
        lay = self.layout_dict(i)
        if self.scenario.model.moe is None:
            del lay["capacity_factor"]
        return layout_arg(lay)

    def summary(self, i: int) -> dict:
        """The figures of the i-th ranked layout (JSON-ready)."""
        lay = self.layout_dict(i)
        out = {"layout": lay, "layout_arg": self.layout_arg(i), "step_time_s": float(self.step_time_s[i]),
               "memory_bytes_per_device": float(self.memory_bytes_per_device[i]), "fits_in_memory": True,
               "mfu": float(self.mfu[i]), "tokens_per_s": float(self.tokens_per_s[i]),
               "objective_value": float(self.objective_value[i])}
        if self.equivalent_orders is not None and self.equivalent_orders[i]:
            out["equivalent_orders"] = int(self.equivalent_orders[i])
        return out | cost_figures(self.scenario, float(self.step_time_s[i]))

    def estimates(self, indices, collective_model: CollectiveModel | None = None) -> list[StepEstimate]:
        """Full step estimates (breakdown, bottleneck) of the given ranked layouts."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return []
        model = collective_model or self.collective_model or model_for(self.scenario)
        ev = evaluate(self.scenario, self.candidates.take(indices), model)
        return [step_estimate(self.scenario, ev, j) for j in range(len(indices))]


class _MemoModel:
    """A CollectiveModel's costs, each distinct call computed once per search: the batches of one
    search (one per pipeline degree) price many of the same collectives."""

    def __init__(self, model: CollectiveModel) -> None:
        self.model = model
        self._cache: dict[tuple, CollectiveCost] = {}
        self._pricers: dict[int, CollectivePricer] = {}

    def entries(self) -> int:
        """Costs kept: this memo's, its directed models' and its pricers'."""
        return sum(m.entries() if isinstance(m, _MemoModel) else 1 for m in self._cache.values()) \
            + sum(len(p._cache) for p in self._pricers.values())

    def pricer(self, devices: int) -> CollectivePricer:
        """One CollectivePricer per device count for every batch of the search (estimate.pricing.pricer_for)."""
        found = self._pricers.get(devices)
        if found is None:
            found = self._pricers.setdefault(devices, CollectivePricer(self, devices))
        return found

    def directed(self, direction: str):
        """The memoised model of the wrapped model's `direction` (dispatch.for_call; "nccl": its base, call_model)."""
        directed = getattr(self.model, "directed", None)
        if directed is None:
            return self
        key = ("directed", direction)
        if key not in self._cache:
            self._cache[key] = _MemoModel(self.model.base if direction == "nccl" else directed(direction))
        return self._cache[key]

    def cost(self, op: str, size_bytes: float, group: Group) -> CollectiveCost:
        key = (op, size_bytes, group)
        cost = self._cache.get(key)
        if cost is None:
            cost = self._cache[key] = self.model.cost(op, size_bytes, group)
        return cost


_memos: dict[str, _MemoModel] = {}
_memos_lock = threading.Lock()


def _default_memo(scenario: Scenario) -> _MemoModel:
    """The memoised default model (model_for) of `scenario`, shared by the searches of equal models: keyed by the
    model's repr, which for these frozen dataclasses names every field it is built from (their own per-instance
    caches are repr=False), so an equal repr is an equal model and every cost it memoised is that model's."""
    model = model_for(scenario)
    if type(model) not in (TopologyModel, DispatchModel):
        return _MemoModel(model)
    key = repr(model)
    with _memos_lock:
        memo = _memos.pop(key, None)
        if memo is None or memo.entries() > MEMO_ENTRIES_KEPT:
            memo = _MemoModel(model)
        _memos[key] = memo  # most recently used last
        while len(_memos) > MEMOS_KEPT:
            del _memos[next(iter(_memos))]
    return memo


_enumerations: dict[tuple, Enumeration] = {}
_enumerations_lock = threading.Lock()


def _enumeration(scenario: Scenario) -> Enumeration:
    """enumerate_layouts(scenario), the last one kept for the next search of the same space: keyed by all that
    search.enumerate reads (the model, the training, the [search] space and the device count; frozen dataclasses,
    equal when their fields are), its arrays made read-only. A search reads the candidates and keeps copies of
    the rows it returns (Candidates.take by index), never the kept arrays. An unhashable key, or an enumeration
    over ENUMERATION_BYTES_KEPT, is not kept; a search of another space drops the kept one before it enumerates.
    release_kept() drops it too."""
    key = (scenario.model, scenario.training, scenario.search, scenario.devices)
    try:
        hash(key)
    except TypeError:
        return enumerate_layouts(scenario)
    with _enumerations_lock:
        found = _enumerations.get(key)
        if found is None:
            _enumerations.clear()  # another space: not held while this one is built (peak memory), nor after it
    if found is not None:
        return found
    found = enumerate_layouts(scenario)
    arrays = [a for a in vars(found.candidates).values() if isinstance(a, np.ndarray)]
    if sum(a.nbytes for a in arrays) <= ENUMERATION_BYTES_KEPT:
        for a in arrays:
            a.setflags(write=False)
        with _enumerations_lock:
            _enumerations.clear()
            _enumerations[key] = found
    return found


def release_kept() -> None:
    """Drop what searches keep for the next search in this process: the last enumeration (up to
    ENUMERATION_BYTES_KEPT; DeepSeek-V3's is ~200 MB) and the default models' memoised costs (MEMOS_KEPT models).
    For a long-lived process done searching; the next search enumerates and prices afresh, with the same figures."""
    with _enumerations_lock:
        _enumerations.clear()
    with _memos_lock:
        _memos.clear()


def _chunks(pp: np.ndarray) -> list[slice]:
    """Runs of candidates evaluated together: one pipeline degree (pp-sorted input), at most CHUNK_CANDIDATES."""
    bounds = np.concatenate([[0], np.flatnonzero(pp[1:] != pp[:-1]) + 1, [len(pp)]])
    return [slice(i, min(i + CHUNK_CANDIDATES, end)) for start, end in zip(bounds[:-1], bounds[1:])
            for i in range(start, end, CHUNK_CANDIDATES)]


def _default_threads() -> int:
    return max(1, min(MAX_THREADS, os.cpu_count() or 1))


def search(scenario: Scenario, objective: str = "step_time", collective_model: CollectiveModel | None = None,
           threads: int | None = None, progress=None) -> SearchResult:
    """Search every valid layout of `scenario`; rank those that fit by `objective`.

    Candidates are evaluated in a few vectorised batches (one per pipeline degree), on up to
    `threads` threads (numpy releases the GIL in its array loops; default: the cores, at most
    MAX_THREADS; sweep workers pass 1). `progress(fraction)`, when given, is called as batches finish.
    """
    if objective not in OBJECTIVES:
        raise SpecError(f"unknown objective '{objective}'", field="--objective", value=objective, allowed=OBJECTIVES)
    found = _enumeration(scenario)
    cands = found.candidates
    model = _MemoModel(collective_model) if collective_model else _default_memo(scenario)
    n = len(cands)
    # Each batch's figures kept for the rows it evaluated (fitting_only: those within the memory capacity), not
    # written into arrays over every candidate: a cold process touches fewer fresh pages (session 21).
    parts: dict[int, list] = {}
    chunks = _chunks(cands.pp)
    finished = [0]
    lock = threading.Lock()

    def run(index: slice, fitting_only: bool = True) -> None:
        ev = evaluate(scenario, cands.take(index), model, breakdown=False, fitting_only=fitting_only)
        at = np.arange(index.start, index.stop) if ev.rows is None else index.start + ev.rows
        with lock:
            parts[index.start] = [at, ev.step_time_s, ev.memory_total_bytes, ev.mfu, ev.tokens_per_s, ev.fits]
            if progress is not None and fitting_only:
                finished[0] += index.stop - index.start
                progress(finished[0] / max(1, n))

    def evaluated() -> list[np.ndarray]:
        """[row, step, memory, mfu, tokens, fits] of every evaluated row, rows ascending (batches in order); the
        batches' arrays are let go column by column as they are joined (at most one column held twice)."""
        got = [parts.pop(start) for start in sorted(parts)]
        columns = []
        for k, dtype in enumerate((np.int64, float, float, float, float, bool)):
            columns.append(np.concatenate([p[k] for p in got]).astype(dtype, copy=False) if got
                           else np.zeros(0, dtype=dtype))
            for p in got:
                p[k] = None
        return columns

    threads = _default_threads() if threads is None else threads
    if threads > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(min(threads, len(chunks))) as pool:
            list(pool.map(run, chunks))
    else:
        for index in chunks:
            run(index)
    at, step, memory, mfu, tokens, fits = evaluated()
    rejected = dict(found.rejected)
    rejected["out_of_memory"] = n - int(np.count_nonzero(fits))  # a row not evaluated does not fit
    keep = at[fits]  # ascending: np.flatnonzero of the fitting rows over every candidate
    if not fits.all():  # (where every evaluated row fits, no copy)
        step, memory, mfu, tokens = step[fits], memory[fits], mfu[fits], tokens[fits]
    value = objective_values(scenario, objective, step, mfu)  # element by element: the kept rows' figures
    primary = -value if objective == "mfu" else value
    ranked = _rank_order(primary, memory)  # stable: full ties keep the enumeration order
    order = keep[ranked]
    step, memory, mfu, tokens, value = step[ranked], memory[ranked], mfu[ranked], tokens[ranked], value[ranked]
    # Ranked by step time, rows of equal (step, memory) are neighbours.
    first, counts = _equivalent_orders(cands, order, step, memory, adjacent=objective == "step_time", ordered=True)
    equivalent = np.where(first, counts, 0)
    misses = miss_memory = miss_step = None
    if not len(order) and n:
        for index in chunks:  # nothing fits: the closest misses need every row's memory and step
            run(index, fitting_only=False)
        _, every_step, every_memory, _, _, every_fits = evaluated()  # every row, in order
        near = np.flatnonzero(~every_fits)
        near = near[np.lexsort((every_step[near], every_memory[near]))]
        near = near[_equivalent_orders(cands, near, np.zeros(len(near)), every_memory[near], ordered=True)[0]]
        near = near[:MISSES_KEPT]  # one order per layout
        misses, miss_memory, miss_step = cands.take(near), every_memory[near], every_step[near]
    # Ranked by step time the points are already sorted as the Pareto sweep needs them.
    pareto = np.flatnonzero(front_of_sorted(memory)) if objective == "step_time" else pareto_front(step, memory)
    return SearchResult(
        scenario=scenario, objective=objective, objective_unit=objective_unit(scenario, objective),
        considered=found.considered, rejected=rejected, candidates=cands.take(order), step_time_s=step,
        memory_bytes_per_device=memory, mfu=mfu, tokens_per_s=tokens, objective_value=value,
        pareto=pareto,
        memory_capacity_bytes=scenario.training.usable_memory_bytes(scenario.hardware.chip.hbm_bytes),
        collective_model=collective_model, equivalent_orders=equivalent, misses=misses,
        miss_memory_bytes=miss_memory, miss_step_time_s=miss_step,
    )


def _rank_order(primary: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """np.lexsort((memory, primary)), faster: one stable sort by primary; only the runs of equal primary
    values whose memory is not ascending already (rare: equal figures mostly mean equal memory) are
    sorted again by memory, positions ascending within a run as the stable sort left them."""
    if np.isnan(primary).any() or np.isnan(memory).any():
        return np.lexsort((memory, primary))
    order = np.argsort(primary, kind="stable")
    ranked = primary[order]
    tie = ranked[1:] == ranked[:-1]
    at = memory[order]
    unsorted = tie & (at[1:] < at[:-1])
    if unsorted.any():
        run = np.concatenate([[0], np.cumsum(~tie)])  # run of equal primary values, per sorted position
        redo = np.flatnonzero(np.isin(run, run[1:][unsorted]))
        order[redo] = order[redo][np.lexsort((at[redo], run[redo]))]
    return order


def _equivalent_orders(cands: Candidates, order: np.ndarray, step: np.ndarray, memory: np.ndarray,
                       adjacent: bool = False, ordered: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Over the ranked candidate indices `order`: whether each is the first (best-ranked) of the layouts
    that differ only in the mesh order and have the same step time and memory (e.g. tp = 1 anywhere in
    the order), and how many such layouts its class holds. `adjacent`: rows of equal (step, memory) are
    neighbours in `order` (ranked by step time), so runs find them. `ordered`: `step` and `memory` are given
    along `order` (step[order], memory[order]) rather than over every candidate."""
    if not len(order):
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    if not ordered:
        step, memory = step[order], memory[order]
    # Grouped as estimate.pricing.distinct_rows groups (runs of equal neighbours first, then a 64-bit hash,
    # exact on a collision); each group's smallest index is its best-ranked row (np.unique's return_index).
    # Rows equal in every column share their (step, memory) first: group by those two, then compare the
    # other columns only on the rows whose pair another row shares (the same groups, fewer rows to hash).
    if adjacent:  # compared as bits, as distinct_rows does
        bits = [np.ascontiguousarray(a).view(np.uint64) for a in (step, memory)]
        pair = np.concatenate([[0], np.cumsum((bits[0][1:] != bits[0][:-1]) | (bits[1][1:] != bits[1][:-1]))])
    else:
        _, pair = distinct_rows([step, memory])
    shared = np.flatnonzero(np.bincount(pair)[pair] > 1)
    inverse = pair
    if len(shared):
        at = order[shared]
        # (a one-valued column, equal on every row, groups nothing: left out, searchspeed24; the groups are the same)
        columns = [np.asarray(getattr(cands, name)[at], dtype=float) for name in
                   ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute", "first_stage_layers",
                    "last_stage_layers") if not one_valued(getattr(cands, name))]
        columns += [np.nan_to_num(np.asarray(cands.capacity_factor[at], dtype=float), nan=-1.0)
                    for _ in range(not one_valued(cands.capacity_factor))] + [pair[shared].astype(float)]
        inverse = pair.copy()
        inverse[shared] = pair.max() + 1 + distinct_rows(columns)[1]
    first = np.full(inverse.max() + 1, len(order))
    np.minimum.at(first, inverse, np.arange(len(order)))
    counts = np.bincount(inverse)
    is_first = np.zeros(len(order), dtype=bool)
    is_first[first[counts > 0]] = True  # the group numbers of shared pairs are not all used
    return is_first, counts[inverse.reshape(-1)]
