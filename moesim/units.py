"""Unit conversion: the one place where human units from data files become SI.

Inside moesim every quantity is SI and says its unit in its name: seconds (`_s`), bytes
(`_bytes`), FLOP (`_flops`), bytes per second (`_bytes_per_s`), FLOP per second
(`_flops_per_s`). Data files may use human units only when the key says so (`hbm_gib`,
`link_gb_per_s_unidir`, `peak_tflops`, `latency_us`); loaders call the functions below.

Prefixes: bandwidth and FLOP rates are decimal (1 GB/s = 1e9 bytes/s, as nccl-tests counts);
capacities are binary only where the key says `gib`/`mib`/`kib`.
"""

from __future__ import annotations

import re

from moesim.errors import SpecError

KIB_BYTES = 2**10
MIB_BYTES = 2**20
GIB_BYTES = 2**30
TIB_BYTES = 2**40
KB_BYTES = 10**3
MB_BYTES = 10**6
GB_BYTES = 10**9
TB_BYTES = 10**12

_SIZE_UNITS_BYTES = {
    "": 1,
    "b": 1,
    "k": KB_BYTES,
    "kb": KB_BYTES,
    "m": MB_BYTES,
    "mb": MB_BYTES,
    "g": GB_BYTES,
    "gb": GB_BYTES,
    "t": TB_BYTES,
    "tb": TB_BYTES,
    "kib": KIB_BYTES,
    "mib": MIB_BYTES,
    "gib": GIB_BYTES,
    "tib": TIB_BYTES,
}

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def gib_to_bytes(gib: float) -> float:
    """bytes = GiB × 2^30."""
    return gib * GIB_BYTES


def gb_to_bytes(gb: float) -> float:
    """bytes = GB × 1e9 (decimal)."""
    return gb * GB_BYTES


def gb_per_s_to_bytes_per_s(gb_per_s: float) -> float:
    """bytes/s = GB/s × 1e9 (decimal, as nccl-tests counts)."""
    return gb_per_s * GB_BYTES


def gbit_per_s_to_bytes_per_s(gbit_per_s: float) -> float:
    """bytes/s = Gbit/s × 1e9 / 8 (network line rates are decimal bits)."""
    return gbit_per_s * GB_BYTES / 8


def tflops_to_flops_per_s(tflops: float) -> float:
    """FLOP/s = TFLOP/s × 1e12."""
    return tflops * 1e12


def us_to_s(us: float) -> float:
    """s = µs × 1e-6."""
    return us * 1e-6


# Largest single message / buffer a byte-count option takes: 1 PB, 10^4x any device's memory.
MAX_SIZE_BYTES = 1e15


def parse_size_bytes(text: str | int | float, *, field: str = "size") -> int:
    """Parse a byte count such as `4096`, `8B`, `64KiB`, `1.5GB` or `4GiB` (case-insensitive).

    Decimal prefixes (k, M, G, T, kB, MB, ...) are powers of ten; `KiB`, `MiB`, `GiB`, `TiB` are
    powers of two, as nccl-tests' `-b`/`-e` options count them.
    """
    if isinstance(text, bool):
        raise SpecError("expected a byte count", field=field, value=text)
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _SIZE_RE.match(text)
        if not match:
            raise SpecError(
                f"'{text}' is not a byte count", field=field, value=text,
                allowed="a number with an optional unit: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB",
            )
        value, unit = float(match.group(1)), match.group(2).lower()
    if unit not in _SIZE_UNITS_BYTES:
        raise SpecError(
            f"unknown unit '{unit}' in '{text}'", field=field, value=text,
            allowed="B, kB, MB, GB, TB, KiB, MiB, GiB, TiB",
        )
    size = value * _SIZE_UNITS_BYTES[unit]
    if not 0 <= size <= MAX_SIZE_BYTES:
        raise SpecError(f"'{text}' is out of range", field=field, value=text,
                        allowed=f"a finite byte count from 0 to {MAX_SIZE_BYTES:.0e} bytes (1 PB)")
    if size != int(size):
        raise SpecError(f"'{text}' is not a whole, non-negative number of bytes", field=field, value=text)
    return int(size)


def parse_size_range(text: str, *, field: str = "sweep") -> tuple[int, int]:
    """Parse `MIN:MAX` byte range such as `8B:8GiB`."""
    parts = text.split(":")
    if len(parts) != 2:
        raise SpecError(f"'{text}' is not a range", field=field, value=text, allowed="MIN:MAX, e.g. 8B:8GiB")
    low, high = (parse_size_bytes(part, field=field) for part in parts)
    if low <= 0 or high < low:
        raise SpecError(f"'{text}' needs 0 < MIN <= MAX", field=field, value=text)
    return low, high


def format_bytes(n_bytes: float) -> str:
    """Human-readable binary size, e.g. `1.50 GiB`."""
    for unit, scale in (("TiB", TIB_BYTES), ("GiB", GIB_BYTES), ("MiB", MIB_BYTES), ("KiB", KIB_BYTES)):
        if abs(n_bytes) >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{n_bytes:.0f} B"


def format_seconds(seconds: float) -> str:
    """Human-readable duration, e.g. `12.3 ms`."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def format_fraction_pct(x: float, signed: bool = True) -> str:
    """A fraction as a percentage with one decimal and a typographic minus, e.g. `−10.4 %` (the docs' validation
    tables: error = moesim / published − 1)."""
    return (f"{x * 100:+.1f} %" if signed else f"{x * 100:.1f} %").replace("-", "−")


def format_count(n: float) -> str:
    """Short count with decimal suffix, e.g. `1.57T`."""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"
