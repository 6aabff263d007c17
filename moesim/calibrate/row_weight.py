"""How much each fitted row weighs in calibrate's objective (`--row-weight`; session 16, bandfit).

The fit minimises Σ ρ(√w_i · ln(t̂_i / t_i)) (solve.py; fit.py's step 2 names w_i): scipy's robust loss ρ acts on the
residual, so the weight is put on the residual, as √w_i, the one place scipy's least_squares takes it; in ρ's quadratic
core (|residual| < F_SCALE) row i then counts w_i times, in its linear tail √w_i times. Rules, each defined from the
calibration log (and the prior) alone, over its collective rows (other rows keep w = 1):
- `row` (the default): every row w = 1, as before session 16.
- `band`: the two size bands (< 1 MiB, >= 1 MiB, nccl_error.LARGE_BYTES) carry equal summed weight: w_i =
  N / (2 N_band(i)) (Σ w = N); a log with one band only keeps w = 1.
- `size`: each distinct message size counts once whatever the number of rows at it: w_i = N / (K n_size(i)), K the
  distinct sizes (Σ w = N).
- `band-loss`: each band carries half the robust loss the prior's θ gives the log: per band one factor c_b on the
  residual, Σ_{i∈b} ρ(c_b r_i) = ½ Σ_i ρ(r_i), r the rows' ln(t̂/t) at the prior, w_i = c_b² (bisection: ρ grows with
  |c|); a log with one band, or a band the prior prices exactly, keeps w = 1.
Weighted rows carry less information than as many equal ones: the automatic prior weight (prior_weight.py) and the
facts inference (facts_fit.py) count them as Kish's effective number (Σ w)² / Σ w² (Source: Kish 1965, "Survey
Sampling", §11.7, the design effect of unequal weights), times the residuals' own correlation factor.
"""

from __future__ import annotations

import numpy as np

from moesim.calibrate.nccl_error import LARGE_BYTES
from moesim.calibrate.predict import CollectiveTerm
from moesim.errors import SpecError

ROW_WEIGHTS = ("row", "band", "size", "band-loss")
ROW_WEIGHT_MEANINGS = {"row": "every row weighs 1",
                       "band": "the < 1 MiB and >= 1 MiB bands carry equal summed weight",
                       "size": "each distinct message size counts once",
                       "band-loss": "each band carries half the prior's robust loss on the log"}
_BISECTIONS = 200  # c_b to double precision: the bracket [0, c_hi] halves each step


def check_row_weight(rule: str) -> str:
    """`rule` if it is one of ROW_WEIGHTS, else a SpecError naming the flag and the rules."""
    if rule not in ROW_WEIGHTS:
        raise SpecError(f"unknown row weight {rule!r}", field="--row-weight", value=rule, allowed=ROW_WEIGHTS)
    return rule


def collective_sizes(observations) -> np.ndarray:
    """The message size (bytes) of each observation's collective term; NaN for a row without one."""
    return np.array([next((float(t.size_bytes) for t in o.terms if isinstance(t, CollectiveTerm)), np.nan)
                     for o in observations])


def row_weights(observations, rule: str, residuals_at_prior=None, loss_of=None) -> np.ndarray:
    """w_i of every observation under `rule` (module docstring). `residuals_at_prior` (ln t̂/t at the prior's θ) and
    `loss_of` (the per-row robust loss ρ, an array function) are read by `band-loss` only."""
    check_row_weight(rule)
    sizes = collective_sizes(observations)
    w = np.ones(len(sizes))
    rows = ~np.isnan(sizes)
    n = int(rows.sum())
    if rule == "row" or n == 0:
        return w
    if rule == "size":
        values, inverse, counts = np.unique(sizes[rows], return_inverse=True, return_counts=True)
        w[rows] = n / (len(values) * counts[inverse])
        return w
    large = rows & (sizes >= LARGE_BYTES)
    small = rows & ~large
    if not large.any() or not small.any():
        return w
    if rule == "band":
        w[large], w[small] = n / (2 * large.sum()), n / (2 * small.sum())
        return w
    r = np.asarray(residuals_at_prior, float)
    half = 0.5 * float(loss_of(r[rows]).sum())
    for band in (large, small):
        if float(loss_of(r[band]).sum()) > 0:
            w[band] = _scale(r[band], half, loss_of) ** 2
    return w


def _scale(r: np.ndarray, target: float, loss_of) -> float:
    """c > 0 with Σ ρ(c r) = target (ρ grows with |c r|, so bisection on c)."""
    lo, hi = 0.0, 1.0
    while float(loss_of(hi * r).sum()) < target:
        hi *= 2.0
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if float(loss_of(mid * r).sum()) < target else (lo, mid)
    return 0.5 * (lo + hi)


def kish_rows(weights: np.ndarray) -> float:
    """Kish's effective number of rows of a weighted sum, (Σ w)² / Σ w² (module docstring); n for equal weights."""
    w = np.asarray(weights, float)
    return float(w.sum() ** 2 / (w**2).sum())
