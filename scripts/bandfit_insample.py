"""Session 16 (bandfit): on each calibration log of session 15's calband table (b200-together sendrecv, h100-qoofyk
all_reduce), the log's OWN busbw MAPE per band under each `calibrate --row-weight` rule (moesim/calibrate/row_weight.py).

Per log and rule: the fit's rows' summed soft-L1 loss per band at the prior's θ with the rule's weights (√w · ln t^/t),
the automatic prior weight's n_eff and √(n / n_eff), and the log's own busbw MAPE per band (nccl_error.log_error, as the
held-out matrix prices a log: the faster row of each size) with the prior and with the fit's written profile. Nothing
here reads a held-out log's rows.

Run: python scripts/bandfit_insample.py [--write]   (--write replaces the block of docs/collectives-history.md)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate import calibrate  # noqa: E402
from moesim.calibrate.nccl_error import LARGE_BYTES, log_error  # noqa: E402
from moesim.calibrate.nccl_table import entry_hardware, matrix_fit_args, read_manifest  # noqa: E402
from moesim.calibrate.profile_io import Provenance, calibrated_table, profile_from_table  # noqa: E402
from moesim.calibrate.row_weight import ROW_WEIGHTS, collective_sizes  # noqa: E402
from moesim.calibrate.solve import row_losses  # noqa: E402
from moesim.calibrate.transfer_band import own_band_mapes  # noqa: E402
from moesim.specs.load import resolve_ref  # noqa: E402
from moesim.specs.system_facts import set_system_facts  # noqa: E402
from scripts.calband_insample import LOGS  # noqa: E402
from scripts.docblock import run_check  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN bandfit_insample: python scripts/bandfit_insample.py --write -->"
END = "<!-- END bandfit_insample -->"


def weighted_prior_loss(fit) -> tuple[float, float]:
    """(>= 1 MiB, < 1 MiB) summed soft-L1 loss of √w · ln(t^/t) at the prior's θ over the fit's rows."""
    design = fit.point[0]
    large = collective_sizes(design.observations) >= LARGE_BYTES
    r = np.sqrt(design.row_weights) * np.log(design.predict(design.initial()) / design.measured)
    rho = row_losses(r, fit.loss)
    return float(rho[large].sum()), float(rho[~large].sum())


def _pct(m: tuple) -> str:
    return " \\| ".join("-" if x is None else f"{100 * x:.2f}" for x in m)


def render() -> str:
    entries = {e["file"]: e for e in read_manifest(MANIFEST)}
    lines = ["| calibration log | --row-weight | weighted soft-L1 loss at the prior >= 1 MiB \\| below | n_eff; "
             "√(n / n_eff) | own busbw MAPE (%) >= 1 MiB \\| below: prior -> fit |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in LOGS:
            e = entries[name]
            facts0 = matrix_fit_args(e)["system"] or {}
            prior_err = None
            for rule in ROW_WEIGHTS:
                result = calibrate([str(MANIFEST.parent / name)], e["hardware"], Path(tmp) / "cal.toml",
                                   row_weight=rule, **matrix_fit_args(e))
                facts = {**facts0, **(result.facts.inferred if result.facts else {})}
                provenance = Provenance(prior=e["hardware"], sources=(name,), holdout_fraction=0.0, seed=0,
                                        fitted_on=(), held_out=())
                prior_path = resolve_ref(e["hardware"], "hardware_profiles")
                own = own_band_mapes(result.measurements, lambda f: profile_from_table(set_system_facts(
                    calibrated_table(prior_path, f, provenance), facts)), e.get("gpus_per_thread", 1))
                if prior_err is None:
                    prior_err = log_error(tuple(result.measurements.collectives), entry_hardware(e), None,
                                          e.get("gpus_per_thread", 1))
                big, small = weighted_prior_loss(result.fit)
                fit = result.fit
                lines.append(f"| {name.removesuffix('_perf.log') if rule == 'row' else ''} | {rule} | "
                             f"{big:.4f} \\| {small:.4f} | {fit.effective_rows:.2f}; {fit.level_prior_weight:.2f} | "
                             f"{_pct((prior_err.mape_large, prior_err.mape_small))} -> {_pct(own(fit))} |")
    lines += ["", "(loss: scipy's soft_l1 at f_scale 0.1 of √w · ln(t^/t) at the prior's θ, summed over the band's "
                  "fitted rows, w the rule's weights; n_eff: the automatic prior weight's effective rows (Kish's "
                  "share of weighted rows times the correlation factor; prior_weight.py); own busbw MAPE: the faster "
                  "row of each size, as the held-out matrix prices a log; prior: the shipped profile with the log's "
                  "stated facts)"]
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
