"""`moesim validate-report` on nccl-tests logs: a profile's busbw error on each log, as the per-log table of
docs/collectives.md measures the shipped priors (nccl_error.log_error: the faster of each size's rows, MAPE at
>= 1 MiB and below, the signed mean at >= 1 MiB). It is how a calibration is checked on the cluster's other logs,
the ones it was not fitted on; a log the profile was fitted on is marked in-sample (its `calibrated_from` sources).
Where the profile is a calibrated one, the prior it was calibrated from (`calibrated_from`'s `prior:` line) is priced
the same way beside it (session 16, polish): did calibrating help this log? Not a calibrated profile: those keys are
null and the text shows no prior columns."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from moesim.calibrate.nccl_error import LogError, log_error, pct
from moesim.calibrate.profile_io import file_digest, parse_provenance
from moesim.calibrate.records import Measurements
from moesim.errors import SpecError
from moesim.paths import builtin_names
from moesim.specs.hardware import HardwareProfile
from moesim.specs.hardware_file import load_hardware

PT_PER_FRACTION = 100


@dataclass(frozen=True)
class LogCheck:
    file: str
    error: LogError
    in_sample: bool  # the profile was calibrated on this file (same path or same sha256 prefix)
    prior_error: LogError | None = None  # the same log priced with the profile's prior; None: not a calibrated one

    def as_dict(self) -> dict:
        e, p = self.error, self.prior_error
        return {"file": self.file, "op": e.op, "ranks": e.ranks, "sizes": len(e.sizes), "in_sample": self.in_sample,
                "busbw_mape_ge_1mib": e.mape_large, "busbw_mape_lt_1mib": e.mape_small,
                "busbw_signed_mean_ge_1mib": e.signed_large,
                "busbw_mape_ge_1mib_prior": None if p is None else p.mape_large,
                "busbw_mape_lt_1mib_prior": None if p is None else p.mape_small,
                "change_ge_1mib_pt": _change_pt(e.mape_large, None if p is None else p.mape_large),
                "change_lt_1mib_pt": _change_pt(e.mape_small, None if p is None else p.mape_small)}


def _change_pt(profile: float | None, prior: float | None) -> float | None:
    """The profile's MAPE minus the prior's, in percentage points (-: calibrating helped); None where either is."""
    return None if profile is None or prior is None else (profile - prior) * PT_PER_FRACTION


def prior_profile(hardware: HardwareProfile) -> HardwareProfile | None:
    """The profile a calibrated `hardware` was calibrated from (its provenance's `prior:` path, as that file reads
    now, without calibrate's stated --host-cpu / --gpu-nic-path facts, which the provenance does not keep); a
    built-in prior whose path is gone (another checkout) by its file name. None: not a calibrated profile, or its
    prior cannot be read (then a warning says so)."""
    provenance = parse_provenance(hardware.calibrated_from) if hardware.calibrated_from else None
    if provenance is None or not provenance.prior:
        return None
    path = Path(provenance.prior)
    ref = str(path) if path.is_file() else path.stem if path.stem in builtin_names("hardware_profiles") else None
    if ref is None:
        warnings.warn(f"{hardware.name}: its prior {provenance.prior} (calibrated_from) is not a file here: the prior "
                      "columns are left out")
        return None
    try:
        return load_hardware(ref)
    except SpecError as err:
        warnings.warn(f"{hardware.name}: its prior {provenance.prior} (calibrated_from) does not load ({err}): the "
                      "prior columns are left out")
        return None


def _fitted_sources(hardware: HardwareProfile) -> set[str]:
    """The files a calibrated profile names in its provenance (path@sha256:prefix), as paths and as digests."""
    provenance = parse_provenance(hardware.calibrated_from) if hardware.calibrated_from else None
    found = set()
    for source in provenance.sources if provenance else ():
        path, _, digest = source.partition("@sha256:")
        found |= {str(Path(path).resolve()), "sha256:" + digest} if digest else {str(Path(path).resolve())}
    return found


def log_checks(measurements: Measurements, hardware: HardwareProfile, gpus_per_thread: int = 1) -> list[LogCheck]:
    """Each nccl-tests log of `measurements` priced with `hardware` (its default collective model)."""
    fitted = _fitted_sources(hardware)
    prior = prior_profile(hardware)
    checks = []
    for f in measurements.files:
        points = tuple(p for p in measurements.collectives if p.nccl_tests and p.source.rsplit(":", 1)[0] == f.path)
        if not points:
            continue
        ngpus = set(f.header_gpus)
        if ngpus and gpus_per_thread not in ngpus:  # as calibrate: a -g N run priced as one GPU per thread misreads
            said = " or ".join(map(str, sorted(ngpus)))
            warnings.warn(f"{f.path}: its header says nGpus {said} (GPUs one thread drove) but --gpus-per-thread is "
                          f"{gpus_per_thread}: pass --gpus-per-thread {said} unless the log says otherwise")
        digest = "sha256:" + file_digest(f.path)
        in_sample = str(Path(f.path).resolve()) in fitted or digest in fitted
        prior_error = None if prior is None else log_error(points, prior, gpus_per_thread=gpus_per_thread)
        checks.append(LogCheck(f.path, log_error(points, hardware, gpus_per_thread=gpus_per_thread), in_sample,
                               prior_error))
    return checks


def _pt(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f} pt"


def render(checks: list[LogCheck], hardware: HardwareProfile, prior: HardwareProfile | None = None) -> str:
    with_prior = prior is not None and any(c.prior_error is not None for c in checks)
    extra = ("prior >= 1 MiB", "prior < 1 MiB", "change >= 1 MiB", "change < 1 MiB") if with_prior else ()
    rows = [("log", "op", "ranks", "sizes", "MAPE >= 1 MiB", "MAPE < 1 MiB", "mean err >= 1 MiB", *extra, "")]
    for c in checks:
        e, d = c.error, c.as_dict()
        signed = "-" if e.signed_large is None else f"{e.signed_large:+.1%}"
        cells = (pct(d["busbw_mape_ge_1mib_prior"]), pct(d["busbw_mape_lt_1mib_prior"]), _pt(d["change_ge_1mib_pt"]),
                 _pt(d["change_lt_1mib_pt"])) if with_prior else ()
        rows.append((c.file, e.op, str(e.ranks), str(len(e.sizes)), pct(e.mape_large), pct(e.mape_small), signed,
                     *cells, "in-sample" if c.in_sample else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"busbw error of {hardware.name} on {len(checks)} nccl-tests log(s) (predicted busbw / measured - 1: "
             "+ is faster than measured; the faster of each size's out-of-place / in-place rows)"]
    for i, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    if with_prior:
        lines.append(f"prior: {prior.name}, the profile {hardware.name} was calibrated from, priced the same way; "
                     "change = the profile's MAPE - the prior's (-: calibrating helped this log)")
    if any(c.in_sample for c in checks):
        lines.append("in-sample: the profile was calibrated on this log; the others are held out")
    return "\n".join(lines)
