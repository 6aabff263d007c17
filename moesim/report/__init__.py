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
    summary: tuple[tuple[str, str], ...] = field(default=())  # the header table's (label, text) rows
    ranked: tuple[tuple[str, ...], ...] = field(default=())  # the layouts-compared table's rows (why each ranks there)


def report_figures(scenario: Scenario, layout: Layout | None = None, **options):
    """([(key, plotly figure)], notes, the scenario layout's StepEstimate): the page's content.
    Options: results, results_hardware, simulate, progress (build_report)."""
    return _content(scenario, layout, **options)[:3]


def _content(scenario: Scenario, layout: Layout | None = None, *, results: str | Path | None = None,
             results_hardware: str | None = None, simulate: bool = False, progress=None):
    """report_figures' three, and the layouts compared (layouts.LayoutSet).
    `progress(fraction)`: called as the figures are computed (and the timeline simulated)."""
    from moesim.calibrate.records import device_mismatch_note
    from moesim.report import figures as F
    from moesim.report.analysis import capacity_factor_sweep, expert_count_sweep, pareto_front
    from moesim.report.calibration import phase_points, read_switch_records
    from moesim.report.layouts import layouts_to_compare
    from moesim.report.simulation import simulate_timeline
    from moesim.search.report import unsearched_layout_notes

    layout = layout if layout is not None else scenario.resolve()
    tell = progress if progress is not None else (lambda fraction: None)
    done = REPORT_SHARE if simulate else 1.0  # of the progress bar for the figures (the simulation gets the rest)
    compared = layouts_to_compare(scenario, layout)
    tell(0.6 * done)
    ests = list(compared.estimates)
    own = ests[0]
    notes = [compared.note]
    notes += [f"search: {n}" for n in unsearched_layout_notes(scenario)]  # cp = 2 not among the layouts it ranked
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
        ran = [(str(results), str((rec.get("env") or {}).get("device", ""))) for rec in records]
        if said := device_mismatch_note(ran, hardware):  # CPU records predicted on a GPU profile (newuser7)
            notes.append(f"calibration: {said}")
        if points:
            figs.append(("calibration", F.calibration(points, hardware.name)))
        else:
            notes.append("calibration: no switch_layer phase timings to plot")
    if not own.fits_in_memory:
        notes.append(f"the scenario's layout needs {format_bytes(own.memory_bytes_per_device['total'])} per device, "
                     f"more than the {format_bytes(own.memory_capacity_bytes)} usable")
    # the estimate's other warnings (a layout Megatron-LM refuses, a sequence past RoPE's, a key nothing reads, drops)
    notes += [f"the scenario's layout: warning: {w}" for w in own.warnings if not w.startswith("does not fit")]
    return figs, notes, own, compared


def _layout_words(est) -> str:
    lay, tr = est.layout, est.training
    return (f"dp={lay.dp} tp={lay.tp} ep={lay.ep} pp={lay.pp} etp={lay.etp} (edp={lay.edp}), "
            f"{tr.micro_batches} micro-batch{'' if tr.micro_batches == 1 else 'es'}, ZeRO-{tr.zero_stage}, "
            f"recompute {tr.recompute}")


def _fits_text(est) -> str:
    """Whether a layout fits, with its memory per device against the usable memory."""
    need, usable = est.memory_bytes_per_device["total"], est.memory_capacity_bytes
    if est.fits_in_memory:
        return f"fits: {format_bytes(need)} of {format_bytes(usable)} usable per device"
    return (f"does not fit: {format_bytes(need)} per device, {format_bytes(need - usable)} over the "
            f"{format_bytes(usable)} usable")


