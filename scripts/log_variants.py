"""Every healthy nccl-tests log priced under each variant of a check script (ramp_channel_check, nvls_chunk_check):
the per-log errors those scripts tabulate, and the cell formats they share."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

from moesim.calibrate.bench_cost import host_floor_s
from moesim.calibrate.log_pricing import priced_log
from moesim.calibrate.nccl_error import LARGE_BYTES, best_per_size, pct
from moesim.calibrate.nccl_table import _size, read_manifest

MANIFEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "nccl" / "logs.toml"


def variant_errors(variants: tuple[str, ...], variant: Callable[[str], ContextManager]) -> dict[str, dict[str, object]]:
    """{log file: {variant name: LogError}} over the healthy logs of the manifest, each priced inside `variant(name)`."""
    out: dict[str, dict[str, object]] = {}
    for entry in read_manifest(MANIFEST):
        if not entry["healthy"]:
            continue
        log = priced_log(MANIFEST.parent, entry)
        out[entry["file"]] = {}
        for name in variants:
            with variant(name):
                out[entry["file"]][name] = log.error()  # the model built inside: plans are memoised per model
    return out


def at_size(err, size: int):
    """The SizeError of `err` at `size` bytes, or None where the log has no such row."""
    found = [e for e in err.sizes if e.size_bytes == size]
    return found[0] if found else None


BARS = (0.20, 0.40)  # issue 11's busbw MAPE bars, >= 1 MiB | < 1 MiB


def misses(err) -> int:
    """How many of a log's two bands miss their bar."""
    return sum(x is not None and x > bar for x, bar in zip((err.mape_large, err.mape_small), BARS))


def size_label(b: int) -> str:
    """A power-of-two size as the docs print it: 4 KiB, 16 MiB, 8 GiB."""
    return f"{b // 2**30} GiB" if b >= 2**30 else f"{b // 2**20} MiB" if b >= 2**20 else f"{b // 2**10} KiB"


def band_cells(errs: dict, variants: tuple[str, ...]) -> str:
    """One log's `≥ 1 MiB | < 1 MiB` cell per variant, joined as table cells."""
    return " | ".join(f"{pct(errs[v].mape_large)} \\| {pct(errs[v].mape_small)}" for v in variants)


def total_rows(found: dict, variants: tuple[str, ...], label: str) -> list[str]:
    """The table's last two rows: the per-log MAPEs summed per variant, and the misses per variant."""
    sums = {v: (sum(e[v].mape_large or 0.0 for e in found.values()), sum(e[v].mape_small or 0.0 for e in found.values()))
            for v in variants}
    return [f"| {label} | " + " | ".join(f"{sums[v][0]:.1%} \\| {sums[v][1]:.1%}" for v in variants) + " |",
            "| misses (20 % \\| 40 % bars) | " + " | ".join(str(sum(misses(e[v]) for e in found.values()))
                                                          for v in variants) + " |"]


def alltoall_logs(manifest: Path):
    """(file, healthy, model, host floor s, best point per size) of every all-to-all log of the manifest, each priced
    with its log's system facts (entry_hardware) and model; for the all-to-all check scripts."""
    for e in read_manifest(manifest):
        if e.get("op", "") != "all_to_all" and "alltoall" not in e["file"]:
            continue
        log = priced_log(manifest.parent, e)
        floor = host_floor_s(log.hardware, log.gpus_per_thread)
        yield e["file"], e.get("healthy", True), log.model(), floor, best_per_size(log.points)


def mape_cell(sizes, large: bool, col: int) -> str:
    """MAPE in % of measured (column 1) against the time in column `col` over the rows >= 1 MiB (large) or below."""
    errs = [abs(s[1] / s[col] - 1) for s in sizes if (s[0] >= LARGE_BYTES) == large]
    return f"{100 * sum(errs) / len(errs):.1f}" if errs else "-"


def mape_change_line(name: str, healthy: bool, sizes) -> str:
    """One log's `name (healthy)` and its MAPE cells (mape_cell) >= 1 MiB | < 1 MiB, column 2 -> column 3."""
    return (f"{name + ' (' + str(healthy).lower() + ')':39s}{mape_cell(sizes, True, 2)} | {mape_cell(sizes, False, 2)}"
            f"  ->  {mape_cell(sizes, True, 3)} | {mape_cell(sizes, False, 3)}")


