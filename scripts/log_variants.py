"""Every healthy nccl-tests log priced under each variant of a check script (ramp_channel_check, nvls_chunk_check):
the per-log errors those scripts tabulate, and the cell formats they share."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, ContextManager

from moesim.calibrate.bench_cost import host_floor_s
from moesim.calibrate.nccl_error import LARGE_BYTES, best_per_size, log_error
from moesim.calibrate.nccl_table import _points, entry_hardware, entry_model, read_manifest
from moesim.collectives.select import default_model

MANIFEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "nccl" / "logs.toml"


def variant_errors(variants: tuple[str, ...], variant: Callable[[str], ContextManager]) -> dict[str, dict[str, object]]:
    """{log file: {variant name: LogError}} over the healthy logs of the manifest, each priced inside `variant(name)`."""
    out: dict[str, dict[str, object]] = {}
    for entry in read_manifest(MANIFEST):
        if not entry["healthy"]:
            continue
        pts, hw = _points(MANIFEST.parent, entry), entry_hardware(entry)
        out[entry["file"]] = {}
        for name in variants:
            with variant(name):
                out[entry["file"]][name] = log_error(pts, hw, entry_model(entry, hw), entry.get("gpus_per_thread", 1))
    return out


def pct(x) -> str:
    """A fraction as a percent with one decimal; '-' where the log has no row in that band."""
    return "-" if x is None else f"{x:.1%}"


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
        hw = entry_hardware(e)
        model = entry_model(e, hw) or default_model(hw)
        floor = host_floor_s(hw, e.get("gpus_per_thread", 1))
        yield e["file"], e.get("healthy", True), model, floor, best_per_size(tuple(_points(manifest.parent, e)))


def mape_cell(sizes, large: bool, col: int) -> str:
    """MAPE in % of measured (column 1) against the time in column `col` over the rows >= 1 MiB (large) or below."""
    errs = [abs(s[1] / s[col] - 1) for s in sizes if (s[0] >= LARGE_BYTES) == large]
    return f"{100 * sum(errs) / len(errs):.1f}" if errs else "-"
