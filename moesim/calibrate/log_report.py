"""`moesim validate-report` on nccl-tests logs: a profile's busbw error on each log, as the per-log table of
docs/collectives.md measures the shipped priors (nccl_error.log_error: the faster of each size's rows, MAPE at
>= 1 MiB and below, the signed mean at >= 1 MiB). It is how a calibration is checked on the cluster's other logs,
the ones it was not fitted on; a log the profile was fitted on is marked in-sample (its `calibrated_from` sources)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from moesim.calibrate.nccl_error import LogError, log_error, pct
from moesim.calibrate.profile_io import file_digest, parse_provenance
from moesim.calibrate.records import Measurements
from moesim.specs.hardware import HardwareProfile


@dataclass(frozen=True)
class LogCheck:
    file: str
    error: LogError
    in_sample: bool  # the profile was calibrated on this file (same path or same sha256 prefix)

    def as_dict(self) -> dict:
        e = self.error
        return {"file": self.file, "op": e.op, "ranks": e.ranks, "sizes": len(e.sizes), "in_sample": self.in_sample,
                "busbw_mape_ge_1mib": e.mape_large, "busbw_mape_lt_1mib": e.mape_small,
                "busbw_signed_mean_ge_1mib": e.signed_large}


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
        checks.append(LogCheck(f.path, log_error(points, hardware, gpus_per_thread=gpus_per_thread), in_sample))
    return checks


def render(checks: list[LogCheck], hardware: HardwareProfile) -> str:
    rows = [("log", "op", "ranks", "sizes", "MAPE >= 1 MiB", "MAPE < 1 MiB", "mean err >= 1 MiB", "")]
    for c in checks:
        e = c.error
        signed = "-" if e.signed_large is None else f"{e.signed_large:+.1%}"
        rows.append((c.file, e.op, str(e.ranks), str(len(e.sizes)), pct(e.mape_large), pct(e.mape_small), signed,
                     "in-sample" if c.in_sample else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"busbw error of {hardware.name} on {len(checks)} nccl-tests log(s) (predicted busbw / measured - 1: "
             "+ is faster than measured; the faster of each size's out-of-place / in-place rows)"]
    for i, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    if any(c.in_sample for c in checks):
        lines.append("in-sample: the profile was calibrated on this log; the others are held out")
    return "\n".join(lines)
