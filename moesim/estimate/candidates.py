"""A batch of candidate executions (layout + execution options) as numpy arrays.

The analytical model evaluates all candidates at once; a single estimate is a batch of one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from moesim.estimate.pricing import one_valued
from moesim.memory import RECOMPUTE_CODES
from moesim.specs.layout import CP_COMMS, STAGE_KEYS, Layout
from moesim.specs.param_overlap import row_overrides
from moesim.specs.scenario import Scenario
from moesim.specs.training import PIPELINE_SCHEDULES, RECOMPUTE_MODES, TrainingSpec

RECOMPUTE_NAMES = {code: name for name, code in RECOMPUTE_CODES.items()}
STAGE_FIELDS = STAGE_KEYS  # first_stage_layers, last_stage_layers: Candidates fields named as Layout's
# vp, cp, cp_comm (index into CP_COMMS), schedule (index into PIPELINE_SCHEDULES, -1: the training's own)
PIPELINE_FIELDS = ("vp", "cp", "cp_comm", "schedule")


@dataclass(frozen=True)
class Candidates:
    """Parallel degrees and execution options, one entry per candidate.

    `capacity_factor` is NaN for dropless routing; `order` indexes `orders`; `first_stage_layers` /
    `last_stage_layers` fix the end stages' layer counts (Layout's keys), 0 (or absent) for the automatic split.
    """

    dp: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    etp: np.ndarray
    micro_batches: np.ndarray
    zero_stage: np.ndarray
    recompute: np.ndarray
    capacity_factor: np.ndarray
    order: np.ndarray
    orders: tuple[tuple[str, ...], ...]
    first_stage_layers: np.ndarray | None = None
    last_stage_layers: np.ndarray | None = None
    vp: np.ndarray | None = None  # virtual stages per device, 1 when absent
    cp: np.ndarray | None = None  # context-parallel degree, 1 when absent
    cp_comm: np.ndarray | None = None  # index into CP_COMMS, 0 (p2p) when absent
    schedule: np.ndarray | None = None  # index into PIPELINE_SCHEDULES, -1 (the training's) when absent
    # Megatron pipeline layouts (specs.pipeline_layout), an object array of str or None per candidate; None when
    # absent (no candidate has one: the search never sets it). The end stages and vp above are read off it already.
    pipeline_layout: np.ndarray | None = None
    # Optional hint from the enumeration: candidates with equal keys differ at most in the mesh order
    # (evaluate checks it before relying on it; None: no hint).
    order_free_key: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name, fill in ((STAGE_FIELDS[0], 0), (STAGE_FIELDS[1], 0), ("vp", 1), ("cp", 1), ("cp_comm", 0),
                           ("schedule", -1)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.full(len(self.dp), fill, dtype=np.int64))

    def schedule_codes(self, base: TrainingSpec) -> np.ndarray:
        """Each candidate's pipeline schedule as an index into PIPELINE_SCHEDULES (-1 resolved to `base`'s)."""
        if one_valued(self.schedule):  # one schedule (the search's usual batch): one code, no pass over the rows
            return np.broadcast_to(self.schedule_codes_of(self.schedule[:1], base), self.schedule.shape)
        return self.schedule_codes_of(self.schedule, base)

    @staticmethod
    def schedule_codes_of(schedule: np.ndarray, base: TrainingSpec) -> np.ndarray:
        """schedule_codes of the codes `schedule`."""
        return np.where(schedule < 0, PIPELINE_SCHEDULES.index(base.pipeline_schedule), schedule)

    def schedule_names(self, base: TrainingSpec) -> np.ndarray:
        """Each candidate's pipeline schedule by name (-1 resolved to `base.pipeline_schedule`)."""
        names = np.array(PIPELINE_SCHEDULES + (base.pipeline_schedule,))
        return names[np.where(self.schedule < 0, len(PIPELINE_SCHEDULES), self.schedule)]

    def schedule_name(self, i: int, base: TrainingSpec) -> str:
        """schedule_names(base)[i] without naming every candidate's (a report asks for a few rows of ~10^5)."""
        code = int(self.schedule[i])
        return base.pipeline_schedule if code < 0 else PIPELINE_SCHEDULES[code]

    def __len__(self) -> int:
        return len(self.dp)

    @property
    def edp(self) -> np.ndarray:
        return (self.tp * self.cp * self.dp) // (self.etp * self.ep)

    @property
    def devices(self) -> np.ndarray:
        return self.tp * self.cp * self.dp * self.pp

    def layout(self, i: int) -> Layout:
        stages = {name: int(getattr(self, name)[i]) for name in STAGE_FIELDS if getattr(self, name)[i]}
        return Layout(dp=int(self.dp[i]), tp=int(self.tp[i]), ep=int(self.ep[i]), pp=int(self.pp[i]),
                      etp=int(self.etp[i]), order=self.orders[int(self.order[i])], **stages,
                      vp=int(self.vp[i]), cp=int(self.cp[i]), cp_comm=CP_COMMS[int(self.cp_comm[i])],
                      pipeline_layout=None if self.pipeline_layout is None else self.pipeline_layout[i])

    def training(self, i: int, base: TrainingSpec) -> TrainingSpec:
        cf, schedule, zero = float(self.capacity_factor[i]), self.schedule_name(i, base), int(self.zero_stage[i])
        return replace(base, micro_batches=int(self.micro_batches[i]), zero_stage=zero,
                       recompute=RECOMPUTE_NAMES[int(self.recompute[i])],
                       capacity_factor=None if np.isnan(cf) else cf, pipeline_schedule=schedule,
                       **row_overrides(base, schedule, zero))  # a key Megatron refuses on this row: off

    def take(self, index) -> "Candidates":
        """The candidates at `index` (an index array or boolean mask)."""
        n = None if not isinstance(index, np.ndarray) or index.ndim != 1 or index.dtype.kind not in "biu" \
            else int(np.count_nonzero(index)) if index.dtype == bool else len(index)
        # A one-valued column (a stride-0 view, the enumeration's: session 22) stays one: the same values, no copy.
        fields = {name: _take(getattr(self, name), index, n) for name in
                  ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute",
                   "capacity_factor", "order") + STAGE_FIELDS + PIPELINE_FIELDS}
        key = None if self.order_free_key is None else self.order_free_key[index]
        layouts = None if self.pipeline_layout is None else self.pipeline_layout[index]
        return Candidates(orders=self.orders, order_free_key=key, pipeline_layout=layouts, **fields)


