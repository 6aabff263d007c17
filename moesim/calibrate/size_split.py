"""The interconnect prior's weight, chosen from the fitted log alone: a held-out-by-size check inside it.

A log-normal prior keeps each interconnect figure near the profile's value (fit.LEVEL_PRIOR_WEIGHT). How
strongly is a question of how far the figures a log moves carry beyond the rows that moved them, which is
what a fit on one log must do for the same cluster's other logs (other node counts put other rows on the
latency-bound and bandwidth-bound sides). The check asks the fitted log itself: its message sizes are split
at the median into the smaller and the larger half; for every candidate weight the fit runs on one half and
its mean absolute error (|predicted / measured − 1|) is taken on the other, both ways round; the weight with
the smallest sum wins, the larger weight on a tie (within TIE_TOLERANCE). The held-out logs of a cluster play
no part in it.
Used where every observation is a collective (nccl-tests logs); layer records keep fit.LEVEL_PRIOR_WEIGHT,
as do logs with fewer than 2 × MIN_SIZES_PER_HALF sizes or a half that cannot be fitted.
"""

from __future__ import annotations

import numpy as np

from moesim.calibrate.design import Design, Observation
from moesim.calibrate.predict import CollectiveTerm
from moesim.errors import SpecError

CANDIDATE_WEIGHTS = (1.0, 3.0, 10.0, 30.0, 100.0)  # a factor ~3 apart, spanning "data decide" to "prior decides"
DEFAULT_WEIGHT = 10.0  # fit.LEVEL_PRIOR_WEIGHT: where the check cannot run
MIN_SIZES_PER_HALF = 4
TIE_TOLERANCE = 1e-3  # 0.1 pt of summed MAPE: closer than that counts as a tie (the stronger prior wins)


def size_halves(observations: list[Observation]) -> tuple[list[int], list[int]] | None:
    """Indices of the observations at the smaller and at the larger half of the distinct message sizes (rows
    of one size, in-place and out-of-place, stay together), or None when a half would hold too few sizes or
    some observation is not a single collective."""
    sizes = []
    for obs in observations:
        terms = [t for t in obs.terms if isinstance(t, CollectiveTerm)]
        if len(terms) != 1 or len(obs.terms) != 1:
            return None
        sizes.append(terms[0].size_bytes)
    distinct = sorted(set(sizes))
    if len(distinct) < 2 * MIN_SIZES_PER_HALF:
        return None
    cut = distinct[len(distinct) // 2]
    low = [i for i, s in enumerate(sizes) if s < cut]
    high = [i for i, s in enumerate(sizes) if s >= cut]
    return low, high


def choose_level_prior_weight(observations: list[Observation], prior, knots: tuple[float, ...], loss: str,
                              fit) -> tuple[float, tuple[tuple[float, float], ...]]:
    """(weight, ((candidate, summed held-out MAPE), ...)): see the module docstring. `fit(design, loss, weight)`
    is fit._relinearised_fit (θ first in what it returns)."""
    halves = size_halves(observations)
    if halves is None:
        return DEFAULT_WEIGHT, ()
    scores = []
    for weight in CANDIDATE_WEIGHTS:
        total = 0.0
        for train, test in (halves, halves[::-1]):
            try:
                design = Design([observations[i] for i in train], prior, knots)
                if int(design.free.sum()) >= len(train):
                    return DEFAULT_WEIGHT, ()
                theta = fit(design, loss, weight)[0]
                held = Design([observations[i] for i in test], prior, knots)
            except SpecError:
                return DEFAULT_WEIGHT, ()
            predicted = held.predict(theta, held.probe(theta))
            total += float(np.mean(np.abs(predicted / held.measured - 1.0)))
        scores.append((weight, total))
    best = min(total for _, total in scores)
    chosen = max(w for w, total in scores if total <= best + TIE_TOLERANCE)
    return chosen, tuple(scores)
