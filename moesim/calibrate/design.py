"""The calibration model: predicted seconds of every observation as a function of a parameter vector θ.

θ holds, in log space (all fitted quantities are positive):
  z_0, δ_1 … δ_{K−1}  matmul efficiency at K knots (kernel FLOP): log η_j = z_0 + Σ_{i≤j} δ_i, δ_i ≥ 0,
                      so the table is monotone non-decreasing (modeling.md §6: "η(FLOPs) as a monotone
                      saturating curve or interpolated table"), interpolated log-linearly as
                      EfficiencyTable.at does;
  log s_d             peak scale of each dtype d other than the reference dtype (the one doing most FLOPs);
  log W_mem           effective memory bandwidth (HBM bandwidth × memory efficiency);
  log α_l, log W_l    latency and effective bandwidth (link bandwidth × bw efficiency) of level l;
  log V_l, log ρ_l    a level with NVLink SHARP: V_l = η_nvls × W_l, the line single-domain NVLS moves data
                      at, and ρ_l = V'_l / V_l, where V'_l = η_nvlstree × W_l is the line of NVLS inside
                      each node of a multi-node NVLSTree all-reduce (nccl.py). Figures of their own, one
                      per mechanism: ring / tree rows that pin W_l leave NVLS alone, and an NVLSTree log
                      moves ρ_l, not the single-node V_l (NCCL's tuner takes ρ = 1; no measurement does);
  log U_m             the level m above an NVLS level: U_m = nvlstree_net_factor × W_m, the line of NVLSTree's
                      inter-node tree (NCCL: the network bandwidth itself), a figure of its own so ring and
                      point-to-point rows that pin W_m leave it, and the other way round;
  log P_l             P_l = p2p_factor × W_l, the line of send/recv over level l (all-to-all, pipeline sends:
                      NCCL's p2p channels, not the tuner's rings), of its own likewise;
  log π_l             the latency of one send/recv message over level l (profile p2p_latency_us; α_l where
                      unset), of its own as P_l: only all-to-all and send/recv rows move it, and they do not
                      move α_l (an alltoall_perf log is a pairwise ncclSend / ncclRecv exchange);
  log α_l^LL, log α_l^LL128  the hop latency of NCCL's LL and LL128 protocols over level l (profile ll_latency_us,
                      ll128_latency_us; α_l where unset), α_l then being the Simple hop: NCCL prices a hop per link,
                      algorithm and protocol (tuning.cc hwLat), so each protocol's latency-bound rows move their own
                      figure and no other. Only with `per_protocol` (session 8: evaluated, not the default, the
                      held-out matrix got worse; docs/collectives.md); without it they follow α, no row moves them;
                      with per_protocol="hierarchical" θ holds the departures d^p_l = log α^p_l − log α_l instead
                      (α^p_l = α_l·e^{d^p_l}: every protocol follows the level, each departs with its own prior;
                      `departures`; docs/collectives.md "Session 8 (calhier)");
  log o               the fixed host overhead per layer pass (efficiency.layer_overhead_s), fitted
                      when some observation is a layer total; bounded to [MIN_OVERHEAD_S,
                      MAX_OVERHEAD_S], so it is non-negative and can fall to ~0 when the data show none.
Compute, memory and overhead terms are the estimate's formulas in numpy. Operator terms (OpTerm, when the
prior has measured operator tables, fitted by `moesim calibrate ops.jsonl`) keep the tables' shape
dependence: their compute time scales as 1 / (peak scale of their dtype), a fitted parameter for every
dtype doing most of some observation's operator time; memory-bound operators' time scales as
1 / (fitted memory bandwidth) from the prior's (two ranks on one host share its memory bandwidth), and
every kernel call costs the prior's L (efficiency.kernel_launch_us, measured by validate.ops: an
operator-level figure, not fitted on layers, where it would trade places with the layer overhead).
Collective terms go through
`select.default_model` itself (a row of an nccl-tests log as nccl-tests runs it: bench_cost.py): each is linearised around the current θ as
t = C + Σ_l A_l·α_l + Σ_l A'_l·π_l + Σ_l,p A^p_l·α^p_l + Σ_F B_F / F over the lines F (W_l, V_l, V'_l, U_m, P_l), with A, B the model's own
finite-difference slopes and C the rest
(fixed base latencies, copies at the memory bandwidth). That is exact for any alpha-beta-type model
(time affine in each level's α and 1/W, Hockney 1994); the fit re-probes at its solution until the
slopes stop changing, which covers piecewise models (the fastest of several algorithms and
protocols, as NCCL's tuner picks) and the memory-bandwidth copies.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moesim.calibrate.linearise import probe
from moesim.calibrate.observations import MAX_KNOTS, MIN_KNOT_GAP, Observation, choose_knots  # noqa: F401 (re-exported)
from moesim.calibrate.predict import CollectiveTerm, ComputeTerm, MemoryTerm, OpTerm, OverheadTerm, term_time_s
from moesim.collectives.select import default_model
from moesim.collectives.algorithm_menu import P2P_OPS
from moesim.errors import SpecError
from moesim.ops.price import op_efficiency
from moesim.specs.hardware import MAX_NVLSTREE_NET_FACTOR, EfficiencyTable, HardwareProfile

MIN_LATENCY_S = 1e-12  # lower bound keeping log α finite
MIN_OVERHEAD_S = 1e-9  # lower bound keeping log o finite: 1 ns per layer pass is nothing next to a layer
START_OVERHEAD_S = 1e-5  # where the fit starts the overhead when the prior has none (10 µs)
MAX_OVERHEAD_S = 1.0  # upper bound: a second of host time per layer pass is no overhead but a fault
OP_COMPUTE_KINDS = ("gemm", "grouped_gemm", "attention")


class Design:
    """Observations compiled into arrays; `predict(θ)` gives their seconds."""

    def __init__(self, observations: list[Observation], prior: HardwareProfile, knots: tuple[float, ...],
                 per_protocol: bool = False, dtypes: tuple[str, tuple[str, ...]] | None = None) -> None:
        if not observations:
            raise SpecError("nothing to fit: no measured phases or collectives")
        self.observations, self.prior, self.knots = observations, prior, tuple(knots)
        self.per_protocol = per_protocol  # α^LL, α^LL128 figures of their own (module docstring)
        self._dtypes = dtypes  # (ref_dtype, scaled_dtypes) over the rows' own: a bootstrap resample's (uncertainty.py)
        self.hierarchical = per_protocol == "hierarchical"  # ... as departures from α (module docstring)
        self.measured = np.array([o.measured_s for o in observations])
        self.row_weights = np.array([o.weight for o in observations])  # w_i (row_weight.py; solve.py's residuals)
        self.levels = prior.interconnect
        self._compile_compute()
        self._compile_memory()
        self.o_passes = np.array([sum(t.passes for t in o.terms if isinstance(t, OverheadTerm))
                                  for o in observations], dtype=float)
        self._collective_terms = [(i, t) for i, o in enumerate(observations) for t in o.terms
                                  if isinstance(t, CollectiveTerm)]
        self.level_used = np.zeros((len(self.levels), 2), dtype=bool)  # [α used, W used]
        self.nvls_levels = tuple(j for j, lv in enumerate(self.levels) if getattr(lv, "nvls_efficiency", 0.0) > 0)
        self.nvls_used = np.zeros((len(self.nvls_levels), 2), dtype=bool)  # [V used, V' used]
        # (level, profile key, name): lines = key × W_level, each a figure of its own (U, then P; module docstring),
        # always there, so a fit that moves W keeps the other lines (written as key = line / the new W)
        self._has_p2p = any(t.op in P2P_OPS for o in observations for t in o.terms if isinstance(t, CollectiveTerm))
        self.extra_figures = tuple([(j + 1, "nvlstree_net_factor", "nvlstree_bandwidth") for j in self.nvls_levels
                                    if j + 1 < len(self.levels)]
                                   + [(j, "p2p_factor", "p2p_bandwidth") for j in range(len(self.levels))])
        self.extra_used = np.zeros(len(self.extra_figures), dtype=bool)
        self.p2p_latency_used = np.zeros(len(self.levels), dtype=bool)  # π set by some send/recv row (probe)
        # the tuner's collectives (all-reduce, all-gather, reduce-scatter) read the LL / LL128 hops; send/recv does not
        self._has_tuner = per_protocol and any(t.op not in P2P_OPS for o in observations for t in o.terms
                                               if isinstance(t, CollectiveTerm))
        self.protocol_latency_used = np.zeros((len(self.levels), 2), dtype=bool)  # [α^LL, α^LL128] set (probe)
        self._names, self._free = self._parameters()
        # θ index of each departure d^p_l -> θ index of its level's log α_l (hierarchical only; uncertainty._log_map)
        self.departures = {self._protocol_offset() + q * len(self.levels) + j: self._offsets()[2] + 2 * j
                           for q in range(2) for j in range(len(self.levels))} if self.hierarchical else {}
        self._theta0_memory = float(self.initial()[self._offsets()[1]])
        self.coef = self.probe(self.initial())

    # --- parameter layout -------------------------------------------------------------
    def _compile_compute(self) -> None:
        rows = [(i, t) for i, o in enumerate(self.observations) for t in o.terms if isinstance(t, ComputeTerm)]
        self.c_obs = np.array([i for i, _ in rows], dtype=int)
        self.c_flops = np.array([t.flops for _, t in rows])
        self.c_logk = np.log(np.maximum([t.kernel_flops for _, t in rows], 1.0)) if rows else np.zeros(0)
        self.c_peak = np.array([self.prior.chip.peak_for(t.dtype) for _, t in rows])
        flops_by_dtype: dict[str, float] = {}
        dominant: set[str] = set()
        # Operator terms (OpTerm): their compute parts at the prior's peaks and tables, per dtype; memory-bound
        # operators at the prior's tables and bandwidth (scaled by the fitted bandwidth); kernel calls at L.
        n = len(self.observations)
        op_compute: dict[str, np.ndarray] = {}
        self.fixed_s = np.zeros(n)
        self.launch_calls = np.zeros(n)  # kernel calls of the operator terms, each costing L
        self.op_mem_s = np.zeros(n)  # memory-bound operators at the prior's bandwidth, ∝ 1 / memory_bw
        for i, obs in enumerate(self.observations):
            compute = [t for t in obs.terms if isinstance(t, ComputeTerm)]
            if compute:
                dominant.add(max(compute, key=lambda t: t.flops).dtype)
            for t in compute:
                flops_by_dtype[t.dtype] = flops_by_dtype.get(t.dtype, 0.0) + t.flops
            by_dtype: dict[str, float] = {}
            for t in obs.terms:
                if not isinstance(t, OpTerm):
                    continue
                total = term_time_s(t, self.prior)
                calls = float(np.asarray(t.op.kernels).reshape(-1)[0]) if t.op.kind != "host" else 0.0
                self.launch_calls[i] += calls
                total -= calls * self.prior.efficiency.kernel_launch_s
                if t.op.kind in OP_COMPUTE_KINDS:
                    work = float(np.asarray(t.op.flops).reshape(-1)[0])
                    busy = work / (self.prior.chip.peak_for(t.op.dtype) *
                                   float(np.asarray(op_efficiency(t.op, self.prior)).reshape(-1)[0]))
                    by_dtype[t.op.dtype] = by_dtype.get(t.op.dtype, 0.0) + busy
                    self.fixed_s[i] += total - busy
                elif t.op.kind == "memory":
                    self.op_mem_s[i] += total
                else:
                    self.fixed_s[i] += total
            for d, sec in by_dtype.items():
                op_compute.setdefault(d, np.zeros(n))[i] += sec
            if by_dtype and not compute:
                dominant.add(max(by_dtype, key=by_dtype.get))
        self.ref_dtype = max(flops_by_dtype, key=flops_by_dtype.get) if flops_by_dtype else ""
        # a dtype's peak is fitted only if it does most of the FLOPs (or operator time) of some observation
        self.scaled_dtypes = tuple(sorted(d for d in dominant if d != self.ref_dtype))
        self.ref_dtype, self.scaled_dtypes = self._dtypes or (self.ref_dtype, self.scaled_dtypes)
        index = {d: j for j, d in enumerate(self.scaled_dtypes)}
        self.c_scale = np.array([index.get(t.dtype, -1) for _, t in rows], dtype=int)
        self.op_scaled = [(index[d], sec) for d, sec in op_compute.items() if d in index]
        for d, sec in op_compute.items():
            if d not in index:
                self.fixed_s += sec
        if rows and not self.knots:
            raise SpecError("compute terms need efficiency knots")

    def _compile_memory(self) -> None:
        self.m_bytes = np.array([sum(t.bytes for t in o.terms if isinstance(t, MemoryTerm))
                                 for o in self.observations])

    def _parameters(self) -> tuple[list[str], np.ndarray]:
        names = [f"efficiency@{k:.3g}" for k in self.knots]
        names += [f"peak_scale.{d}" for d in self.scaled_dtypes]
        names += ["memory_bw"]
        for level in self.levels:
            names += [f"{level.name}.latency", f"{level.name}.bandwidth"]
        for j in self.nvls_levels:
            names += [f"{self.levels[j].name}.nvls_bandwidth", f"{self.levels[j].name}.nvlstree_ratio"]
        names += [f"{self.levels[m].name}.{name}" for m, _, name in self.extra_figures]
        names += [f"{level.name}.p2p_latency" for level in self.levels]
        names += [f"{level.name}.{proto}_latency" for proto in ("ll", "ll128") for level in self.levels]
        names += ["layer_overhead"]
        free = np.ones(len(names), dtype=bool)
        free[len(self.knots) + len(self.scaled_dtypes)] = bool(self.m_bytes.any() or self.op_mem_s.any())
        free[-1] = bool(self.o_passes.any())
        free[-1 - 3 * len(self.levels):-1] = False  # π, α^LL, α^LL128: free where a row sets them (probe)
        return names, free

    @property
    def names(self) -> list[str]:
        return self._names

    @property
    def free(self) -> np.ndarray:
        return self._free

    @property
    def has_collectives(self) -> bool:
        return bool(self._collective_terms)

    def level_slice(self) -> slice:
        """θ indices of the interconnect figures: the levels' (log α, log W) pairs, each (log V, log ρ), the
        extra figures' log U / log P, each level's log π, then each level's log α^LL, then log α^LL128."""
        lev = self._offsets()[2]
        return slice(lev, self._protocol_offset() + 2 * len(self.levels))

    def _p2p_offset(self) -> int:
        """θ index of the first level's log π (send/recv latency)."""
        return self._offsets()[2] + 2 * len(self.levels) + 2 * len(self.nvls_levels) + len(self.extra_figures)

    def _protocol_offset(self) -> int:
        """θ index of the first level's log α^LL (then every level's, then every level's log α^LL128)."""
        return self._p2p_offset() + len(self.levels)

    def unpriored(self) -> np.ndarray:
        """θ indices that carry no prior: each ρ (no measurement sets NVLSTree apart from NVLS; NCCL takes 1)."""
        first = self._offsets()[2] + 2 * len(self.levels)
        return np.arange(first + 1, first + 2 * len(self.nvls_levels), 2, dtype=int)

    def _offsets(self) -> tuple[int, int, int]:
        k = len(self.knots)
        return k, k + len(self.scaled_dtypes), k + len(self.scaled_dtypes) + 1

    def initial(self) -> np.ndarray:
        """θ at the prior profile's values."""
        k, m, lev = self._offsets()
        theta = np.zeros(len(self._names))
        if self.knots:
            eta = np.log([self.prior.efficiency.matmul.at(s) for s in self.knots])
            theta[0] = eta[0]
            theta[1:k] = np.maximum(np.diff(eta), 0.0)
        chip = self.prior.chip
        theta[m] = np.log(chip.hbm_bw_bytes_per_s * self.prior.efficiency.memory_bandwidth)
        for j, level in enumerate(self.levels):
            best_eff = max(p[1] for p in level.bw_efficiency.points)
            theta[lev + 2 * j] = np.log(max(level.latency_s, MIN_LATENCY_S))
            theta[lev + 2 * j + 1] = np.log(level.link_bw_bytes_per_s * best_eff)
        for i, j in enumerate(self.nvls_levels):
            level = self.levels[j]
            tree = level.nvls_efficiency if level.nvlstree_efficiency is None else level.nvlstree_efficiency
            best_eff = max(p[1] for p in level.bw_efficiency.points)
            usable = level.link_bw_bytes_per_s * best_eff
            theta[lev + 2 * len(self.levels) + 2 * i] = np.log(usable * level.nvls_efficiency)
            theta[lev + 2 * len(self.levels) + 2 * i + 1] = np.log(tree / level.nvls_efficiency)
        first = lev + 2 * len(self.levels) + 2 * len(self.nvls_levels)
        for i, (m, key, _) in enumerate(self.extra_figures):
            level = self.levels[m]
            best_eff = max(p[1] for p in level.bw_efficiency.points)
            theta[first + i] = np.log(level.link_bw_bytes_per_s * best_eff * (getattr(level, key) or 1.0))
        p2p = self._p2p_offset()
        for j, level in enumerate(self.levels):
            own = level.latency_s if level.p2p_latency_s is None else level.p2p_latency_s
            theta[p2p + j] = np.log(max(own, MIN_LATENCY_S))
        hops = [lv.latency_s if getattr(lv, key) is None else getattr(lv, key)  # α^LL of every level, then α^LL128
                for key in ("ll_latency_s", "ll128_latency_s") for lv in self.levels]
        theta[self._protocol_offset():self._protocol_offset() + len(hops)] = np.log(np.maximum(hops, MIN_LATENCY_S))
        for j, level_j in self.departures.items():  # hierarchical: the prior's departure ln(α^p / α)
            theta[j] -= theta[level_j]
        prior_overhead = self.prior.efficiency.layer_overhead_s
        theta[-1] = np.log(prior_overhead if prior_overhead > MIN_OVERHEAD_S else START_OVERHEAD_S)
        return theta

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        k, m, lev = self._offsets()
        lo, hi = np.full(len(self._names), -np.inf), np.full(len(self._names), np.inf)
        lo[0], hi[0] = np.log(1e-6), np.log(1e3)
        lo[1:k], hi[1:k] = 0.0, np.log(1e4)  # adjacent knots within 4 decades of efficiency
        lo[k:m], hi[k:m] = -10.0, 10.0
        lo[lev:lev + 2 * len(self.levels):2] = np.log(MIN_LATENCY_S)
        lo[self._p2p_offset():self._p2p_offset() + len(self.levels)] = np.log(MIN_LATENCY_S)
        lo[self._protocol_offset():self._protocol_offset() + 2 * len(self.levels)] = np.log(MIN_LATENCY_S)
        lo[-1], hi[-1] = np.log(MIN_OVERHEAD_S), np.log(MAX_OVERHEAD_S)
        return lo, hi

    # --- physical values ------------------------------------------------------------------
    def efficiency(self, theta: np.ndarray) -> np.ndarray:
        k = len(self.knots)
        return np.exp(theta[0] + np.concatenate([[0.0], np.cumsum(theta[1:k])])) if k else np.zeros(0)

    def peak_scales(self, theta: np.ndarray) -> dict[str, float]:
        k, m, _ = self._offsets()
        return {d: float(np.exp(theta[k + j])) for j, d in enumerate(self.scaled_dtypes)}

    def memory_bw(self, theta: np.ndarray) -> float:
        return float(np.exp(theta[self._offsets()[1]]))

    def layer_overhead(self, theta: np.ndarray) -> float:
        return float(np.exp(theta[-1]))

    def level_values(self, theta: np.ndarray) -> list[tuple[float, float]]:
        lev = self._offsets()[2]
        return [(float(np.exp(theta[lev + 2 * j])), float(np.exp(theta[lev + 2 * j + 1])))
                for j in range(len(self.levels))]

    def nvls_values(self, theta: np.ndarray) -> dict[int, tuple[float, float]]:
        """{level index: (V_l, V'_l)} for the levels with NVLS."""
        first = self._offsets()[2] + 2 * len(self.levels)
        return {j: (float(np.exp(theta[first + 2 * i])), float(np.exp(theta[first + 2 * i] + theta[first + 2 * i + 1])))
                for i, j in enumerate(self.nvls_levels)}

    # --- collectives: linearisation through the real model ----------------------------------------
    def extra_values(self, theta: np.ndarray) -> dict[tuple[int, str], float]:
        """{(level index, profile key): U_m or P_l} for the extra figures."""
        first = self._offsets()[2] + 2 * len(self.levels) + 2 * len(self.nvls_levels)
        return {(m, key): float(np.exp(theta[first + i])) for i, (m, key, _) in enumerate(self.extra_figures)}

    def p2p_latencies(self, theta: np.ndarray) -> list[float]:
        """π_l of every level: the latency of one send/recv message (module docstring)."""
        p2p = self._p2p_offset()
        return [float(np.exp(theta[p2p + j])) for j in range(len(self.levels))]

    def protocol_latencies(self, theta: np.ndarray) -> list[tuple[float, float]]:
        """(α^LL_l, α^LL128_l) of every level: the LL and LL128 hop latencies (module docstring)."""
        proto, n, lev = self._protocol_offset(), len(self.levels), self._offsets()[2]
        level = np.array([theta[lev + 2 * j] if self.hierarchical else 0.0 for j in range(n)])
        return [(float(np.exp(level[j] + theta[proto + j])), float(np.exp(level[j] + theta[proto + n + j])))
                for j in range(n)]

    def model_at_theta(self, theta: np.ndarray):
        """The collective model with every figure as the fitted vector θ sets it (_model_at)."""
        return self._model_at(self.level_values(theta), self.memory_bw(theta), self.nvls_values(theta),
                              self.extra_values(theta), self.p2p_latencies(theta),
                              self.protocol_latencies(theta) if self.per_protocol else None)

    def _model_at(self, values: list[tuple[float, float]], memory_bw: float, nvls: dict[int, tuple[float, float]],
                  net: dict[tuple[int, str], float] | None = None, p2p: list[float] | None = None,
                  protocol: list[tuple[float, float]] | None = None):
        """The default collective model on the prior with these levels, NVLS bandwidths (η_nvls = V / W and
        η_nvlstree = V' / W, at most 1 as the profile holds them) and memory bandwidth (on-chip and
        hierarchical all-to-all copies); `protocol`: each level's (α^LL, α^LL128), None = the prior's keys (unset:
        they follow α)."""
        def figures(j: int, w: float) -> dict:
            out = {key: min(value / w, MAX_NVLSTREE_NET_FACTOR) for (m, key), value in (net or {}).items() if m == j}
            if j in nvls:
                out.update(nvls_efficiency=min(nvls[j][0] / w, 1.0), nvlstree_efficiency=min(nvls[j][1] / w, 1.0))
            return out

        def hops(j: int) -> dict:
            if protocol is None:
                return {}
            return {"ll_latency_s": protocol[j][0], "ll128_latency_s": protocol[j][1]}

        levels = tuple(replace(level, latency_s=a, link_bw_bytes_per_s=w, bw_efficiency=EfficiencyTable.constant(1.0),
                               p2p_latency_s=level.p2p_latency_s if p2p is None else p2p[j], **figures(j, w), **hops(j))
                       for j, (level, (a, w)) in enumerate(zip(self.levels, values)))
        chip = replace(self.prior.chip, hbm_bw_bytes_per_s=memory_bw)
        efficiency = replace(self.prior.efficiency, memory_bandwidth=1.0)
        return default_model(replace(self.prior, interconnect=levels, chip=chip, efficiency=efficiency))

    def probe(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(A, B, C, D) at θ, and which figures the rows set (linearise.probe)."""
        return probe(self, theta)

    # --- prediction --------------------------------------------------------------------------
    def predict(self, theta: np.ndarray, coef=None) -> np.ndarray:
        """Seconds of every observation at θ (collectives from the linearisation `coef`)."""
        a, b, c, d = coef if coef is not None else self.coef
        out = self.fixed_s.copy()
        k = len(self.knots)
        for j, sec in self.op_scaled:  # operator compute at a fitted peak: time ∝ 1 / peak scale
            out += sec / np.exp(theta[k + j])
        if len(self.c_obs):
            eta = np.interp(self.c_logk, np.log(self.knots), self.efficiency(theta))
            k = len(self.knots)
            scale = np.where(self.c_scale >= 0, np.exp(theta[k + np.maximum(self.c_scale, 0)]), 1.0)
            out += np.bincount(self.c_obs, self.c_flops / (self.c_peak * scale * eta), minlength=len(out))
        out += self.m_bytes / self.memory_bw(theta)
        if self.op_mem_s.any():  # memory-bound operators: their tables' shape dependence, the fitted bandwidth
            m = self._offsets()[1]
            out += self.op_mem_s * np.exp(self._theta0_memory - theta[m])
        out += self.launch_calls * self.prior.efficiency.kernel_launch_s
        out += self.o_passes * self.layer_overhead(theta)
        if self._collective_terms:
            values = np.array(self.level_values(theta))
            hops = np.array(self.protocol_latencies(theta))
            out += a @ np.concatenate([values[:, 0], self.p2p_latencies(theta), hops[:, 0], hops[:, 1]]) \
                + b @ (1.0 / values[:, 1]) + c
            if d.shape[1]:
                lines = list(np.ravel(list(self.nvls_values(theta).values()))) + list(self.extra_values(theta).values())
                out += d @ (1.0 / np.array(lines))
        return out
