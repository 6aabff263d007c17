"""Plotly figures of the report: every one has a title, axis titles with units and hover text.

Inputs are the plain numbers of `moesim.report.analysis`, `.calibration` and `.simulation`.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from moesim.estimate import StepEstimate
from moesim.report.analysis import (
    AXES, BREAKDOWN_PARTS, MEMORY_KINDS, Sweep, breakdown_s, comm_per_axis, memory_bytes,
)
from moesim.report.calibration import PHASES, PhasePoint
from moesim.report.simulation import TimelineEvent

GIB = 2**30
COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")
# The legend sits right of the plot, top-aligned with it: clear of the title above (a legend above the
# plot wraps into it once it has more than one row) and of the axis titles and tick labels below.
LEGEND = dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top")
LAYOUT_DEFAULTS = dict(template="plotly_white", height=500, margin=dict(l=70, r=30, t=80, b=150), legend=LEGEND)


def layout_label(est: StepEstimate, own: bool = False) -> str:
    lay = est.layout
    text = f"dp{lay.dp} tp{lay.tp} ep{lay.ep} pp{lay.pp}" + (f" etp{lay.etp}" if lay.etp != 1 else "")
    return text + (" (scenario)" if own else "")


def _labels(estimates: list[StepEstimate]) -> list[str]:
    """Bar labels; layouts that differ only in mesh order or execution options get those added, so no
    two bars share a category (plotly would stack them)."""
    short = [layout_label(e, i == 0) for i, e in enumerate(estimates)]
    labels = list(short)
    for i, e in enumerate(estimates):
        if short.count(short[i]) > 1:
            tr = e.training
            labels[i] += (f" {'-'.join(e.layout.order)} mb{tr.micro_batches} z{tr.zero_stage} {tr.recompute}")
    for i in range(len(labels)):  # still equal: number them
        if labels.count(labels[i]) > 1:
            labels[i] += f" #{i}"
    return labels


def step_breakdown(estimates: list[StepEstimate], origin: str) -> go.Figure:
    labels = _labels(estimates)
    parts = [breakdown_s(e) for e in estimates]
    fig = go.Figure()
    for color, part in zip(COLORS, BREAKDOWN_PARTS):
        values = [p[part] for p in parts]
        share = [v / e.step_time_s if e.step_time_s else 0 for v, e in zip(values, estimates)]
        fig.add_bar(name=part, x=labels, y=values, marker_color=color, customdata=share,
                    hovertemplate=f"{part}<br>%{{x}}<br>%{{y:.4g}} s (%{{customdata:.1%}} of the step)<extra></extra>")
    fig.update_layout(barmode="stack", title=f"Step time breakdown per layout ({origin})",
                      xaxis_title="layout (parallel degrees)", yaxis_title="time per training step (s)",
                      **LAYOUT_DEFAULTS)
    return fig


def memory_per_device(estimates: list[StepEstimate], hbm_bytes: float) -> go.Figure:
    labels = _labels(estimates)
    fig = go.Figure()
    for color, kind in zip(COLORS, MEMORY_KINDS):
        values = [memory_bytes(e)[kind] / GIB for e in estimates]
        fig.add_bar(name=kind.replace("_", " "), x=labels, y=values, marker_color=color,
                    hovertemplate=f"{kind.replace('_', ' ')}<br>%{{x}}<br>%{{y:.3g}} GiB<extra></extra>")
    usable = estimates[0].memory_capacity_bytes / GIB
    fig.add_scatter(name=f"usable memory ({usable:.1f} GiB)", x=labels, y=[usable] * len(labels), mode="lines",
                    line=dict(color="black", dash="dash"), hovertemplate="usable memory: %{y:.1f} GiB<extra></extra>")
    fig.add_scatter(name=f"HBM ({hbm_bytes / GIB:.1f} GiB)", x=labels, y=[hbm_bytes / GIB] * len(labels),
                    mode="lines", line=dict(color="gray"), hovertemplate="HBM: %{y:.1f} GiB<extra></extra>")
    fig.update_layout(barmode="stack", title="Memory per device (worst pipeline stage) against HBM",
                      xaxis_title="layout (parallel degrees)", yaxis_title="memory per device (GiB)",
                      **LAYOUT_DEFAULTS)
    return fig


def pareto(estimates: list[StepEstimate], front: list[int], origin: str) -> go.Figure:
    labels = _labels(estimates)
    mem = [e.memory_bytes_per_device["total"] / GIB for e in estimates]
    step = [e.step_time_s for e in estimates]
    fig = go.Figure()
    for fits, name, symbol in ((True, "fits in memory", "circle"), (False, "does not fit", "x")):
        idx = [i for i, e in enumerate(estimates) if e.fits_in_memory == fits]
        fig.add_scatter(name=name, x=[mem[i] for i in idx], y=[step[i] for i in idx], mode="markers",
                        marker=dict(symbol=symbol, size=11), text=[labels[i] for i in idx],
                        hovertemplate="%{text}<br>memory %{x:.3g} GiB<br>step %{y:.4g} s<extra></extra>")
    fig.add_scatter(name="Pareto front", x=[mem[i] for i in front], y=[step[i] for i in front],
                    mode="lines+markers", line=dict(color="black"), text=[labels[i] for i in front],
                    hovertemplate="Pareto: %{text}<br>memory %{x:.3g} GiB<br>step %{y:.4g} s<extra></extra>")
    usable = estimates[0].memory_capacity_bytes / GIB
    fig.add_scatter(name=f"usable memory ({usable:.1f} GiB)", x=[usable, usable], y=[min(step), max(step)],
                    mode="lines", line=dict(color="gray", dash="dash"),
                    hovertemplate="usable memory: %{x:.1f} GiB<extra></extra>")
    if not front:
        fig.add_annotation(text="no compared layout fits in memory: no Pareto front", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=1.02, yanchor="bottom")
    fig.update_layout(title=f"Pareto front: step time against memory per device ({origin})",
                      xaxis_title="memory per device (GiB)", yaxis_title="time per training step (s)",
                      **LAYOUT_DEFAULTS)
    return fig


def communication_per_axis(estimates: list[StepEstimate]) -> go.Figure:
    labels = _labels(estimates)
    per = [comm_per_axis(e) for e in estimates]
    used = [a for a in AXES if any(p[a]["time_s"] > 0 for p in per)] or list(AXES[:1])
    fig = go.Figure()
    for color, label, p in zip(COLORS, labels, per):
        fig.add_bar(name=label, x=used, y=[p[a]["time_s"] for a in used], marker_color=color,
                    customdata=[p[a]["bytes_per_device"] / GIB for a in used],
                    hovertemplate=f"{label}<br>axis %{{x}}<br>%{{y:.4g}} s per step<br>"
                                  "%{customdata:.3g} GiB sent per device<extra></extra>")
    fig.update_layout(barmode="group", title="Communication per mesh axis (all collectives of the axis, per step)",
                      xaxis_title="mesh axis", yaxis_title="communication time per step (s)", **LAYOUT_DEFAULTS)
    return fig


def sensitivity(sweeps: list[Sweep]) -> go.Figure | None:
    """One panel per sweep that has values; None when no sweep applies (a dense model)."""
    sweeps = [s for s in sweeps if s.values]
    if not sweeps:
        return None
    titles = [f"{s.name} ({s.note})" if s.note else s.name for s in sweeps]
    fig = make_subplots(rows=1, cols=len(sweeps), subplot_titles=titles)
    for col, s in enumerate(sweeps, start=1):
        fig.add_scatter(row=1, col=col, x=list(s.values), y=list(s.step_time_s), mode="lines+markers",
                        name=f"step time vs {s.name}", customdata=[m / GIB for m in s.memory_bytes],
                        hovertemplate=f"{s.name} %{{x:g}}<br>step %{{y:.4g}} s<br>"
                                      "memory %{customdata:.3g} GiB per device<extra></extra>")
        fig.add_scatter(row=1, col=col, x=[s.baseline], mode="markers", name=f"the scenario's {s.name}",
                        y=[s.step_time_s[s.values.index(s.baseline)]] if s.baseline in s.values else [None],
                        marker=dict(symbol="star", size=14, color="black"),
                        hovertemplate=f"scenario: {s.name} %{{x:g}}<br>step %{{y:.4g}} s<extra></extra>")
        fig.update_xaxes(tickvals=list(s.values), row=1, col=col,
                         type="log" if s.name.startswith("routed") else "linear")
        fig.update_xaxes(title_text=s.name + " (star: the scenario's)", row=1, col=col)
        fig.update_yaxes(title_text="time per training step (s)", row=1, col=col)
    varied = " and ".join(s.name for s in sweeps)
    fig.update_layout(title=f"Sensitivity of step time to {varied} (same layout)", **LAYOUT_DEFAULTS)
    return fig


def calibration(points: list[PhasePoint], hardware: str) -> go.Figure:
    fig = go.Figure()
    for color, phase in zip(COLORS, PHASES):
        pts = [p for p in points if p.phase == phase]
        if pts:
            fig.add_scatter(name=phase, x=[p.predicted_s for p in pts], y=[p.measured_s for p in pts],
                            mode="markers", marker=dict(color=color, size=9), text=[p.config for p in pts],
                            customdata=[p.measured_s / p.predicted_s for p in pts],
                            hovertemplate=f"{phase}<br>%{{text}}<br>predicted %{{x:.3g}} s<br>measured %{{y:.3g}} s"
                                          "<br>measured/predicted %{customdata:.2f}<extra></extra>")
    lo = min([min(p.predicted_s, p.measured_s) for p in points], default=1e-6)
    hi = max([max(p.predicted_s, p.measured_s) for p in points], default=1.0)
    fig.add_scatter(name="measured = predicted", x=[lo, hi], y=[lo, hi], mode="lines",
                    line=dict(color="black", dash="dash"), hoverinfo="skip")
    fig.update_layout(title=f"Calibration: measured Switch-layer phases against prediction ({hardware})",
                      xaxis_title="predicted time (s, log)", yaxis_title="measured median time (s, log)",
                      xaxis_type="log", yaxis_type="log", **LAYOUT_DEFAULTS)
    return fig


def timeline(events: list[TimelineEvent]) -> go.Figure:
    """One row per pipeline stage and stream over the whole step (`moesim.report.simulation`)."""
    fig = go.Figure()
    names = sorted({e.name for e in events})
    lanes = list(dict.fromkeys(e.lane for e in events))
    for i, name in enumerate(names):
        evs = [e for e in events if e.name == name]
        fig.add_bar(name=name, orientation="h", y=[e.lane for e in evs], x=[e.duration_s for e in evs],
                    base=[e.start_s for e in evs], marker_color=COLORS[i % len(COLORS)],
                    customdata=[(e.start_s, e.busy_fraction) for e in evs],
                    hovertemplate=f"{name}<br>%{{y}}<br>from %{{customdata[0]:.4g}} s for %{{x:.4g}} s<br>"
                                  "%{customdata[1]:.0%} of the row's device time<extra></extra>")
    step_s = max((e.start_s + e.duration_s for e in events), default=0.0)
    fig.update_layout(barmode="overlay", bargap=0.15,
                      title=f"Simulated timeline of one whole step ({step_s:.4g} s, moesim.des)",
                      xaxis_title="time since step start (s)", yaxis_title="pipeline stage / stream",
                      xaxis_range=[0, step_s], yaxis=dict(categoryorder="array", categoryarray=lanes[::-1]),
                      **LAYOUT_DEFAULTS)
    return fig
