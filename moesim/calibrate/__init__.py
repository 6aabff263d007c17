"""Calibration: fit a hardware profile to measurements, and check it on held-out configurations.

  records.py     validate/ JSONL records (switch_layer, collective), strict; the seeded held-out split
  nccl_tests.py  nccl-tests text output (all_reduce_perf, alltoall_perf, ...)
  predict.py     per-phase predictions of a measured layer with the estimate's primitives
  design.py      the parametrised model the fit adjusts (efficiency table, peaks, memory, α and W)
  fit.py         the fit: observations, fit_profile and its result, fit-quality summaries
  solve.py       scipy least squares on relative error: loss, priors, relinearisation, trust region
  uncertainty.py covariance and bootstrap uncertainty, the parameter table
  profile_io.py  the calibrated profile as TOML in the hardware_profiles/ schema, with provenance
  report.py      held-out comparison: per-phase and total MAPE, max error, bias
  api.py         `calibrate` and `validate_report`, the two calls behind the CLI
  profile_checks.py  checks on the written profile: keep-the-prior rule, unmodelled layer time, profile vs fit
  calibration_text.py  the calibrated TOML's comment lines and the CLI's text summary

The core stays free of torch: measurements arrive as files. See docs/calibration.md.
"""

from moesim.calibrate.api import CalibrationResult, calibrate, render_calibration, validate_report

__all__ = ["CalibrationResult", "calibrate", "render_calibration", "validate_report"]
