"""Hardware-profile keys in human units, and the spec fields (SI) they set: one declarative table.

The loader converts `hbm_gib_per_chip`, `link_gb_per_s_unidir`, `latency_us`, ... to SI with
`moesim.units`; the specs then check their SI fields against `moesim.specs.ranges.RANGES`. A value
out of range is reported back in the file's terms: `to_file_error` maps the spec's SI field to the
key the file wrote, and the SI range to the key's own unit (tests/test_ranges.py checks that this
table converts as the loader does). Specs built in Python keep the SI message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from moesim import units
from moesim.errors import SpecError
from moesim.specs.ranges import RANGES, Range


@dataclass(frozen=True)
class FileKey:
    """SI value = file value × `to_si` × devices_per_chip ** `per_chip_power`.

    `file_key`/`si_field`: dotted paths with `[]` for a list of tables and `*` for any one key
    (a dtype); `spec`: the spec class (a RANGES entry) that owns the SI field.
    """

    file_key: str
    spec: str
    si_field: str
    to_si: float
    unit: str
    per_chip_power: int = 0

    def file_range(self, devices_per_chip: int = 1) -> Range:
        """The spec's SI range expressed in this key's unit."""
        rng = RANGES[self.spec][self.si_field.rsplit(".", 1)[-1] if "*" not in self.si_field
                                else self.si_field.split(".")[-2]]
        scale = self.to_si * devices_per_chip ** self.per_chip_power
        lo, hi = rng.lo / scale, rng.hi / scale
        if rng.integer:
            lo, hi = math.ceil(lo), math.floor(hi)
        return Range(lo, hi, lo_open=rng.lo_open, integer=rng.integer, unit=self.unit, hi_open=rng.hi_open)


_GB_PER_S = units.gb_per_s_to_bytes_per_s(1.0)
HARDWARE_FILE_KEYS: tuple[FileKey, ...] = (
    FileKey("chip.hbm_gib_per_chip", "ChipSpec", "chip.hbm_bytes", units.gib_to_bytes(1.0), "GiB per chip", -1),
    FileKey("chip.hbm_gb_per_chip", "ChipSpec", "chip.hbm_bytes", units.gb_to_bytes(1.0), "GB per chip", -1),
    FileKey("chip.hbm_bw_gb_per_s_per_chip", "ChipSpec", "chip.hbm_bw_bytes_per_s", _GB_PER_S, "GB/s per chip", -1),
    FileKey("chip.peak_tflops_per_chip.*", "ChipSpec", "chip.peak_flops_per_s.*", units.tflops_to_flops_per_s(1.0),
            "TFLOP/s per chip", -1),
    FileKey("interconnect[].link_gb_per_s_unidir", "InterconnectLevel", "interconnect[].link_bw_bytes_per_s",
            _GB_PER_S, "GB/s, one direction"),
    FileKey("interconnect[].link_gbit_per_s_unidir", "InterconnectLevel", "interconnect[].link_bw_bytes_per_s",
            units.gbit_per_s_to_bytes_per_s(1.0), "Gbit/s, one direction"),
    FileKey("interconnect[].latency_us", "InterconnectLevel", "interconnect[].latency_s", units.us_to_s(1.0), "us"),
    FileKey("interconnect[].p2p_latency_us", "InterconnectLevel", "interconnect[].p2p_latency_s", units.us_to_s(1.0),
            "us"),
    FileKey("interconnect[].nonring_latency_us", "InterconnectLevel", "interconnect[].nonring_latency_s",
            units.us_to_s(1.0), "us"),
    FileKey("interconnect[].ll_latency_us", "InterconnectLevel", "interconnect[].ll_latency_s", units.us_to_s(1.0),
            "us"),
    FileKey("interconnect[].ll128_latency_us", "InterconnectLevel", "interconnect[].ll128_latency_s",
            units.us_to_s(1.0), "us"),
    FileKey("interconnect[].collective_overhead_us", "InterconnectLevel", "interconnect[].collective_overhead_s",
            units.us_to_s(1.0), "us"),
    FileKey("interconnect[].domain_chips", "InterconnectLevel", "interconnect[].domain_devices", 1.0, "chips", 1),
    FileKey("memory_reserved_gib", "HardwareProfile", "memory_reserved_bytes", units.gib_to_bytes(1.0),
            "GiB per device"),
    FileKey("efficiency.layer_overhead_us", "ComputeEfficiency", "efficiency.layer_overhead_s", units.us_to_s(1.0),
            "us"),
    FileKey("efficiency.kernel_launch_us", "ComputeEfficiency", "efficiency.kernel_launch_s", units.us_to_s(1.0),
            "us"),
)


def _pattern(dotted: str) -> re.Pattern:
    """`interconnect[].latency_s` → matches `interconnect[3].latency_s`, capturing the index / `*` key."""
    text = re.escape(dotted).replace(r"\[\]", r"\[(\d+)\]").replace(r"\*", r"([^.]+)")
    return re.compile(f"^{text}$")


def _get(data: Any, dotted: str) -> Any:
    """The value at a concrete dotted path (`interconnect[1].latency_us`) in a parsed file, or None."""
    for part in dotted.split("."):
        match = re.fullmatch(r"(.+?)\[(\d+)\]", part)
        name, index = (match.group(1), int(match.group(2))) if match else (part, None)
        if not isinstance(data, Mapping) or name not in data:
            return None
        data = data[name]
        if index is not None:
            if not isinstance(data, list) or index >= len(data):
                return None
            data = data[index]
    return data


def _fill(dotted: str, groups: tuple[str, ...]) -> str:
    for group in groups:
        dotted = dotted.replace("[]", f"[{group}]", 1) if group.isdigit() and "[]" in dotted \
            else dotted.replace("*", group, 1)
    return dotted


def to_file_error(err: SpecError, data: Mapping[str, Any], keys: tuple[FileKey, ...] = HARDWARE_FILE_KEYS) -> SpecError:
    """`err` (a range error on a spec's SI field) restated for the file key that set it, in that key's unit;
    `err` itself when no key of `keys` present in `data` sets that field."""
    for key in keys:
        match = _pattern(key.si_field).match(err.field or "")
        if not match:
            continue
        where = _fill(key.file_key, match.groups())
        raw = _get(data, where)
        if raw is None:
            continue  # the other spelling (hbm_gb vs hbm_gib) set it
        per_chip = _get(data, "chip.devices_per_chip")
        per_chip = per_chip if isinstance(per_chip, int) and not isinstance(per_chip, bool) and per_chip >= 1 else 1
        rng = key.file_range(per_chip)
        problem = rng.problem(raw) or f"{raw} is out of range"
        return SpecError(problem, file=err.file, field=where, value=raw, allowed=rng.describe())
    return err
