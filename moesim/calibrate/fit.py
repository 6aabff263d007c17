"""Fitting a hardware profile to measurements: scipy least squares on relative error, with uncertainty.

Procedure (moesim reference modeling.md §6, "Calibration procedure peers use"):
1. Observations: every fitted phase of every layer record in the fit set, its measured layer total
   (`layer_unsynced`: the phases' terms plus the layer overhead of one forward and one backward
   pass), and every collective point (validate/ "collective" records, nccl-tests rows).
2. Residual r_i = √w_i · ln(t̂_i / t_i): the relative error to first order, symmetric for
   over- and under-prediction, so sizes over many decades weigh alike. Loss ρ = soft-L1 with scale
   F_SCALE by default (scipy.optimize.least_squares, `loss`): residuals beyond ~10 % count linearly,
   so one scheduler hiccup does not drag a whole fit; `loss="linear"` is plain least squares.
3. Parameters and model: moesim/calibrate/design.py. Collective slopes are re-probed at the
   solution until they stop changing.
4. Uncertainty: (a) the Gauss-Newton covariance s²(JᵀJ)⁻¹ at the solution, as a relative standard
   error of each parameter; (b) a bootstrap: `bootstrap` refits on units (one layer record with all
   its phases, or one collective point) resampled with replacement by numpy.random.default_rng(seed);
   reported as the 5th-95th percentile interval.
The router phases are predicted and reported; only its matmul (`router_matmul`, a float32 matmul
priced by the efficiency table) can be fitted, on request (`fit_router_matmul`): its skinny GEMM runs
far below the efficiency of the expert FFN kernels of the same FLOP count, so by default it is left out
rather than bend the table that prices the experts. `router_gating` (softmax, top-k, capacity cumsum)
is never fitted: on small problems it is a fixed cost of many small kernels, far above its
memory-bound time, and fitting it would drag the memory bandwidth that prices the permutes. The layer
total's observation carries that fixed cost into the fitted layer overhead (docs/calibration.md).

Here: the observations, `fit_profile` and what it returns, and the fit-quality summaries (block_stats, op_fits).
The solve (step 2-3: residuals, loss, priors, relinearisation and trust region) is solve.py; the uncertainty
(step 4: covariance, bootstrap, parameter table) is uncertainty.py. Their public names stay importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import nnls

from moesim.calibrate.bench_cost import check_gpus_per_thread, host_bound_rows
from moesim.calibrate.design import Design, Observation, choose_knots
from moesim.calibrate.fill_fit import FillFit, fill_prior_weight, fit_fills, with_fill
from moesim.calibrate.linearise import priced_once
from moesim.calibrate.predict import check_fits, collective_terms, layer_terms, layer_total_terms, uses_ops
from moesim.calibrate.records import TOTAL, CollectivePoint, Measurements
from moesim.calibrate.prior_weight import bayes_weights, uniform_weights
from moesim.calibrate.row_weight import check_row_weight, row_weights
from moesim.calibrate.solve import (
    F_SCALE, LEVEL_PRIOR_WEIGHT, LOSSES, MAX_RELINEARISATIONS, RIDGE, TRUST_GROW_GAIN, TRUST_LOG, relinearised_fit,
    row_losses,
)
from moesim.calibrate.uncertainty import (
    BOOTSTRAP_FROM, INTERVAL_PERCENTILES, ParameterFit, bootstrap_samples, log_covariance, parameter_table,
)
from moesim.errors import SpecError
from moesim.specs.hardware import HardwareProfile

FIT_PHASES = ("dispatch_permute", "dispatch_a2a", "expert_compute", "combine_a2a", "combine_unpermute", "backward",
              "grad_sync")
# Fitted on request (fit_router_matmul): the router's skinny [T, d]·[d, E] GEMM shares the FLOP-keyed
# efficiency table with the expert FFNs, whose kernel sizes it overlaps (docs/calibration.md).
ROUTER_MATMUL = "router_matmul"
# Priced by operator, a phase of a few kernel calls is not fitted: each instrumented phase starts after a
# barrier, and a thread back from a wait runs its first calls several times slower (cold caches; validate/
# ops.py); a one-call phase (the permutes) measures that, not its operator. The free-running layer total
# has no barriers inside it and is fitted.
OP_UNFITTED_PHASES = ("dispatch_permute", "combine_unpermute")
PROTOCOL_HOPS = (".ll_latency", ".ll128_latency")  # design.py's per-protocol hop latencies (latency_per_protocol)
PROTOCOL_MODES = (False, True, "hierarchical")  # latency_per_protocol: off, figures of their own, departures from α
# calorder (session 9): the names `moesim calibrate --hop-latency` and JSON `fit.hop_latency_rule` give the modes
HOP_LATENCY_RULES = {"shared": False, "per-protocol": True, "hierarchical": "hierarchical"}
HOP_LATENCY_MEANINGS = {"shared": "one hop latency per level, which the LL / LL128 hops follow",
                        "per-protocol": "the LL and LL128 hops figures of their own",
                        "hierarchical": "the LL and LL128 hops departures from the level hop, each with its own prior"}


def hop_latency_rule(latency_per_protocol: bool | str) -> str:
    """The name (HOP_LATENCY_RULES) of a latency_per_protocol mode."""
    return next(name for name, mode in HOP_LATENCY_RULES.items() if mode == latency_per_protocol
                and type(mode) is type(latency_per_protocol))


def check_hop_latency(latency_per_protocol: bool | str) -> bool | str:
    """`latency_per_protocol` if it is one of PROTOCOL_MODES, else a SpecError naming the rules."""
    if not any(m == latency_per_protocol and type(m) is type(latency_per_protocol) for m in PROTOCOL_MODES):
        raise SpecError(f"unknown latency_per_protocol {latency_per_protocol!r}", field="latency_per_protocol",
                        value=latency_per_protocol, allowed=PROTOCOL_MODES)
    return latency_per_protocol


@dataclass(frozen=True)
class BlockStats:
    """Fit quality over a set of observations; errors are (predicted − measured) / measured."""

    n: int
    mape: float
    max_abs_pct_error: float
    mean_signed_error: float
    r2_log: float | None  # 1 − SS_res / SS_tot of ln t; None with fewer than 2 observations


@dataclass(frozen=True)
class OpFit:
    """Diagnostic per collective and group size: t = latency + S / algbw, weighted on relative error."""

    op: str
    group_size: int
    n: int
    latency_s: float
    algbw_bytes_per_s: float
    max_abs_pct_error: float


@dataclass(frozen=True)
class FitResult:
    """What calibration found; profile_io turns it into a hardware profile."""

    prior: HardwareProfile
    knots_flops: tuple[float, ...]
    efficiency: tuple[float, ...]  # η at the knots (above 1 when the prior peak is too low)
    ref_dtype: str
    peak_scales: dict[str, float]  # dtype -> effective peak / prior peak, reference dtype = 1
    memory_bw_bytes_per_s: float | None  # effective (HBM × efficiency); None when not fitted
    layer_overhead_s: float | None  # fixed host cost per layer pass; None when not fitted (no layer totals)
    levels: tuple[tuple[str, float, float, bool, bool], ...]  # name, α (s), W (B/s), α fitted, W fitted
    parameters: tuple[ParameterFit, ...]
    blocks: dict[str, BlockStats]
    overall: BlockStats
    op_fits: tuple[OpFit, ...]
    n_parameters: int
    loss: str
    bootstrap: int
    seed: int
    fitted_keys: tuple[str, ...]
    relinearisations: int
    observations: tuple[Observation, ...] = field(default=(), repr=False)
    op_memory: bool = False  # memory-bound operators were fitted: the bandwidth is written as the HBM figure
    # level name -> (V, V'), the NVLS and NVLSTree (inside a node) bandwidths η × W, bytes/s, of every level with
    # NVLS: fitted, or the prior's where no observation moves them (kept when W moves: the η are rewritten as V / W)
    nvls_bandwidths: dict[str, tuple[float, float]] = field(default_factory=dict)
    # (level name, profile key) -> the line that key scales (U: nvlstree_net_factor, P: p2p_factor), bytes/s, fitted
    # or the prior's; written as key = line / W, as nvls_bandwidths
    extra_bandwidths: dict[tuple[str, str], float] = field(default_factory=dict)
    # level name -> π, the latency of one send/recv message (profile p2p_latency_us), s: fitted from all-to-all /
    # send/recv rows, or the prior's (its latency_us where unset); written where it differs from the written latency
    p2p_latencies: dict[str, float] = field(default_factory=dict)
    # level name -> (α^LL, α^LL128), the LL and LL128 hop latencies (profile ll_latency_us, ll128_latency_us), s:
    # fitted from LL / LL128 latency-bound rows, or the prior's (its latency_us where unset); written as π is. Only
    # with fit_profile(latency_per_protocol=True); empty otherwise (nothing written: they follow latency_us)
    protocol_latencies: dict[str, tuple[float, float]] = field(default_factory=dict)
    # the interconnect prior's weight the fit used: W of every figure (LEVEL_PRIOR_WEIGHT or --prior-weight W), or
    # √(n / n_eff), the factor over each figure's 1 / σ, where chosen from the log (prior_weight.py)
    level_prior_weight: float = 0.0
    prior_weight_scores: tuple[tuple[float, float], ...] = ()  # (kept for the JSON key; the old size check's scores)
    effective_rows: float | None = None  # n_eff of the fitted rows where the weight came from them, else None
    effective_rows_rounds: tuple[float, ...] = ()  # n_eff after each fit of the fixed point
    predicted_s: tuple[float, ...] = field(default=(), repr=False)
    gpus_per_thread: int = 1  # nccl-tests' -g N of the logs (bench_cost.py host floor)
    host_floor_rows: int = 0  # nccl-tests rows at that floor under the prior, left out of the fit (host_bound_rows)
    fills: tuple[FillFit, ...] = ()  # the ramp's fill per level (fill_fit.py): searched where ramp rows bind it
    latency_per_protocol: bool | str = False  # the hop-latency rule fitted (PROTOCOL_MODES; HOP_LATENCY_RULES)
    row_weight: str = "row"  # how each row weighs in the objective (row_weight.ROW_WEIGHTS; `--row-weight`)
    # (design, θ, log covariance, prior weights) of the point fit: what with_bootstrap resamples (calspeed, session 9)
    point: tuple | None = field(default=None, repr=False, compare=False)


def observations_for(measurements: Measurements, fit_keys: set[str], hardware: HardwareProfile,
                     fit_router_matmul: bool = False, gpus_per_thread: int = 1) -> list[Observation]:
    """The fitted observations: the measured FIT_PHASES (and ROUTER_MATMUL on request) and the layer total
    of layer records in `fit_keys`, and every collective point except the nccl-tests rows the host floor of
    `gpus_per_thread` launches per iteration binds at the prior (host_bound_rows)."""
    phases = FIT_PHASES + ((ROUTER_MATMUL,) if fit_router_matmul else ())
    op_phases = tuple(p for p in phases if p not in OP_UNFITTED_PHASES)
    out = []
    for rec in measurements.layers:
        if rec.key not in fit_keys:
            continue
        check_fits(rec, hardware)
        terms = layer_terms(rec, hardware)
        fitted = op_phases if uses_ops(hardware, rec.dtype) else phases
        out += [Observation(phase, terms[phase], rec.measured_s[phase], rec.key)
                for phase in fitted if terms[phase] and phase in rec.measured_s]
        out.append(Observation(TOTAL, layer_total_terms(rec, terms), rec.measured_s[TOTAL], rec.key))
    floored = host_bound_rows(measurements, hardware, gpus_per_thread)
    for i, point in enumerate(measurements.collectives):
        check_fits(point, hardware)
        if i not in floored:
            out.append(Observation(f"collective:{point.op}", collective_terms(point, gpus_per_thread), point.time_s,
                                   f"{point.source}#{i}"))
    return out


@priced_once()  # the probes' repeated prices made once (linearise.py; calspeed, session 9)
def fit_profile(measurements: Measurements, prior: HardwareProfile, *, fit_keys: set[str],
                knots_flops: tuple[float, ...] | None = None, bootstrap: int = 100, seed: int = 0,
                loss: str = "soft_l1", fit_router_matmul: bool = False, level_prior_weight: float | None = None,
                progress=None, gpus_per_thread: int = 1, latency_per_protocol: bool | str = False,
                row_weight: str = "row") -> FitResult:
    """Fit `prior`'s efficiency table, peaks, memory bandwidth, per-level α, W and layer overhead to the
    measurements. `level_prior_weight`: one prior weight for every interconnect figure; None = LEVEL_PRIOR_WEIGHT, or
    where every observation is a collective each figure's √(n / n_eff) / σ_j (prior_weight.py).
    `latency_per_protocol`: the LL and LL128 hop latencies as figures of their own (design.py; evaluated in session 8,
    not the default: the held-out matrix got worse, docs/collectives.md), else they follow α as before;
    "hierarchical": each a departure from α with its own prior (design.py; session 8, calhier).
    `row_weight`: each row's weight in the objective (row_weight.py; "row", every row 1, is the default)."""
    check_hop_latency(latency_per_protocol)
    check_row_weight(row_weight)
    if loss not in LOSSES:
        raise SpecError(f"unknown loss '{loss}'", field="loss", value=loss, allowed=LOSSES)
    if bootstrap < 0:
        raise SpecError("bootstrap must be >= 0", field="bootstrap", value=bootstrap)
    if level_prior_weight is not None and not 0 < level_prior_weight < float("inf"):
        raise SpecError("the prior weight must be > 0", field="prior_weight", value=level_prior_weight, allowed="> 0")
    check_gpus_per_thread(gpus_per_thread)
    obs = observations_for(measurements, fit_keys, prior, fit_router_matmul, gpus_per_thread)
    if not obs and measurements.collectives:
        raise SpecError(f"nothing to fit: every nccl-tests row is at the host floor of {gpus_per_thread} kernel "
                        "launches per iteration", field="gpus_per_thread", value=gpus_per_thread)
    design = Design(obs, prior, knots_flops if knots_flops is not None else choose_knots(obs), latency_per_protocol)
    if int(design.free.sum()) >= len(obs):
        raise SpecError(f"{len(obs)} observations cannot fit {int(design.free.sum())} parameters: measure more "
                        "configurations or sizes")
    if row_weight != "row":  # bandfit (session 16): the rows' weights, read from the log and the prior's θ
        obs = weighted(design, row_weight, loss)
        design = Design(obs, prior, design.knots, latency_per_protocol)
    level_weight, n_eff, rounds = level_prior_weight or LEVEL_PRIOR_WEIGHT, None, ()
    prior_weights = uniform_weights(design, level_weight)
    bayes = level_prior_weight is None and design.has_collectives and not measurements.layers
    if bayes:
        prior_weights, n_eff, rounds = bayes_weights(design, loss, relinearised_fit)
        level_weight = float(np.sqrt(len(obs) / n_eff))
    design, fills = _fill_search(design, loss, prior_weights, level_prior_weight, n_eff, measurements)
    if bayes and any(f.fill_bytes != f.prior_bytes for f in fills):  # the weight again, at the fitted ramp
        prior_weights, n_eff, rounds = bayes_weights(design, loss, relinearised_fit)
        level_weight = float(np.sqrt(len(obs) / n_eff))
    theta, result, relin, free_used = relinearised_fit(design, loss, prior_weights)
    log_cov = log_covariance(design, result, free_used)
    if progress is not None:
        progress(BOOTSTRAP_FROM)
    samples = bootstrap_samples(design, theta, loss, bootstrap, seed, progress, prior_weights)
    pred = design.predict(theta)  # the bootstrap leaves the design as the point fit left it (uncertainty.refit)
    labels = sorted({o.label for o in obs})
    blocks = {lab: block_stats(pred[m], design.measured[m]) for lab in labels
              for m in [np.array([o.label == lab for o in obs])]}
    return FitResult(
        prior=prior, knots_flops=design.knots, efficiency=tuple(design.efficiency(theta)), ref_dtype=design.ref_dtype,
        peak_scales=design.peak_scales(theta),
        memory_bw_bytes_per_s=design.memory_bw(theta) if (design.m_bytes.any() or design.op_mem_s.any()) else None,
        layer_overhead_s=design.layer_overhead(theta) if design.o_passes.any() else None,
        levels=tuple((lv.name, a, w, bool(u[0]), bool(u[1]))
                     for lv, (a, w), u in zip(design.levels, design.level_values(theta), design.level_used)),
        parameters=_parameters(design, theta, log_cov, samples), blocks=blocks,
        overall=block_stats(pred, design.measured), op_fits=op_fits(measurements.collectives),
        n_parameters=int(design.free.sum()), loss=loss, bootstrap=bootstrap, seed=seed,
        fitted_keys=tuple(sorted(fit_keys & {r.key for r in measurements.layers})), relinearisations=relin,
        observations=tuple(obs), predicted_s=tuple(float(x) for x in pred),
        op_memory=bool(design.op_mem_s.any()),
        level_prior_weight=level_weight, effective_rows=n_eff, effective_rows_rounds=rounds,
        gpus_per_thread=gpus_per_thread,
        host_floor_rows=len(host_bound_rows(measurements, prior, gpus_per_thread)),
        nvls_bandwidths={design.levels[j].name: v for j, v in design.nvls_values(theta).items()},
        extra_bandwidths={(design.levels[m].name, key): v for (m, key), v in design.extra_values(theta).items()},
        p2p_latencies={lv.name: v for lv, v in zip(design.levels, design.p2p_latencies(theta))},
        protocol_latencies=({lv.name: v for lv, v in zip(design.levels, design.protocol_latencies(theta))}
                            if latency_per_protocol else {}),
        fills=fills, latency_per_protocol=latency_per_protocol, point=(design, theta, log_cov, prior_weights),
        row_weight=row_weight,
    )


