"""What-if sweeps: a layout search at every point of a grid of scenario changes.

`--vary KEY=V1,V2,...` per key (see `overrides` for the keys); the grid is the cartesian product
in the order given, the last key varying fastest. Every point is searched by one pure function
(`best_layout`), in this process, in worker processes or on a Dask cluster (`workers`), and
reports its best layout by the search objective and that layout's figures.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass

import numpy as np

from moesim.capacity import stack_floor_notes
from moesim.errors import SpecError
from moesim.search.enumerate import UNEVEN_CHUNKS, check_fixed_degrees
from moesim.search.overrides import apply_point, canonical_key, parse_value, value_text
from moesim.search.rank import OBJECTIVES, search
from moesim.search.workers import map_items
from moesim.specs.scenario import Scenario

LAYOUT_COLUMNS = ("dp", "tp", "ep", "pp", "etp", "edp", "order", "micro_batches", "zero_stage", "recompute",
                  "capacity_factor")
FIGURE_COLUMNS = ("objective_value", "step_time_s", "memory_bytes_per_device", "mfu", "tokens_per_s", "bottleneck")
COUNT_COLUMNS = ("considered", "ranked")
ESTIMATE = "_estimate"  # a ranked point's best estimate (its JSON form), read by _say_why and not returned


@dataclass(frozen=True)
class Axis:
    """One varied key and its values (parsed to the field's type)."""

    key: str
    values: tuple


def parse_vary(text: str) -> Axis:
    """`KEY=V1,V2,...` as an Axis; SpecError naming the key and the allowed keys."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"'{text}' is not KEY=V1,V2,...", field="--vary", value=text)
    canonical_key(key)
    raw = [v for v in (part.strip() for part in values.split(",")) if v]
    if not raw:
        raise SpecError(f"'{key}' needs at least one value", field="--vary", value=text)
    return Axis(key=key, values=tuple(parse_value(key, v) for v in raw))


def grid(axes: list[Axis]) -> list[dict[str, object]]:
    """The cartesian product of the axes as {key: value} points, the last axis varying fastest."""
    paths = [canonical_key(a.key) for a in axes]
    for path in set(paths):
        if paths.count(path) > 1:
            raise SpecError(f"'{path}' is varied twice", field="--vary", value=path)
    return [dict(zip((a.key for a in axes), values)) for values in itertools.product(*(a.values for a in axes))]


def best_layout(scenario: Scenario, objective: str) -> dict:
    """Search `scenario` (one thread: sweeps parallelise over points); the best layout's figures."""
    result = search(scenario, objective, threads=1)
    row = {"considered": result.considered, "ranked": result.ranked, "rejected": result.rejected,
           "objective_unit": result.objective_unit}
    if not result.ranked:  # out of memory, or every layout broke a rule before memory was priced
        return row | {"status": failed_status(result.rejected)}
    best = result.summary(0)
    est = result.estimates([0])[0]
    notes = overridden_notes(scenario, est)  # its all-to-all SMs line is also the estimate's warning: said once
    return row | best | {"status": "ok", "bottleneck": est.bottleneck, "hfu": est.hfu,
                         "warnings": [w for w in est.warnings if w not in notes], "notes": notes,
                         ESTIMATE: est.as_dict()}


def failed_status(rejected: dict[str, int]) -> str:
    """The status of a search that ranked nothing: out of memory, or the rule that rejected most layouts and the
    last rule in the search's order that rejected any: each layout is counted at the first rule it breaks
    (enumerate.REASONS' order) and every one breaks some rule, so every layout that passes the rules before that last
    one breaks it (where a sweep varies the schedule, the schedule's own rule). Either way the Megatron-LM refusals
    that took layouts out before pricing (enumerate.REASONS `megatron_*`)."""
    megatron = [f"{name} ({count:,})" for name, count in rejected.items() if name.startswith("megatron_") and count]
    refused = f"; Megatron-LM refuses {', '.join(megatron)} before pricing" if megatron else ""
    if rejected.get("out_of_memory"):
        return "no valid layout fits in memory" + refused
    rules = {name: count for name, count in rejected.items() if count}
    most = max(rules, key=rules.get) if rules else None
    last = list(rules)[-1] if rules else None
    said = (f"most often {most}, " if most else "") + \
        (f"the last in the search's order to reject any {last} ({rules[last]:,}), " if last != most else "")
    uneven = f" ({UNEVEN_CHUNKS})" if "interleaved_layers_not_divisible_by_pp_vp" in (most, last) else ""
    return f"no valid layout: every one breaks a rule ({said}counts in rejected), none was priced" + uneven + refused


def grouped_notes(sweep: dict, kinds: tuple[str, ...] = ("warning", "note")) -> list[str]:
    """The points' warnings and notes as lines, one per distinct text with every point that gives it ("at every
    point" where all do), in the order first given: a hardware sweep repeats one capacity warning at each point."""
    said: dict[tuple[str, str], list[str]] = {}
    for p in sweep["points"]:
        where = point_text(p["point"])
        for kind in kinds:
            for text in p.get(kind + "s", ()):
                said.setdefault((kind, text), []).append(where)
    every = len(sweep["points"]) > 1
    return [f"{kind} at {'every point' if every and len(at) == len(sweep['points']) else '; '.join(at)}: {text}"
            for (kind, text), at in said.items()]


def overridden_notes(scenario: Scenario, est) -> list[str]:
    """What a floor or clamp set in place of a varied value at the best layout (whyrank, session 20): the expert
    capacity floor (min_expert_capacity) raising what the capacity factor gives; and a set comm_sm_share /
    a2a_kernel_sms that moves nothing there (moesim.ops.sm_share.unmoved_setting_note; review22)."""
    from moesim.ops.sm_share import unmoved_setting_note

    moe, info = scenario.model.moe, est.moe
    if moe is None:
        return []
    sms = unmoved_setting_note(scenario.hardware, scenario.training, est.layout.ep, est.layout.etp)
    notes = [f"all-to-all SMs: {sms}"] if sms else []
    if not info:
        return notes
    # each stack's routing group (an encoder-decoder's decoder routes its own: moe.by_stack)
    return [f"expert capacity floor{f' ({stack})' if stack else ''}: {note}"
            for stack, note in stack_floor_notes(moe, info).items()] + notes


def run_sweep(scenario: Scenario, axes: list[Axis], *, objective: str = "step_time", workers: int | None = None,
              dask_address: str | None = None, progress: bool = False, connect_timeout_s: float = 10.0) -> dict:
    """Every grid point's best layout: {"scenario", "objective", "vary": {key: values}, "points": [row, ...]};
    points run in `workers` processes (1: in this process) or on the Dask scheduler at `dask_address`."""
    if objective not in OBJECTIVES:
        raise SpecError(f"unknown objective '{objective}'", field="--objective", value=objective, allowed=OBJECTIVES)
    if not axes:
        raise SpecError("give at least one --vary KEY=V1,V2,...", field="--vary")
    points = grid(axes)
    scenarios = _applied(scenario, points)  # bad values fail here, before any work
    rows = map_items(best_layout, [(s, objective) for s in scenarios], workers=workers, dask_address=dask_address,
                     progress=progress and len(points) > 1, connect_timeout_s=connect_timeout_s)
    out = [{"point": point} | row for point, row in zip(points, rows)]
    _say_why(out)
    return {"scenario": scenario.name, "objective": objective, "vary": {a.key: list(a.values) for a in axes},
            "points": out}


def point_text(point: dict[str, object]) -> str:
    """A point as the sweep's text names it: `key=value, key=value`."""
    return ", ".join(f"{k}={value_text(v)}" for k, v in point.items())


def _say_why(points: list[dict]) -> None:
    """Each ranked point's `why` (moesim.search.why, as the search's rows say it): the first ranked point, the base,
    its largest step part and memory headroom; every other its step against the base's, the parts that move most
    and its memory. The estimates it reads (ESTIMATE) are dropped from the rows."""
    from moesim.search.why import largest_part_text, why_line

    ranked = [p for p in points if ESTIMATE in p]
    base = ranked[0] if ranked else None
    for p in ranked:
        p["why"] = f"the base the others are set against: {largest_part_text(p[ESTIMATE])}" if p is base else \
            why_line(p[ESTIMATE], base[ESTIMATE], best_name=point_text(base["point"]))
    for p in ranked:
        del p[ESTIMATE]


def _applied(scenario: Scenario, points: list[dict[str, object]]) -> list[Scenario]:
    """`scenario` at every point; a SpecError naming every point that does not apply (a hardware sweep to profiles
    whose max_devices is under the scenario's devices names them all at once, not the first)."""
    out, errors, failed = [], {}, 0
    for point in points:
        try:
            applied = apply_point(scenario, point)
            check_fixed_degrees(applied)  # a fixed degree that tiles none of the point's layouts
            out.append(applied)
        except SpecError as err:
            errors.setdefault(str(err), err)  # a bad value fails every point it is in: said once
            failed += 1
    if len(errors) == 1:
        raise next(iter(errors.values()))
    if errors:
        raise SpecError(f"{failed} of the {len(points)} points do not apply: "
                        + " | ".join(err.message for err in errors.values()), field="--vary")
    return out


def flat_rows(sweep: dict) -> tuple[list[str], list[dict]]:
    """(columns, one flat dict per point): the varied keys, status, objective, figures, best layout, counts."""
    fixed = ["status", "objective", "objective_unit", *FIGURE_COLUMNS, *LAYOUT_COLUMNS, *COUNT_COLUMNS]
    # A varied key named like a result column (capacity_factor) takes its dotted path instead.
    names = {key: canonical_key(key) if key in fixed else key for key in sweep["vary"]}
    columns = list(names.values()) + fixed
    out = []
    for p in sweep["points"]:
        layout = p.get("layout") or {}
        row = {names[k]: value_text(v) if isinstance(v, tuple) else v for k, v in p["point"].items()}
        row |= {"status": p["status"], "objective": sweep["objective"], "objective_unit": p["objective_unit"]}
        row |= {c: p.get(c) for c in FIGURE_COLUMNS} | {c: layout.get(c) for c in LAYOUT_COLUMNS}
        row |= {c: p[c] for c in COUNT_COLUMNS}
        if isinstance(row["order"], (list, tuple)):
            row["order"] = "-".join(row["order"])
        out.append(row)
    return columns, out


def to_csv(sweep: dict) -> str:
    """The sweep as CSV text, one row per point (empty cells where no layout fits)."""
    columns, rows = flat_rows(sweep)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None or (isinstance(v, float) and np.isnan(v)) else v for k, v in row.items()})
    return buffer.getvalue()
