"""The two library calls behind `moesim calibrate` and `moesim validate-report` (their text output: calibration_text.py;
the checks on the written profile: profile_checks.py)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Mapping

from moesim.calibrate.calibration_text import (  # noqa: F401 (SKIPPED_SHOWN, render_calibration: re-exported)
    SKIPPED_SHOWN, _guard_text, efficiency_warnings, header_lines, render_calibration,
)
from moesim.calibrate.facts_fit import FactsInference, infer_system_facts, provenance_line
from moesim.calibrate.fit import FitResult, check_hop_latency, fit_profile, hop_latency_rule, with_bootstrap
from moesim.calibrate.insample_report import InSample, in_sample, multinode_g_warnings, with_band_loss, worse_notes
from moesim.calibrate.row_weight import check_row_weight
from moesim.calibrate.profile_checks import (  # noqa: F401 (CONSISTENCY_RTOL: re-exported)
    CONSISTENCY_RTOL, LayerGap, PriorGuard, consistency_gaps, kept_prior_table, layer_gap, prior_guard,
)
from moesim.calibrate.profile_io import (
    Provenance, calibrated_table, now_utc, profile_from_table, render_profile,
)
from moesim.calibrate.records import Measurements, device_mismatch_note, read_measurements, split_holdout
from moesim.calibrate.transfer import (
    AT_PRIOR_RULES, PER_PROTOCOL_RULES, PICK_RULES, SPLIT_RULES, apply_machinery, at_prior_where_unidentified,
    check_transfer, pick_levels, protocol_hops, ranked_on_prior,
)
from moesim.calibrate.transfer_band import BAND_RULES, band_guard, own_band_mapes
from moesim.calibrate.transfer_cv import CV_RULES, cv_gate
from moesim.calibrate.transfer_p2p import P2P_OPS_RULES, p2p_latency_where_ops_agree
from moesim.calibrate.transfer_shrink import SHRINK_RULES, boot_shrink
from moesim.calibrate.report import ValidationReport, validation_report
from moesim.errors import SpecError
from moesim.paths import check_output_path, write_text_file
from moesim.specs.hardware import HardwareProfile
from moesim.specs.load import load_hardware, read_data_file, resolve_ref
from moesim.specs.system_facts import set_system_facts, with_system_facts

# calfacts (session 8): infer unstated system facts from nccl-tests rows by default (facts_fit.py; the measurement
# that decided it: docs/collectives.md, "Inferring system facts from a log")
INFER_FACTS = True
# calorder (session 9): the hop-latency rule calibrate fits (fit.PROTOCOL_MODES; `--hop-latency`, HOP_LATENCY_RULES):
# False, one hop figure per level (docs/collectives-history.md, "Session 9 (calorder)", says why it stays so)
LATENCY_PER_PROTOCOL = False
# calpairs (session 10): where a fitted figure is written (transfer.TRANSFER_RULES; `--transfer`): "shared", one key
# every mechanism reads (docs/collectives-history.md, "Session 10 (calpairs)", has the decision rule and its matrix)
TRANSFER_RULE = "shared"
# bandfit (session 16): each fitted row's weight (row_weight.ROW_WEIGHTS; `--row-weight`): "row", every row 1
# (docs/collectives-history.md, "Session 16 (bandfit)", has the rule and the matrix of each other choice)
ROW_WEIGHT = "row"


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
    # calreport: () -> (in_sample, warnings), called once, on first use of either (api.calibrate's report_of)
    report_of: Callable[[], tuple] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def _report(self) -> tuple:
        return self.report_of() if self.report_of is not None else ((), ())

    @property
    def in_sample(self) -> tuple[InSample, ...]:
        """calreport: each nccl-tests log's own busbw MAPE per band, prior | fitted (and band-loss where fitted)."""
        return self._report[0]

    @property
    def warnings(self) -> tuple[str, ...]:
        """A fitted matmul efficiency above 1 (whyrank, session 20), calreport's -g N multi-node warnings, then the
        fit-worse notes (last: the text prints them as notes)."""
        return tuple(efficiency_warnings(self.fit)) + tuple(self._report[1])

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
                    "row_weight": fit.row_weight,
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
            "in_sample": [r.as_dict() for r in self.in_sample],  # calreport (session 16): added keys
            "warnings": list(self.warnings),
        }


