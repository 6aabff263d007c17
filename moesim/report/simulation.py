"""The simulated timeline for `--simulate`, from `moesim.des` when it is installed (imported lazily).

The simulator's result is read as Chrome trace events (the design's trace format): a dict with
"traceEvents", or an object with `chrome_trace()` / `trace_events`. Complete events ("ph": "X",
"ts" and "dur" in microseconds) are gathered into one row per pipeline stage and stream (pid =
device, tid = stream) and sampled per pixel over the whole step (`aggregate_timeline`): the
figure stays readable for any number of devices and events, and nothing is cut. Any other outcome
- simulator missing, another interface, an error - gives no events and a note saying why.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.topology.mapping import mesh_strides

US = 1e-6
# Horizontal samples of the timeline: about one per pixel of a page-wide figure. Each row of the
# figure gets this many samples of the whole step, whatever the number of events.
PIXELS = 1000


@dataclass(frozen=True)
class TimelineEvent:
    lane: str
    name: str
    start_s: float
    duration_s: float
    busy_fraction: float = 1.0  # of the row's device time in this span that the named stage occupies


def _trace_events(result) -> list[dict]:
    if isinstance(result, dict):
        return list(result.get("traceEvents", []))
    if callable(getattr(result, "chrome_trace", None)):
        return _trace_events(result.chrome_trace())
    events = getattr(result, "trace_events", None)
    if events is not None:
        return list(events() if callable(events) else events)
    raise TypeError(f"cannot read a timeline from {type(result).__name__}")


def simulate_timeline(scenario: Scenario, layout: Layout, progress=None) -> tuple[list[TimelineEvent], str]:
    """(events, note) of one simulated step; no events when the simulator is not there.
    `progress(fraction)` is handed to the simulator when given."""
    try:
        des = importlib.import_module("moesim.des")
    except ImportError as err:
        return [], f"simulated timeline: moesim.des is not available ({err})"
    simulate = getattr(des, "simulate", None)
    if simulate is None:
        return [], "simulated timeline: moesim.des has no simulate(scenario, layout) yet"
    try:
        raw = _trace_events(simulate(scenario, layout) if progress is None
                            else simulate(scenario, layout, progress=progress))
    except Exception as err:  # an optional collaborator: report the failure, keep the page
        return [], f"simulated timeline: moesim.des failed ({type(err).__name__}: {err})"
    stage_stride = mesh_strides(layout)["pp"]
    stream_names = ("compute", "comm", "p2p", "grad")
    raw_events = []
    for ev in raw:
        if ev.get("ph") == "X" and "ts" in ev and "dur" in ev:
            pid, tid = int(ev.get("pid", 0)), int(ev.get("tid", 0))
            stream = stream_names[tid] if 0 <= tid < len(stream_names) else f"stream {tid}"
            lane = f"stage {(pid // stage_stride) % layout.pp} / {stream}"
            raw_events.append((lane, pid, str(ev.get("name", "")), float(ev["ts"]) * US, float(ev["dur"]) * US))
    events, step_s, rows = aggregate_timeline(raw_events, PIXELS)
    devices = len({e[1] for e in raw_events})
    note = (f"simulated timeline: all {len(raw_events):,} events of one step ({step_s:.4g} s) on {devices} simulated "
            f"devices, drawn as {rows} rows (pipeline stage x stream); each of {PIXELS} samples per row shows the "
            "stage that occupies most of the row's devices there, and hover gives its share")
    return events, note


def _covered_until(starts: np.ndarray, ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Σ_events |[start, end) ∩ [0, t)| at each t: the time the events cover before t."""
    s, e = np.sort(starts), np.sort(ends)
    cs, ce = np.concatenate([[0.0], np.cumsum(s)]), np.concatenate([[0.0], np.cumsum(e)])
    ns, ne = np.searchsorted(s, t), np.searchsorted(e, t)
    return (ns * t - cs[ns]) - (ne * t - ce[ne])


def aggregate_timeline(events: list[tuple[str, int, str, float, float]],
                       pixels: int = PIXELS) -> tuple[list[TimelineEvent], float, int]:
    """(segments, step length, row count) of events (lane, device, name, start_s, duration_s).

    The step [0, last end] is cut into `pixels` equal samples. In each row (lane) and sample the
    named stage covering the most device-time wins; runs of samples with the same winner merge into
    one segment whose `busy_fraction` is that stage's share of the row's device-time there. Every
    event counts, however many there are: the figure has at most rows x pixels segments.
    """
    if not events:
        return [], 0.0, 0
    step_s = max(start + dur for _, _, _, start, dur in events)
    if step_s <= 0:
        return [], 0.0, 0
    edges = np.linspace(0.0, step_s, pixels + 1)
    width = step_s / pixels
    out: list[TimelineEvent] = []
    lanes = sorted({e[0] for e in events}, key=_lane_order)
    for lane in lanes:
        mine = [e for e in events if e[0] == lane]
        devices = len({e[1] for e in mine})
        names = sorted({e[2] for e in mine})
        cover = np.zeros((len(names), pixels))
        for i, name in enumerate(names):
            starts = np.array([e[3] for e in mine if e[2] == name])
            ends = starts + np.array([e[4] for e in mine if e[2] == name])
            cover[i] = np.diff(_covered_until(starts, ends, edges))
        best = cover.argmax(axis=0)
        share = cover.max(axis=0) / (width * devices)
        j = 0
        while j < pixels:
            if share[j] <= 0:
                j += 1
                continue
            k = j
            while k + 1 < pixels and best[k + 1] == best[j] and share[k + 1] > 0:
                k += 1
            out.append(TimelineEvent(lane, names[best[j]], float(edges[j]), float(edges[k + 1] - edges[j]),
                                     float(min(1.0, share[j:k + 1].mean()))))
            j = k + 1
    return out, float(step_s), len(lanes)


def _lane_order(lane: str) -> tuple:
    stage, _, stream = lane.partition(" / ")
    order = {"compute": 0, "comm": 1, "p2p": 2, "grad": 3}
    number = stage.split()[-1]
    return (int(number) if number.isdigit() else 0, order.get(stream, 9), stream)
