"""The fit's uncertainty (fit.py's procedure, step 4) and its parameter table.

(a) The Gauss-Newton covariance s²(JᵀJ)⁻¹ at the solution, mapped to the log of every physical parameter
(`log_covariance`): a relative standard error per parameter. (b) A bootstrap (`bootstrap_samples`): refits on units
(one layer record with all its phases, or one collective point) resampled with replacement by
numpy.random.default_rng(seed), reported as the INTERVAL_PERCENTILES interval. `parameter_table` puts both beside
each parameter's fitted value and prior.

Each refit repeats the point fit's solve (solve.relinearised_fit: from the prior, relinearised, under its trust
region and step-back rule, with the binding set the drawn rows give) on the resampled data set itself: a unit
drawn k times is k copies of its observations, as the point fit would see a data set that held it k times (`refit`;
on the data itself it returns the point fit). Until session 8 a refit was one solve from the point fit's θ with each
row weighted by √k inside the robust loss, which differs twice: soft-L1 applied to √k·r counts a row drawn k times
as less than k copies once its residual passes F_SCALE (√k, not k, times the linear tail), and one solve skips the
step-back rule the point fit can stop on (a step toward the prior refused because the data loss alone, which the
rule compares, rose). Where the residuals lean one way the refits all shifted the same way and the interval sat
beside the point: 4 of 58 fitted figures on 35 logs, all an infiniband.latency (the cetus log's 1.4115e-5 s against
1.4038e-5 - 1.4077e-5; docs/collectives.md, "Reading real logs"). Held at the point fit's, not repeated per refit:
the prior weights (prior_weight.py's n_eff, which would read copies of a row as correlated rows) and the ramp fill
(fill_fit.py): the interval is conditional on them. Each refit costs one relinearised fit (calibrate with bootstrap
100 takes 1.3-22 times as long on the bundled logs, 3.7 at the median; benchmarks/RESULTS.md). fit.with_bootstrap
draws the refits on a fit already made (calibrate: the one facts inference chose), as fit_profile would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.calibrate.design import Design
from moesim.calibrate.solve import relinearised_fit

BOOTSTRAP_FROM = 0.2  # progress fraction at which the bootstrap refits start (the fit itself is the first part)
INTERVAL_PERCENTILES = (5.0, 95.0)


@dataclass(frozen=True)
class ParameterFit:
    """One parameter: fitted value, prior, and uncertainty (None where not fitted)."""

    name: str
    unit: str
    value: float
    prior: float
    fitted: bool
    rel_std: float | None = None
    interval: tuple[float, float] | None = None


def _log_map(design: Design) -> np.ndarray:
    """L such that L·θ is the log of every physical parameter (efficiency knots are cumulative sums)."""
    n, k = len(design.names), len(design.knots)
    lmap = np.eye(n)
    for j in range(k):
        lmap[j, :k] = 0.0
        lmap[j, : j + 1] = 1.0
    for j, level_j in design.departures.items():  # calhier: a hierarchical per-protocol hop is ln α + d (design.py)
        lmap[j, level_j] = 1.0
    return lmap


def log_covariance(design: Design, result, free: np.ndarray | None = None) -> np.ndarray | None:
    free = design.free if free is None else free
    m, p = result.fun.size - max(len(design.knots) - 1, 0), int(free.sum())
    if m <= p:
        return None
    jac = result.jac
    s2 = 2.0 * result.cost / (m - p)
    cov_free = np.linalg.pinv(jac.T @ jac) * s2
    cov = np.zeros((len(free), len(free)))
    cov[np.ix_(free, free)] = cov_free
    lmap = _log_map(design)
    return lmap @ cov @ lmap.T


def _dependence(design: Design, theta: np.ndarray) -> np.ndarray:
    """(observations × parameters) True where an observation's prediction moves with the parameter."""
    base = design.predict(theta)
    dep = np.zeros((len(base), len(theta)), dtype=bool)
    for j in np.flatnonzero(design.free):
        bumped = theta.copy()
        bumped[j] += 1e-3
        dep[:, j] = np.abs(design.predict(bumped) - base) > 1e-9 * base
    return dep


