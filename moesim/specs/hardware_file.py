"""Reading a hardware profile file into a HardwareProfile, strictly: per-chip figures become per-device,
human units (GiB, GB/s, Gbit/s, TFLOP/s, us) become SI here and nowhere else."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from moesim import units
from moesim.errors import SpecError
from moesim.paths import builtin_dir
from moesim.specs.data_files import SCHEMA_VERSION, read_data_file, resolve_ref, with_file
from moesim.specs.fields import Table, check_file_kind, check_schema_version
from moesim.specs.file_units import to_file_error
from moesim.specs.hardware import (
    DTYPES, ChipSpec, ComputeEfficiency, EfficiencyTable, HardwareProfile, InterconnectLevel, TOPOLOGIES,
    WRAPAROUND_RULES, DEVICE_KINDS, GPU_NIC_PATHS, HOST_CPUS, OP_DIMS, OP_KINDS, OP_PASSES, OP_STATUS, OpTable,
)


def _efficiency(t: Table, key: str, default: float | None = None) -> EfficiencyTable:
    value = t.opt(key, (int, float, list), default)
    if value is None:
        raise t.error(key, "required key is missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        points = ((1.0, float(value)),)  # EfficiencyTable.constant: checked below, so an error names its key
    else:
        try:
            points = tuple((float(p[0]), float(p[1])) for p in value)
            if any(len(p) != 2 for p in value):
                raise ValueError
        except (TypeError, ValueError, IndexError):
            raise t.error(key, "expected a number or a list of [size, efficiency] pairs", value=value) from None
    try:
        return EfficiencyTable(points)
    except SpecError as err:
        raise t.error(key, str(err), value=value,
                      allowed="a fraction in (0, 1], or a list of [size > 0, fraction in (0, 1]] pairs with "
                              "sizes increasing") from None


def _op_table(t: Table) -> OpTable:
    """One [[efficiency.op_table]]: kind, dtype, pass, op, status, measured_on, source, dims, points."""
    kind = t.choice("kind", OP_KINDS)
    dims = t.opt("dims", list, list(OP_DIMS[kind]))
    if tuple(dims) != OP_DIMS[kind]:
        raise t.error("dims", f"a {kind} table lists its points as {list(OP_DIMS[kind])} + [efficiency]",
                      value=dims, allowed=list(OP_DIMS[kind]))
    raw = t.req("points", list)
    try:
        points = tuple(tuple(float(x) for x in p) for p in raw)
    except (TypeError, ValueError):
        raise t.error("points", "expected a list of [coordinates..., efficiency] lists", value=raw[:3]) from None
    try:
        return OpTable(kind=kind, dtype=t.choice("dtype", DTYPES), pass_=t.choice("pass", OP_PASSES, "any"),
                       op=t.opt("op", str, "any"), status=t.choice("status", OP_STATUS, "measured"),
                       measured_on=t.req("measured_on", str), source=t.req("source", str), points=points)
    except SpecError as err:
        raise t.error("points", str(err), value=err.value) from None


def _borrowed_op_tables(eff_t: Table, lender: str) -> list[OpTable]:
    """`efficiency.op_tables_from`: another profile's [[efficiency.op_table]] entries, read as fractions of this
    profile's own peaks and HBM bandwidth (an efficiency table is a fraction, moesim/ops/price.py); a measured
    table becomes `derived` here, its source prefixed with the lender. One level only: a lender that borrows
    itself is refused, as is one without tables."""
    field = eff_t.key_path("op_tables_from")
    here = Path(eff_t.file).parent if eff_t.file else None
    path = resolve_ref(lender, "hardware_profiles", relative_to=here, field=field)
    if eff_t.file and path.resolve() == Path(eff_t.file).resolve():
        raise eff_t.error("op_tables_from", "a profile cannot borrow its own tables: name another profile",
                          value=lender)
    # the lender's own op_tables_from read before it is loaded: a cycle (A borrows B, B borrows A) never recurses
    borrowed = read_data_file(path).get("efficiency", {})
    if isinstance(borrowed, dict) and borrowed.get("op_tables_from"):
        raise eff_t.error("op_tables_from", f"'{lender}' borrows its own tables from "
                          f"'{borrowed['op_tables_from']}': name that profile instead", value=lender)
    other = load_hardware(path, field=field)
    if not other.efficiency.op_tables:
        raise eff_t.error("op_tables_from", f"'{lender}' has no [[efficiency.op_table]] to borrow", value=lender)
    return [replace(t, status="derived" if t.status == "measured" else t.status,
                    source=f"borrowed from {other.name} (fractions of this profile's own peak): {t.source}")
            for t in other.efficiency.op_tables]


def lender_for_copy(lender: str, profile_path: str | Path) -> str:
    """`efficiency.op_tables_from` as a copy of the profile at `profile_path` written elsewhere must say it (moesim
    calibrate's output): a built-in profile by its name, any other file by its absolute path (a path is read
    beside the file that names it, so a relative one would name nothing beside the copy)."""
    path = resolve_ref(lender, "hardware_profiles", relative_to=Path(profile_path).parent)
    return path.stem if path.parent.resolve() == builtin_dir("hardware_profiles").resolve() else str(path.resolve())


def _level_from_table(t: Table, devices_per_chip: int) -> InterconnectLevel:
    bw_keys = [k for k in ("link_gb_per_s_unidir", "link_gbit_per_s_unidir") if t.has(k)]
    if len(bw_keys) != 1:
        raise t.error("link_gb_per_s_unidir", "give exactly one of link_gb_per_s_unidir (GB/s, one direction) "
                      "or link_gbit_per_s_unidir (Gbit/s, one direction)")
    if bw_keys[0] == "link_gb_per_s_unidir":
        bw = units.gb_per_s_to_bytes_per_s(t.req("link_gb_per_s_unidir", float))
    else:
        bw = units.gbit_per_s_to_bytes_per_s(t.req("link_gbit_per_s_unidir", float))
    if t.has("domain_chips"):
        domain = t.req("domain_chips", int) * devices_per_chip
    else:
        domain = t.req("domain_devices", int)
    kwargs = dict(
        name=t.req("name", str),
        topology=t.choice("topology", TOPOLOGIES),
        domain_devices=domain,
        link_bw_bytes_per_s=bw,
        latency_s=units.us_to_s(t.req("latency_us", float)),
        dims=tuple(t.opt("dims", list, [])),
        wraparound=t.choice("wraparound", WRAPAROUND_RULES, "always"),
        links_per_chip=t.opt("links_per_chip", int, 0),
        bw_efficiency=_efficiency(t, "bw_efficiency", 1.0),
        oversubscription=t.opt("oversubscription", float, 1.0),
        switch_radix=t.opt("switch_radix", int, 0),
        rails=t.opt("rails", int, 1),
        nvls_efficiency=t.opt("nvls_efficiency", float, 0.0),
        nvlstree_efficiency=t.opt("nvlstree_efficiency", float, None),
        nvlstree_net_factor=t.opt("nvlstree_net_factor", float, None),
        p2p_factor=t.opt("p2p_factor", float, None),
        alltoall_p2p_factor=t.opt("alltoall_p2p_factor", float, None),
        nonring_latency_s=_us_or_none(t.opt("nonring_latency_us", float, None)),
        p2p_latency_s=_us_or_none(t.opt("p2p_latency_us", float, None)),
        ll_latency_s=_us_or_none(t.opt("ll_latency_us", float, None)),
        ll128_latency_s=_us_or_none(t.opt("ll128_latency_us", float, None)),
        fill_bytes=t.opt("fill_bytes", float, None),
        nccl_arch=t.opt("nccl_arch", str, ""),
        sharp=t.opt("sharp", bool, False),
        host_cpu=t.choice("host_cpu", HOST_CPUS[1:], ""),  # "" (the default): not stated
        gpu_nic_path=t.choice("gpu_nic_path", GPU_NIC_PATHS[1:], ""),
        collective_overhead_s=units.us_to_s(t.opt("collective_overhead_us", float, 0.0)),
        source=t.req("source", str),
    )
    try:
        return InterconnectLevel(**kwargs)
    except SpecError as err:  # report the level by its position in the file, as the loader does
        key = (err.field or "").rsplit(".", 1)[-1] or None
        message = str(err).split(": ", 1)[-1].rsplit(" (allowed: ", 1)[0]
        raise t.error(key, message, value=err.value, allowed=err.allowed) from None


def _us_or_none(value: float | None) -> float | None:
    return None if value is None else units.us_to_s(value)


def hardware_from_table(t: Table) -> HardwareProfile:
    """Build a HardwareProfile; per-chip figures become per-device, human units become SI. A range error on
    an SI field names the file's own key and range in its unit (moesim/specs/file_units.py)."""
    try:
        return _hardware_from_table(t)
    except SpecError as err:
        raise to_file_error(err, t.data) from None