def calibrate(paths: list[str], hardware: str, out: str | Path, *, holdout_fraction: float = 0.3, seed: int = 0,
              bootstrap: int = 100, loss: str = "soft_l1", name: str | None = None,
              nccl_op: str | None = None, fit_router_matmul: bool = False,
              nccl_ranks: int | None = None, prior_weight: float | None = None, progress=None,
              gpus_per_thread: int = 1, system: Mapping[str, str] | None = None,
              infer_facts: bool | None = None, latency_per_protocol: bool | str | None = None,
              transfer_rule: str | None = None, row_weight: str | None = None) -> CalibrationResult:
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
    `row_weight`: each fitted row's weight in the objective, in the facts' fits too (row_weight.ROW_WEIGHTS; None =
    ROW_WEIGHT).
    """
    rule = check_hop_latency(LATENCY_PER_PROTOCOL if latency_per_protocol is None else latency_per_protocol)
    transfer = check_transfer(TRANSFER_RULE if transfer_rule is None else transfer_rule)
    row_weight = check_row_weight(ROW_WEIGHT if row_weight is None else row_weight)
    if transfer in PER_PROTOCOL_RULES and rule:
        raise SpecError(f"--transfer {transfer} fits its own hop per protocol beside the shared fit: give it with "
                        "--hop-latency shared", field="--hop-latency", value=hop_latency_rule(rule), allowed=("shared",))
    check_output(out, paths, hardware)
    measurements = read_measurements(paths, nccl_op=nccl_op, nccl_ranks=nccl_ranks)
    prior_path = resolve_ref(hardware, "hardware_profiles", field="--hardware")
    prior = with_system_facts(load_hardware(prior_path), system or {})
    stated_prior = prior  # calreport: the in-sample table's prior (the user's stated facts, none inferred)
    if transfer in PICK_RULES:  # pick (session 14): every fit below ranks each call on the prior's levels
        prior = ranked_on_prior(prior)
    logs = sorted({p.source.rsplit(":", 1)[0] for p in measurements.collectives if p.nccl_tests})
    if logs and prior.device_kind != "gpu":  # nccl-tests measure NCCL, which runs on GPUs
        raise SpecError(f"nccl-tests logs measure NCCL on GPUs, but {prior.name}'s devices are {prior.device_kind}: "
                        "give the GPU profile the cluster's collectives are priced with", file=logs[0],
                        field="--hardware", value=hardware, allowed="a GPU profile")
    ran = [(r.source.rsplit(":", 1)[0], r.device) for r in measurements.layers]
    if note := device_mismatch_note(ran, prior):  # CPU records into a GPU profile (newuser7): said, not refused
        warnings.warn(note)
    facts = None  # calfacts (session 8): the unstated system facts from the log itself; stated ones win
    if logs and (INFER_FACTS if infer_facts is None else infer_facts):  # nccl-tests logs only
        facts = infer_system_facts(measurements, prior, dict(system or {}), seed=seed, loss=loss,
                                   level_prior_weight=prior_weight, gpus_per_thread=gpus_per_thread,
                                   row_weight=row_weight)
        system = {**(system or {}), **facts.inferred}
        prior = with_system_facts(prior, facts.inferred)
    keys = [r.key for r in measurements.layers]
    fit_keys, held = split_holdout(keys, holdout_fraction, seed)
    # calfacts made this fit under the shared rule: reused for it (calspeed: its bootstrap drawn on it); another rule
    # is fitted with the chosen class fixed (calorder)
    fit = facts.fit if facts is not None and not rule else None
    if fit is not None and bootstrap:
        fit = with_bootstrap(fit, bootstrap, seed, progress)
    fit_args = dict(fit_keys=set(fit_keys), seed=seed, loss=loss, fit_router_matmul=fit_router_matmul,
                    level_prior_weight=prior_weight, gpus_per_thread=gpus_per_thread, row_weight=row_weight)
    if fit is None:
        fit = fit_profile(measurements, prior, bootstrap=bootstrap, progress=progress, latency_per_protocol=rule,
                          **fit_args)
    provenance = Provenance(prior=str(prior_path),
                            sources=tuple(f"{p}@sha256:{measurements.file(p).digest}" for p in paths),
                            holdout_fraction=holdout_fraction, seed=seed, fitted_on=tuple(fit_keys),
                            held_out=tuple(held), created_utc=now_utc())
    written_fit, said = fit, ()
    if transfer in AT_PRIOR_RULES:  # heldout (session 12): "identified" writes unidentified figures at the prior
        written_fit, said = at_prior_where_unidentified(fit)
    elif transfer in PER_PROTOCOL_RULES:  # heldout2 (session 13): the hop per protocol where its own rows set it
        written_fit, said = protocol_hops(fit, fit_profile(measurements, prior, bootstrap=0, latency_per_protocol=True,
                                                           **fit_args))
    elif transfer in P2P_OPS_RULES:  # heldout2 (session 13): π at the prior where op counts disagree on it
        written_fit, said = p2p_latency_where_ops_agree(fit)
    elif transfer in BAND_RULES:  # calband (session 15): a figure the log's own >= 1 MiB rows ask back, at the prior
        written_fit, said = band_guard(fit, own_band_mapes(measurements, lambda f: profile_from_table(set_system_facts(
            calibrated_table(prior_path, f, provenance, name), system or {})), gpus_per_thread), transfer)
    elif transfer in CV_RULES:  # heldout3 (session 18): a move the log's own held-out sizes refuse, at the prior
        written_fit, said = cv_gate(fit, seed)
    elif transfer in SHRINK_RULES:  # heldout3 (session 18): each move shrunk toward the prior by its bootstrap spread
        written_fit, said = boot_shrink(fit, seed)
    transfer_notes = tuple(said)
    table = calibrated_table(prior_path, written_fit, provenance, name)
    if transfer in PICK_RULES:  # pick (session 14): the prior's levels, which the written profile ranks by
        table = pick_levels(table, read_data_file(prior_path))
    table = set_system_facts(table, system or {})
    if facts is not None:  # calfacts: which facts were stated and which inferred
        table["calibrated_from"] += "\n" + provenance_line(facts)
    if transfer in SPLIT_RULES:
        transfer_notes += tuple(apply_machinery(table, written_fit, transfer))
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
    lines = header_lines(fit, measurements, report, gap) + ([_guard_text(guard)] if guard else [])
    lines += [] if facts is None else ["System facts (moesim/calibrate/facts_fit.py): " + facts.note]
    write_text_file(out, render_profile(table, lines), field="--output")  # whole or nothing (paths.write_text_file)
    written = load_hardware(out)
    # after the fit, so that a run ending in an error stays one line
    for log in logs:  # a -g N run priced as one GPU per thread (or the reverse) misreads its small rows' floor
        ngpus = set(measurements.file(log).header_gpus)
        if ngpus and gpus_per_thread not in ngpus:
            said = " or ".join(map(str, sorted(ngpus)))
            warnings.warn(f"{log}: its header says nGpus {said} (GPUs one thread drove) but --gpus-per-thread is "
                          f"{gpus_per_thread}: pass --gpus-per-thread {said} unless the log says otherwise")
    def report_of() -> tuple[tuple[InSample, ...], tuple[str, ...]]:
        """calreport (session 16): what the fit did to the logs' own rows per band, priced when first asked for (the
        held-out matrix's calibrations never ask), and the warnings / notes that go with it."""
        rows = in_sample(measurements, stated_prior, written, gpus_per_thread)
        if any(r.worse_large and r.prior[1] is not None for r in rows) and row_weight != "band-loss" and \
                transfer == "shared" and not keys:
            # one more fit (0.2 s on the Together log, no bootstrap): what --row-weight band-loss gives; not written
            other = fit_profile(measurements, prior, bootstrap=0, latency_per_protocol=rule,
                                **{**fit_args, "row_weight": "band-loss"})
            rows = with_band_loss(rows, measurements, profile_from_table(set_system_facts(
                calibrated_table(prior_path, other, provenance, name), system or {})), gpus_per_thread)
        return rows, multinode_g_warnings(measurements, gpus_per_thread) + worse_notes(rows, row_weight)

    return CalibrationResult(fit, measurements, written, out, tuple(held), report, gap,
                             () if guard is not None and guard.kept_prior else consistency_gaps(fit, written), guard,
                             facts, transfer, transfer_notes, report_of)