def refit(design: Design, loss: str, copies: np.ndarray, prior_weights: np.ndarray | None) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """(θ, free mask) of the point fit's solve (relinearised_fit) on the data set holding copies[i] copies of each
    observation i, with the point fit's parameters (its dtypes, per-protocol hops or not) and prior weights. All
    ones: the point fit itself."""
    drawn = [design.observations[i] for i in np.repeat(np.arange(len(copies)), copies)]
    resampled = Design(drawn, design.prior, design.knots, design.per_protocol,
                       dtypes=(design.ref_dtype, design.scaled_dtypes))
    theta, _, _, free = relinearised_fit(resampled, loss, prior_weights)
    return theta, free


def bootstrap_samples(design: Design, theta: np.ndarray, loss: str, reps: int, seed: int,
               progress=None, prior_weights: np.ndarray | None = None) -> np.ndarray | None:
    """Log physical parameters of `reps` refits on resampled units (rows), or None: each refit runs the point
    fit's relinearised_fit on a Design of the resampled observations (module docstring).

    A parameter the point fit moved that a refit does not (no drawn row binds it, or none depends on it) is counted
    as NaN.
    """
    if reps == 0:
        return None
    rng = np.random.default_rng(seed)
    units = sorted({o.unit for o in design.observations})
    index = {u: i for i, u in enumerate(units)}
    obs_unit = np.array([index[o.unit] for o in design.observations])
    dep = _dependence(design, theta)
    lmap, out = _log_map(design), []
    for rep in range(reps):
        if progress is not None:
            progress(BOOTSTRAP_FROM + (1 - BOOTSTRAP_FROM) * rep / reps)
        counts = np.bincount(rng.integers(0, len(units), len(units)), minlength=len(units))
        theta_b, free = refit(design, loss, counts[obs_unit], prior_weights)
        free = free & (counts[obs_unit] @ dep > 0)  # a figure no drawn row depends on stays where it started
        row = lmap @ theta_b
        row[(np.abs(lmap[:, design.free & ~free]) > 0).any(axis=1)] = np.nan
        out.append(row)
    return np.array(out)


def parameter_table(design: Design, theta, log_cov, samples) -> tuple[ParameterFit, ...]:
    prior = design.initial()
    lmap, free = _log_map(design), design.free
    free_phys = (np.abs(lmap[:, free]) > 0).any(axis=1)
    rows = []
    for j, name in enumerate(design.names):
        unit = _unit_of(name)
        value, before = float(np.exp(lmap[j] @ theta)), float(np.exp(lmap[j] @ prior))
        if name == "layer_overhead":  # the fit starts a zero prior at START_OVERHEAD_S; report the prior itself
            before = design.prior.efficiency.layer_overhead_s
        fitted = bool(free_phys[j])
        rel = float(np.sqrt(max(log_cov[j, j], 0.0))) if (log_cov is not None and fitted) else None
        interval = None
        if samples is not None and fitted and np.isfinite(samples[:, j]).sum() >= len(samples) / 2:
            lo, hi = np.nanpercentile(samples[:, j], INTERVAL_PERCENTILES)
            interval = (float(np.exp(lo)), float(np.exp(hi)))
        rows.append(ParameterFit(name, unit, value, before, fitted, rel, interval))
    return tuple(rows)


def _unit_of(name: str) -> str:
    if name.startswith("efficiency"):
        return "fraction of peak"
    if name.startswith("peak_scale"):
        return "x prior peak"
    if name.endswith("_ratio"):
        return "x NVLS bandwidth"
    latencies = (".latency", ".p2p_latency", ".ll_latency", ".ll128_latency")
    return "s" if name.endswith(latencies) or name == "layer_overhead" else "bytes/s"