def weighted(design: Design, rule: str, loss: str) -> list[Observation]:
    """The design's observations, each carrying its weight under `rule` (row_weight.row_weights; band-loss reads the
    rows' ln(t̂/t) at the prior's θ and the fit's robust loss)."""
    r0 = np.log(np.maximum(design.predict(design.initial()), 1e-300) / design.measured)
    w = row_weights(design.observations, rule, r0, lambda r: row_losses(r, loss))
    return [replace(o, weight=float(x)) for o, x in zip(design.observations, w)]


@priced_once()
def with_bootstrap(fit: FitResult, bootstrap: int, seed: int, progress=None) -> FitResult:
    """`fit` with `bootstrap` refits on resampled units drawn by `seed`: what fit_profile with that bootstrap and seed
    returns on the same arguments, without repeating the point fit (calibrate reuses the fit facts_fit made; calspeed,
    session 9). Only the parameters' intervals, `bootstrap` and `seed` differ from `fit`."""
    if bootstrap < 0:
        raise SpecError("bootstrap must be >= 0", field="bootstrap", value=bootstrap)
    if fit.point is None:
        raise ValueError("with_bootstrap needs a fit made by fit_profile (it holds the point fit's design)")
    design, theta, log_cov, prior_weights = fit.point
    if progress is not None:
        progress(BOOTSTRAP_FROM)
    samples = bootstrap_samples(design, theta, fit.loss, bootstrap, seed, progress, prior_weights)
    return replace(fit, parameters=_parameters(design, theta, log_cov, samples), bootstrap=bootstrap, seed=seed)