def check_output(out: str | Path, paths: list[str], hardware: str) -> None:
    """The calibrated profile's path before anything is fitted: a .toml file that is neither a measurement file nor
    the prior (writing it would destroy them; a SpecError names it), then a file moesim may write: not a shipped
    profile, one calibrate wrote excepted (paths.check_output_path, the one shipped-file guard)."""
    out = Path(out)
    if out.suffix.lower() != ".toml":
        raise SpecError("the calibrated profile is a TOML file: give -o a path ending in .toml", file=str(out),
                        field="--output", value=out.suffix, allowed=(".toml",))
    target = out.resolve()
    try:
        prior = [(resolve_ref(hardware, "hardware_profiles"), "the prior profile (--hardware)")]
    except SpecError:
        prior = []  # an unknown profile: its own error comes when it is loaded
    for path, what in [(p, "a measurement file") for p in paths] + prior:
        if Path(path).resolve() == target:
            raise SpecError(f"is {what}: writing the calibrated profile there would overwrite it", file=str(out),
                            field="--output")
    check_output_path(out, field="--output")


def validate_report(paths: list[str], hardware: str, *, include_fitted: bool = False,
                    nccl_op: str | None = None) -> ValidationReport:
    """Held-out comparison of `hardware`'s predictions with the switch_layer records in `paths`."""
    return validation_report(read_measurements(paths, nccl_op=nccl_op), load_hardware(hardware, field="--hardware"),
                             include_fitted=include_fitted)
