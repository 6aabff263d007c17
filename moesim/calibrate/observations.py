"""What a calibration fits: one measured time and its terms (Observation), and the matmul-efficiency knots chosen
from the observations' compute terms (choose_knots). Split out of calibrate/design.py (session 11, tidy: a pure move)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.calibrate.predict import ComputeTerm, Term

MAX_KNOTS = 6
MIN_KNOT_GAP = np.log(10.0) / 2  # half a decade of kernel FLOP between knots


@dataclass(frozen=True)
class Observation:
    """One measured time: `label` (a phase or "collective:op"), its terms, and the bootstrap `unit`."""

    label: str
    terms: tuple[Term, ...]
    measured_s: float
    unit: str  # observations sharing a unit (one layer record) are resampled together
    weight: float = 1.0  # w of its residual √w · ln(t̂/t) in the fit (row_weight.py, `--row-weight`; 1: every row alike)


def choose_knots(observations: list[Observation], max_knots: int = MAX_KNOTS) -> tuple[float, ...]:
    """Knot sizes: quantiles in log space of the kernel FLOP of each observation's largest compute term."""
    sizes = []
    for obs in observations:
        compute = [t for t in obs.terms if isinstance(t, ComputeTerm)]
        if compute:
            sizes.append(max(compute, key=lambda t: t.flops).kernel_flops)
    if not sizes:
        return ()
    logs = np.unique(np.round(np.log(sizes), 2))
    grid = np.quantile(logs, np.linspace(0, 1, min(max_knots, len(logs))))
    knots = [grid[0]]
    for value in grid[1:]:  # knots at least MIN_KNOT_GAP apart; the largest size stays a knot
        if value - knots[-1] >= MIN_KNOT_GAP:
            knots.append(value)
        elif value == grid[-1] and len(knots) > 1:
            knots[-1] = value
        elif value == grid[-1]:
            knots.append(value)
    return tuple(float(np.exp(v)) for v in knots)
