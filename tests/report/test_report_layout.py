"""Issue #14 item 9: legends clear of titles, panels that do not apply left out, a timeline of the
whole step (rows per stage and stream, sampled per pixel, nothing cut), `report --json`."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from moesim.cli import main
from moesim.report import build_report, report_figures
from moesim.report.simulation import PIXELS, aggregate_timeline


def _legend_clear_of_title(fig) -> bool:
    """The legend is outside the plot on the right, top-aligned with it: it cannot reach the title
    (above the plot) or the axis titles (below it)."""
    legend = fig.layout.legend
    return legend.x >= 1.0 and legend.xanchor == "left" and legend.y <= 1.0 and legend.yanchor == "top"


def test_every_legend_is_clear_of_the_title(st_moe, results_file):
    figs, _, _ = report_figures(st_moe, results=results_file, results_hardware="cpu-localhost")
    assert {"communication", "sensitivity", "calibration"} <= {k for k, _ in figs}
    for key, fig in figs:
        assert _legend_clear_of_title(fig), key


def test_dropless_model_has_no_capacity_factor_panel(mixtral):
    figs, notes, _ = report_figures(mixtral)
    (panels,) = [f for k, f in figs if k == "sensitivity"]
    titles = [a.text for a in panels.layout.annotations]
    assert len(titles) == 1 and titles[0].startswith("routed experts per MoE layer")
    assert "capacity factor" not in panels.layout.title.text
    assert "sensitivity, capacity factor: dropless model: no capacity factor to vary (panel left out)" in notes


def test_dense_model_has_no_sensitivity_figure(mixtral):
    dense = dataclasses.replace(mixtral, model=dataclasses.replace(mixtral.model, moe=None))
    figs, notes, _ = report_figures(dense, dense.resolve({"dp": 16, "tp": 1, "ep": 1, "pp": 4}))
    assert "sensitivity" not in [k for k, _ in figs]
    assert any("dense model" in n and "panel left out" in n for n in notes)


def test_timeline_aggregation_keeps_every_event_and_the_whole_step():
    rng = np.random.default_rng(0)
    events = []
    for device in range(64):  # 64 devices on 2 stages, 100k events: one name per stream
        t = 0.0
        for _ in range(800):
            dur = float(rng.uniform(1e-4, 3e-3))
            events.append((f"stage {device % 2} / compute", device, "expert FFN", t, dur))
            events.append((f"stage {device % 2} / comm", device, "dispatch all-to-all", t + dur, dur / 2))
            t += 1.6 * dur
    segments, step_s, rows = aggregate_timeline(events)
    assert rows == 4 and len(segments) <= rows * PIXELS
    assert step_s == pytest.approx(max(s + d for _, _, _, s, d in events))
    assert max(s.start_s + s.duration_s for s in segments) == pytest.approx(step_s)  # the whole step
    for lane in {e[0] for e in events}:
        devices = len({e[1] for e in events if e[0] == lane})
        busy = sum(e[4] for e in events if e[0] == lane)
        drawn = sum(s.duration_s * s.busy_fraction for s in segments if s.lane == lane) * devices
        assert drawn == pytest.approx(busy, rel=1e-9)  # every event's time is in the figure


def test_timeline_dominant_stage_per_pixel():
    # device 0 runs A for 0.55 s then B; device 1 runs B all the time. Samples of 0.1 s: A wins the first
    # five (half the row's device time each), B the last five (sample 5: 0.15 of 0.2 s, then all of it)
    events = [("stage 0 / compute", 0, "A", 0.0, 0.55), ("stage 0 / compute", 0, "B", 0.55, 0.45),
              ("stage 0 / compute", 1, "B", 0.0, 1.0)]
    segments, step_s, rows = aggregate_timeline(events, pixels=10)
    assert (step_s, rows) == (1.0, 1)
    assert [s.name for s in segments] == ["A", "B"]
    assert [(s.start_s, s.duration_s, s.busy_fraction) for s in segments] == [
        pytest.approx((0.0, 0.5, 0.5)), pytest.approx((0.5, 0.5, (0.75 + 4) / 5))]


def test_real_timeline_shows_the_whole_step_in_rows_per_stage_and_stream(mixtral):
    from moesim.des import simulate

    report_figs, notes, _ = report_figures(mixtral, simulate=True)
    (fig,) = [f for k, f in report_figs if k == "timeline"]
    lanes = {y for trace in fig.data for y in trace.y}
    layout = mixtral.resolve()
    assert lanes and all(lane.split(" / ")[0] in {f"stage {s}" for s in range(layout.pp)} for lane in lanes)
    assert len(lanes) <= layout.pp * 4
    step_s = simulate(mixtral, layout).step_times_s[0]
    assert fig.layout.xaxis.range[1] == pytest.approx(step_s, rel=1e-6)
    assert max(b + x for trace in fig.data for b, x in zip(trace.base, trace.x)) == pytest.approx(step_s, rel=1e-6)
    assert any(n.startswith("simulated timeline: all ") for n in notes)


def test_report_json_lists_the_figures_written(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "switch-base-128-tpu-v3", "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output"] == str(out) and out.is_file()
    assert data["figures"] == ["step-breakdown", "memory", "pareto", "communication", "sensitivity"]
    html = out.read_text()
    assert all(f'data-figure="{k}"' in html for k in data["figures"])
    assert isinstance(data["notes"], list) and data["notes"]


def test_build_report_figures_match_the_page(mixtral):
    report = build_report(mixtral)
    assert report.html.count('<section class="figure"') == len(report.figures)