def _best_text(own, best, own_rank) -> str:
    """The search's rank 1: its layout, step time and memory, against the scenario's own layout."""
    if own_rank == 1:
        return f"the scenario's own layout (rank 1): {format_seconds(best.step_time_s)}"
    gain = own.step_time_s - best.step_time_s
    against = (f"{format_seconds(abs(gain))} ({abs(gain) / own.step_time_s:.1%}) "
               f"{'faster' if gain >= 0 else 'slower'} than the scenario's layout")
    return (f"#1 {_layout_words(best)}: {format_seconds(best.step_time_s)} (bottleneck: {best.bottleneck}), "
            f"{format_bytes(best.memory_bytes_per_device['total'])} per device; {against}; --layout "
            f"\"{best.layout_arg}\"")


def _ranked_rows(compared) -> list[tuple[str, ...]]:
    """One row per layout compared: label, search rank, step time, memory, bottleneck, and why (search.why) against
    the search's rank 1 (the scenario's own row too; built-in alternatives against the scenario's own), a layout that
    does not fit said so first."""
    from moesim.report.figures import _labels
    from moesim.search.why import largest_part_text, why_line

    best = compared.best.as_dict() if compared.best is not None else None
    rows = []
    ranks = compared.ranks or (None,) * len(compared.estimates)
    for i, (label, est, rank) in enumerate(zip(_labels(list(compared.estimates)), compared.estimates, ranks)):
        mine = est.as_dict()
        if best is None:  # built-in alternatives: each against the scenario's own
            why = why_line(mine, compared.estimates[0].as_dict(), "the scenario's layout") if i else \
                f"the scenario's layout: {largest_part_text(mine)}"
        else:
            why = why_line(mine, None if rank == 1 else best)
        if not est.fits_in_memory:  # its headroom says by how much
            why = f"does not fit; {why}"
        rows.append((label, "-" if rank is None else f"#{rank}", format_seconds(est.step_time_s),
                     format_bytes(est.memory_bytes_per_device["total"]), est.bottleneck, why))
    return rows


def build_report(scenario: Scenario, layout: Layout | None = None, **options) -> Report:
    """Estimate `scenario` on `layout` (default: its own) and alternatives, and draw the page.
    Options: results (JSONL path), results_hardware (profile name), simulate (bool), progress (callable)."""
    from moesim.report.page import render_page

    figs, notes, own, compared = _content(scenario, layout, **options)
    summary = [
        ("model", f"{scenario.model.name} ({scenario.model.architecture})"),
        ("hardware", f"{scenario.devices} x {scenario.hardware.name}"),
        ("layout", _layout_words(own)),
        ("step time", f"{format_seconds(own.step_time_s)} (bottleneck: {own.bottleneck})"),
        ("MFU / tokens per s", f"{own.mfu:.1%} / {own.tokens_per_s:,.0f}"),
        ("memory per device", f"{format_bytes(own.memory_bytes_per_device['total'])} of "
                              f"{format_bytes(own.memory_capacity_bytes)} usable"),
        # whyrank (session 20): whether the scenario's own layout fits, and the search's best
        ("the scenario's layout", _fits_text(own)),
        ("the search's best", _best_text(own, compared.best, (compared.ranks or (None,))[0])
         if compared.best is not None else f"none: {compared.note}"),
    ]
    if scenario.source:
        summary.append(("source", scenario.source))
    ranked = _ranked_rows(compared)
    tables = [("Layouts compared, and why each ranks where it does",
               ["layout", "search rank", "step time", "memory/device", "bottleneck", "why"], ranked)]
    page = render_page(f"moesim report: {scenario.name}", scenario.description or scenario.name, summary, figs,
                       notes, tables)
    return Report(html=page, figures=tuple(k for k, _ in figs), notes=tuple(notes),
                  summary=tuple(summary), ranked=tuple(ranked))


def write_report(path: str | Path, scenario: Scenario, layout: Layout | None = None, **options) -> Report:
    """`build_report` and write the page to `path` (UTF-8)."""
    report = build_report(scenario, layout, **options)
    write_text_file(path, report.html, field="--output")
    return report


__all__ = ["Report", "build_report", "report_figures", "write_report"]
