"""`moesim calibrate --transfer band-guard | pareto-guard | band-split | hop-split` (session 15, calband): a fitted
interconnect figure is written at the prior where the calibration log's own rows, priced as the held-out matrix prices a
log, ask it back.

The held-out matrix judges a calibrated profile by busbw MAPE per band (nccl_error.log_error: |measured / predicted
time - 1| on the faster row of each size, at >= 1 MiB and below it, each band its own mean); the fit minimises
soft-L1 of ln(predicted / measured time) over every fitted row at once (fit.py, solve.py), so a log with more rows
below 1 MiB than above, or whose small rows pull harder, may move a figure that costs its own >= 1 MiB rows. These
rules look at the calibration log alone (never at a held-out log's rows):
- "band-guard": from the shared fit, while some moved interconnect figure, set back alone to the prior
  (transfer.at_prior), lowers the log's own busbw MAPE at >= 1 MiB by more than GUARD_NOISE, the one that lowers it
  most is written at the prior; the rest as "shared".
- "pareto-guard": the same, but a figure is set back only where that lowers the log's own MAPE in one band by more
  than GUARD_NOISE and raises it in the other by no more than GUARD_NOISE.
- "band-split": "band-guard", but a level's hop latency α is not set back whole: its trial (and what is written) is
  the Simple hop (latency_us) at the prior and the LL / LL128 hops (ll_latency_us, ll128_latency_us) at what "shared"
  writes for them (the prior's own where it states one, else the fitted α). NCCL prices a hop per link, algorithm and
  protocol (src/graph/tuning.cc ncclTopoTuneModel hwLat[hw][algorithm][protocol], NVIDIA/nccl v2.28.9-1), and the
  rows at >= 1 MiB run Simple where those below run LL / LL128 mostly.
- "hop-split": "band-split" with the hop latencies its only candidates (every other figure as "shared").
The fill (fill_fit.py, searched outside θ) and the non-interconnect figures are written as "shared". The rules and
their held-out figures: docs/collectives-history.md "Session 15 (calband)" (defined before they were priced).
"""

from __future__ import annotations

import dataclasses

from moesim.calibrate.nccl_error import LARGE_BYTES, log_error
from moesim.calibrate.transfer import NOT_INTERCONNECT, at_prior

BAND_RULES = ("band-guard", "pareto-guard", "band-split", "hop-split")
SPLIT_HOP_RULES = ("band-split", "hop-split")  # rules whose refused hop latency is written at the prior for Simple only
# "lowers / raises the log's own MAPE by more than": the held-out matrix's 0.3 pt (tests/calibrate/
# test_calibration_matrix.py NOISE), fixed before pricing
GUARD_NOISE = 0.003


def moved_figures(fit) -> list:
    """The interconnect figures (ParameterFits) the fit moved off their prior."""
    return [p for p in fit.parameters if p.fitted and not p.name.startswith(NOT_INTERCONNECT) and p.prior > 0
            and p.value != p.prior]


def own_band_mapes(measurements, profile_of, gpus_per_thread: int = 1):
    """fit -> (MAPE >= 1 MiB, MAPE < 1 MiB) of the profile `profile_of(fit)` on the calibration measurements' own
    collective rows, per log (one collective and group size) as nccl_error.log_error prices it, the logs' mean per
    band (None: no row in that band)."""
    logs: dict[tuple, list] = {}
    for p in measurements.collectives:
        logs.setdefault((p.source.rsplit(":", 1)[0], p.op, p.group_size), []).append(p)

    def mapes(fit) -> tuple[float | None, float | None]:
        profile = profile_of(fit)
        errs = [log_error(tuple(pts), profile, None, gpus_per_thread) for pts in logs.values()]
        large = [e.mape_large for e in errs if e.mape_large is not None]
        small = [e.mape_small for e in errs if e.mape_small is not None]
        return (sum(large) / len(large) if large else None, sum(small) / len(small) if small else None)
    return mapes


