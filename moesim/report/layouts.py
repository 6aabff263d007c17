"""Which layouts a report compares: the scenario's own, then `moesim.search`'s or a built-in handful.

`moesim.search` is optional (imported lazily): when it offers `search(scenario)` returning step
estimates, its best layouts are used; otherwise (not installed, other interface, or an error) a
small built-in set of neighbours of the scenario's layout is estimated and the report says why.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from math import gcd

from moesim.estimate import StepEstimate, estimate
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario

MAX_ALTERNATIVES = 7  # besides the scenario's own layout


@dataclass(frozen=True)
class LayoutSet:
    """Estimates to compare (the scenario's first), where the alternatives came from, and why."""

    estimates: tuple[StepEstimate, ...]
    origin: str  # "moesim.search" or "built-in alternatives"
    note: str


def _neighbours(base: Layout, num_experts: int) -> list[Layout]:
    """Layouts one step from `base`: expert degree x/÷2, tp or pp traded against dp, pure expert+data."""
    out = []

    def add(**changes) -> None:
        values = dataclasses.asdict(base) | changes
        if all(isinstance(values[k], int) and values[k] >= 1 for k in ("dp", "tp", "ep", "pp", "etp")):
            out.append(Layout(**values))

    add(ep=base.ep * 2)
    if base.ep % 2 == 0:
        add(ep=base.ep // 2)
    if base.dp % 2 == 0:
        add(tp=base.tp * 2, dp=base.dp // 2, etp=base.etp * 2 if base.etp == base.tp else base.etp)
        add(pp=base.pp * 2, dp=base.dp // 2)
        if base.ep % 2 == 0:
            add(pp=base.pp * 2, dp=base.dp // 2, ep=base.ep // 2)
    if base.tp % 2 == 0:
        add(tp=base.tp // 2, dp=base.dp * 2, etp=base.etp // 2 if base.etp == base.tp else base.etp)
    if base.pp % 2 == 0:
        add(pp=base.pp // 2, dp=base.dp * 2)
    devices = base.tp * base.dp * base.pp
    add(dp=devices, tp=1, pp=1, etp=1, ep=gcd(num_experts, devices) if num_experts > 1 else 1)
    return out


def _training_for(scenario: Scenario, layout: Layout):
    """The scenario's training options, with a micro-batch count that suits `layout` (or None)."""
    tr = scenario.training
    options = [tr.micro_batches, layout.pp, 2 * layout.pp, 4 * layout.pp, 1,
               tr.global_batch_sequences // layout.dp]
    for m in options:
        if m >= 1 and not scenario.problems(layout, micro_batches=m):
            return dataclasses.replace(tr, micro_batches=m)
    return None


def builtin_alternatives(scenario: Scenario, base: Layout) -> list[StepEstimate]:
    num_experts = scenario.model.moe.num_experts if scenario.model.moe else 1
    seen, out = {base.describe()}, []
    for layout in _neighbours(base, num_experts):
        if layout.describe() in seen:
            continue
        seen.add(layout.describe())
        training = _training_for(scenario, layout)
        if training is not None:  # the scenario checks layouts against its own training options
            out.append(estimate(dataclasses.replace(scenario, training=training), layout))
        if len(out) >= MAX_ALTERNATIVES:
            break
    return out


def _from_search(scenario: Scenario) -> tuple[list[StepEstimate] | None, str]:
    try:
        search_module = importlib.import_module("moesim.search")
    except ImportError as err:
        return None, f"moesim.search is not available ({err}); built-in alternatives shown"
    search = getattr(search_module, "search", None)
    if search is None:
        return None, "moesim.search has no search(scenario) yet; built-in alternatives shown"
    try:
        found = [e for e in search(scenario) if isinstance(e, StepEstimate)]
    except Exception as err:  # an optional collaborator: any failure falls back, and says so
        return None, f"moesim.search failed ({type(err).__name__}: {err}); built-in alternatives shown"
    if not found:
        return None, "moesim.search returned no step estimates; built-in alternatives shown"
    found.sort(key=lambda e: e.step_time_s)
    return found[:MAX_ALTERNATIVES], "layouts from moesim.search (fastest first)"


def layouts_to_compare(scenario: Scenario, base: Layout) -> LayoutSet:
    """The scenario's layout first, then up to MAX_ALTERNATIVES others (see module docstring)."""
    own = estimate(scenario, base)
    found, note = _from_search(scenario)
    origin = "moesim.search" if found else "built-in alternatives"
    others = found if found else builtin_alternatives(scenario, base)
    others = [e for e in others if e.layout.describe() != base.describe()]
    return LayoutSet(estimates=(own, *others), origin=origin, note=note)
