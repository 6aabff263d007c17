"""Readable `__repr__` and `_repr_html_` of the results the public API returns (moesim.api).

A notebook shows a small table of the figures that matter (step time, memory, MFU, bottleneck, the
layout as `--layout` takes it) instead of a dataclass dump; `to_dict()` on each result has the rest.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

from moesim.units import format_bytes, format_seconds


def text_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def html_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], caption: str = "") -> str:
    esc = lambda v: html.escape(str(v))  # noqa: E731
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(items: Sequence[tuple[str, Any]], title: str) -> str:
    width = max(len(k) for k, _ in items)
    return "\n".join([title] + [f"  {k.ljust(width)}  {v}" for k, v in items])


# --- StepEstimate -----------------------------------------------------------------------------

def _estimate_items(est) -> list[tuple[str, str]]:
    mem = est.memory_bytes_per_device
    items = [
        ("step time", format_seconds(est.step_time_s)),
        ("compute / exposed comm.", f"{format_seconds(est.compute_time_s)} / "
                                    f"{format_seconds(est.exposed_communication_time_s)}"),
        ("MFU / HFU", f"{est.mfu:.1%} / {est.hfu:.1%}"),
        ("tokens/s", f"{est.tokens_per_s:,.0f}"),
        ("memory/device", f"{format_bytes(mem['total'])} of {format_bytes(est.memory_capacity_bytes)} "
                          f"({'fits' if est.fits_in_memory else 'does not fit'})"),
        ("bottleneck", est.bottleneck),
        ("layout", est.layout_arg),
    ]
    return items + [("warning", w) for w in est.warnings]


def estimate_repr(est) -> str:
    return _kv(_estimate_items(est), f"StepEstimate: {est.scenario} on {est.devices} x {est.hardware}")


def estimate_html(est) -> str:
    return html_table(_estimate_items(est), ["", "value"], f"{est.scenario} on {est.devices} x {est.hardware}")


# --- SearchResult -----------------------------------------------------------------------------

def _search_rows(result, top: int) -> list[tuple]:
    return [(i + 1, format_seconds(result.step_time_s[i]), format_bytes(result.memory_bytes_per_device[i]),
             f"{result.mfu[i]:.1%}", result.summary(i)["layout_arg"]) for i in range(min(top, result.ranked))]


def _search_head(result) -> str:
    return (f"SearchResult: {result.scenario.name} on {result.scenario.devices} x {result.scenario.hardware.name}, "
            f"by {result.objective}: {result.ranked:,} of {result.considered:,} layouts ranked")


SEARCH_HEADERS = ["rank", "step time", "memory/device", "MFU", "layout"]


def search_repr(result, top: int = 5) -> str:
    if not result.ranked:
        return _search_head(result) + "\nno layout is valid and fits in memory (to_dict()['closest_miss'] says why)"
    return _search_head(result) + "\n" + text_table(_search_rows(result, top), SEARCH_HEADERS)


def search_html(result, top: int = 5) -> str:
    return html_table(_search_rows(result, top), SEARCH_HEADERS, _search_head(result))


# --- SimResult --------------------------------------------------------------------------------

def _sim_items(sim) -> list[tuple[str, str]]:
    st = sim.step_time_stats
    return [("step time mean (p50 / p99)", f"{format_seconds(st['mean'])} ({format_seconds(st['p50'])} / "
                                           f"{format_seconds(st['p99'])})"),
            ("analytical estimate", format_seconds(sim.analytical_step_time_s)),
            ("simulated / analytical", f"{st['mean'] / sim.analytical_step_time_s:.3f}"),
            ("mode, devices simulated", f"{sim.mode}, {sim.simulated_devices}"),
            ("events", f"{sim.events:,}")] + [("warning", w) for w in sim.warnings]  # as the estimate's (newuser7)


def sim_repr(sim) -> str:
    return _kv(_sim_items(sim), f"SimResult: {sim.scenario} on {sim.devices} x {sim.hardware}, "
                                f"{len(sim.step_times_s)} step(s)")


def sim_html(sim) -> str:
    return html_table(_sim_items(sim), ["", "value"], f"{sim.scenario} on {sim.devices} x {sim.hardware}")


# --- sweep ------------------------------------------------------------------------------------

def _sweep_rows(sweep: dict) -> list[tuple]:
    rows = []
    for p in sweep["points"]:
        point = ", ".join(f"{k}={v}" for k, v in p["point"].items())
        if p["status"] != "ok":
            rows.append((point, "-", "-", "-", p["status"]))
        else:
            rows.append((point, format_seconds(p["step_time_s"]), format_bytes(p["memory_bytes_per_device"]),
                         f"{p['mfu']:.1%}", p["layout_arg"]))
    return rows


SWEEP_HEADERS = ["point", "step time", "memory/device", "MFU", "best layout"]


def sweep_repr(sweep: dict) -> str:
    from moesim.search.sweep import grouped_notes

    warnings = grouped_notes(sweep, ("warning",))
    return "\n".join([f"SweepResult: {sweep['scenario']}, best layout by {sweep['objective']}",
                      text_table(_sweep_rows(sweep), SWEEP_HEADERS), *warnings])


def sweep_html(sweep: dict) -> str:
    return html_table(_sweep_rows(sweep), SWEEP_HEADERS, f"{sweep['scenario']}: best layout by {sweep['objective']}")
