"""Which layouts a report compares: the scenario's own, then `moesim.search`'s or a built-in handful.

The alternatives are `moesim.search`'s fastest layouts and its Pareto front (step time against
memory per device); when no layout fits, a small built-in set of neighbours of the scenario's
layout is estimated instead and the report says why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import gcd

from moesim.estimate import StepEstimate, estimate
from moesim.megatron_rules import sequence_parallel_note
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario

MAX_ALTERNATIVES = 7  # besides the scenario's own layout
MAX_PARETO = 40  # Pareto-front layouts drawn from the search


@dataclass(frozen=True)
class LayoutSet:
    """Estimates to compare (the scenario's first), where the alternatives came from, and why."""

    estimates: tuple[StepEstimate, ...]
    origin: str  # "moesim.search" or "built-in alternatives"
    note: str
    search_front: tuple[StepEstimate, ...] = ()  # the search's Pareto front (empty without it)
    ranks: tuple[int | None, ...] = ()  # per estimate, its rank in the search (None: the scenario's own, a built-in)
    best: StepEstimate | None = None  # the search's rank 1 (None when the search ranked nothing or is missing)


def _neighbours(base: Layout, num_experts: int) -> list[Layout]:
    """Layouts one step from `base`: expert degree x/÷2, tp or pp traded against dp, pure expert+data."""
    out = []

    def add(**changes) -> None:
        values = dataclasses.asdict(base) | changes
        if values["pp"] != base.pp:  # fixed end-stage layer counts belong to the base's pipeline
            values |= {"first_stage_layers": None, "last_stage_layers": None}
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


def _from_search(scenario: Scenario) -> tuple[list[StepEstimate] | None, list[StepEstimate], str, list[int]]:
    """(the search's fastest layouts, its Pareto front, a note, the fastest's ranks), or (None, [], why not, [])."""
    try:
        from moesim.search import search
    except ImportError as err:
        return None, [], f"moesim.search is not available ({err}); built-in alternatives shown", []
    result = search(scenario)
    if result.ranked == 0:
        return None, [], "moesim.search found no layout that fits; built-in alternatives shown", []
    # mesh-order twins (another order, the same figures) folded into the better-ranked row, as the search's table
    top = [int(i) for i in result.distinct(MAX_ALTERNATIVES)]
    folded = top[-1] + 1 - len(top)
    front = [int(i) for i in result.pareto[:MAX_PARETO]]
    estimates = result.estimates(sorted(set(top) | set(front)))
    by_rank = dict(zip(sorted(set(top) | set(front)), estimates))
    note = (f"layouts from moesim.search: the {len(top)} fastest of {result.ranked:,} that fit "
            f"({result.considered:,} considered)"
            + (f", {folded} that repeat one of them in another mesh order with the same figures left out"
               if folded else "") + f", and {len(front)} of its Pareto front")
    sp_note = sequence_parallel_note(scenario.name, result.rejected)
    note += f"; {sp_note}" if sp_note else ""
    return [by_rank[i] for i in top], [by_rank[i] for i in front], note, [i + 1 for i in top]


def layouts_to_compare(scenario: Scenario, base: Layout) -> LayoutSet:
    """The scenario's layout first, then up to MAX_ALTERNATIVES others (see module docstring)."""
    own = estimate(scenario, base)
    found, front, note, ranks = _from_search(scenario)
    origin = "moesim.search" if found else "built-in alternatives"
    others = found if found else builtin_alternatives(scenario, base)
    ranked = list(zip(others, ranks if found else [None] * len(others)))
    # the scenario's own only where degrees and training options both match (a search row on the scenario's
    # degrees with another ZeRO stage, recomputation or micro-batch count is another candidate)
    mine = [(e.layout.describe(), e.training) == (base.describe(), own.training) for e, _ in ranked]
    own_rank = next((r for (_, r), m in zip(ranked, mine) if m), None)  # the search ranked the scenario's own
    ranked = [row for row, m in zip(ranked, mine) if not m]
    return LayoutSet(estimates=(own, *(e for e, _ in ranked)), origin=origin, note=note, search_front=tuple(front),
                     ranks=(own_rank, *(r for _, r in ranked)), best=found[0] if found else None)
