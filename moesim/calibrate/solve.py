"""The least-squares solve behind fit.py: relative-error residuals, robust loss, priors, relinearisation, trust region.

Procedure (moesim reference modeling.md §6; fit.py's docstring has the whole of it): residuals
r_i = √w_i · ln(t̂_i / t_i), loss ρ (scipy.optimize.least_squares, `loss`, scale F_SCALE), a ridge on the
efficiency increments and a log-normal prior on every interconnect figure (LEVEL_PRIOR_WEIGHT). The collectives are
priced through their linearisation at the current θ (design.py's probe): `relinearised_fit` solves, re-probes the
slopes at the solution and solves again until they stop changing, bounding each step of the interconnect
parameters by a trust region (TRUST_LOG, halved when a step leaves the linearisation's range, doubled while a step it
cut still gains) so a step stays where the same algorithms are the fastest.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from moesim.calibrate.design import Design
from moesim.calibrate.prior_weight import uniform_weights

LOSSES = ("soft_l1", "linear", "huber", "cauchy")
F_SCALE = 0.1  # ln-ratio where the robust loss turns linear (~10 % error)
# Ridge on the efficiency increments δ (extra residuals RIDGE·δ_j): a knot no observation reaches stays
# level with its neighbour instead of drifting (matters in bootstrap resamples); on data that pins δ
# it shifts the fit by O(RIDGE²), far below 0.1 %.
RIDGE = 1e-2
MAX_RELINEARISATIONS = 20
TRUST_LOG = np.log(2.0)  # first trust region of the interconnect parameters per relinearisation: a factor 2
# The trust region doubles while a step cut by it still lowers the loss by more than this fraction.
TRUST_GROW_GAIN = 0.0
# A log-normal prior on every interconnect figure (latency, bandwidth, NVLS bandwidth) around the profile's
# value: one extra residual σ · w_j · ln(value / prior) each, σ the RMS of the data residuals (the misfit's
# own scale, as a MAP fit with unknown noise weighs its prior). Where the model fits the data exactly the
# prior has no say; where it cannot (real logs) the data move a figure only where they pin it, and where
# they cannot tell two figures apart (NVLink vs network hop latency on a 2-node log) the prior decides.
# The NVLSTree / NVLS ratio ρ carries none (design.py: no measurement sets it). For collectives alone w_j is
# √(n / n_eff) / σ_j: σ_j the figure's stated prior uncertainty (prior_sigma.toml), n_eff the effective number
# of independent rows of the fitted log from its own residuals' correlation (prior_weight.py). LEVEL_PRIOR_WEIGHT,
# one w for every figure, is used with layer records; `--prior-weight W` sets one w for every figure. It was
# chosen among 1, 3, 10, 30 on the gj-aion logs in an earlier round (docs/collectives.md says so).
LEVEL_PRIOR_WEIGHT = 10.0


def relinearised_fit(design: Design, loss: str, prior_weights: np.ndarray):
    """(θ, the last solve's result, relinearisations, the free mask it used): least squares on the collectives'
    linearisation, re-probed until the slopes stop changing, under the trust region (module docstring)."""
    theta, weights = design.initial(), design.row_weights  # w_i of each row (row_weight.py; ones by default)
    trust, best = TRUST_LOG, _model_loss(design, theta, loss=loss)
    for relin in range(1, MAX_RELINEARISATIONS + 1):
        free_used = design.free.copy()  # re-probing can change which parameters move: keep the solve's own
        old_coef = design.coef
        step, result = solve(design, theta, weights, loss, trust=trust if design.has_collectives else None,
                              prior_weights=prior_weights)
        coef = design.probe(step)
        loss_at_step = _model_loss(design, step, coef, loss)
        if design.has_collectives and loss_at_step > best:
            # the linearisation left its range (another algorithm became the fastest): step back, smaller
            trust /= 2
            design.coef = design.probe(theta)
            if trust < TRUST_LOG / 64:
                design.coef = old_coef if old_coef is not None else design.coef
                break
            continue
        same = _same_slopes(coef, design.coef) and np.allclose(design.predict(step, coef), design.predict(step),
                                                                rtol=1e-9, atol=0)
        lev = design.level_slice()
        at_edge = design.has_collectives and bool(np.any(np.abs(step[lev] - theta[lev]) > 0.999 * trust))
        gain = (best - loss_at_step) / best if best > 0 else 0.0
        theta, best = step, loss_at_step
        design.coef = coef
        if at_edge and gain > TRUST_GROW_GAIN:
            trust *= 2  # cut by the trust region while still gaining: the solution lies further out
            continue
        if same:
            break
    return theta, result, relin, free_used


def _model_loss(design: Design, theta: np.ndarray, coef=None, loss: str = "soft_l1") -> float:
    """The solver's own robust loss (scipy's ρ at F_SCALE) of √w · ln(predicted/measured), with the collectives
    linearised exactly at θ (`coef` probed there)."""
    return robust_loss(np.sqrt(design.row_weights) * np.log(np.maximum(design.predict(theta, coef), 1e-300)
                                                            / design.measured), loss)


def robust_loss(r: np.ndarray, loss: str) -> float:
    """Σ ρ(r) as scipy.optimize.least_squares sums it for `loss` at f_scale F_SCALE (its documented ρ forms)."""
    return float(F_SCALE**2 * np.sum(_rho(r, loss)))


def row_losses(r: np.ndarray, loss: str) -> np.ndarray:
    """ρ(r_i) of each residual, as robust_loss sums them (row_weight.py's band-loss reads them)."""
    return F_SCALE**2 * _rho(r, loss)


def _rho(r: np.ndarray, loss: str) -> np.ndarray:
    """scipy's ρ(z) of z = (r / F_SCALE)², before its F_SCALE² factor."""
    z = (np.asarray(r, float) / F_SCALE) ** 2
    return {"linear": z, "soft_l1": 2 * (np.sqrt(1 + z) - 1), "huber": np.where(z <= 1, z, 2 * np.sqrt(z) - 1),
            "cauchy": np.log1p(z)}[loss]


def _same_slopes(new, old) -> bool:
    return all(np.allclose(n, o, rtol=1e-6, atol=1e-9 * np.abs(o).max(initial=0.0))
               for n, o in zip(new, old) if n.ndim == 2)  # the slopes A, B, D (not the rest C)


def solve(design: Design, theta0: np.ndarray, weights: np.ndarray, loss: str, free: np.ndarray | None = None,
           trust: float | None = None, prior_weights: np.ndarray | None = None):
    """Least squares on the current linearisation; `trust` bounds the interconnect parameters to
    θ0 ± trust (ln units) so a step stays where the linearisation (the same fastest algorithms) holds.
    `prior_weights`: w_j per θ (module comment at LEVEL_PRIOR_WEIGHT); None = LEVEL_PRIOR_WEIGHT on every figure."""
    free = design.free.copy() if free is None else free
    lo, hi = design.bounds()
    if trust is not None:
        lev = design.level_slice()
        lo[lev] = np.maximum(lo[lev], theta0[lev] - trust)
        hi[lev] = np.minimum(hi[lev], theta0[lev] + trust)
    base = theta0.copy()

    k = len(design.knots)

    def residuals(x: np.ndarray) -> np.ndarray:
        theta = base.copy()
        theta[free] = x
        pred = np.maximum(design.predict(theta), 1e-300)
        data = np.sqrt(weights) * np.log(pred / design.measured)
        sigma = float(np.sqrt(np.mean(data**2)))  # the misfit's own scale: exact data leave the prior no say
        return np.concatenate([data, RIDGE * theta[1:k], sigma * prior_weight[free] * (x - prior[free])])

    prior = design.initial()
    prior_weight = uniform_weights(design, LEVEL_PRIOR_WEIGHT) if prior_weights is None else prior_weights

    x0 = np.clip(theta0[free], lo[free], hi[free])
    result = least_squares(residuals, x0, bounds=(lo[free], hi[free]), loss=loss, f_scale=F_SCALE, method="trf",
                           x_scale=1.0, xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
    theta = base.copy()
    theta[free] = result.x
    return theta, result


