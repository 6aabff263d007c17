"""Validation report: predicted against measured phases of switch_layer records held out of the fit.

Which records (docs/calibration.md, "Which records a report uses"):
  - a profile written by `moesim calibrate` lists the record keys it was fitted on
    (`calibrated_from`, line `fitted_on:`); those are left out and every other record is used;
  - any other profile (a prior, or one calibrated elsewhere) fitted none of them: all are used;
  - `include_fitted=True` uses all records and marks the fitted ones in-sample.
Errors are signed fractions e = (predicted − measured) / measured: MAPE = mean |e|, max |e|, and the
mean e (bias: > 0 means the model predicts slower than measured). A phase the model gives no term
(an all-to-all over a group of one rank) is listed under `not_modelled` and left out of that phase's
statistics; the layer total always counts. `router_matmul` and `router_gating` count only in records
that measured them (validate/ records written before the router split lack them). `noise` is the
median over records of the measurement's (p90 − p10) / (2 · median): errors below it cannot be told
from run-to-run jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.calibrate.fit import BlockStats, block_stats
from moesim.calibrate.predict import predict_layer
from moesim.calibrate.profile_io import parse_provenance
from moesim.calibrate.records import PHASES, ROUTER_PARTS, TOTAL, LayerRecord, Measurements
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.specs.hardware import HardwareProfile

REPORT_PHASES = PHASES[:1] + ROUTER_PARTS + PHASES[1:] + (TOTAL,)  # ROUTER_PARTS where a record measured them
CONFIG_FIELDS = ("name", "world_size", "ep_size", "tokens_per_rank", "d_model", "d_ff", "experts_per_rank", "top_k",
                 "capacity_factor", "dtype")


@dataclass(frozen=True)
class RecordComparison:
    """One record: measured and predicted seconds and the signed error per phase."""

    record: LayerRecord
    predicted: dict[str, float | None]
    in_sample: bool

    def error(self, phase: str) -> float | None:
        pred, measured = self.predicted.get(phase), self.record.measured_s.get(phase)
        return None if pred is None or measured is None else pred / measured - 1.0


@dataclass(frozen=True)
class ValidationReport:
    hardware: str
    selection: str
    comparisons: tuple[RecordComparison, ...]
    phases: dict[str, BlockStats]
    noise: dict[str, float]
    excluded_fitted: tuple[str, ...]

    @property
    def total(self) -> BlockStats:
        return self.phases[TOTAL]

    def as_dict(self) -> dict:
        total = self.total
        return {
            "hardware": self.hardware,
            "selection": self.selection,
            "n_records": len(self.comparisons),
            "mape": total.mape,
            "max_abs_pct_error": total.max_abs_pct_error,
            "mean_signed_error": total.mean_signed_error,
            "bias": _bias_word(total.mean_signed_error),
            "phases": {p: {"n": s.n, "mape": s.mape, "max_abs_pct_error": s.max_abs_pct_error,
                           "mean_signed_error": s.mean_signed_error, "bias": _bias_word(s.mean_signed_error),
                           "noise": self.noise.get(p)} for p, s in self.phases.items()},
            "records": [_record_dict(c) for c in self.comparisons],
            "not_modelled": [{"key": c.record.key, "phase": p, "measured_s": c.record.measured_s[p]}
                             for c in self.comparisons for p in PHASES if c.predicted[p] is None],
            "excluded_fitted_keys": list(self.excluded_fitted),
        }


# The sign of every error the text prints, said once under its first table (the module docstring's definitions)
ERROR_SIGN_TEXT = ("err = (predicted − measured) / measured: a negative mean err (bias) means the model predicts "
                   "faster than measured (under-predicts), a positive one slower (over-predicts)")
NOISE_TEXT = ("noise: the median over records of the measurement's run-to-run (p90 − p10) / (2 · median); an error "
              "below it cannot be told from jitter")


def _bias_word(mean_signed: float) -> str:
    return "over-predicts" if mean_signed > 0 else "under-predicts" if mean_signed < 0 else "none"


def _record_dict(c: RecordComparison) -> dict:
    rec = c.record
    return {"key": rec.key, "source": rec.source, "in_sample": c.in_sample,
            "config": {k: rec.config.get(k) for k in CONFIG_FIELDS if k in rec.config} | {"ep_size": rec.ep_size},
            "measured": {p: rec.measured_s.get(p) for p in REPORT_PHASES},
            "predicted": {p: c.predicted[p] for p in REPORT_PHASES},
            "error": {p: c.error(p) for p in REPORT_PHASES}}


def validation_report(measurements: Measurements, hardware: HardwareProfile, *, include_fitted: bool = False,
                      only_keys: set[str] | None = None) -> ValidationReport:
    """Compare `hardware`'s predictions with the records the rule above selects (or `only_keys`)."""
    provenance = parse_provenance(hardware.calibrated_from) if hardware.calibrated_from else None
    fitted = set(provenance.fitted_on) if provenance else set()
    layers = measurements.layers
    if only_keys is not None:
        chosen = [r for r in layers if r.key in only_keys]
        selection = f"{len(chosen)} records held out by the calibration split"
    elif include_fitted:
        chosen = list(layers)
        selection = f"all {len(chosen)} records ({len(fitted & {r.key for r in layers})} in-sample, marked)"
    else:
        chosen = [r for r in layers if r.key not in fitted]
        selection = (f"{len(chosen)} records not fitted on (profile lists {len(fitted)} fitted keys)" if provenance
                     else f"all {len(chosen)} records (the profile was not fitted by moesim calibrate)")
    if not layers:
        raise SpecError("no switch_layer records to compare (collective records and nccl-tests logs only feed the fit)")
    if not chosen:
        raise SpecError(f"all {len(layers)} switch_layer records were used to fit {hardware.name}; nothing is held out "
                        "(pass --all for in-sample errors, or measure more configurations)")
    model = default_model(hardware)
    comparisons = tuple(RecordComparison(r, predict_layer(r, hardware, model), r.key in fitted) for r in chosen)
    phases, noise = {}, {}
    for phase in REPORT_PHASES:
        rows = [c for c in comparisons if c.error(phase) is not None]
        if rows:
            phases[phase] = block_stats(np.array([c.predicted[phase] for c in rows]),
                                        np.array([c.record.measured_s[phase] for c in rows]))
            noise[phase] = float(np.median([c.record.spread[phase] for c in rows]))
    excluded = tuple(sorted(fitted & {r.key for r in layers} - {c.record.key for c in comparisons}))
    return ValidationReport(hardware.name, selection, comparisons, phases, noise, excluded)


