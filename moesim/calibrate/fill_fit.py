"""The pipeline ramp's fill S_fill as a figure of the system that `moesim calibrate` fits from a log's own ramp rows
(profile `interconnect[].fill_bytes`; nccl.fill_factor prices the bounding transfer × (1 + S_fill / (S + S_fill))).

Why a search and not a column of θ (design.py): S_fill enters a row's time nonlinearly, and far above it as a
constant S_fill / W that the hop latency explains as well; the linearised fit (linearise.py) holds slopes that are
exact only for figures the time is affine in. So S_fill of one level is searched in one dimension, ln S_fill, with
the whole linearised fit of the other figures inside at each value (solve.relinearised_fit, the prior weights held at
those of the prior's fill), and the value with the least MAP cost wins: the fit's own robust loss of the data
residuals, its ridge and prior residuals (solve.py), plus the fill's prior residual s · w · ln(S_fill / S_fill0),
s the data residuals' RMS and w = √(n / n_eff) / σ_fill (prior_sigma.toml [fill]) or the one weight
`--prior-weight W` sets, as every other figure's. Search: whole octaves downhill from the prior, each way, while the
cost falls (within ±SEARCH_OCTAVES), then half and quarter octaves beside the best (ties keep the value nearer the
prior): 5-9 inner fits.

Which rows bind it (the binding rule of linearise.binding_terms, for a figure outside θ): a row is a ramp row of
level l when moving that level's S_fill moves the row's time at the prior at least RAMP_SHARE of the most it can
move a transfer-bound row: d ln t / d ln S_fill = u / ((1 + u)(2 + u)) with u = S / S_fill, at most 0.172 (at
u = √2), so with RAMP_SHARE = 0.5 a transfer-bound row with S_fill / 4 ≲ S ≲ 8 S_fill (ramp factor 1.1-1.8). A
level no row of the log binds keeps its prior fill (not searched); only rows whose outermost level is l see its
fill (nccl.level_fill_bytes), so a one-node log sets the NVLink level's, a multi-node log the network level's.
Used where every observation is a collective (nccl-tests logs), as the Bayesian weight. The bootstrap refits
(uncertainty.py) hold the fill at its searched value: it has no interval.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from moesim.calibrate.design import Design
from moesim.calibrate.prior_weight import rel_sigmas
from moesim.calibrate.solve import RIDGE, robust_loss
from moesim.collectives.nccl import fill_bytes as default_fill_bytes
from moesim.specs.hardware import MAX_FILL_BYTES, MIN_FILL_BYTES, HardwareProfile

SEARCH_OCTAVES = 4  # S_fill searched within the prior × 2^±4 (±4 σ_fill at σ = ln 2)
RAMP_SHARE = 0.5  # a ramp row moves with ln S_fill at least this share of the most a transfer-bound row can
MAX_RAMP_SLOPE = np.sqrt(2) / ((1 + np.sqrt(2)) * (2 + np.sqrt(2)))  # max_u u / ((1 + u)(2 + u)), at u = √2
PROBE = 0.05  # ln step of the sensitivity probe


@dataclass(frozen=True)
class FillFit:
    """The fill of one level: fitted (searched) or left at the prior (no ramp row)."""

    level: str
    prior_bytes: float
    fill_bytes: float
    ramp_rows: int
    searched: tuple[tuple[float, float], ...] = ()  # (S_fill bytes, MAP cost) of every value tried

    @property
    def fitted(self) -> bool:
        return bool(self.searched)


def prior_fill_bytes(level, index: int) -> float:
    """The level's own fill_bytes, else nccl_tuning.toml's: one node's on the innermost level, several nodes' above."""
    return level.fill_bytes if level.fill_bytes is not None else default_fill_bytes(index > 0)


def with_fill(profile: HardwareProfile, index: int, fill: float) -> HardwareProfile:
    """`profile` with level `index`'s fill_bytes set."""
    levels = list(profile.interconnect)
    levels[index] = replace(levels[index], fill_bytes=float(fill))
    return replace(profile, interconnect=tuple(levels))


