"""Why a ranked layout ranks where it does, in one line: its step split into parts (those its bottleneck is chosen
from, estimate.result.bottlenecks, where the schedule hides none of the per-micro-batch collectives), set against
the best layout's, and its memory headroom. Built from an estimate's JSON form (StepEstimate.as_dict, the `estimate`
of a `moesim search --json` row), so the search's text, its JSON and the report say the same."""

from __future__ import annotations

from moesim.estimate.result import bottleneck_part
from moesim.units import format_bytes, format_seconds

PARTS_NAMED = 3  # at most this many parts named in a line
PART_SHARE_NAMED = 0.1  # a part is named when it moves at least this share of the largest part's move
EXPOSED = "exposed communication"  # the one communication part where the schedule hides part of the per-micro-batch
# collectives (DualPipe: estimate.schedules), which then cannot be told apart by axis


def split_by_axis(est: dict) -> bool:
    """Whether the exposed communication splits into each axis's collectives and the gradient sync: false where the
    schedule overlaps part of the per-micro-batch collectives (their sum is above the exposed communication)."""
    per_axis = sum(c["time_s"] for n, c in est["communication"].items() if bottleneck_part(n, c["axis"], c["op"]))
    return per_axis <= est["exposed_communication_time_s"] * (1 + 1e-9)


def step_parts_s(est: dict, by_axis: bool | None = None) -> dict[str, float]:
    """The step's parts in seconds, adding up to `step_time_s`: compute, pipeline bubble, optimizer step and the
    exposed communication, split as `bottlenecks` splits it (each per-micro-batch axis's collectives, ZeRO-3's
    gathers, the exposed gradient sync as the rest) where `by_axis` (default: split_by_axis), else whole."""
    parts = {"compute": est["compute_time_s"], "pipeline bubble": est["bubble_time_s"],
             "optimizer step": est["optimizer_time_s"]}
    if not (split_by_axis(est) if by_axis is None else by_axis):
        return parts | {EXPOSED: est["exposed_communication_time_s"]}
    for name, comm in est["communication"].items():
        label = bottleneck_part(name, comm["axis"], comm["op"])
        if label is not None:
            parts[label] = parts.get(label, 0.0) + comm["time_s"]
    parts["gradient sync (exposed)"] = max(0.0, est["step_time_s"] - sum(parts.values()))
    return parts


def _signed(value: float, fmt) -> str:
    return ("+" if value >= 0 else "-") + fmt(abs(value))


def headroom_text(est: dict) -> str:
    """The memory left under the usable capacity, or how far over it the layout is."""
    left = est["memory_capacity_bytes"] - est["memory_bytes_per_device"]["total"]
    return f"{format_bytes(left)} memory headroom" if left >= 0 else f"{format_bytes(-left)} over the usable memory"


def largest_part_text(est: dict) -> str:
    """Its largest step part against the step, and its memory headroom."""
    parts = step_parts_s(est)
    top = max(parts, key=parts.get)
    return f"{top} {format_seconds(parts[top])} of the {format_seconds(est['step_time_s'])} step; {headroom_text(est)}"


def why_line(est: dict, best: dict | None = None, best_name: str = "#1") -> str:
    """One line on `est` (an estimate's JSON form): without `best`, its largest part and headroom (the best row);
    with `best`, its step against the best's (`best_name`), the parts that move most and its memory against it."""
    if best is None:
        return f"fastest: {largest_part_text(est)}"
    by_axis = split_by_axis(est) and split_by_axis(best)  # the same parts on both sides
    parts = step_parts_s(est, by_axis)
    base = step_parts_s(best, by_axis)
    delta = {k: parts.get(k, 0.0) - base.get(k, 0.0) for k in {**base, **parts}}
    largest = max((abs(v) for v in delta.values()), default=0.0)
    moved = sorted((k for k, v in delta.items() if largest and abs(v) >= PART_SHARE_NAMED * largest),
                   key=lambda k: -abs(delta[k]))[:PARTS_NAMED]
    step = est["step_time_s"] - best["step_time_s"]
    memory = est["memory_bytes_per_device"]["total"] - best["memory_bytes_per_device"]["total"]
    share = f" ({step / best['step_time_s']:+.1%})" if best["step_time_s"] else ""
    said = ", ".join(f"{k} {_signed(delta[k], format_seconds)}" for k in moved) or "no part moves"
    return (f"{_signed(step, format_seconds)}{share} against {best_name}: {said}; memory "
            f"{_signed(memory, format_bytes)}, {headroom_text(est)}")