def _parameters(design: Design, theta: np.ndarray, log_cov, samples) -> tuple[ParameterFit, ...]:
    """The parameter table; the per-protocol hops only when the fit has them (latency_per_protocol)."""
    return tuple(p for p in parameter_table(design, theta, log_cov, samples)
                 if design.per_protocol or not p.name.endswith(PROTOCOL_HOPS))


def _fill_search(design: Design, loss: str, prior_weights: np.ndarray, level_prior_weight: float | None,
                 n_eff: float | None, measurements: Measurements) -> tuple[Design, tuple[FillFit, ...]]:
    """The ramp's fill per level from the log's ramp rows (fill_fit.py), where every observation is a collective,
    and the Design on the profile with it; elsewhere the Design as it is and no fill fitted."""
    if not design.has_collectives or measurements.layers:
        return design, ()
    weight = fill_prior_weight(len(design.observations), n_eff, level_prior_weight)
    fills = fit_fills(design, loss, prior_weights, weight, relinearised_fit)
    profile = design.prior
    for index, found in enumerate(fills):
        if found.fill_bytes != found.prior_bytes:
            profile = with_fill(profile, index, found.fill_bytes)
    if profile is design.prior:
        return design, fills
    return Design(list(design.observations), profile, design.knots, design.per_protocol), fills
