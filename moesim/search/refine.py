"""Refining a search's best layouts with the discrete-event simulator (`moesim.des`).

The hook is any function `(scenario, layout, training) -> step time in seconds`
(`StepTimeFn`). By default it is `moesim.des.step_time` (the mean simulated step time); moesim.des
is imported only when a refinement is asked for, and when it is missing `des_step_time()` raises
a SpecError that says so. Tests and callers may pass their own function.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from moesim.errors import SpecError
from moesim.search.rank import SearchResult
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec

StepTimeFn = Callable[[Scenario, Layout, TrainingSpec], float]
DES_MODULE = "moesim.des"
DES_HOOK = "step_time"  # moesim.des.step_time(scenario, layout, training) -> seconds


def des_step_time() -> StepTimeFn:
    """The simulator's step-time function; a SpecError when moesim.des is missing."""
    try:
        module = importlib.import_module(DES_MODULE)
    except ModuleNotFoundError as err:
        if err.name != DES_MODULE:
            raise
        raise SpecError(f"--refine-des needs the discrete-event simulator, but {DES_MODULE} is not in this "
                        "installation; run the search without --refine-des", field="--refine-des") from None
    return getattr(module, DES_HOOK)


@dataclass(frozen=True)
class Refined:
    """One ranked layout with its analytical and simulated step times."""

    rank: int  # 0-based position in the analytical ranking
    analytical_step_time_s: float
    simulated_step_time_s: float
    same_as: int | None = None  # 0-based rank of the identical layout whose simulation this one shares

    @property
    def ratio(self) -> float:
        """Simulated over analytical step time."""
        return self.simulated_step_time_s / self.analytical_step_time_s

    def as_dict(self) -> dict:
        return {"rank": self.rank + 1, "analytical_step_time_s": self.analytical_step_time_s,
                "simulated_step_time_s": self.simulated_step_time_s, "simulated_over_analytical": self.ratio,
                "same_simulation_as_rank": None if self.same_as is None else self.same_as + 1}


def refine(result: SearchResult, k: int, step_time: StepTimeFn | None = None,
           progress: Callable[[float], None] | None = None) -> list[Refined]:
    """Simulate the top `k` rows the search shows (`result.distinct(k)`: a layout in another mesh order with
    the same analytical figures is folded into its better-ranked twin and not simulated, as the text and the
    `results` of `moesim search` fold it; the simulator reads the mesh order through the axis strides,
    moesim.topology.mapping.mesh_strides, so a twin's simulated time may differ), each distinct
    (layout, training) once; returned fastest simulated first (ties: analytical rank). `progress(fraction)`
    is called as simulations finish (and within each, when the hook is the simulator's own)."""
    if k < 0:
        raise SpecError("must be >= 0", field="--refine-des", value=k)
    default = step_time is None
    step_time = step_time or des_step_time()
    first: dict[str, int] = {}
    keys = []
    shown = [int(i) for i in result.distinct(k)]
    for i in shown:
        keys.append(repr((result.layout(i), result.training(i))))
        first.setdefault(keys[-1], i)
    simulated: dict[str, float] = {}
    for n, (key, i) in enumerate(first.items()):
        kwargs = {}
        if default and progress is not None:
            kwargs["progress"] = lambda f, n=n: progress((n + f) / len(first))
        simulated[key] = float(step_time(result.scenario, result.layout(i), result.training(i), **kwargs))
        if progress is not None:
            progress((n + 1) / len(first))
    refined = [Refined(rank=i, analytical_step_time_s=float(result.step_time_s[i]),
                       simulated_step_time_s=simulated[key], same_as=None if first[key] == i else first[key])
               for i, key in zip(shown, keys)]
    return sorted(refined, key=lambda r: (r.simulated_step_time_s, r.rank))