def moved_size_lines(data, before: str, after: str) -> list[str]:
    """Per log of `data` [(name, healthy, [(size bytes, measured s, before s, after s, label)])], the sizes whose time
    moves from column `before` to `after`: us, and the error measured / priced - 1 of each."""
    lines = []
    for name, _, sizes in data:
        moved = [s for s in sizes if s[2] != s[3]]
        if not moved:
            continue
        lines.append(name)
        lines.append(f"  {'size':>9s} {'measured':>9s} {before:>9s} {'err':>8s} {after:>10s} {'err':>8s}  shipped label")
        for size, meas, old, new, label in moved:
            lines.append(f"  {_size(size):>9s} {meas * 1e6:9.1f} {old * 1e6:9.1f} {meas / old - 1:+8.1%} "
                         f"{new * 1e6:10.1f} {meas / new - 1:+8.1%}  {label}")
    return lines


def before_after_rows(make, before_in: Callable[[], ContextManager] | None = None) -> list[tuple]:
    """(log, healthy, (before >= 1 MiB, < 1 MiB), (after >= 1 MiB, < 1 MiB)) per manifest entry, in its order:
    `make(entry, hw, model, n)` gives (the model before, the model after) from the log's own model (entry_model or
    the profile's default) and its group size n; an `after` that `is` the model before is not priced twice, unless
    `before_in` is given: the before is then priced inside `before_in()` (a table as it was) and the after outside."""
    out = []
    for entry in read_manifest(MANIFEST):
        log = priced_log(MANIFEST.parent, entry)
        before, after = make(entry, log.hardware, log.model(), log.group_size)
        with before_in() if before_in is not None else nullcontext():
            old = log.error(before)
        new = old if after is before and before_in is None else log.error(after)
        out.append((log.name, entry["healthy"], (old.mape_large, old.mape_small),
                    (new.mape_large, new.mape_small)))
    return out


def moved_lines(data: list[tuple], label: str) -> list[str]:
    """The logs of before_after_rows whose MAPE moves, `before | before  ->  after | after`, and how many do not."""
    width = max(len(r[0]) for r in data) + 10
    lines = [f"{'log (healthy)':{width}s}busbw MAPE >= 1 MiB | < 1 MiB: {label}"]
    for name, healthy, old, new in data:
        if old != new:
            lines.append(f"{name + ' (' + ('yes' if healthy else 'no') + ')':{width}s}{pct(old[0])} | {pct(old[1])}"
                         f"  ->  {pct(new[0])} | {pct(new[1])}")
    return lines + [f"({sum(1 for r in data if r[2] == r[3])} logs do not move)"]


def rule_b_lines(data: list[tuple], small_rise: float | None = None) -> tuple[list[str], bool]:
    """A ship rule's (b) over the healthy logs of before_after_rows, (report lines, met): the summed MAPE >= 1 MiB
    falls, and with `small_rise` the sum below 1 MiB rises by at most that much; no log worse by more than 2 pt in
    either band; none newly over a bar (BARS)."""
    healthy = [r for r in data if r[1]]
    sums = [[sum(r[k][band] for r in healthy if r[k][band] is not None) for band in (0, 1)] for k in (2, 3)]
    worse = [(r[0], b) for r in healthy for b in (0, 1) if r[2][b] is not None and r[3][b] - r[2][b] > 0.02]
    crossed = [(r[0], b) for r in healthy for b in (0, 1) if r[2][b] is not None and r[2][b] <= BARS[b] < r[3][b]]
    met = [(r[0], b) for r in healthy for b in (0, 1) if r[2][b] is not None and r[3][b] <= BARS[b] < r[2][b]]
    name = ("MAPE >= 1 MiB", "MAPE < 1 MiB")
    falls = sums[1][0] < sums[0][0]
    small_ok = small_rise is None or sums[1][1] - sums[0][1] <= small_rise
    first = (f"healthy logs: {len(healthy)}; summed MAPE >= 1 MiB {100 * sums[0][0]:.1f} -> {100 * sums[1][0]:.1f} "
             f"({'falls' if falls else 'does not fall'})")
    if small_rise is not None:
        first += (f"; < 1 MiB {100 * sums[0][1]:.1f} -> {100 * sums[1][1]:.1f} "
                  f"({'within' if small_ok else 'over'} +{100 * small_rise:g} pt)")
    return ([first,
             f"worse by more than 2 pt: {len(worse)}" + "".join(f"\n  {n} ({name[b]})" for n, b in worse),
             f"newly over a bar: {len(crossed)}" + "".join(f"\n  {n} ({name[b]})" for n, b in crossed),
             f"newly under a bar: {len(met)}" + "".join(f"\n  {n} ({name[b]})" for n, b in met)],
            falls and small_ok and not worse and not crossed)
