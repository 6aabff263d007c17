"""The text calibrate writes: the calibrated TOML's comment lines (header_lines) and the CLI's summary
(render_calibration). Moved out of api.py, which re-exports them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from moesim.calibrate.facts_fit import render_inference
from moesim.calibrate.fit import FIT_PHASES, HOP_LATENCY_MEANINGS, ROUTER_MATMUL, FitResult, hop_latency_rule
from moesim.calibrate.insample_report import render_in_sample
from moesim.calibrate.nccl_error import pct
from moesim.calibrate.profile_checks import CONSISTENCY_RTOL, LayerGap, PriorGuard
from moesim.calibrate.records import Measurements
from moesim.calibrate.report import ValidationReport
from moesim.calibrate.transfer import TRANSFER_MEANINGS

if TYPE_CHECKING:
    from moesim.calibrate.api import CalibrationResult


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


def efficiency_warnings(fit: FitResult) -> list[str]:
    """One line when a fitted matmul efficiency knot is above 1 (a kernel faster than the prior's peak): the largest
    such knot, its value and the peak it is a fraction of; what it usually means is in docs/calibration.md."""
    over = [p for p in fit.parameters if p.fitted and p.name.startswith("efficiency@") and p.value > 1]
    if not over:
        return []
    top = max(over, key=lambda p: p.value)
    others = f" (and {len(over) - 1} other knot{'s' if len(over) > 2 else ''} above 1)" if len(over) > 1 else ""
    peak_flops_per_s = fit.prior.chip.peak_for(fit.ref_dtype)
    return [f"fitted matmul efficiency {top.name} is {top.value:.4g}, above 1, of the {fit.ref_dtype} peak "
            f"{peak_flops_per_s / 1e12:.4g} TFLOP/s per device of the prior profile {fit.prior.name}{others}: the "
            "profile's peak is likely wrong for this machine, or the timings include less work than moesim prices "
            "(the written profile raises its peaks by that factor; docs/calibration.md)"]


SKIPPED_SHOWN = 5  # skipped rows the text lists (all of them in --json)


def render_calibration(result: CalibrationResult) -> str:
    """Text summary for the CLI."""
    from moesim.calibrate.report import ERROR_SIGN_TEXT, render
    from moesim.cli.output import table

    fit = result.fit
    rows = [(p.name, p.unit, f"{p.value:.4g}", f"{p.prior:.4g}",
             f"[{p.interval[0]:.4g}, {p.interval[1]:.4g}]" if p.interval else "-", pct(p.rel_std))
            for p in fit.parameters if p.fitted]
    params = table(rows, ["parameter", "unit", "fitted", "prior", "90% bootstrap", "rel. std"], align="llrrrr")
    if any(p.name.startswith("efficiency@") for p in fit.parameters if p.fitted):  # knots in kernel FLOP (design.py)
        params += "\nefficiency@K: matmul efficiency (fraction of peak) of a kernel of K FLOP"
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
    parts += ["", "fit residuals (in-sample)", residuals, ERROR_SIGN_TEXT]
    if result.in_sample:  # calreport (session 16): the user's own logs per band, and what to try
        parts += [""] + render_in_sample(result.in_sample)
    notes = sum(r.worse_large for r in result.in_sample)  # the fit-worse notes come last (api.calibrate)
    parts += [("note: " if i >= len(result.warnings) - notes else "warning: ") + w
              for i, w in enumerate(result.warnings)]
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
                      "price another log of the same cluster with the written profile: moesim validate-report LOG "
                      "--hardware PROFILE)"]
    else:
        parts += ["", "no records held out (--holdout-fraction 0 or fewer than 2 records)"]
    return "\n".join(parts)
