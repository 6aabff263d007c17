"""The simulated timeline for `--simulate`, from `moesim.des` when it is installed (imported lazily).

The simulator's result is read as Chrome trace events (the design's trace format): a dict with
"traceEvents", or an object with `chrome_trace()` / `trace_events`. Complete events ("ph": "X",
"ts" and "dur" in microseconds) become timeline bars per (pid, tid) lane. Any other outcome -
simulator missing, another interface, an error - gives no events and a note saying why.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario

US = 1e-6
MAX_EVENTS = 5000  # enough for a readable timeline; the rest are left out and counted


@dataclass(frozen=True)
class TimelineEvent:
    lane: str
    name: str
    start_s: float
    duration_s: float


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
    events = []
    for ev in raw:
        if ev.get("ph") == "X" and "ts" in ev and "dur" in ev:
            lane = f"{ev.get('pid', '')}/{ev.get('tid', '')}".strip("/")
            events.append(TimelineEvent(lane, str(ev.get("name", "")), float(ev["ts"]) * US, float(ev["dur"]) * US))
    note = f"simulated timeline: {len(events)} events from moesim.des"
    if len(events) > MAX_EVENTS:
        note += f" ({len(events) - MAX_EVENTS} after the first {MAX_EVENTS} left out)"
        events = sorted(events, key=lambda e: e.start_s)[:MAX_EVENTS]
    return events, note
