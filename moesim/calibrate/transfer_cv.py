"""`moesim calibrate --transfer cv-gate` (session 18, heldout3): a fitted interconnect figure is written only where
its move holds on the calibration log's own message sizes the fit did not see.

The log's distinct message sizes (per source log, collective and group size) are shuffled by
numpy.random.default_rng(seed) and dealt round-robin into CV_FOLDS folds; every row of a size (out-of-place and
in-place) lies in one fold. For each fold the point fit's solve is repeated on the rows outside it (uncertainty.refit:
the point fit's prior weights and ramp fill, as the bootstrap holds them), giving θ_k. The out-of-fold score: each
fold's rows priced at its θ_k, each size's busbw error |t / t̂ - 1| on its faster row (as nccl_error.log_error scores a
log), each band (>= 1 MiB, below: nccl_error.LARGE_BYTES) its own mean, the score the mean of the bands present. A
figure the shared fit moved (transfer_band.moved_figures) is kept only where that score is lower with every θ_k as
fitted than with the figure's θ entry set back to the prior's in every θ_k; else it is written at the prior
(transfer.at_prior). Rows without a collective term are in every training set and scored in none.
Source: K-fold cross-validation, Hastie, Tibshirani & Friedman, The Elements of Statistical Learning (2nd ed.),
§7.10.1. The rule and its held-out figures: docs/collectives-history.md "Session 18 (heldout3)" (defined before
pricing).
"""

from __future__ import annotations

import numpy as np

from moesim.calibrate.design import Design
from moesim.calibrate.nccl_error import LARGE_BYTES
from moesim.calibrate.predict import CollectiveTerm
from moesim.calibrate.transfer import at_prior
from moesim.calibrate.transfer_band import moved_figures
from moesim.calibrate.uncertainty import refit

CV_RULES = ("cv-gate",)
CV_FOLDS = 5  # K of K-fold cross-validation (ESL §7.10.1: 5 or 10), fixed before pricing


def size_keys(observations) -> list[tuple | None]:
    """Per observation, the message size it measures: (source log, collective, ranks, bytes); None for a row
    without a collective term (a layer record's phase)."""
    out = []
    for obs in observations:
        term = next((t for t in obs.terms if isinstance(t, CollectiveTerm)), None)
        out.append(None if term is None else
                   (obs.unit.rsplit("#", 1)[0].rsplit(":", 1)[0], term.op, term.group.size, term.size_bytes))
    return out


def size_folds(keys: list[tuple | None], seed: int, folds: int = CV_FOLDS) -> list[np.ndarray]:
    """The observation indices of each fold: the distinct sizes (keys not None) shuffled by default_rng(seed) and dealt
    round-robin into min(folds, sizes) folds; every row of a size in one fold."""
    sizes = sorted({k for k in keys if k is not None})
    order = np.random.default_rng(seed).permutation(len(sizes))
    n = min(folds, len(sizes))
    fold_of = {sizes[s]: i % n for i, s in enumerate(order)}
    return [np.array([i for i, k in enumerate(keys) if k is not None and fold_of[k] == f], dtype=int) for f in range(n)]


def band_score(keys: list[tuple], measured: np.ndarray, predicted: np.ndarray) -> float:
    """The matrix's score of priced rows: per size the faster row's |t / t̂ - 1|, each band's mean, the mean of the
    bands present (nccl_error.log_error's busbw error and bands)."""
    faster: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        if k not in faster or measured[i] < measured[faster[k]]:
            faster[k] = i
    bands: dict[bool, list[float]] = {}
    for k, i in faster.items():
        bands.setdefault(k[3] >= LARGE_BYTES, []).append(abs(measured[i] / predicted[i] - 1))
    return float(np.mean([np.mean(v) for v in bands.values()]))


def fold_fits(fit, seed: int) -> list[tuple[Design, list[tuple], np.ndarray]]:
    """Per fold: (a Design of its rows, their size keys, θ_k of the point fit's solve on every other row); none where
    the log has fewer than two sizes (one fold would leave its fit no row to fit on)."""
    design, _, _, prior_weights = fit.point
    keys = size_keys(design.observations)
    folds = size_folds(keys, seed)
    if len(folds) < 2:
        return []
    out = []
    for rows in folds:
        copies = np.ones(len(keys), dtype=int)
        copies[rows] = 0
        theta_k, _ = refit(design, fit.loss, copies, prior_weights)
        held = Design([design.observations[i] for i in rows], design.prior, design.knots, design.per_protocol,
                      dtypes=(design.ref_dtype, design.scaled_dtypes))
        out.append((held, [keys[i] for i in rows], theta_k))
    return out


def out_of_fold_score(folds, theta0: np.ndarray, reset: int | None = None) -> float:
    """The out-of-fold score of the fold fits, with θ entry `reset` set back to theta0's in every θ_k (None: none)."""
    keys, measured, predicted = [], [], []
    for held, fold_keys, theta_k in folds:
        theta = theta_k.copy()
        if reset is not None:
            theta[reset] = theta0[reset]
        keys += fold_keys
        measured.append(held.measured)
        predicted.append(held.predict(theta, held.probe(theta)))
    return band_score(keys, np.concatenate(measured), np.concatenate(predicted))


def cv_gate(fit, seed: int) -> tuple:
    """(the fit to write under "cv-gate", one note per moved figure): each moved interconnect figure kept where its
    out-of-fold score beats the prior's, else written at the prior (module docstring)."""
    moved = moved_figures(fit)
    if not moved:
        return fit, []
    design = fit.point[0]
    folds = fold_fits(fit, seed)
    if not folds:  # fewer than two sizes: nothing the folds can confirm
        written, _ = at_prior(fit, moved)
        return written, [f"{p.name}: fewer than two message sizes, no fold to confirm it: written at the prior"
                         for p in moved]
    theta0 = design.initial()
    fitted = out_of_fold_score(folds, theta0)
    refused, notes = [], []
    for p in moved:
        at_prior_score = out_of_fold_score(folds, theta0, design.names.index(p.name))
        kept = fitted < at_prior_score
        if not kept:
            refused.append(p)
        notes.append(f"{p.name} {p.value:.4g} {p.unit}: out-of-fold busbw MAPE {100 * fitted:.2f} % as fitted, "
                     f"{100 * at_prior_score:.2f} % at the prior {p.prior:.4g}: "
                     + ("kept" if kept else "written at the prior"))
    written, _ = at_prior(fit, refused)
    return written, notes
