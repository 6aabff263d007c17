"""Fitting a profile's per-operator tables to operator records (`python -m validate.ops`).

    moesim calibrate ops.jsonl --hardware P -o P-calibrated.toml [--holdout-fraction 0.3] [--seed 0]

Procedure (fit only on operator measurements; docs/operators.md):
1. Split by shape within each table: every record's key is kind/pass/op/dtype/shape; per table the records
   feed (`table_of`: kind, dtype, pass, op; memory: op, every dtype pooled) a seeded hash holds out a
   fraction of its keys (moesim.calibrate.records.split_holdout, the rule the layer calibration uses, applied
   per table as moesim/ops/holdout.py does), so every held-out record is priced by a fitted table of its own
   kind, dtype and pass: held out over all keys at once, a split could take every shape of a table (seed 2
   of the quick sweep held out all six attention backward keys), and those records were then priced by the
   prior's FLOP-keyed curve, not by any table (docs/operators.md "Attention's held-out miss").
2. Kernel launch cost L (efficiency.kernel_launch_us), shared by every kernel: the median of the fitted
   `launch` records (validate.ops: one ATen call's cost, forward and autograd backward, measured
   directly) when there are any; else the intercept of non-negative least squares (scipy nnls) of the
   fitted memory records' times on [bytes of each memory op, 1]: t = bytes·s_op + L.
3. Peak per dtype, measured: the highest FLOP/s any fitted GEMM or grouped-GEMM record of that dtype
   reaches after L (among records at least half work, t − L >= t / 2), so each dtype (bfloat16
   included) gets its own peak (chip.peak_tflops_per_chip).
4. Tables: per (kind, dtype, pass, op) the fitted records' efficiencies (memory: the records of every
   dtype, by bytes), η = work / (peak · (t − L))
   (compute) or bytes / (HBM · (t − L)) (memory), as the points of an [[efficiency.op_table]] at their
   shapes (status "measured"), interpolated by moesim.ops.tables; HBM bandwidth is raised to the
   fastest memory record when a record beats it.
5. Held-out error per kind: each held-out record priced as an Op by moesim.ops.price with the written
   profile, and with the prior, e = (predicted − measured) / measured.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from moesim.calibrate.profile_io import file_digest, now_utc, profile_from_table, render_profile
from moesim.calibrate.records import split_holdout
from moesim.errors import SpecError
from moesim.ops.base import Op
from moesim.ops.price import op_time_s
from moesim.paths import write_text_file
from moesim.specs.hardware import DTYPES, OP_DIMS, OP_KINDS, HardwareProfile
from moesim.specs.hardware_file import lender_for_copy
from moesim.specs.load import load_hardware, read_data_file, resolve_ref

RECORD = "op"
PART = "attention"  # any valid part: records are priced one operator at a time
MIN_BUSY_FRACTION = 0.05  # t − L is kept at least this share of t (a record at the launch floor)
PEAK_MIN_BUSY_FRACTION = 0.5  # a dtype's peak is read off records whose time is at least half work (t − L)


@dataclass(frozen=True)
class OpRecord:
    kind: str
    pass_: str
    op: str
    dtype: str
    shape: tuple[float, ...]
    flops: float
    bytes: float
    time_s: float

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.pass_}/{self.op}/{self.dtype}/" + "x".join(f"{x:g}" for x in self.shape)

    def as_op(self) -> Op:
        kind = self.kind
        if kind == "memory":
            return Op(PART, self.op, "memory", "fwd" if self.pass_ == "fwd" else "bwd", self.dtype,
                      bytes=self.bytes, shape=self.shape)
        return Op(PART, self.op, kind, self.pass_, self.dtype, flops=self.flops, shape=self.shape,
                  mask=self.op if kind == "attention" else "full",
                  fallback_kernel_flops=self.flops / self.shape[0] if kind == "grouped_gemm" else self.flops)


def is_op_file(path: str) -> bool:
    """Whether `path` is a JSONL file of operator records (its first record says "record": "op")."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    return json.loads(line).get("record") == RECORD
    except (OSError, ValueError, AttributeError):
        return False
    return False


def read_op_records(paths: list[str]) -> list[OpRecord]:
    out = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise SpecError(f"cannot read: {err.strerror}", file=path) from None
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{i}"
            try:
                r = json.loads(line)
                if r.get("record") != RECORD or r.get("schema_version") != 1:
                    raise SpecError("not an operator record of schema_version 1", file=where)
                kind, dtype = r["kind"], r["dtype"]
                if kind not in OP_KINDS or dtype not in DTYPES or len(r["shape"]) != len(OP_DIMS[kind]):
                    raise SpecError(f"bad kind/dtype/shape {kind}/{dtype}/{r['shape']}", file=where)
                rec = OpRecord(kind, r["pass"], r.get("op", "any"), dtype, tuple(float(x) for x in r["shape"]),
                               float(r.get("flops", 0.0)), float(r.get("bytes", 0.0)), float(r["time_s"]))
            except SpecError:
                raise
            except (KeyError, TypeError, ValueError) as err:
                raise SpecError(f"malformed operator record ({err})", file=where) from None
            if rec.time_s <= 0 or any(x <= 0 for x in rec.shape):
                raise SpecError("time_s and shape must be > 0", file=where)
            out.append(rec)
    if not out:
        raise SpecError("no operator records", file=", ".join(paths))
    return out