def _gain(now: float | None, then: float | None) -> float:
    """How much a band's MAPE falls from `now` to `then` (0 where the log has no row in the band)."""
    return 0.0 if now is None or then is None else now - then


def set_back(rule: str, now: tuple, then: tuple) -> bool:
    """Does `rule` write a figure at the prior, its set-back taking the log's own (>= 1 MiB, < 1 MiB) MAPE from `now`
    to `then`?"""
    large, small = _gain(now[0], then[0]), _gain(now[1], then[1])
    if rule != "pareto-guard":
        return large > GUARD_NOISE
    return (large > GUARD_NOISE and small >= -GUARD_NOISE) or (small > GUARD_NOISE and large >= -GUARD_NOISE)


def simple_hop_at_prior(fit, p) -> tuple:
    """("band-split") (`fit` with level `p`'s Simple hop written at the prior and its LL / LL128 hops at what "shared"
    writes for them: the prior's own α^p where it states one, else the fitted α; [p]), for a hop latency p; else
    at_prior(fit, [p])."""
    level_name, figure = p.name.split(".", 1)
    if figure != "latency":
        return at_prior(fit, [p])
    levels, hops = list(fit.levels), dict(fit.protocol_latencies)
    for j, (lv, level) in enumerate(zip(fit.levels, fit.prior.interconnect)):
        name, alpha, bw, alpha_fitted, bw_fitted = lv
        if name == level_name and alpha_fitted:
            levels[j] = (name, level.latency_s, bw, True, bw_fitted)
            hops[name] = tuple(alpha if own is None else own for own in (level.ll_latency_s, level.ll128_latency_s))
    return dataclasses.replace(fit, levels=tuple(levels), protocol_latencies=hops), [p]


def trial_of(rule: str):
    """How `rule` writes one figure it refuses: at the prior, or (band-split) a hop's Simple only."""
    return simple_hop_at_prior if rule in SPLIT_HOP_RULES else (lambda fit, p: at_prior(fit, [p]))


def figure_effects(fit, own, skip: frozenset = frozenset(), rule: str = "band-guard") -> list[tuple]:
    """Per moved interconnect figure not named in `skip`: (ParameterFit, own MAPE (>= 1 MiB, < 1 MiB) with it alone
    written as `rule` writes a refused figure: at the prior, or for band-split's hop the Simple hop only); also the
    diagnosis of scripts/calband_insample.py."""
    out, trial = [], trial_of(rule)
    for p in moved_figures(fit):
        if p.name in skip or (rule == "hop-split" and not p.name.endswith(".latency")):
            continue
        written, done = trial(fit, p)
        if done:
            out.append((p, own(written)))
    return out


def band_guard(fit, own, rule: str) -> tuple:
    """(the fit to write under `rule`, one note per figure written at the prior): greedy, the set-back that lowers the
    log's own MAPE most (>= 1 MiB first, then < 1 MiB) taken first, the others priced again after each."""
    now, written, notes = own(fit), fit, []
    while True:
        best = None
        for p, then in figure_effects(written, own, frozenset(n.split(" ", 1)[0] for n in notes), rule):
            if set_back(rule, now, then):
                key = (_gain(now[0], then[0]), _gain(now[1], then[1]))
                if best is None or key > best[0]:
                    best = (key, p, then)
        if best is None:
            return written, notes
        _, p, then = best
        written, _ = trial_of(rule)(written, p)
        how = "Simple hop written at the prior" if rule in SPLIT_HOP_RULES and p.name.endswith(".latency") else \
            "written at the prior"
        notes.append(f"{p.name} {p.value:.4g} {p.unit} {how} {p.prior:.4g}: the log's own busbw MAPE "
                     f"{_band_text(now)} -> {_band_text(then)}")
        now = then


def _band_text(m: tuple) -> str:
    return " | ".join("-" if x is None else f"{100 * x:.2f} %" for x in m) + f" (>= {LARGE_BYTES >> 20} MiB | below)"