def block_stats(predicted: np.ndarray, measured: np.ndarray) -> BlockStats:
    """MAPE, max |error|, mean signed error (fractions) and R² of ln t."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    err = predicted / measured - 1.0
    r2 = None
    if len(measured) >= 2:
        lm, lp = np.log(measured), np.log(np.maximum(predicted, 1e-300))
        ss_tot = float(((lm - lm.mean()) ** 2).sum())
        r2 = 1.0 - float(((lp - lm) ** 2).sum()) / ss_tot if ss_tot > 0 else None
    return BlockStats(len(err), float(np.abs(err).mean()) if len(err) else 0.0,
                      float(np.abs(err).max()) if len(err) else 0.0, float(err.mean()) if len(err) else 0.0, r2)


def op_fits(points: tuple[CollectivePoint, ...]) -> tuple[OpFit, ...]:
    """Per (op, group size): non-negative t = a + S·c minimising Σ((a + S·c)/t − 1)² (scipy nnls)."""
    groups: dict[tuple[str, int], list[CollectivePoint]] = {}
    for p in points:
        groups.setdefault((p.op, p.group_size), []).append(p)
    out = []
    for (op, n), pts in sorted(groups.items()):
        if len({p.size_bytes for p in pts}) < 2:
            continue
        t = np.array([p.time_s for p in pts])
        s = np.array([p.size_bytes for p in pts])
        (a, c), _ = nnls(np.column_stack([1.0 / t, s / t]), np.ones(len(t)))
        err = np.abs((a + c * s) / t - 1.0).max()
        out.append(OpFit(op, n, len(pts), float(a), float(1.0 / c) if c > 0 else float("inf"), float(err)))
    return tuple(out)


__all__ = [
    "BOOTSTRAP_FROM", "FIT_PHASES", "F_SCALE", "INTERVAL_PERCENTILES", "LEVEL_PRIOR_WEIGHT", "LOSSES",
    "MAX_RELINEARISATIONS", "OP_UNFITTED_PHASES", "RIDGE", "ROUTER_MATMUL", "TRUST_GROW_GAIN", "TRUST_LOG",
    "BlockStats", "FitResult", "OpFit", "ParameterFit", "block_stats", "fit_profile", "observations_for", "op_fits",
    "with_bootstrap",
]