@dataclass(frozen=True)
class KindError:
    n: int
    mape: float
    max_abs: float
    mean_signed: float
    prior_mape: float


@dataclass(frozen=True)
class OpCalibration:
    profile: HardwareProfile
    path: Path
    launch_s: float
    peaks_flops_per_s: dict[str, float]
    n_fit: int
    held_out: dict[str, KindError]  # per kind

    def as_dict(self) -> dict:
        return {"profile": str(self.path), "kernel_launch_us": self.launch_s * 1e6,
                "peak_tflops": {k: v / 1e12 for k, v in self.peaks_flops_per_s.items()}, "fitted": self.n_fit,
                "held_out": {k: vars(v) for k, v in self.held_out.items()}}


LAUNCH_OP = "launch"  # validate.ops' per-call cost records (memory kind, not a bandwidth)


def fit_launch_and_memory(records: list[OpRecord]) -> float:
    """Shared per-kernel launch cost L (step 2)."""
    launch = [r.time_s for r in records if r.kind == "memory" and r.op == LAUNCH_OP]
    if launch:
        return float(np.median(launch))
    mem = [r for r in records if r.kind == "memory"]
    if len(mem) < 3:
        return 0.0
    names = sorted({r.op for r in mem})
    a = np.zeros((len(mem), len(names) + 1))
    for i, r in enumerate(mem):
        a[i, names.index(r.op)] = r.bytes / r.time_s
        a[i, -1] = 1.0 / r.time_s
    coef, _ = nnls(a, np.ones(len(mem)))  # relative error: each row divided by its time
    return float(coef[-1])


def table_of(rec: OpRecord) -> tuple[str, ...]:
    """The table a fitted record becomes a point of (step 4): kind, dtype, pass, op; memory records of every
    dtype and pass feed their op's table."""
    return (rec.kind, rec.op) if rec.kind == "memory" else (rec.kind, rec.dtype, rec.pass_, rec.op)


def split_by_table(records: list[OpRecord], fraction: float, seed: int) -> set[str]:
    """The fitted keys (step 1): split_holdout over each table's keys, so a table of two or more shapes keeps
    at least one and a table of one shape is never held out."""
    split_holdout([], fraction, seed)  # the fraction checked even where every table has one shape
    by_table: dict[tuple, set[str]] = defaultdict(set)
    for r in records:
        by_table[table_of(r)].add(r.key)
    fit: set[str] = set()
    for _, keys in sorted(by_table.items()):
        fit.update(split_holdout(sorted(keys), fraction, seed)[0] if len(keys) > 1 else keys)
    return fit


