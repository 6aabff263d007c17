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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares, nnls

from moesim.calibrate.bench_cost import check_gpus_per_thread, host_bound_rows
from moesim.calibrate.design import Design, Observation, choose_knots
from moesim.calibrate.fill_fit import FillFit, fill_prior_weight, fit_fills, with_fill
from moesim.calibrate.predict import check_fits, collective_terms, layer_terms, layer_total_terms, uses_ops
from moesim.calibrate.records import TOTAL, CollectivePoint, Measurements
from moesim.calibrate.prior_weight import bayes_weights, uniform_weights
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
BOOTSTRAP_FROM = 0.2  # progress fraction at which the bootstrap refits start (the fit itself is the first part)
INTERVAL_PERCENTILES = (5.0, 95.0)


@dataclass(frozen=True)
class BlockStats:
    """Fit quality over a set of observations; errors are (predicted − measured) / measured."""

    n: int
    mape: float
    max_abs_pct_error: float
    mean_signed_error: float
    r2_log: float | None  # 1 − SS_res / SS_tot of ln t; None with fewer than 2 observations


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


def fit_profile(measurements: Measurements, prior: HardwareProfile, *, fit_keys: set[str],
                knots_flops: tuple[float, ...] | None = None, bootstrap: int = 100, seed: int = 0,
                loss: str = "soft_l1", fit_router_matmul: bool = False, level_prior_weight: float | None = None,
                progress=None, gpus_per_thread: int = 1) -> FitResult:
    """Fit `prior`'s efficiency table, peaks, memory bandwidth, per-level α, W and layer overhead to the
    measurements. `level_prior_weight`: one prior weight for every interconnect figure; None = LEVEL_PRIOR_WEIGHT, or
    where every observation is a collective each figure's √(n / n_eff) / σ_j (prior_weight.py)."""
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
    design = Design(obs, prior, knots_flops if knots_flops is not None else choose_knots(obs))
    if int(design.free.sum()) >= len(obs):
        raise SpecError(f"{len(obs)} observations cannot fit {int(design.free.sum())} parameters: measure more "
                        "configurations or sizes")
    level_weight, n_eff, rounds = level_prior_weight or LEVEL_PRIOR_WEIGHT, None, ()
    prior_weights = uniform_weights(design, level_weight)
    bayes = level_prior_weight is None and design.has_collectives and not measurements.layers
    if bayes:
        prior_weights, n_eff, rounds = bayes_weights(design, loss, _relinearised_fit)
        level_weight = float(np.sqrt(len(obs) / n_eff))
    design, fills = _fill_search(design, loss, prior_weights, level_prior_weight, n_eff, measurements)
    if bayes and any(f.fill_bytes != f.prior_bytes for f in fills):  # the weight again, at the fitted ramp
        prior_weights, n_eff, rounds = bayes_weights(design, loss, _relinearised_fit)
        level_weight = float(np.sqrt(len(obs) / n_eff))
    theta, result, relin, free_used = _relinearised_fit(design, loss, prior_weights)
    log_cov = _log_covariance(design, result, free_used)
    if progress is not None:
        progress(BOOTSTRAP_FROM)
    samples = _bootstrap(design, theta, loss, bootstrap, seed, progress, prior_weights)
    pred = design.predict(theta)
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
        parameters=_parameter_table(design, theta, log_cov, samples), blocks=blocks,
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
        fills=fills,
    )


def _fill_search(design: Design, loss: str, prior_weights: np.ndarray, level_prior_weight: float | None,
                 n_eff: float | None, measurements: Measurements) -> tuple[Design, tuple[FillFit, ...]]:
    """The ramp's fill per level from the log's ramp rows (fill_fit.py), where every observation is a collective,
    and the Design on the profile with it; elsewhere the Design as it is and no fill fitted."""
    if not design.has_collectives or measurements.layers:
        return design, ()
    weight = fill_prior_weight(len(design.observations), n_eff, level_prior_weight)
    fills = fit_fills(design, loss, prior_weights, weight, _relinearised_fit)
    profile = design.prior
    for index, found in enumerate(fills):
        if found.fill_bytes != found.prior_bytes:
            profile = with_fill(profile, index, found.fill_bytes)
    if profile is design.prior:
        return design, fills
    return Design(list(design.observations), profile, design.knots), fills


def _relinearised_fit(design: Design, loss: str, prior_weights: np.ndarray):
    """(θ, the last solve's result, relinearisations, the free mask it used): least squares on the collectives'
    linearisation, re-probed until the slopes stop changing, under the trust region (module docstring)."""
    theta, weights = design.initial(), np.ones(len(design.observations))
    trust, best = TRUST_LOG, _model_loss(design, theta, loss=loss)
    for relin in range(1, MAX_RELINEARISATIONS + 1):
        free_used = design.free.copy()  # re-probing can change which parameters move: keep the solve's own
        old_coef = design.coef
        step, result = _solve(design, theta, weights, loss, trust=trust if design.has_collectives else None,
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
    """The solver's own robust loss (scipy's ρ at F_SCALE) of ln(predicted/measured), with the collectives
    linearised exactly at θ (`coef` probed there)."""
    r = np.log(np.maximum(design.predict(theta, coef), 1e-300) / design.measured)
    z = (r / F_SCALE) ** 2
    rho = {"linear": z, "soft_l1": 2 * (np.sqrt(1 + z) - 1), "huber": np.where(z <= 1, z, 2 * np.sqrt(z) - 1),
           "cauchy": np.log1p(z)}[loss]
    return float(F_SCALE**2 * np.sum(rho))


def _same_slopes(new, old) -> bool:
    return all(np.allclose(n, o, rtol=1e-6, atol=1e-9 * np.abs(o).max(initial=0.0))
               for n, o in zip(new, old) if n.ndim == 2)  # the slopes A, B, D (not the rest C)


def _solve(design: Design, theta0: np.ndarray, weights: np.ndarray, loss: str, free: np.ndarray | None = None,
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


def _log_map(design: Design) -> np.ndarray:
    """L such that L·θ is the log of every physical parameter (efficiency knots are cumulative sums)."""
    n, k = len(design.names), len(design.knots)
    lmap = np.eye(n)
    for j in range(k):
        lmap[j, :k] = 0.0
        lmap[j, : j + 1] = 1.0
    return lmap


def _log_covariance(design: Design, result, free: np.ndarray | None = None) -> np.ndarray | None:
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


def _bootstrap(design: Design, theta: np.ndarray, loss: str, reps: int, seed: int,
               progress=None, prior_weights: np.ndarray | None = None) -> np.ndarray | None:
    """Log physical parameters of `reps` refits on resampled units (rows), or None.

    A parameter no resampled observation depends on is held at the fit and counted as NaN.
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
        weights = counts[obs_unit].astype(float)
        free = design.free & (weights @ dep > 0)
        refit, _ = _solve(design, theta, weights, loss, free, prior_weights=prior_weights)
        row = lmap @ refit
        row[(np.abs(lmap[:, design.free & ~free]) > 0).any(axis=1)] = np.nan
        out.append(row)
    return np.array(out)


def _parameter_table(design: Design, theta, log_cov, samples) -> tuple[ParameterFit, ...]:
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
    return "s" if name.endswith((".latency", ".p2p_latency")) or name == "layer_overhead" else "bytes/s"


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