def render(report: ValidationReport) -> str:
    """Plain-text tables: per phase, then per record (layer totals)."""
    from moesim.cli.output import table

    rows = [(p, s.n, f"{s.mape:.1%}", f"{s.max_abs_pct_error:.1%}", f"{s.mean_signed_error:+.1%}",
             f"{report.noise.get(p, 0.0):.1%}") for p, s in report.phases.items()]
    head = f"validation of {report.hardware}: {report.selection}"
    phase_table = table(rows, ["phase", "n", "MAPE", "max |err|", "mean err (bias)", "noise"], align="lrrrrr")
    rec_rows = []
    for c in report.comparisons:
        r = c.record
        err = c.error(TOTAL)
        rec_rows.append((r.name or r.key, r.key, r.dtype, f"{r.measured_s[TOTAL] * 1e3:.3f}",
                         f"{c.predicted[TOTAL] * 1e3:.3f}", f"{err:+.1%}", "in-sample" if c.in_sample else "-"))
    rec_table = table(rec_rows, ["record", "key", "dtype", "measured ms", "predicted ms", "error", "note"],
                      align="lllrrrl")
    total = report.total
    summary = (f"layer total: MAPE {total.mape:.1%}, max {total.max_abs_pct_error:.1%}, mean signed "
               f"{total.mean_signed_error:+.1%} (model {_bias_word(total.mean_signed_error)})")
    return "\n".join([head, "", phase_table, ERROR_SIGN_TEXT, NOISE_TEXT, "", rec_table, "", summary])
