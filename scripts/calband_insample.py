"""Session 15 (calband): on each calibration log of the two clusters whose held-out logs lose at >= 1 MiB under
calibrate's default (b200-together sendrecv, h100-qoofyk all_reduce), what the shared fit does to the log's OWN rows.

Per log: the rows the fit weighs in each band and how (its objective: soft-L1 of ln(predicted / measured time), every
row a unit, moesim/calibrate/fit.py and solve.py: the rows' summed loss per band at the prior's θ and at the fit's, and
their mean |ln t^/t|); the log's own busbw MAPE per band (nccl_error.log_error, as the held-out matrix prices a log)
with the prior and with the shared fit; and per interconnect figure the fit moves, that MAPE with the figure alone
written at the prior (transfer.at_prior) and, for a hop latency, with its Simple hop alone at the prior
(transfer_band.simple_hop_at_prior, what `--transfer band-split` writes). Nothing here reads a held-out log's rows.

Run: python scripts/calband_insample.py [--write]   (--write replaces the block of docs/collectives-history.md)
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate import calibrate  # noqa: E402
from moesim.calibrate.nccl_error import LARGE_BYTES, log_error  # noqa: E402
from moesim.calibrate.nccl_table import entry_hardware, matrix_fit_args, read_manifest  # noqa: E402
from moesim.calibrate.predict import CollectiveTerm  # noqa: E402
from moesim.calibrate.profile_io import Provenance, calibrated_table, profile_from_table  # noqa: E402
from moesim.calibrate.solve import F_SCALE  # noqa: E402
from moesim.calibrate.transfer import at_prior  # noqa: E402
from moesim.calibrate.transfer_band import moved_figures, own_band_mapes, simple_hop_at_prior  # noqa: E402
from moesim.specs.load import resolve_ref  # noqa: E402
from moesim.specs.system_facts import set_system_facts  # noqa: E402
from scripts.docblock import run_check  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN calband_insample: python scripts/calband_insample.py --write -->"
END = "<!-- END calband_insample -->"
LOGS = ("b200-together-2node_sendrecv_perf.log", "b200-together-4node_sendrecv_perf.log",
        "b200-together-2node-r3_sendrecv_perf.log", "h100-hgx-2node-qoofyk_all_reduce_perf.log",
        "h100-vm-4node-qoofyk_all_reduce_perf.log")


def soft_l1(r: np.ndarray) -> np.ndarray:
    """scipy.optimize.least_squares' soft_l1 loss of residuals r at f_scale F_SCALE: F² · 2(√(1 + (r/F)²) − 1)."""
    return F_SCALE ** 2 * 2 * (np.sqrt(1 + (r / F_SCALE) ** 2) - 1)


def objective_by_band(fit) -> list[tuple[int, float, float, float, float]]:
    """Per band (>= 1 MiB, < 1 MiB): (fitted rows, summed soft-L1 loss at the prior's θ, at the fit's θ, mean |ln t^/t|
    at the prior's θ, at the fit's θ), over the fit's collective observations (the prior terms not counted)."""
    design, theta = fit.point[0], fit.point[1]
    large = np.array([max((t.size_bytes for t in obs.terms if isinstance(t, CollectiveTerm)), default=0) >= LARGE_BYTES
                      for obs in design.observations])
    measured = np.log(design.measured)
    at_prior_r = np.log(design.predict(design.initial())) - measured
    at_fit_r = np.log(design.predict(theta)) - measured
    out = []
    for rows in (large, ~large):
        out.append((int(rows.sum()), float(soft_l1(at_prior_r[rows]).sum()), float(soft_l1(at_fit_r[rows]).sum()),
                    float(np.abs(at_prior_r[rows]).mean()) if rows.any() else math.nan,
                    float(np.abs(at_fit_r[rows]).mean()) if rows.any() else math.nan))
    return out


def _pct(m: tuple) -> str:
    return " \\| ".join("-" if x is None else f"{100 * x:.2f}" for x in m)


def render() -> str:
    entries = {e["file"]: e for e in read_manifest(MANIFEST)}
    lines = ["| calibration log | fitted rows >= 1 MiB \\| below; soft-L1 loss prior -> fit; mean \\|ln t^/t\\| "
             "prior -> fit | own busbw MAPE (%) >= 1 MiB \\| below: prior -> shared fit | figure the fit moves "
             "(prior -> fitted) | own MAPE (%) with it alone at the prior | with its Simple hop alone at the prior |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in LOGS:
            e = entries[name]
            path = MANIFEST.parent / name
            result = calibrate([str(path)], e["hardware"], Path(tmp) / "cal.toml", **matrix_fit_args(e))
            fit = result.fit
            facts = {**(matrix_fit_args(e)["system"] or {}), **(result.facts.inferred if result.facts else {})}
            provenance = Provenance(prior=e["hardware"], sources=(name,), holdout_fraction=0.0, seed=0,
                                    fitted_on=(), held_out=())
            prior_path = resolve_ref(e["hardware"], "hardware_profiles")
            own = own_band_mapes(result.measurements, lambda f: profile_from_table(set_system_facts(
                calibrated_table(prior_path, f, provenance), facts)), e.get("gpus_per_thread", 1))
            prior_err = log_error(tuple(result.measurements.collectives), entry_hardware(e), None,
                                  e.get("gpus_per_thread", 1))
            shared = own(fit)
            obj = objective_by_band(fit)
            how = "; ".join(f"{('>= 1 MiB', '< 1 MiB')[k]}: {n} rows, loss {a:.4f} -> {b:.4f}, "
                            f"{100 * c:.1f} -> {100 * d:.1f} %" for k, (n, a, b, c, d) in enumerate(obj))
            head = (f"| {name.removesuffix('_perf.log')} | {how} | "
                    f"{_pct((prior_err.mape_large, prior_err.mape_small))} -> {_pct(shared)} |")
            figures = moved_figures(fit)
            if not figures:
                lines.append(head + " none | - | - |")
            for i, p in enumerate(figures):
                back = own(at_prior(fit, [p])[0])
                split = _pct(own(simple_hop_at_prior(fit, p)[0])) if p.name.endswith(".latency") else "-"
                move = f"{p.name} {p.prior:.4g} -> {p.value:.4g} {p.unit} ({100 * (p.value / p.prior - 1):+.1f} %)"
                lines.append((head if i == 0 else "| | | |") + f" {move} | {_pct(back)} | {split} |")
    lines += ["", f"(fitted rows: every nccl-tests row the fit weighs, out-of-place and in-place, host-floor rows left "
                  f"out; loss: scipy's soft_l1 at f_scale {F_SCALE} of ln(t^/t), summed over the band's rows, the "
                  "prior's own terms not counted; own busbw MAPE: the faster row of each size, as the held-out matrix "
                  "prices a log; prior: the shipped profile with the log's stated facts)"]
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