def _take(column: np.ndarray, index: np.ndarray, n: int | None) -> np.ndarray:
    """column[index] (n rows; None: index not 1-D); a stride-0 view of one value stays a view of that value
    (session 24, searchspeed24)."""
    if n and one_valued(column):
        return np.broadcast_to(column[:1], (n,))
    return column[index]


def effective_capacity_factor(scenario: Scenario, training: TrainingSpec) -> float:
    """The training capacity factor in force: the training override, else the model's; NaN if dropless."""
    moe = scenario.model.moe
    if moe is None or moe.dropless:
        return float("nan")
    return training.capacity_factor if training.capacity_factor is not None else float(moe.capacity_factor_train)


def single(scenario: Scenario, layout: Layout, training: TrainingSpec | None = None) -> Candidates:
    """A batch of one: `layout` with the scenario's (or the given) training options."""
    training = training or scenario.training
    if training.recompute not in RECOMPUTE_MODES:
        raise ValueError(training.recompute)
    return Candidates(
        dp=np.array([layout.dp]), tp=np.array([layout.tp]), pp=np.array([layout.pp]), ep=np.array([layout.ep]),
        etp=np.array([layout.etp]), micro_batches=np.array([training.micro_batches]),
        zero_stage=np.array([training.zero_stage]), recompute=np.array([RECOMPUTE_CODES[training.recompute]]),
        capacity_factor=np.array([effective_capacity_factor(scenario, training)]), order=np.array([0]),
        orders=(layout.order,),
        first_stage_layers=np.array([layout.first_stage_layers or 0]),
        last_stage_layers=np.array([layout.last_stage_layers or 0]),
        vp=np.array([layout.vp]), cp=np.array([layout.cp]), cp_comm=np.array([CP_COMMS.index(layout.cp_comm)]),
        schedule=np.array([PIPELINE_SCHEDULES.index(training.pipeline_schedule)]),
        pipeline_layout=None if layout.pipeline_layout is None else np.array([layout.pipeline_layout], dtype=object),
    )
