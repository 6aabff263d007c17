"""`moesim report`: one self-contained HTML page of figures for a scenario (the only plotly user).

Figures: step-time breakdown per layout, memory per device against HBM, the Pareto front of the
compared layouts, communication per mesh axis, sensitivity to capacity factor and expert count,
and - when asked and available - the simulated timeline (`moesim.des`) and measured-vs-predicted
Switch-layer phases from validate/ results (JSONL). Data gathering lives in `layouts`, `analysis`,
`calibration` and `simulation` (no plotly); `figures` and `page` draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from moesim.errors import SpecError
from moesim.paths import write_text_file
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware
from moesim.specs.scenario import Scenario
from moesim.units import format_bytes, format_seconds

REPORT_SHARE = 0.3  # of the progress bar for the figures when the timeline is also simulated


@dataclass(frozen=True)
class Report:
    """The page and what went into it (figure keys in page order, notes)."""

    html: str
    figures: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())


def report_figures(scenario: Scenario, layout: Layout | None = None, *, results: str | Path | None = None,
                   results_hardware: str | None = None, simulate: bool = False, progress=None):
    """([(key, plotly figure)], notes, the scenario layout's StepEstimate): the page's content.
    `progress(fraction)`: called as the figures are computed (and the timeline simulated)."""
    from moesim.report import figures as F
    from moesim.report.analysis import capacity_factor_sweep, expert_count_sweep, pareto_front
    from moesim.report.calibration import phase_points, read_switch_records
    from moesim.report.layouts import layouts_to_compare
    from moesim.report.simulation import simulate_timeline

    layout = layout if layout is not None else scenario.resolve()
    tell = progress if progress is not None else (lambda fraction: None)
    done = REPORT_SHARE if simulate else 1.0  # of the progress bar for the figures (the simulation gets the rest)
    compared = layouts_to_compare(scenario, layout)
    tell(0.6 * done)
    ests = list(compared.estimates)
    own = ests[0]
    notes = [compared.note]
    key = lambda e: (e.layout.describe(), e.training.micro_batches, e.training.zero_stage,  # noqa: E731
                     e.training.recompute)
    pareto_ests = ests + [e for e in compared.search_front if key(e) not in {key(x) for x in ests}]
    figs = [("step-breakdown", F.step_breakdown(ests, compared.origin)),
            ("memory", F.memory_per_device(ests, scenario.hardware.chip.hbm_bytes)),
            ("pareto", F.pareto(pareto_ests, pareto_front(pareto_ests), compared.origin)),
            ("communication", F.communication_per_axis(ests))]
    sweeps = [capacity_factor_sweep(scenario, own.layout, own.training),
              expert_count_sweep(scenario, own.layout, own.training)]
    panels = F.sensitivity(sweeps)
    if panels is not None:
        figs.append(("sensitivity", panels))
    tell(done)
    notes += [f"sensitivity, {s.name}: {s.note}" + ("" if s.values else " (panel left out)")
              for s in sweeps if s.note]
    if simulate:
        events, note = simulate_timeline(scenario, own.layout, progress=None if progress is None else
                                         (lambda f: progress(done + (1 - done) * f)))
        notes.append(note)
        if events:
            figs.append(("timeline", F.timeline(events)))
    if results is not None:
        hardware = (load_hardware(results_hardware, field="--results-hardware") if results_hardware
                    else scenario.hardware)
        records, skipped = read_switch_records(results)
        if not records:
            raise SpecError(f"holds no usable \"switch_layer\" record ({skipped} lines skipped)", file=str(results),
                            field="--results")
        points = phase_points(records, hardware)
        notes.append(f"calibration: {len(records)} switch_layer records from {results} ({skipped} other lines "
                     f"skipped), predicted on the {hardware.name} profile")
        if points:
            figs.append(("calibration", F.calibration(points, hardware.name)))
        else:
            notes.append("calibration: no switch_layer phase timings to plot")
    if not own.fits_in_memory:
        notes.append(f"the scenario's layout needs {format_bytes(own.memory_bytes_per_device['total'])} per device, "
                     f"more than the {format_bytes(own.memory_capacity_bytes)} usable")
    return figs, notes, own


def build_report(scenario: Scenario, layout: Layout | None = None, **options) -> Report:
    """Estimate `scenario` on `layout` (default: its own) and alternatives, and draw the page.
    Options: results (JSONL path), results_hardware (profile name), simulate (bool), progress (callable)."""
    from moesim.report.page import render_page

    figs, notes, own = report_figures(scenario, layout, **options)
    lay = own.layout
    summary = [
        ("model", f"{scenario.model.name} ({scenario.model.architecture})"),
        ("hardware", f"{scenario.devices} x {scenario.hardware.name}"),
        ("layout", f"dp={lay.dp} tp={lay.tp} ep={lay.ep} pp={lay.pp} etp={lay.etp} (edp={lay.edp}), "
                   f"{own.training.micro_batches} micro-batches, ZeRO-{own.training.zero_stage}, "
                   f"recompute {own.training.recompute}"),
        ("step time", f"{format_seconds(own.step_time_s)} (bottleneck: {own.bottleneck})"),
        ("MFU / tokens per s", f"{own.mfu:.1%} / {own.tokens_per_s:,.0f}"),
        ("memory per device", f"{format_bytes(own.memory_bytes_per_device['total'])} of "
                              f"{format_bytes(own.memory_capacity_bytes)} usable"),
    ]
    if scenario.source:
        summary.append(("source", scenario.source))
    page = render_page(f"moesim report: {scenario.name}", scenario.description or scenario.name, summary, figs,
                       notes)
    return Report(html=page, figures=tuple(k for k, _ in figs), notes=tuple(notes))


def write_report(path: str | Path, scenario: Scenario, layout: Layout | None = None, **options) -> Report:
    """`build_report` and write the page to `path` (UTF-8)."""
    report = build_report(scenario, layout, **options)
    write_text_file(path, report.html, field="--output")
    return report


__all__ = ["Report", "build_report", "report_figures", "write_report"]
