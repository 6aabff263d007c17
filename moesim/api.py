"""The public Python API: what `import moesim` exposes (see README "API").

    import moesim
    scenario = moesim.load_scenario("switch-c-2048-tpu-v3")
    found = moesim.search(scenario)
    moesim.estimate(scenario, layout=found.best_layout_arg)

Every function takes a Scenario or a scenario name / path, and a layout as a Layout, as the text
`moesim search` prints (`layout_arg`), or None for the scenario's own. Results have a short
`repr`, an HTML table in notebooks (`_repr_html_`) and `to_dict()` (the CLI's `--json` form).
Bad input raises `moesim.SpecError` (a ValueError) naming file, field and allowed values.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario


def load_scenario(ref: str | Path, *, hardware: str | None = None, devices: int | None = None,
                  layout: str | None = None) -> Scenario:
    """A scenario by built-in name or file, with the CLI's --hardware / --devices / --layout overrides."""
    from moesim.specs.load import load_scenario as load

    return load(ref, hardware=hardware, devices=devices, layout=layout)


def _scenario(scenario: Scenario | str | Path) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def with_layout(scenario: Scenario | str | Path, layout: Layout | str | None = None) -> tuple[Scenario, Layout]:
    """(scenario, resolved layout): a layout line's execution options (mb, zero, recompute, cf) go to
    the scenario's training, as `--layout` does."""
    scenario = _scenario(scenario)
    if layout is None:
        return scenario, scenario.resolve()
    if isinstance(layout, Layout):
        scenario.check(layout)
        return scenario, layout
    from moesim.specs.layout import parse_layout_text, split_layout_options
    from moesim.specs.layout_options import apply_layout_options

    given, options = split_layout_options(parse_layout_text(layout, field="layout"))
    training = apply_layout_options(scenario.training, scenario.model, options, explicit={}, source="layout")
    scenario = dataclasses.replace(scenario, training=training, layout_given=given)
    return scenario, scenario.resolve(source="layout")


def estimate(scenario: Scenario | str | Path, layout: Layout | str | None = None):
    """The analytical estimate of one training step (a StepEstimate)."""
    from moesim.estimate import estimate as run

    scenario, resolved = with_layout(scenario, layout)
    return run(scenario, resolved)


def search(scenario: Scenario | str | Path, objective: str = "step_time"):
    """Every valid layout, ranked by `objective` (step_time, cost, mfu): a SearchResult."""
    from moesim.search.rank import search as run

    return run(_scenario(scenario), objective)


def simulate(scenario: Scenario | str | Path, layout: Layout | str | None = None, **options: Any):
    """Discrete-event simulation of `layout`; options as moesim.des.SimOptions (steps, seed, routing, ...)."""
    from moesim.des import SimOptions
    from moesim.des import simulate as run

    scenario, resolved = with_layout(scenario, layout)
    return run(scenario, resolved, SimOptions(**options))


class SweepResult(dict):
    """The sweep as `moesim sweep --json` gives it (a dict), with a readable repr and a notebook table."""

    def to_dict(self) -> dict:
        return dict(self)

    def __repr__(self) -> str:
        from moesim.api_repr import sweep_repr

        return sweep_repr(self)

    def _repr_html_(self) -> str:
        from moesim.api_repr import sweep_html

        return sweep_html(self)


def sweep(scenario: Scenario | str | Path, vary: Mapping[str, Sequence[Any]] | Sequence[str], *,
          objective: str = "step_time", workers: int | None = 1) -> SweepResult:
    """The best layout at every point of a grid: `vary` maps a key (as `--vary` names it) to its values,
    or lists `KEY=V1,V2` texts."""
    from moesim.search.sweep import parse_vary, run_sweep

    texts = list(vary) if not isinstance(vary, Mapping) else \
        [f"{k}={','.join(str(v) for v in values)}" for k, values in vary.items()]
    return SweepResult(run_sweep(_scenario(scenario), [parse_vary(t) for t in texts], objective=objective,
                                 workers=workers))


def report_figures(scenario: Scenario | str | Path, layout: Layout | str | None = None, **options: Any):
    """([(key, plotly figure)], notes, StepEstimate) of the report page (needs plotly); options as
    moesim.report.report_figures (results, results_hardware, simulate)."""
    from moesim.report import report_figures as figures

    scenario, resolved = with_layout(scenario, layout)
    return figures(scenario, resolved, **options)


__all__ = ["SweepResult", "estimate", "load_scenario", "report_figures", "search", "simulate", "sweep", "with_layout"]
