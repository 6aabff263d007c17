"""Writing a calibrated hardware profile: the prior's TOML with fitted values in place of the priors.

The file keeps the prior's schema and keys (so `moesim.specs.load.load_hardware` reads it and
`moesim estimate --hardware FILE` uses it) and changes only fitted figures:
  chip.peak_tflops_per_chip.<dtype>   × the fitted peak scale of that dtype, and × η_max when the
                                      fitted efficiency exceeds 1 (measured throughput above the
                                      prior peak: the peak was too low, so it is raised and the
                                      table divided by η_max; times are unchanged);
  efficiency.matmul                   the fitted table [[kernel FLOP, η], ...];
  efficiency.memory_bandwidth         W_mem / HBM bandwidth (HBM bandwidth raised when W_mem is above it);
  efficiency.layer_overhead_us        the fixed host cost per layer pass, when layer totals were fitted;
  interconnect[i].latency_us          α_i;
  interconnect[i].bw_efficiency       W_i / link bandwidth, a constant (link raised when W_i is above it);
  interconnect[i].nvls_efficiency     V_i / W_i, the fitted NVLS bandwidth over the written usable bandwidth
                                      (at most 1: a V above W is written as 1 and reported as a residual);
  interconnect[i].nvlstree_efficiency V'_i / W_i, NVLS inside a node of NVLSTree, where it differs from V_i;
  interconnect[i].nvlstree_net_factor  U_i / W_i, NVLSTree's inter-node line, where it differs from W_i;
  interconnect[i].p2p_factor          P_i / W_i, send/recv's line, where it differs from W_i;
  interconnect[i].p2p_latency_us      π_i, send/recv's message latency, where it differs from the written α_i;
  interconnect[i].ll_latency_us,      α_i^LL, α_i^LL128, the LL / LL128 hop latencies, where they differ from
    ll128_latency_us                  the written α_i (then the Simple hop);
  interconnect[i].fill_bytes          the ramp's S_fill of level i, where the fill search moved it (fill_fit.py);
  name, description, calibrated_from, and the `source` lines.
`calibrated_from` holds the provenance as "key: value" lines, among them `fitted_on:` (the
switch_layer record keys the fit used), so `moesim validate-report` can leave them out.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from moesim.calibrate.fit import FitResult
from moesim.calibrate.records import bytes_digest
from moesim.errors import SpecError
from moesim.specs.fields import Table
from moesim.specs.hardware import MAX_NVLSTREE_NET_FACTOR, HardwareProfile
from moesim.specs.hardware_file import lender_for_copy
from moesim.specs.load import hardware_from_table, read_data_file
from moesim.units import GB_BYTES

PROVENANCE_HEAD = "moesim calibrate, provenance v1"
SIGNIFICANT_DIGITS = 6
TFLOPS = 1e12
US_PER_S = 1e6
BITS_PER_BYTE = 8


@dataclass(frozen=True)
class Provenance:
    """Where a calibrated profile came from."""

    prior: str
    sources: tuple[str, ...]
    holdout_fraction: float
    seed: int
    fitted_on: tuple[str, ...]
    held_out: tuple[str, ...]
    created_utc: str = ""


def file_digest(path: str | Path) -> str:
    """First 12 hex digits of the file's SHA-256 (identifies the measurements a profile was fitted on)."""
    return bytes_digest(Path(path).read_bytes())


def format_provenance(p: Provenance) -> str:
    lines = [PROVENANCE_HEAD, f"created_utc: {p.created_utc}", f"prior: {p.prior}",
             "sources: " + " ".join(p.sources), f"holdout_fraction: {p.holdout_fraction:g}", f"seed: {p.seed}",
             "fitted_on: " + " ".join(p.fitted_on), "held_out: " + " ".join(p.held_out)]
    return "\n".join(lines)