def _hardware_from_table(t: Table) -> HardwareProfile:
    check_file_kind(t, "hardware profile")
    check_schema_version(t, SCHEMA_VERSION)
    chip_t = t.sub("chip")
    per_chip = chip_t.opt("devices_per_chip", int, 1)
    if per_chip < 1:
        raise chip_t.error("devices_per_chip", "must be >= 1", value=per_chip)
    peaks_t = chip_t.sub("peak_tflops_per_chip")
    peaks = {dtype: units.tflops_to_flops_per_s(peaks_t.req(dtype, float)) / per_chip
             for dtype in list(peaks_t.data)}
    peaks_t.finish(allowed=DTYPES)
    hbm_keys = [k for k in ("hbm_gib_per_chip", "hbm_gb_per_chip") if chip_t.has(k)]
    if len(hbm_keys) != 1:
        raise chip_t.error("hbm_gib_per_chip", "give exactly one of hbm_gib_per_chip or hbm_gb_per_chip")
    hbm_bytes = (units.gib_to_bytes(chip_t.req("hbm_gib_per_chip", float)) if hbm_keys[0] == "hbm_gib_per_chip"
                 else units.gb_to_bytes(chip_t.req("hbm_gb_per_chip", float)))
    chip = ChipSpec(
        name=chip_t.req("name", str),
        devices_per_chip=per_chip,
        peak_flops_per_s=peaks,
        hbm_bytes=hbm_bytes / per_chip,
        hbm_bw_bytes_per_s=units.gb_per_s_to_bytes_per_s(chip_t.req("hbm_bw_gb_per_s_per_chip", float)) / per_chip,
        source=chip_t.req("source", str),
        sm_count=chip_t.opt("sm_count", int, None),
    )
    chip_t.finish()
    eff_t = t.sub("efficiency")
    overhead_us = eff_t.opt("layer_overhead_us", float, 0.0)
    if not 0 <= overhead_us < float("inf"):
        raise eff_t.error("layer_overhead_us", "must be a finite number >= 0 (microseconds per layer per pass)",
                          value=overhead_us)
    launch_us = eff_t.opt("kernel_launch_us", float, 0.0)
    if not 0 <= launch_us < float("inf"):
        raise eff_t.error("kernel_launch_us", "must be a finite number >= 0 (microseconds per kernel)",
                          value=launch_us)
    op_tables = []
    for op_t in eff_t.sub_list("op_table", required=False):
        op_tables.append(_op_table(op_t))
        op_t.finish()
    lender = eff_t.opt("op_tables_from", str, "")
    if lender:  # after the profile's own tables: select_table keeps the first of equal rank (moesim/ops/tables.py)
        op_tables.extend(_borrowed_op_tables(eff_t, lender))
    efficiency = ComputeEfficiency(
        matmul=_efficiency(eff_t, "matmul"),
        memory_bandwidth=eff_t.req("memory_bandwidth", float),
        layer_overhead_s=units.us_to_s(overhead_us),
        source=eff_t.req("source", str),
        op_tables=tuple(op_tables),
        kernel_launch_s=units.us_to_s(launch_us),
        op_tables_from=lender,
    )
    eff_t.finish()
    levels = []
    for level_t in t.sub_list("interconnect"):
        levels.append(_level_from_table(level_t, per_chip))
        level_t.finish()
    picks = []  # calibrate --transfer pick-as-nccl: the levels NCCL's tuner ranks by (HardwareProfile.pick_interconnect)
    for level_t in t.sub_list("pick_interconnect", required=False):
        picks.append(_level_from_table(level_t, per_chip))
        level_t.finish()
    profile = HardwareProfile(
        name=t.req("name", str),
        description=t.req("description", str),
        device_kind=t.choice("device_kind", DEVICE_KINDS),
        max_devices=t.req("max_devices", int),
        chip=chip,
        efficiency=efficiency,
        interconnect=tuple(levels),
        memory_reserved_bytes=units.gib_to_bytes(t.opt("memory_reserved_gib", float, 0.0)),
        price_per_device_hour_usd=t.opt("price_per_device_hour_usd", float, None),
        price_source=t.opt("price_source", str, ""),
        calibrated_from=t.opt("calibrated_from", str, ""),
        pick_interconnect=tuple(picks),
    )
    t.finish()
    return profile


def load_hardware(ref: str | Path, *, relative_to: Path | None = None, field: str | None = None) -> HardwareProfile:
    """A hardware profile by built-in name (e.g. `tpu-v3`) or path (`field`: the option that named it)."""
    path = resolve_ref(ref, "hardware_profiles", relative_to=relative_to, field=field)
    return with_file(path, lambda: hardware_from_table(Table(read_data_file(path), file=str(path))))
