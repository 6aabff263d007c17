"""Chrome trace-event JSON of a simulated step (opens in Perfetto and chrome://tracing).

Format: the Trace Event Format ("X" complete events with `ts` and `dur` in microseconds, "M"
metadata naming processes and threads; https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU).
pid = device, tid = stream (compute 0, comm 1, p2p 2, grad 3), name = MoE pipeline stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from moesim.des.schedule import STREAMS
from moesim.paths import write_text_file

US_PER_S = 1e6
TRACE_RECORD = ("device", "stream", "name", "phase", "layer", "micro_batch", "start_s", "end_s")


def chrome_trace(records: Iterable[tuple], *, labels: dict[int, str] | None = None,
                 metadata: dict | None = None) -> dict:
    """Trace-event JSON object for records (device, stream, name, phase, layer, mb, start_s, end_s)."""
    records = list(records)
    labels = labels or {}
    devices = sorted({r[0] for r in records})
    events: list[dict] = []
    for device in devices:
        events.append({"ph": "M", "name": "process_name", "pid": device, "tid": 0,
                       "args": {"name": labels.get(device, f"device {device}")}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": device, "tid": 0,
                       "args": {"sort_index": device}})
        for tid, stream in enumerate(STREAMS):
            events.append({"ph": "M", "name": "thread_name", "pid": device, "tid": tid, "args": {"name": stream}})
    tids = {s: i for i, s in enumerate(STREAMS)}
    for device, stream, name, phase, layer, mb, start, end in records:
        args = {"phase": phase}
        if layer >= 0:
            args["layer"] = layer
        if mb >= 0:
            args["micro_batch"] = mb
        events.append({"name": name, "cat": phase, "ph": "X", "pid": device, "tid": tids[stream],
                       "ts": start * US_PER_S, "dur": (end - start) * US_PER_S, "args": args})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": metadata or {}}


def write_chrome_trace(path: str | Path, trace: dict) -> Path:
    """Write `trace` as JSON to `path`; returns the path."""
    path = Path(path)
    write_text_file(path, json.dumps(trace), field="--trace")
    return path


__all__ = ["TRACE_RECORD", "chrome_trace", "write_chrome_trace"]
