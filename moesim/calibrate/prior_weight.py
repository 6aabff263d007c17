"""The interconnect prior's weight from the fitted log itself: a Bayesian update with correlated residuals.

Each interconnect figure θ_j (log latency, log bandwidth, ...) has a log-normal prior around the profile's value,
ln θ_j ~ N(ln θ_j0, σ_j²), σ_j its stated relative uncertainty (prior_sigma.toml, one per kind of figure, with the
reason). The data: r_i = ln(predicted_i / measured_i) with scale s, the misfit's own RMS (fit._solve). The rows
of one log are not independent: neighbouring sizes share the same algorithm, protocol and misfit (in-place and
out-of-place rows of one size nearly coincide), so n rows carry the information of fewer. With residuals
correlated along the size axis as an AR(1) series of lag-1 autocorrelation φ, the variance of their mean is that
of n_eff = n (1 − φ) / (1 + φ) independent ones for large n (Source: Bayley & Hammersley 1946, "The 'effective'
number of independent observations in an autocorrelated time series", J. R. Stat. Soc. Suppl. 8(2)).
The MAP estimate then minimises (n_eff / n) Σ_i ρ(r_i) / s² + Σ_j (ln θ_j − ln θ_j0)² / σ_j², i.e. (times s² n /
n_eff) the data residuals r_i beside prior residuals s · √(n / n_eff) · (ln θ_j − ln θ_j0) / σ_j: the weight of
figure j is √(n / n_eff) / σ_j. Rows weighted by `--row-weight` (row_weight.py: residuals √w_i r_i, s their RMS)
count as Kish's (Σ w)² / Σ w² rows before the correlation's factor: n_eff = n_Kish (1 − φ) / (1 + φ).
φ is the residuals' own, at the fit (ordered by collective, group and size): a
misfit the figures remove leaves uncorrelated residuals and the data decide; a misfit of shape the figures cannot
follow (a ramp, a floor) leaves long runs of one sign, few effective rows, and the prior holds. The fit and φ
are iterated to a fixed point (MAX_ROUNDS at most), starting from n_eff = n (the rows taken as independent: the
data speak first, and the correlation is read from what the figures cannot explain, not from the prior's own
misfit, which a figure may remove; a log whose rows all sit 2x off one line would otherwise count as one row and
keep the prior); where they cycle instead
(φ, read from signs, moves in steps), the cycle's smallest n_eff is taken, the prior holding where the rows'
independence is in doubt.
Used where every observation is a collective (nccl-tests logs); layer records, or `--prior-weight W`, weigh
every figure W (fit.LEVEL_PRIOR_WEIGHT by default), as before.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from moesim.calibrate.design import Design
from moesim.calibrate.predict import CollectiveTerm
from moesim.errors import SpecError
from moesim.paths import read_versioned_toml

SIGMA_FILE = Path(__file__).with_name("prior_sigma.toml")
FIGURE_KINDS = ("latency", "p2p_latency", "bandwidth", "nvls_bandwidth", "nvlstree_bandwidth", "p2p_bandwidth",
                "fill", "ll_latency", "ll128_latency",  # fill: the ramp's S_fill, searched outside θ (fill_fit.py)
                "protocol_departure")  # d^p_l of the hierarchical per-protocol hops (design.py's departures)
MAX_ROUNDS = 8
ROUND_RTOL = 0.01  # the fixed point is reached when n_eff moves by less than 1 %


@lru_cache(maxsize=1)
def rel_sigmas(path: Path = SIGMA_FILE) -> dict[str, float]:
    """{figure kind: σ} from prior_sigma.toml (schema_version 1; every kind, and only those, each with a reason)."""
    data = read_versioned_toml(path)
    unknown = set(data) - set(FIGURE_KINDS) - {"schema_version"}
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}", file=str(path), allowed=FIGURE_KINDS)
    out = {}
    for kind in FIGURE_KINDS:
        entry = data.get(kind)
        if not isinstance(entry, dict) or set(entry) != {"rel_sigma", "reason"}:
            raise SpecError(f"[{kind}] needs rel_sigma and reason, nothing else", file=str(path), field=kind,
                            allowed=("rel_sigma", "reason"))
        sigma = entry["rel_sigma"]
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < 10:
            raise SpecError("rel_sigma must be a number in (0, 10)", file=str(path), field=f"{kind}.rel_sigma",
                            value=sigma, allowed="(0, 10)")
        if not isinstance(entry["reason"], str) or not entry["reason"].strip():
            raise SpecError("reason must be a non-empty string", file=str(path), field=f"{kind}.reason")
        out[kind] = float(sigma)
    return out


def inverse_sigmas(design: Design) -> np.ndarray:
    """1 / σ_j for every θ index of an interconnect figure (by the name's kind), 0 elsewhere and on the figures
    that carry no prior (Design.unpriored)."""
    sigmas = rel_sigmas()
    out = np.zeros(len(design.names))
    lev = design.level_slice()
    for j in range(lev.start, lev.stop):
        kind = "protocol_departure" if j in design.departures else design.names[j].rsplit(".", 1)[1]
        out[j] = 1.0 / sigmas[kind] if not design.names[j].endswith("_ratio") else 0.0
    out[design.unpriored()] = 0.0
    return out


def uniform_weights(design: Design, weight: float) -> np.ndarray:
    """Every interconnect figure weighted `weight` (--prior-weight W, layer records), the unpriored ones 0."""
    out = np.zeros(len(design.names))
    out[design.level_slice()] = weight
    out[design.unpriored()] = 0.0
    return out


def size_order(design: Design) -> np.ndarray:
    """Observation indices ordered by (label, group size, message size), file order within a size."""
    keys = []
    for i, obs in enumerate(design.observations):
        term = next((t for t in obs.terms if isinstance(t, CollectiveTerm)), None)
        keys.append((obs.label, term.group.size if term else 0, term.size_bytes if term else 0.0, i))
    return np.array([k[-1] for k in sorted(keys)], dtype=int)


def effective_rows(residuals: np.ndarray) -> float:
    """n (1 − φ) / (1 + φ) of a series (module docstring), at least 1. φ is the lag-1 correlation read from the signs
    about the median, φ = sin(π/2 · mean(s_i s_{i+1})), which for a Gaussian pair is exact (E[sgn x · sgn y] =
    (2/π) arcsin φ; Source: Sheppard 1899, Phil. Trans. R. Soc. A 192, the sign-correlation relation) and which,
    like the fit's robust loss, one outlying row cannot swing (nccl-tests logs hold single-row spikes of 1.5-3x);
    clipped to [0, 1)."""
    r = np.asarray(residuals, float)
    n = len(r)
    if n < 3:
        return float(n)
    signs = np.sign(r - np.median(r))
    phi = float(np.sin(np.pi / 2 * np.mean(signs[:-1] * signs[1:])))
    phi = min(max(phi, 0.0), 1.0 - 1e-9)
    return max(1.0, n * (1.0 - phi) / (1.0 + phi))


def weighted_share(weights: np.ndarray) -> float:
    """Kish's effective rows of weighted rows over their number, (Σ w)² / (n Σ w²) (row_weight.py): 1 for equal
    weights (exactly: the default fit's n_eff unchanged), less for unequal ones, which carry fewer rows' information."""
    w = np.asarray(weights, float)
    if np.all(w == w[0]):
        return 1.0
    return float(w.sum() ** 2 / (len(w) * (w**2).sum()))


def bayes_weights(design: Design, loss: str, fit) -> tuple[np.ndarray, float, tuple[float, ...]]:
    """(per-θ prior weights √(n / n_eff) / σ_j, n_eff, the n_eff of each round): the fixed point of the module
    docstring. `fit(design, loss, weights)` is fit._relinearised_fit (θ first in what it returns)."""
    n, inv, order = len(design.observations), inverse_sigmas(design), size_order(design)
    theta0 = design.initial()

    kish = weighted_share(design.row_weights)

    def n_eff_at(theta: np.ndarray) -> float:
        r = np.log(np.maximum(design.predict(theta, design.probe(theta)), 1e-300) / design.measured)
        return max(1.0, effective_rows(r[order]) * kish)

    n_eff, rounds = float(n) * kish, []
    seen = [n_eff]
    for _ in range(MAX_ROUNDS):
        design.coef = design.probe(theta0)
        theta = fit(design, loss, np.sqrt(n / n_eff) * inv)[0]
        new = n_eff_at(theta)
        rounds.append(new)
        if abs(new - n_eff) <= ROUND_RTOL * n_eff:
            n_eff = new
            break
        cycle = [k for k, old in enumerate(seen) if abs(new - old) <= ROUND_RTOL * old]
        if cycle:  # the signs flip between two fits (φ moves in steps of 2 / (n − 1)): the fewer rows of the cycle
            n_eff = min(seen[cycle[0]:] + [new])
            break
        seen.append(new)
        n_eff = new
    design.coef = design.probe(theta0)
    return np.sqrt(n / n_eff) * inv, n_eff, tuple(rounds)