def parse_provenance(text: str) -> Provenance | None:
    """The provenance in a `calibrated_from` string written by moesim calibrate, else None."""
    lines = text.strip().splitlines()
    if not lines or lines[0].strip() != PROVENANCE_HEAD:
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    try:
        return Provenance(prior=fields.get("prior", ""), sources=tuple(fields.get("sources", "").split()),
                          holdout_fraction=float(fields.get("holdout_fraction", "0")),
                          seed=int(fields.get("seed", "0")),
                          fitted_on=tuple(fields.get("fitted_on", "").split()),
                          held_out=tuple(fields.get("held_out", "").split()), created_utc=fields.get("created_utc", ""))
    except ValueError as err:
        raise SpecError(f"calibrated_from: unreadable provenance ({err})", field="calibrated_from") from None


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _sig(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def calibrated_table(prior_path: Path, fit: FitResult, provenance: Provenance, name: str | None = None) -> dict:
    """The prior profile's TOML table with the fitted values (see the module docstring)."""
    raw = copy.deepcopy(read_data_file(prior_path))
    prior = fit.prior
    per_chip = prior.chip.devices_per_chip
    raw["name"] = name or f"{prior.name}-calibrated"
    raw["description"] = f"Calibrated by moesim calibrate ({provenance.created_utc}). Prior: {prior.description}"
    raw["calibrated_from"] = format_provenance(provenance)
    boost = max(max(fit.efficiency, default=1.0), 1.0)
    chip = raw["chip"]
    peaks = chip["peak_tflops_per_chip"]
    for dtype in sorted(set(peaks) | set(fit.peak_scales)):
        scale = fit.peak_scales.get(dtype, 1.0) * boost
        if scale != 1.0 or dtype not in peaks:
            peaks[dtype] = _sig(prior.chip.peak_for(dtype) * per_chip * scale / TFLOPS)
    eff = raw["efficiency"]
    if eff.get("op_tables_from"):  # read beside the copy from here on (hardware_file.lender_for_copy)
        eff["op_tables_from"] = lender_for_copy(eff["op_tables_from"], prior_path)
    notes = []
    if fit.knots_flops:
        eff["matmul"] = [[_sig(k), min(_sig(e / boost), 1.0)] for k, e in zip(fit.knots_flops, fit.efficiency)]
        notes.append(f"matmul table fitted on {len(fit.knots_flops)} knots (kernel FLOP)")
        if boost > 1:
            notes.append(f"measured throughput was {boost:.3g}x the prior peak: peaks raised by that factor")
    if fit.memory_bw_bytes_per_s is not None:
        hbm = prior.chip.hbm_bw_bytes_per_s
        w_mem = fit.memory_bw_bytes_per_s
        if fit.op_memory:  # operator tables are fractions of the HBM figure: scale it, keep the efficiency
            chip["hbm_bw_gb_per_s_per_chip"] = _sig(hbm * w_mem / (hbm * prior.efficiency.memory_bandwidth)
                                                    * per_chip / GB_BYTES)
        elif w_mem > hbm:
            chip["hbm_bw_gb_per_s_per_chip"] = _sig(w_mem * per_chip / GB_BYTES)
            eff["memory_bandwidth"] = 1.0
        else:
            eff["memory_bandwidth"] = min(_sig(w_mem / hbm), 1.0)
        notes.append(f"effective memory bandwidth {w_mem / GB_BYTES:.4g} GB/s")
    if fit.layer_overhead_s is not None:
        eff["layer_overhead_us"] = _sig(fit.layer_overhead_s * US_PER_S)
        notes.append(f"layer overhead {fit.layer_overhead_s * US_PER_S:.4g} us per layer pass")
    eff["source"] = f"moesim calibrate ({provenance.created_utc}): " + "; ".join(notes) if notes else eff["source"]
    for level_raw, level, (_, alpha, bw, alpha_fitted, bw_fitted) in zip(raw["interconnect"], prior.interconnect,
                                                                         fit.levels):
        _write_level(level_raw, level, alpha if alpha_fitted else None, bw if bw_fitted else None, provenance)
        if level.name in fit.nvls_bandwidths:
            _write_nvls(level_raw, level, bw if bw_fitted else None, fit.nvls_bandwidths[level.name], provenance)
        for (name, key), line in fit.extra_bandwidths.items():
            if name == level.name:
                _write_factor(level_raw, level, key, bw if bw_fitted else None, line, provenance)
        if level.name in fit.p2p_latencies:
            _write_p2p_latency(level_raw, level, alpha if alpha_fitted else None, fit.p2p_latencies[level.name],
                               provenance)
        for key, own, value in zip(("ll_latency_us", "ll128_latency_us"), (level.ll_latency_s, level.ll128_latency_s),
                                   fit.protocol_latencies.get(level.name, ())):
            _write_own_latency(level_raw, level, key, alpha if alpha_fitted else None, own, value, provenance)
        for found in fit.fills:
            if found.level == level.name and found.fill_bytes != found.prior_bytes:
                _write_fill(level_raw, found.fill_bytes, found.ramp_rows, provenance)
    return raw


def _write_level(raw: dict, level, alpha: float | None, bw: float | None, provenance: Provenance) -> None:
    if alpha is None and bw is None:
        return
    notes = []
    if alpha is not None:
        raw["latency_us"] = _sig(alpha * US_PER_S)
        notes.append(f"latency {alpha * US_PER_S:.4g} us")
    if bw is not None:
        link = level.link_bw_bytes_per_s
        if bw > link:
            key = "link_gb_per_s_unidir" if "link_gb_per_s_unidir" in raw else "link_gbit_per_s_unidir"
            raw[key] = _sig(bw / GB_BYTES * (BITS_PER_BYTE if key.startswith("link_gbit") else 1))
            raw["bw_efficiency"] = 1.0
        else:
            raw["bw_efficiency"] = min(_sig(bw / link), 1.0)
        notes.append(f"effective bandwidth {bw / GB_BYTES:.4g} GB/s one way")
    raw["source"] = f"moesim calibrate ({provenance.created_utc}): {', '.join(notes)}; prior: {raw.get('source', '')}"


def _write_nvls(raw: dict, level, bw: float | None, nvls: tuple[float, float], provenance: Provenance) -> None:
    """η_nvls = V / W and η_nvlstree = V' / W on the written usable bandwidth W, where V, V' or W moved; η_nvlstree
    is left unset while V' = V (the loader then takes η_nvls, as NCCL does)."""
    usable = bw if bw is not None else level.link_bw_bytes_per_s * max(p[1] for p in level.bw_efficiency.points)
    prior_tree = level.nvls_efficiency if level.nvlstree_efficiency is None else level.nvlstree_efficiency
    v, v_tree = nvls
    old_usable = level.link_bw_bytes_per_s * max(p[1] for p in level.bw_efficiency.points)
    if bw is None and v == level.nvls_efficiency * old_usable and v_tree == prior_tree * old_usable:
        return
    raw["nvls_efficiency"] = min(_sig(v / usable), 1.0)
    notes = [f"NVLS bandwidth {v / GB_BYTES:.4g} GB/s"]
    if "nvlstree_efficiency" in raw or v_tree != v:
        raw["nvlstree_efficiency"] = min(_sig(v_tree / usable), 1.0)
        notes.append(f"NVLSTree (inside a node) {v_tree / GB_BYTES:.4g} GB/s")
    raw["source"] = f"moesim calibrate ({provenance.created_utc}): {', '.join(notes)}; " + raw.get("source", "")


def _write_factor(raw: dict, level, key: str, bw: float | None, line: float, provenance: Provenance) -> None:
    """key (nvlstree_net_factor, p2p_factor) = line / W on the written usable bandwidth W, where the line or W
    moved; left unset while the line equals W."""
    usable0 = level.link_bw_bytes_per_s * max(p[1] for p in level.bw_efficiency.points)
    usable = bw if bw is not None else usable0
    if bw is None and line == usable0 * (getattr(level, key) or 1.0):
        return
    if key not in raw and abs(line / usable - 1.0) < 10.0 ** -SIGNIFICANT_DIGITS:
        return
    raw[key] = min(_sig(line / usable), MAX_NVLSTREE_NET_FACTOR)
    raw["source"] = (f"moesim calibrate ({provenance.created_utc}): {key} line {line / GB_BYTES:.4g} GB/s; "
                     + raw.get("source", ""))


def _write_p2p_latency(raw: dict, level, alpha: float | None, p2p_s: float, provenance: Provenance) -> None:
    """p2p_latency_us = π where π or α moved; left unset while π equals the written latency (the loader then takes
    latency_us, as before the key existed)."""
    prior = level.latency_s if level.p2p_latency_s is None else level.p2p_latency_s
    if alpha is None and p2p_s == prior:
        return
    written = alpha if alpha is not None else level.latency_s
    if "p2p_latency_us" not in raw and abs(p2p_s - written) <= 10.0 ** -SIGNIFICANT_DIGITS * written:
        return
    raw["p2p_latency_us"] = _sig(p2p_s * US_PER_S)
    raw["source"] = (f"moesim calibrate ({provenance.created_utc}): send/recv latency {p2p_s * US_PER_S:.4g} us; "
                     + raw.get("source", ""))


def _write_own_latency(raw: dict, level, key: str, alpha: float | None, own: float | None, value_s: float,
                       provenance: Provenance) -> None:
    """key (ll_latency_us, ll128_latency_us) = the protocol's fitted hop where it or α moved; left unset while it
    equals the written latency (the loader then takes latency_us), as p2p_latency_us."""
    prior = level.latency_s if own is None else own
    if alpha is None and value_s == prior:
        return
    written = alpha if alpha is not None else level.latency_s
    if key not in raw and abs(value_s - written) <= 10.0 ** -SIGNIFICANT_DIGITS * written:
        return
    raw[key] = _sig(value_s * US_PER_S)
    raw["source"] = (f"moesim calibrate ({provenance.created_utc}): {key.removesuffix('_us')} "
                     f"{value_s * US_PER_S:.4g} us; " + raw.get("source", ""))


def _write_fill(raw: dict, fill: float, rows: int, provenance: Provenance) -> None:
    """fill_bytes = the ramp's fitted S_fill (fill_fit.py), where the search moved it off the prior's."""
    raw["fill_bytes"] = _sig(fill)
    raw["source"] = (f"moesim calibrate ({provenance.created_utc}): ramp fill {fill / 2**20:.4g} MiB from {rows} ramp "
                     "rows; " + raw.get("source", ""))


def profile_from_table(table: dict, file: str = "<calibrated profile>") -> HardwareProfile:
    """Load a profile table exactly as load_hardware would."""
    return hardware_from_table(Table(copy.deepcopy(table), file=file))


def render_profile(table: dict, header: list[str]) -> str:
    """TOML text: `header` as comment lines, then the table (tomli-w)."""
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header)
    ordered = {k: table[k] for k in ("schema_version", "name", "description", "device_kind", "max_devices")
               if k in table}
    ordered.update({k: v for k, v in table.items() if k not in ordered})
    return comments + tomli_w.dumps(_plain(ordered), multiline_strings=True)


def _plain(value: Any) -> Any:
    """Lists of tables stay tables; tuples become lists (tomli-w writes lists only)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
