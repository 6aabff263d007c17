"""Every healthy nccl-tests log priced under each variant of a check script (ramp_channel_check, nvls_chunk_check):
the per-log errors those scripts tabulate, and the cell formats they share."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, ContextManager

from moesim.calibrate.nccl_error import log_error
from moesim.calibrate.nccl_table import _points, entry_hardware, entry_model, read_manifest

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
