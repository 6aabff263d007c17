"""`moesim calibrate --transfer boot-shrink` (session 18, heldout3): each fitted interconnect figure moved toward its
prior by how widely resamples of the calibration log spread it.

SHRINK_RESAMPLES bootstrap refits (uncertainty.bootstrap_samples: units resampled with replacement by
numpy.random.default_rng(seed), the point fit's solve repeated on each; drawn whatever `--bootstrap` says, so the
written profile does not depend on the reported interval's count). For a figure j the shared fit moved
(transfer_band.moved_figures) with a prior σ_j (prior_sigma.toml; prior_weight.inverse_sigmas) and s_j the standard
deviation of ln θ_j over the refits that moved it: w_j = σ_j² / (σ_j² + s_j²) and ln θ_j written = ln θ_j,prior +
w_j (ln θ_j,fit - ln θ_j,prior). A figure fewer than half the refits move is written at the prior; V'/V (no prior σ)
as "shared". The rule and its held-out figures: docs/collectives-history.md "Session 18 (heldout3)" (defined before
pricing).
"""

from __future__ import annotations

import numpy as np

from moesim.calibrate.prior_weight import inverse_sigmas
from moesim.calibrate.transfer import at_values
from moesim.calibrate.transfer_band import moved_figures
from moesim.calibrate.uncertainty import bootstrap_samples

SHRINK_RULES = ("boot-shrink",)
SHRINK_RESAMPLES = 30  # B, fixed before pricing


def shrink_weight(sigma_prior: float, s_boot: float) -> float:
    """Weight on the fitted move: the normal-normal posterior mean's τ² / (τ² + σ²) (Gelman et al., BDA3 §2.5, a
    normal mean of known variance), τ the prior's σ, σ the estimate's spread (here the bootstrap's)."""
    return sigma_prior**2 / (sigma_prior**2 + s_boot**2)


def shrunk(prior: float, fitted: float, w: float) -> float:
    """The figure written: ln prior + w (ln fitted - ln prior)."""
    return float(np.exp(np.log(prior) + w * (np.log(fitted) - np.log(prior))))


def boot_shrink(fit, seed: int, resamples: int = SHRINK_RESAMPLES) -> tuple:
    """(the fit to write under "boot-shrink", one note per moved figure): module docstring."""
    moved = moved_figures(fit)
    if not moved:
        return fit, []
    design, theta, _, prior_weights = fit.point
    samples = bootstrap_samples(design, theta, fit.loss, resamples, seed, prior_weights=prior_weights)
    inverse = inverse_sigmas(design)
    values, notes = [], []
    for p in moved:
        j = design.names.index(p.name)
        if inverse[j] == 0:  # V'/V: no prior σ, written as shared
            continue
        column = samples[:, j]
        finite = column[np.isfinite(column)]
        if len(finite) < len(column) / 2 or len(finite) < 2:
            values.append((p, None))
            notes.append(f"{p.name} {p.value:.4g} {p.unit}: moved in {len(finite)} of {len(column)} resamples: "
                         f"written at the prior {p.prior:.4g}")
            continue
        s_boot = float(np.std(finite, ddof=1))
        w = shrink_weight(1.0 / inverse[j], s_boot)
        value = shrunk(p.prior, p.value, w)
        values.append((p, value))
        notes.append(f"{p.name} {p.value:.4g} {p.unit}: bootstrap spread {s_boot:.3g} in ln against the prior's "
                     f"{1.0 / inverse[j]:.3g}, weight {w:.3f}: written {value:.4g} (prior {p.prior:.4g})")
    written, _ = at_values(fit, values)
    return written, notes
