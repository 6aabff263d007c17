"""A batch of candidate executions (layout + execution options) as numpy arrays.

The analytical model evaluates all candidates at once; a single estimate is a batch of one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from moesim.memory import RECOMPUTE_CODES
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.specs.training import RECOMPUTE_MODES, TrainingSpec

RECOMPUTE_NAMES = {code: name for name, code in RECOMPUTE_CODES.items()}


@dataclass(frozen=True)
class Candidates:
    """Parallel degrees and execution options, one entry per candidate.

    `capacity_factor` is NaN for dropless routing; `order` indexes `orders`.
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

    def __len__(self) -> int:
        return len(self.dp)

    @property
    def edp(self) -> np.ndarray:
        return (self.tp * self.dp) // (self.etp * self.ep)

    @property
    def devices(self) -> np.ndarray:
        return self.tp * self.dp * self.pp

    def layout(self, i: int) -> Layout:
        return Layout(dp=int(self.dp[i]), tp=int(self.tp[i]), ep=int(self.ep[i]), pp=int(self.pp[i]),
                      etp=int(self.etp[i]), order=self.orders[int(self.order[i])])

    def training(self, i: int, base: TrainingSpec) -> TrainingSpec:
        cf = float(self.capacity_factor[i])
        return replace(base, micro_batches=int(self.micro_batches[i]), zero_stage=int(self.zero_stage[i]),
                       recompute=RECOMPUTE_NAMES[int(self.recompute[i])],
                       capacity_factor=None if np.isnan(cf) else cf)

    def take(self, index) -> "Candidates":
        """The candidates at `index` (an index array or boolean mask)."""
        fields = {name: getattr(self, name)[index] for name in
                  ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute",
                   "capacity_factor", "order")}
        return Candidates(orders=self.orders, **fields)


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
    )
