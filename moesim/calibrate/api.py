"""The two library calls behind `moesim calibrate` and `moesim validate-report`, and their text output."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from scipy.optimize import nnls

from moesim.calibrate.facts_fit import FactsInference, infer_system_facts, provenance_line, render_inference
from moesim.calibrate.fit import (
    FIT_PHASES, HOP_LATENCY_MEANINGS, ROUTER_MATMUL, FitResult, check_hop_latency, fit_profile, hop_latency_rule,
    with_bootstrap,
)
from moesim.calibrate.nccl_error import pct
from moesim.calibrate.predict import predict_layer, terms_time_s
from moesim.calibrate.profile_io import (
    Provenance, calibrated_table, now_utc, profile_from_table, render_profile,
)
from moesim.calibrate.records import TOTAL, Measurements, read_measurements, split_holdout
from moesim.calibrate.transfer import TRANSFER_MEANINGS, apply_machinery, check_transfer
from moesim.calibrate.report import ValidationReport, validation_report
from moesim.errors import SpecError
from moesim.paths import builtin_dir, written_by_calibrate
from moesim.specs.hardware import HardwareProfile
from moesim.specs.load import load_hardware, read_data_file, resolve_ref
from moesim.specs.system_facts import set_system_facts, with_system_facts

# Written profile vs the fit's own predictions: 6 significant digits are written, and the collective model
# takes the min over (algorithm, protocol) candidates, so where two nearly tie the rounding can flip the
# winner (seen: NVLink vs NIC ring terms 0.24 % apart).
CONSISTENCY_RTOL = 5e-3
# calfacts (session 8): infer unstated system facts from nccl-tests rows by default (facts_fit.py; the measurement
# that decided it: docs/collectives.md, "Inferring system facts from a log")
INFER_FACTS = True
# calorder (session 9): the hop-latency rule calibrate fits (fit.PROTOCOL_MODES; `--hop-latency`, HOP_LATENCY_RULES):
# False, one hop figure per level (docs/collectives-history.md, "Session 9 (calorder)", says why it stays so)
LATENCY_PER_PROTOCOL = False
# calpairs (session 10): where a fitted figure is written (transfer.TRANSFER_RULES; `--transfer`): "shared", one key
# every mechanism reads (docs/collectives-history.md, "Session 10 (calpairs)", has the decision rule and its matrix)
TRANSFER_RULE = "shared"


@dataclass(frozen=True)
class CalibrationResult:
    """A calibration: the fit, the profile written (reloaded from disk) and the held-out report."""

    fit: FitResult
    measurements: Measurements
    profile: HardwareProfile
    profile_path: Path
    held_out: tuple[str, ...]
    held_out_report: ValidationReport | None
    gap: LayerGap | None
    consistency: tuple[str, ...] = ()  # observations the written profile prices off the fit (residual given)
    guard: PriorGuard | None = None  # the keep-the-prior rule's figures (None without fitted layer records)
    facts: FactsInference | None = None  # unstated system facts inferred from the log (facts_fit.py); None: not tried
    transfer_rule: str = "shared"  # where fitted figures were written (transfer.py); JSON fit.transfer_rule if not shared
    transfer_notes: tuple[str, ...] = ()  # the figures the "machinery" rule kept off a machinery

    def as_dict(self) -> dict:
        fit = self.fit
        return {
            "profile": str(self.profile_path),
            "prior": fit.prior.name,
            "records": {"switch_layer": len(self.measurements.layers), "fitted": len(fit.fitted_keys),
                        "held_out": len(self.held_out), "collective_points": len(self.measurements.collectives),
                        "skipped": list(self.measurements.skipped),
                        "rank_checks": [c.as_dict() for c in self.measurements.rank_checks]},
            "fit": {"loss": fit.loss, "parameters_fitted": fit.n_parameters, "observations": fit.overall.n,
                    "layer_overhead_s": fit.layer_overhead_s,
                    "mape": fit.overall.mape, "max_abs_pct_error": fit.overall.max_abs_pct_error,
                    "r2_log": fit.overall.r2_log, "bootstrap": fit.bootstrap, "seed": fit.seed,
                    "prior_weight": fit.level_prior_weight, "gpus_per_thread": fit.gpus_per_thread,
                    "host_floor_rows_left_out": fit.host_floor_rows,
                    "prior_weight_check": [{"weight": w, "held_out_by_size_mape_sum": s}
                                           for w, s in fit.prior_weight_scores],
                    "effective_rows": fit.effective_rows, "effective_rows_rounds": list(fit.effective_rows_rounds),
                    "fills": [{"level": f.level, "fill_bytes": f.fill_bytes, "prior_bytes": f.prior_bytes,
                               "ramp_rows": f.ramp_rows, "fitted": f.fitted} for f in fit.fills],
                    "system_facts": self.facts.as_dict() if self.facts else None,
                    "hop_latency_rule": hop_latency_rule(fit.latency_per_protocol),
                    # calpairs: only where not the default, so that default outputs stay as they were
                    **({"transfer_rule": self.transfer_rule, "transfer_notes": list(self.transfer_notes)}
                       if self.transfer_rule != "shared" else {})},
            "parameters": [{"name": p.name, "unit": p.unit, "value": p.value, "prior": p.prior, "fitted": p.fitted,
                            "rel_std": p.rel_std, "interval_90": list(p.interval) if p.interval else None}
                           for p in fit.parameters],
            "residuals": {label: vars(stats) for label, stats in fit.blocks.items()},
            "collective_diagnostics": [vars(o) for o in fit.op_fits],
            "unmodelled_layer_time": vars(self.gap) if self.gap else None,
            "held_out": self.held_out_report.as_dict() if self.held_out_report else None,
            "profile_vs_fit": list(self.consistency),
            "kept_prior": self.guard.kept_prior if self.guard else False,
            "held_in_layer_mape": ({"fit": self.guard.fit_mape, "prior": self.guard.prior_mape}
                                   if self.guard else None),
        }


@dataclass(frozen=True)
class PriorGuard:
    """The rule that calibration never makes a profile worse than its prior, decided on the fitted (held-in)
    records only: when the fitted profile's held-in layer MAPE is not below the prior's, the prior's figures
    are written instead (with the provenance and this note)."""

    fit_mape: float
    prior_mape: float

    @property
    def kept_prior(self) -> bool:
        return not self.fit_mape < self.prior_mape


def calibrate(paths: list[str], hardware: str, out: str | Path, *, holdout_fraction: float = 0.3, seed: int = 0,
              bootstrap: int = 100, loss: str = "soft_l1", name: str | None = None,
              nccl_op: str | None = None, fit_router_matmul: bool = False,
              nccl_ranks: int | None = None, prior_weight: float | None = None, progress=None,
              gpus_per_thread: int = 1, system: Mapping[str, str] | None = None,
              infer_facts: bool | None = None, latency_per_protocol: bool | str | None = None,
              transfer_rule: str | None = None) -> CalibrationResult:
    """Fit `hardware` to the measurement files, write the calibrated profile to `out`, report held-out error.

    Never ends in a traceback on a fit the profile cannot hold exactly: `consistency` lists the observations
    whose prediction from the written profile differs from the fit's own (the residual is reported).
    `prior_weight`: one weight for every interconnect figure's prior; None = from the fitted log (prior_weight.py),
    or LEVEL_PRIOR_WEIGHT where layer records are fitted.
    `progress(fraction)` is called as the fit and its bootstrap refits go. `gpus_per_thread`: nccl-tests' -g N of
    the logs (their rows priced with the host floor of N launches per iteration; rows at the floor left out).
    `system`: facts of the measured cluster set over the profile's network levels (specs/system_facts.py:
    host_cpu, gpu_nic_path), in the fit and in the written profile.
    `infer_facts`: infer the facts `system` and the profile leave unstated from the nccl-tests rows (facts_fit.py)
    and write the chosen ones; None = INFER_FACTS.
    `latency_per_protocol`: the hop-latency rule of the fit (fit.PROTOCOL_MODES: False one hop figure per level, True
    a figure per protocol, "hierarchical" per-protocol departures from the level hop); None = LATENCY_PER_PROTOCOL.
    Facts are inferred first, their classes compared under the shared rule (facts_fit.py); then, with the chosen class
    fixed, the requested rule is fitted (calorder's ordering, session 9).
    `transfer_rule`: where fitted figures are written (transfer.TRANSFER_RULES; None = TRANSFER_RULE).
    """
    rule = check_hop_latency(LATENCY_PER_PROTOCOL if latency_per_protocol is None else latency_per_protocol)
    transfer = check_transfer(TRANSFER_RULE if transfer_rule is None else transfer_rule)
    check_output(out, paths, hardware)
    measurements = read_measurements(paths, nccl_op=nccl_op, nccl_ranks=nccl_ranks)
    prior_path = resolve_ref(hardware, "hardware_profiles")
    prior = with_system_facts(load_hardware(prior_path), system or {})
    logs = sorted({p.source.rsplit(":", 1)[0] for p in measurements.collectives if p.nccl_tests})
    if logs and prior.device_kind != "gpu":  # nccl-tests measure NCCL, which runs on GPUs
        raise SpecError(f"nccl-tests logs measure NCCL on GPUs, but {prior.name}'s devices are {prior.device_kind}: "
                        "give the GPU profile the cluster's collectives are priced with", file=logs[0],
                        field="--hardware", value=hardware, allowed="a GPU profile")
    facts = None  # calfacts (session 8): the unstated system facts from the log itself; stated ones win
    if logs and (INFER_FACTS if infer_facts is None else infer_facts):  # nccl-tests logs only
        facts = infer_system_facts(measurements, prior, dict(system or {}), seed=seed, loss=loss,
                                   level_prior_weight=prior_weight, gpus_per_thread=gpus_per_thread)
        system = {**(system or {}), **facts.inferred}
        prior = with_system_facts(prior, facts.inferred)
    keys = [r.key for r in measurements.layers]
    fit_keys, held = split_holdout(keys, holdout_fraction, seed)
    # calfacts made this fit under the shared rule: reused for it (calspeed: its bootstrap drawn on it); another rule
    # is fitted with the chosen class fixed (calorder)
    fit = facts.fit if facts is not None and not rule else None
    if fit is not None and bootstrap:
        fit = with_bootstrap(fit, bootstrap, seed, progress)
    if fit is None:
        fit = fit_profile(measurements, prior, fit_keys=set(fit_keys), bootstrap=bootstrap, seed=seed, loss=loss,
                          fit_router_matmul=fit_router_matmul, level_prior_weight=prior_weight, progress=progress,
                          gpus_per_thread=gpus_per_thread, latency_per_protocol=rule)
    provenance = Provenance(prior=str(prior_path),
                            sources=tuple(f"{p}@sha256:{measurements.file(p).digest}" for p in paths),
                            holdout_fraction=holdout_fraction, seed=seed, fitted_on=tuple(fit_keys),
                            held_out=tuple(held), created_utc=now_utc())
    table = set_system_facts(calibrated_table(prior_path, fit, provenance, name), system or {})
    if facts is not None:  # calfacts: which facts were stated and which inferred
        table["calibrated_from"] += "\n" + provenance_line(facts)
    transfer_notes = tuple(apply_machinery(table, fit)) if transfer == "machinery" else ()
    if transfer != "shared":
        table["calibrated_from"] += f"\n--transfer {transfer}: " + ("; ".join(transfer_notes) or "nothing kept apart")
    profile = profile_from_table(table, file=str(out))
    guard = prior_guard(measurements, prior, profile, set(fit_keys))
    if guard is not None and guard.kept_prior:
        table = set_system_facts(kept_prior_table(prior_path, table, guard), system or {})
        profile = profile_from_table(table, file=str(out))
    report = validation_report(measurements, profile, only_keys=set(held)) if held else None
    gap = layer_gap(measurements, profile, set(fit_keys), set(held))
    out = Path(out)
    try:
        lines = header_lines(fit, measurements, report, gap) + ([_guard_text(guard)] if guard else [])
        lines += [] if facts is None else ["System facts (moesim/calibrate/facts_fit.py): " + facts.note]
        out.write_text(render_profile(table, lines), encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot write the calibrated profile: {err.strerror}", file=str(out)) from None
    written = load_hardware(out)
    # after the fit, so that a run ending in an error stays one line
    for log in logs:  # a -g N run priced as one GPU per thread (or the reverse) misreads its small rows' floor
        ngpus = set(measurements.file(log).header_gpus)
        if ngpus and gpus_per_thread not in ngpus:
            said = " or ".join(map(str, sorted(ngpus)))
            warnings.warn(f"{log}: its header says nGpus {said} (GPUs one thread drove) but --gpus-per-thread is "
                          f"{gpus_per_thread}: pass --gpus-per-thread {said} unless the log says otherwise")
    return CalibrationResult(fit, measurements, written, out, tuple(held), report, gap,
                             () if guard is not None and guard.kept_prior else consistency_gaps(fit, written), guard,
                             facts, transfer, transfer_notes)


def check_output(out: str | Path, paths: list[str], hardware: str) -> None:
    """The calibrated profile's path before anything is fitted: a .toml file that is neither a measurement file nor
    the prior (writing it would destroy them; a SpecError names it)."""
    out = Path(out)
    if out.suffix.lower() != ".toml":
        raise SpecError("the calibrated profile is a TOML file: give -o a path ending in .toml", file=str(out),
                        field="--output", value=out.suffix, allowed=(".toml",))
    target = out.resolve()
    try:
        prior = [(resolve_ref(hardware, "hardware_profiles"), "the prior profile (--hardware)")]
    except SpecError:
        prior = []  # an unknown profile: its own error comes when it is loaded
    shipped = [(p, f"the shipped profile '{p.stem}'") for p in sorted(builtin_dir("hardware_profiles").glob("*.toml"))
               if not written_by_calibrate(p)]  # a profile calibrate wrote there may be recalibrated
    for path, what in [(p, "a measurement file") for p in paths] + prior + shipped:
        if Path(path).resolve() == target:
            raise SpecError(f"is {what}: writing the calibrated profile there would overwrite it", file=str(out),
                            field="--output")


def prior_guard(measurements: Measurements, prior: HardwareProfile, fitted: HardwareProfile,
                fit_keys: set[str]) -> PriorGuard | None:
    """Held-in layer MAPE of the fitted profile and of the prior (PriorGuard); None without fitted layers."""
    rows = [r for r in measurements.layers if r.key in fit_keys]
    if not rows:
        return None
    measured = np.array([r.measured_s[TOTAL] for r in rows])

    def mape(hw: HardwareProfile) -> float:
        predicted = np.array([predict_layer(r, hw)[TOTAL] for r in rows])
        return float(np.mean(np.abs(predicted / measured - 1)))

    return PriorGuard(mape(fitted), mape(prior))


def kept_prior_table(prior_path: Path, fitted_table: dict, guard: PriorGuard) -> dict:
    """The prior's own table, named and with the provenance of the calibration that kept it."""
    table = read_data_file(prior_path)
    table["name"] = fitted_table["name"]
    table["calibrated_from"] = fitted_table["calibrated_from"] + (
        f"\nkept the prior: held-in layer MAPE {guard.fit_mape:.4g} fitted vs {guard.prior_mape:.4g} prior")
    return table


def validate_report(paths: list[str], hardware: str, *, include_fitted: bool = False,
                    nccl_op: str | None = None) -> ValidationReport:
    """Held-out comparison of `hardware`'s predictions with the switch_layer records in `paths`."""
    return validation_report(read_measurements(paths, nccl_op=nccl_op), load_hardware(hardware),
                             include_fitted=include_fitted)


@dataclass(frozen=True)
class LayerGap:
    """What the calibrated profile still leaves out of a layer: measured ≈ overhead_s + scale × predicted.

    Fitted over the fitted records (non-negative least squares on relative error, scipy nnls) against
    the calibrated prediction, which already holds the fitted per-layer overhead
    (efficiency.layer_overhead_us), so overhead_s ≈ 0 and scale ≈ 1 when that term explains the fixed
    cost; a diagnostic, not written. `held_out_*` say what the held-out error would become with it.
    """

    overhead_s: float
    scale: float
    held_out_mape: float | None
    held_out_max_abs_pct_error: float | None


def layer_gap(measurements: Measurements, profile: HardwareProfile, fit_keys: set[str],
              held_keys: set[str]) -> LayerGap | None:
    rows = {r.key: (r.measured_s[TOTAL], predict_layer(r, profile)[TOTAL]) for r in measurements.layers}
    fitted = np.array([rows[k] for k in rows if k in fit_keys])
    if len(fitted) < 2:
        return None
    measured, predicted = fitted[:, 0], fitted[:, 1]
    (overhead, scale), _ = nnls(np.column_stack([1 / measured, predicted / measured]), np.ones(len(measured)))
    held = np.array([rows[k] for k in rows if k in held_keys])
    if not len(held):
        return LayerGap(float(overhead), float(scale), None, None)
    err = np.abs((overhead + scale * held[:, 1]) / held[:, 0] - 1)
    return LayerGap(float(overhead), float(scale), float(err.mean()), float(err.max()))


def consistency_gaps(fit: FitResult, profile: HardwareProfile) -> tuple[str, ...]:
    """Observations the written profile, priced through the estimate's primitives, predicts more than
    CONSISTENCY_RTOL away from the fit's own prediction, each with its residual: the profile holds one
    figure per level and 6 significant digits, so a fit that the file cannot hold exactly is reported,
    not raised."""
    gaps = []
    for obs, expected in zip(fit.observations, fit.predicted_s):
        got = terms_time_s(obs.terms, profile)
        if abs(got - expected) > CONSISTENCY_RTOL * expected:
            gaps.append(f"{obs.label} ({obs.unit}): profile {got:.6g} s, fit {expected:.6g} s, residual "
                        f"{got / expected - 1:+.2%}")
    return tuple(gaps)




def header_lines(fit: FitResult, measurements: Measurements, report: ValidationReport | None,
                 gap: LayerGap | None = None) -> list[str]:
    """Comment lines for the calibrated TOML: what was fitted, how well, and what was not."""
    lines = [f"Calibrated by `moesim calibrate` from the prior profile '{fit.prior.name}'.",
             f"Measurements: {', '.join(measurements.sources)}; {len(measurements.layers)} switch_layer records "
             f"({len(fit.fitted_keys)} fitted), {len(measurements.collectives)} collective points.",
             f"Fit: scipy least_squares, loss {fit.loss} on ln(predicted/measured), {fit.n_parameters} parameters, "
             f"{fit.overall.n} observations; MAPE {pct(fit.overall.mape)}, max {pct(fit.overall.max_abs_pct_error)}, "
             f"R2(ln t) {fit.overall.r2_log if fit.overall.r2_log is None else round(fit.overall.r2_log, 3)}.",
             _weight_text(fit), _hop_text(fit)]
    if fit.host_floor_rows:
        lines.append(_floor_text(fit))
    lines += [_fill_text(f) for f in fit.fills if f.fitted]
    lines += [f"Parameters (value | prior | 90% bootstrap interval, {fit.bootstrap} resamples | covariance rel. std):"]
    for p in fit.parameters:
        if p.fitted:
            interval = f"[{p.interval[0]:.4g}, {p.interval[1]:.4g}]" if p.interval else "-"
            lines.append(f"  {p.name} ({p.unit}): {p.value:.4g} | {p.prior:.4g} | {interval} | {pct(p.rel_std)}")
    lines.append("Fit residuals per phase / collective (n, MAPE, max, mean signed):")
    for label, s in fit.blocks.items():
        lines.append(f"  {label}: {s.n}, {pct(s.mape)}, {pct(s.max_abs_pct_error)}, {s.mean_signed_error:+.1%}")
    if report is not None:
        t = report.total
        lines.append(f"Held out ({len(report.comparisons)} records): layer MAPE {pct(t.mape)}, max "
                     f"{pct(t.max_abs_pct_error)}, mean signed {t.mean_signed_error:+.1%}.")
    if gap is not None:
        lines.append(_gap_text(gap))
    if fit.op_fits:
        lines.append("Per-collective alpha-beta diagnostics (not written: the profile holds one latency and bandwidth "
                     "per level):")
        for o in fit.op_fits:
            lines.append(f"  {o.op} over {o.group_size}: latency {o.latency_s * 1e6:.4g} us, algbw "
                         f"{o.algbw_bytes_per_s / 1e9:.4g} GB/s, max error {pct(o.max_abs_pct_error)}")
    phases = FIT_PHASES + ((ROUTER_MATMUL,) if any(o.label == ROUTER_MATMUL for o in fit.observations) else ())
    lines.append(f"Fitted phases: {', '.join(phases)}, and the layer total (with the layer overhead of its forward "
                 "and backward pass); router, router_gating" + ("" if ROUTER_MATMUL in phases else ", router_matmul")
                 + " are reported, not fitted. Figures not listed above keep their prior values "
                 "(docs/calibration.md).")
    return lines


def _hop_text(fit: FitResult) -> str:
    rule = hop_latency_rule(fit.latency_per_protocol)
    return f"Hop latency rule: {rule} ({HOP_LATENCY_MEANINGS[rule]}; --hop-latency)."


def _floor_text(fit: FitResult) -> str:
    return (f"{fit.host_floor_rows} nccl-tests rows at the host floor ({fit.gpus_per_thread} kernel launches per "
            "iteration, -g N) left out of the fit: they say nothing about the links.")


def _fill_text(fill) -> str:
    return (f"Ramp fill of {fill.level}: {fill.fill_bytes / 2**20:.4g} MiB (prior {fill.prior_bytes / 2**20:.4g} MiB), "
            f"searched on {fill.ramp_rows} ramp rows (moesim/calibrate/fill_fit.py).")


def _weight_text(fit: FitResult) -> str:
    if fit.effective_rows is None:
        return f"Interconnect prior weight {fit.level_prior_weight:g} on every figure."
    return (f"Interconnect prior weight {fit.level_prior_weight:.3g} / sigma of each figure (moesim/calibrate/"
            f"prior_sigma.toml): the {fit.overall.n} rows count as {fit.effective_rows:.1f} independent ones "
            "(their residuals' correlation along the sizes; moesim/calibrate/prior_weight.py).")


def _guard_text(guard: PriorGuard) -> str:
    if guard.kept_prior:
        return (f"Kept the prior: the fitted profile's held-in layer MAPE {guard.fit_mape:.1%} is not below the "
                f"prior's {guard.prior_mape:.1%}, so the prior's figures are written (the fit above is not).")
    return f"Held-in layer MAPE {guard.fit_mape:.1%} fitted, {guard.prior_mape:.1%} with the prior."


def _gap_text(gap: LayerGap) -> str:
    text = (f"Unmodelled layer time: over the fitted records, measured layer = {gap.overhead_s * 1e3:.3g} ms + "
            f"{gap.scale:.3g} x predicted (a diagnostic beyond the fitted layer overhead; not written)")
    if gap.held_out_mape is not None:
        text += (f"; with it the held-out layer MAPE would be {gap.held_out_mape:.1%} (max "
                 f"{gap.held_out_max_abs_pct_error:.1%})")
    return text + "."


SKIPPED_SHOWN = 5  # skipped rows the text lists (all of them in --json)


def render_calibration(result: CalibrationResult) -> str:
    """Text summary for the CLI."""
    from moesim.calibrate.report import render
    from moesim.cli.output import table

    fit = result.fit
    rows = [(p.name, p.unit, f"{p.value:.4g}", f"{p.prior:.4g}",
             f"[{p.interval[0]:.4g}, {p.interval[1]:.4g}]" if p.interval else "-", pct(p.rel_std))
            for p in fit.parameters if p.fitted]
    params = table(rows, ["parameter", "unit", "fitted", "prior", "90% bootstrap", "rel. std"], align="llrrrr")
    if not rows:
        params = ("no figure is fitted: no row's largest term is a figure of the profile (a row mostly fixed cost "
                  "says nothing about a figure), so the prior's figures are written")
    res_rows = [(label, s.n, pct(s.mape), pct(s.max_abs_pct_error), f"{s.mean_signed_error:+.1%}",
                 "-" if s.r2_log is None else f"{s.r2_log:.3f}") for label, s in fit.blocks.items()]
    residuals = table(res_rows, ["observations", "n", "MAPE", "max", "mean err", "R2 (ln t)"], align="lrrrrr")
    m = result.measurements
    parts = [f"calibrated {fit.prior.name} -> {result.profile_path} ({result.profile.name})",
             f"  {len(m.layers)} switch_layer records: {len(fit.fitted_keys)} fitted, {len(result.held_out)} held out; "
             f"{len(m.collectives)} collective points; {len(m.skipped)} rows or records skipped"
             + (":" if m.skipped else "")]
    parts += [f"    {line}" for line in m.skipped[:SKIPPED_SHOWN]]
    if len(m.skipped) > SKIPPED_SHOWN:
        parts.append(f"    ... and {len(m.skipped) - SKIPPED_SHOWN} more (--json: records.skipped)")
    parts += ["", params, "", _weight_text(fit)] + ([_floor_text(fit)] if fit.host_floor_rows else [])
    parts += [_hop_text(fit)] if fit.latency_per_protocol else []  # the default shared rule: as before
    if result.transfer_rule != "shared":  # calpairs: the default rule prints as before
        parts += [f"Transfer rule: {result.transfer_rule} ({TRANSFER_MEANINGS[result.transfer_rule]}; --transfer)"
                  + "".join(f"\n  {note}" for note in result.transfer_notes)]
    parts += ["", "fit residuals (in-sample)", residuals]
    if fit.op_fits:
        diag = table([(o.op, o.group_size, o.n, f"{o.latency_s * 1e6:.4g}", f"{o.algbw_bytes_per_s / 1e9:.4g}",
                       pct(o.max_abs_pct_error)) for o in fit.op_fits],
                     ["collective", "ranks", "n", "latency us", "algbw GB/s", "max err"], align="lrrrrr")
        parts += ["", "per-collective alpha-beta (diagnostic, not written)", diag]
    if result.gap is not None:
        parts += ["", _gap_text(result.gap)]
    if result.guard is not None:
        parts += ["", _guard_text(result.guard)]
    if result.facts is not None:
        parts += [""] + render_inference(result.facts)
    if result.consistency:
        parts += ["", f"the written profile prices {len(result.consistency)} observation(s) more than "
                      f"{CONSISTENCY_RTOL:.1%} away from the fit (it holds one figure per level):"]
        parts += [f"  {line}" for line in result.consistency[:10]]
    if result.held_out_report is not None:
        parts += ["", render(result.held_out_report)]
    elif not m.layers:
        parts += ["", "no switch_layer records, none held out: every collective row is fitted (to test the fit, "
                      "price another log of the same cluster with the written profile)"]
    else:
        parts += ["", "no records held out (--holdout-fraction 0 or fewer than 2 records)"]
    return "\n".join(parts)