def calibrate_ops(paths: list[str], hardware: str, out: str | Path, *, holdout_fraction: float = 0.3,
                  seed: int = 0, name: str | None = None) -> OpCalibration:
    records = read_op_records(paths)
    prior_path = resolve_ref(hardware, "hardware_profiles", field="--hardware")
    prior = load_hardware(prior_path)
    fit_set = split_by_table(records, holdout_fraction, seed)
    fit = [r for r in records if r.key in fit_set]
    launch = fit_launch_and_memory(fit)
    fit = [r for r in fit if r.op != LAUNCH_OP]  # a per-call cost, no bandwidth table
    busy = lambda r: max(r.time_s - launch, MIN_BUSY_FRACTION * r.time_s)  # noqa: E731
    peaks = {}
    for dtype in sorted({r.dtype for r in fit}):
        gemms = [r for r in fit if r.dtype == dtype and r.kind in ("gemm", "grouped_gemm")]
        # the peak from records that are mostly work: one near the call cost says nothing about FLOP/s
        worked = [r for r in gemms if r.time_s - launch >= PEAK_MIN_BUSY_FRACTION * r.time_s] or gemms
        rates = [r.flops / busy(r) for r in worked]
        if rates:
            peaks[dtype] = max(rates)
    hbm = prior.chip.hbm_bw_bytes_per_s
    mem_rates = [r.bytes / busy(r) for r in fit if r.kind == "memory"]
    if mem_rates and max(mem_rates) > hbm:
        hbm = max(mem_rates)
    groups: dict[tuple, list] = defaultdict(list)
    mem_dtypes = sorted({r.dtype for r in fit if r.kind == "memory"})
    for r in fit:
        if r.kind == "memory":
            # A copy's bandwidth depends on its bytes, not its dtype: every dtype's table holds them all.
            eff = min(max(r.bytes / (hbm * busy(r)), 1e-6), 2.0)
            for dtype in mem_dtypes:  # and every pass: a backward copy moves bytes as a forward one does
                groups[(r.kind, dtype, "any", r.op)].append((*r.shape, eff))
            continue
        peak = peaks.get(r.dtype) or prior.chip.peak_for(r.dtype)
        eff = r.flops / (peak * busy(r))
        groups[(r.kind, r.dtype, r.pass_, r.op)].append((*r.shape, min(max(eff, 1e-6), 2.0)))
    table = read_data_file(prior_path)
    per_chip = prior.chip.devices_per_chip
    table["name"] = name or f"{prior.name}-calibrated"
    chip = table.setdefault("chip", {})
    chip.setdefault("peak_tflops_per_chip", {}).update(
        {d: float(f"{p * per_chip / 1e12:.6g}") for d, p in peaks.items()})
    chip["hbm_bw_gb_per_s_per_chip"] = float(f"{hbm * per_chip / 1e9:.6g}")
    eff_t = table.setdefault("efficiency", {})
    if eff_t.get("op_tables_from"):  # read beside the copy from here on (hardware_file.lender_for_copy)
        eff_t["op_tables_from"] = lender_for_copy(eff_t["op_tables_from"], prior_path)
    eff_t["kernel_launch_us"] = float(f"{launch * 1e6:.6g}")
    measured_on = "; ".join(sorted({_device(p) for p in paths}))
    tables = [t for t in eff_t.get("op_table", []) if (t["kind"], t["dtype"]) not in {(k, d) for k, d, _, _ in groups}]
    for (kind, dtype, pass_, op), points in sorted(groups.items()):
        entry = {"kind": kind, "dtype": dtype, "pass": pass_}
        if kind == "memory" or op not in ("any", "causal"):
            entry["op"] = op
        entry.update(status="measured", measured_on=measured_on,
                     source="python -m validate.ops; fitted by moesim calibrate (moesim/calibrate/ops.py)",
                     points=[[float(f"{x:.6g}") for x in p] for p in sorted(points)])
        tables.append(entry)
    eff_t["op_table"] = tables
    table["calibrated_from"] = "\n".join([
        f"prior: {prior_path}", "sources: " + ", ".join(f"{p}@sha256:{file_digest(p)}" for p in paths),
        f"holdout_fraction: {holdout_fraction}", f"seed: {seed}", f"operator records: {len(records)} "
        f"({len(fit)} fitted)", f"created_utc: {now_utc()}"])
    profile = profile_from_table(table, file=str(out))
    errors = held_out_errors([r for r in records if r.key not in fit_set and r.op != LAUNCH_OP], profile, prior)
    header = [f"Operator tables calibrated by `moesim calibrate` from '{prior.name}' on {len(fit)} operator "
              f"records ({len(records) - len(fit)} held out by shape).",
              f"Kernel launch {launch * 1e6:.3g} us; measured peaks " +
              ", ".join(f"{d} {p / 1e9:.4g} GFLOP/s" for d, p in peaks.items()) + ".",
              "Held-out error per kind (n, MAPE, max, mean signed; prior MAPE): " +
              "; ".join(f"{k} {e.n}, {e.mape:.1%}, {e.max_abs:.1%}, {e.mean_signed:+.1%}; {e.prior_mape:.1%}"
                        for k, e in errors.items())]
    out = Path(out)
    write_text_file(out, render_profile(table, header), field="--output")  # whole or nothing (paths.write_text_file)
    written = load_hardware(out)
    return OpCalibration(written, out, launch, peaks, len(fit), errors)


def _device(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            r = json.loads(fh.readline())
        return (f"{r.get('device', '?')} ({r.get('timer', '?')}, torch {r.get('torch', '?')}, "
                f"{r.get('threads', '?')} threads)")
    except (OSError, ValueError):
        return "?"


def predict_s(rec: OpRecord, profile: HardwareProfile) -> float:
    return float(np.asarray(op_time_s(rec.as_op(), profile)).reshape(-1)[0])


def held_out_errors(records: list[OpRecord], profile: HardwareProfile, prior: HardwareProfile) -> dict[str, KindError]:
    out = {}
    for kind in OP_KINDS:
        rs = [r for r in records if r.kind == kind]
        if not rs:
            continue
        err = np.array([predict_s(r, profile) / r.time_s - 1 for r in rs])
        prior_err = np.array([_prior_predict(r, prior) / r.time_s - 1 for r in rs])
        out[kind] = KindError(len(rs), float(np.abs(err).mean()), float(np.abs(err).max()), float(err.mean()),
                              float(np.abs(prior_err).mean()))
    return out


def _prior_predict(rec: OpRecord, prior: HardwareProfile) -> float:
    try:
        return predict_s(rec, prior)
    except SpecError:
        return math.nan


def render_ops_calibration(result: OpCalibration) -> str:
    lines = [f"calibrated operator tables -> {result.path} ({result.profile.name}); {result.n_fit} records fitted",
             f"  kernel launch {result.launch_s * 1e6:.3g} us; measured peaks: " +
             ", ".join(f"{d} {p / 1e9:.4g} GFLOP/s" for d, p in result.peaks_flops_per_s.items()),
             "", "held out by shape: kind  n  MAPE  max  mean signed  (prior MAPE)"]
    for kind, e in result.held_out.items():
        lines.append(f"  {kind:<13} {e.n:>4}  {e.mape:6.1%}  {e.max_abs:6.1%}  {e.mean_signed:+6.1%}  "
                     f"({e.prior_mape:.1%})")
    return "\n".join(lines)