def ramp_rows(design: Design, index: int) -> np.ndarray:
    """Rows (booleans) that bind level `index`'s fill at the prior (module docstring)."""
    prior = design.prior
    fill0 = prior_fill_bytes(prior.interconnect[index], index)
    bumped = Design(list(design.observations), with_fill(prior, index, fill0 * np.exp(PROBE)), design.knots,
                    design.per_protocol)
    t0, t1 = design.predict(design.initial()), bumped.predict(bumped.initial())
    slope = np.log(np.maximum(t1, 1e-300) / np.maximum(t0, 1e-300)) / PROBE
    return slope >= RAMP_SHARE * MAX_RAMP_SLOPE


def fill_prior_weight(n_rows: int, n_eff: float | None, uniform: float | None) -> float:
    """w of the fill's prior residual: the uniform weight where one is set, else √(n / n_eff) / σ_fill."""
    if uniform is not None:
        return uniform
    return float(np.sqrt(n_rows / (n_eff or n_rows))) / rel_sigmas()["fill"]


def fit_fills(design: Design, loss: str, prior_weights: np.ndarray, fill_weight: float, fit) -> tuple[FillFit, ...]:
    """The fill of every level the log's ramp rows bind, searched one level at a time (innermost first, each on the
    profile with the fills found before it); `fit` is solve.relinearised_fit."""
    out, profile = [], design.prior
    for index, level in enumerate(profile.interconnect):
        fill0 = prior_fill_bytes(level, index)
        at = (design if profile is design.prior
              else Design(list(design.observations), profile, design.knots, design.per_protocol))
        rows = int(ramp_rows(at, index).sum())
        if not rows:
            out.append(FillFit(level.name, fill0, fill0, 0))
            continue
        costs: dict[float, float] = {}

        def cost_at(octave: float) -> float:
            if octave not in costs:
                fill = float(np.clip(fill0 * 2.0**octave, MIN_FILL_BYTES, MAX_FILL_BYTES))
                trial = Design(list(design.observations), with_fill(profile, index, fill), design.knots,
                               design.per_protocol)
                theta, _, _, free = fit(trial, loss, prior_weights)
                costs[octave] = map_cost(trial, theta, loss, prior_weights, free,
                                         fill_weight * np.log(fill / fill0))
            return costs[octave]

        best = 0.0
        for direction in (-1.0, 1.0):  # whole octaves downhill from the prior, each way, within ±SEARCH_OCTAVES
            octave = best + direction
            while abs(octave) <= SEARCH_OCTAVES and cost_at(octave) < cost_at(best):
                best, octave = octave, octave + direction
        for step in (0.5, 0.25):
            best = min((best - step, best, best + step), key=lambda o: (cost_at(o), abs(o)))
        fill = float(np.clip(fill0 * 2.0**best, MIN_FILL_BYTES, MAX_FILL_BYTES))
        searched = tuple((float(np.clip(fill0 * 2.0**o, MIN_FILL_BYTES, MAX_FILL_BYTES)), c)
                         for o, c in sorted(costs.items()))
        out.append(FillFit(level.name, fill0, fill, rows, searched))
        profile = with_fill(profile, index, fill) if fill != fill0 else profile
    return tuple(out)


def map_cost(design: Design, theta: np.ndarray, loss: str, prior_weights: np.ndarray, free: np.ndarray,
             fill_residual: float) -> float:
    """The fit's MAP cost at θ (solve.py's residuals, exact collectives: re-probed at θ) with the fill's prior
    residual s · `fill_residual` beside the others', under the solver's robust loss."""
    pred = np.maximum(design.predict(theta, design.probe(theta)), 1e-300)
    data = np.sqrt(design.row_weights) * np.log(pred / design.measured)  # solve.py's weighted data residuals
    sigma = float(np.sqrt(np.mean(data**2)))
    prior = design.initial()
    k = len(design.knots)
    r = np.concatenate([data, RIDGE * theta[1:k], sigma * prior_weights[free] * (theta[free] - prior[free]),
                        [sigma * fill_residual]])
    return robust_loss(r, loss)
