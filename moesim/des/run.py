"""`simulate()`: steps of a scenario through the engine, with the analytical estimate beside them.

Aggregation (exact, not an approximation): devices whose timelines cannot differ - same work
(routing loads, stragglers, noise), same classes in their collective groups, behind their links and
next to them in the pipeline - are one class; one representative per class is simulated (fold.py,
kernel.py). `mode`: auto folds whenever some class has more than one device, full simulates every
device, aggregated insists on folding. Capacity padding and expected loads fold to one device per
stage (plus the classes stragglers make); sampled dropless loads make every device its own class.
The routing itself is sampled for every device (drop statistics), one MoE layer at a time; at cluster
scale, dropless node-limited routing draws moment-matched per-rank counts instead of every token
(moments.py; `mode_reason` says which sampler ran and why).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from moesim.capacity import expected_drop_fraction
from moesim.collectives.base import CollectiveModel
from moesim.collectives.select import model_for
from moesim.des.costs import Costs, build_costs
from moesim.des.fabric import PortFabric
from moesim.des.routing import SAMPLERS
from moesim.des.schedule import build_stage_program
from moesim.des.trace import chrome_trace
from moesim.des.step import ENGINES, Setup, Step, run_step, work_reasons
# the step's routing sampler; _node_limit and sampler_reason stay importable from here (tests, benchmarks)
from moesim.des.step_routing import _node_limit, _Router, _stage_of, sampler_reason  # noqa: F401
from moesim.errors import SpecError
from moesim.specs.ranges import check_ranges
from moesim.estimate import estimate
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec

MODES = ("auto", "full", "aggregated")
ROUTING_SHARE = 0.2  # of a step's progress bar: sampling the routing (the engine gets the rest)


@dataclass(frozen=True, kw_only=True)
class SimOptions:
    """How to simulate. `routing`: uniform | zipf:S | histogram file; `expected_loads`: every routing
    group gets exactly its expected loads (no sampling noise)."""

    routing: str = "uniform"
    expected_loads: bool = False
    sampler: str = "auto"
    steps: int = 1
    seed: int = 0
    contention: bool = True
    chunks: int = 1
    straggler_fraction: float = 0.0
    straggler_slowdown: float = 1.0
    noise_sigma: float = 0.0
    mode: str = "auto"
    trace: bool = True  # record the first step's timeline
    grad_bucket_params: int | None = None  # gradient bucket (parameters); None: MCore's max(40e6, 1e6·dp·cp)
    engine: str = "fast"  # fast (kernel.py, folds identical devices) | simpy (engine.py, every device: reference)

    def __post_init__(self) -> None:
        check_ranges(self, prefix="")
        for name in ("steps", "chunks", "grad_bucket_params"):
            value = getattr(self, name)
            if value is None and name == "grad_bucket_params":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"must be an integer >= 1, got {value!r}", field=name, value=value)
        if not 0 <= self.straggler_fraction <= 1:
            raise SpecError("must be in [0, 1]", field="straggler_fraction", value=self.straggler_fraction)
        if not self.straggler_slowdown >= 1:
            raise SpecError("must be >= 1 (1 = no slowdown)", field="straggler_slowdown",
                            value=self.straggler_slowdown)
        if not self.noise_sigma >= 0:
            raise SpecError("must be >= 0", field="noise_sigma", value=self.noise_sigma)
        if self.mode not in MODES:
            raise SpecError(f"unknown mode '{self.mode}'", field="mode", value=self.mode, allowed=MODES)
        if self.engine not in ENGINES:
            raise SpecError(f"unknown engine '{self.engine}'", field="engine", value=self.engine, allowed=ENGINES)
        if self.engine == "simpy" and self.mode == "aggregated":
            raise SpecError("the simpy engine simulates every device: use the fast engine to aggregate",
                            field="mode", value=self.mode)
        if self.sampler not in SAMPLERS:
            raise SpecError(f"unknown sampler '{self.sampler}'", field="sampler", value=self.sampler, allowed=SAMPLERS)


@dataclass(frozen=True)
class SimResult:
    """Simulated steps of one layout, with the analytical estimate beside them."""

    scenario: str
    hardware: str
    devices: int
    layout: dict
    options: SimOptions
    mode: str
    simulated_devices: int
    step_times_s: tuple[float, ...]
    analytical_step_time_s: float
    dropped_token_fraction: float | None
    expected_drop_fraction_uniform: float | None
    busiest_links: tuple[dict, ...]
    idle_time_s: dict
    events: int
    wall_time_s: float
    engine_time_s: float
    trace_records: tuple[tuple, ...] = ()
    trace_labels: dict | None = None
    mode_reason: str = ""
    simulated_per_step: tuple[int, ...] = ()
    # the analytical estimate's routing figures (its `moe` JSON: capacity, routing groups, an encoder-decoder's
    # stacks) and its warnings (a layout Megatron refuses, a sequence past RoPE's, does not fit, drops, ...)
    moe: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def step_time_stats(self) -> dict:
        t = np.array(self.step_times_s)
        return {"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99)), "mean": float(t.mean()),
                "min": float(t.min()), "max": float(t.max()), "steps": list(self.step_times_s)}

    def as_dict(self) -> dict:
        """The stable JSON form (`moesim simulate --json`)."""
        stats = self.step_time_stats
        return {
            "scenario": self.scenario, "hardware": self.hardware, "devices": self.devices, "layout": self.layout,
            "options": asdict(self.options), "mode": self.mode, "simulated_devices": self.simulated_devices,
            "step_time_s": stats, "analytical_step_time_s": self.analytical_step_time_s,
            "relative_difference": stats["mean"] / self.analytical_step_time_s - 1,
            "dropped_token_fraction": self.dropped_token_fraction,
            "expected_drop_fraction_uniform": self.expected_drop_fraction_uniform,
            "busiest_links": list(self.busiest_links), "idle_time_s": self.idle_time_s,
            "events": self.events, "wall_time_s": self.wall_time_s, "engine_time_s": self.engine_time_s,
            "events_per_s": self.events / self.engine_time_s if self.engine_time_s > 0 else None,
            "mode_reason": self.mode_reason, "engine": self.options.engine,
            "simulated_devices_per_step": list(self.simulated_per_step),
            "moe": self.moe, "warnings": list(self.warnings),
        }

    def to_dict(self) -> dict:
        """The JSON form (same as `moesim simulate --json`)."""
        return self.as_dict()

    def __repr__(self) -> str:
        from moesim.api_repr import sim_repr

        return sim_repr(self)

    def _repr_html_(self) -> str:
        from moesim.api_repr import sim_html

        return sim_html(self)

    def chrome_trace(self) -> dict:
        """The first step as Chrome trace-event JSON (empty when not recorded)."""
        return chrome_trace(self.trace_records, labels=self.trace_labels,
                            metadata={"scenario": self.scenario, "mode": self.mode, "layout": self.layout})


def _expected_drops(costs: Costs) -> float | None:
    moe = costs.scenario.model.moe
    if moe is None or costs.dropless:
        return None
    wl = costs.workload
    total = dropped = 0.0
    for c in wl.layer_class_index:
        lc = costs.classes[c]
        if lc.is_moe:
            group = min(moe.group_size_tokens or lc.tokens, lc.tokens)
            frac = expected_drop_fraction(group, moe.num_experts, moe.top_k, lc.capacity)
            total += lc.tokens
            dropped += lc.tokens * frac
    return dropped / total if total else None


def _mode_reason(fold, reasons: list[str], options: SimOptions) -> str:
    """Which mode ran and why, in one line (SimResult.mode_reason)."""
    if options.engine == "simpy":
        return "every device on the simpy reference engine (--engine simpy)"
    if options.mode == "full":
        return "every device, as asked (--mode full)"
    if fold.folded:
        why = "; ".join(reasons) if reasons else "devices of a stage do the same work"
        classes = f"{fold.classes} class" if fold.classes == 1 else f"{fold.classes} classes"
        return (f"{classes} of devices with identical timelines (equal work, collective groups, "
                f"link mates and pipeline neighbours; {why}): one representative each, exact")
    return "every device differs (" + "; ".join(reasons or ["link sharing"]) + "): nothing to fold"


def simulate(scenario: Scenario, layout: Layout | None = None, options: SimOptions | None = None, *,
             training: TrainingSpec | None = None, collective_model: CollectiveModel | None = None,
             progress: Callable[[float], None] | None = None) -> SimResult:
    """Simulate `options.steps` training steps of `scenario` with `layout` (default: the scenario's).

    `progress(fraction)`, when given, is called now and then with the fraction of the work done (0..1)."""
    wall = time.perf_counter()
    options = options or SimOptions()
    layout = layout if layout is not None else scenario.resolve()
    training = training or scenario.training
    scenario.check(layout, micro_batches=training.micro_batches)
    model = collective_model or model_for(scenario)
    est = estimate(scenario, layout, training, model)
    costs = build_costs(scenario, layout, training, model, est.optimizer_time_s)
    programs = [build_stage_program(costs, s, options.chunks, options.grad_bucket_params) for s in range(layout.pp)]
    fabric = PortFabric(scenario.hardware, scenario.devices)
    setup = Setup(costs, programs, fabric, _stage_of(costs))
    rng = np.random.default_rng(options.seed)
    router = _Router(costs, options, rng, keep=False)
    router.keep = bool(router.layers) and costs.dropless and not (options.expected_loads and router.uniform)
    reasons = work_reasons(options, router.keep)
    steps: list[Step] = []
    trace: list = []
    dropped = assigned = 0.0
    for n in range(options.steps):
        at = n / options.steps
        share = 1 / options.steps
        tell = None if progress is None else (lambda f, at=at: progress(at + share * ROUTING_SHARE * f))
        loads, d, a = router.step(tell)
        dropped, assigned = dropped + d, assigned + a
        tell = None if progress is None else (
            lambda f, at=at: progress(at + share * (ROUTING_SHARE + (1 - ROUTING_SHARE) * f)))
        steps.append(run_step(setup, options, loads, rng, trace if options.trace and n == 0 else None, reasons,
                              tell))
        if progress is not None:
            progress((n + 1) / options.steps)
    last = steps[-1]
    idle = np.array([v for v, _ in last.idle])
    weights = np.array([w for _, w in last.idle], dtype=float)
    aggregated = last.fold.folded
    labels = {int(r): f"device {int(r)} (stage {int(setup.stage_of[r])}, stands for {last.fold.weight(int(r))} "
                      "devices)" for r in last.fold.reps} if aggregated else None
    return SimResult(
        scenario=scenario.name, hardware=scenario.hardware.name, devices=scenario.devices,
        layout=layout.as_dict() | {"micro_batches": training.micro_batches,
                                   "pipeline_schedule": training.pipeline_schedule},
        options=options, mode="aggregated" if aggregated else "full",
        simulated_devices=last.fold.classes if aggregated else scenario.devices,
        step_times_s=tuple(st.time_s for st in steps), analytical_step_time_s=est.step_time_s,
        dropped_token_fraction=dropped / assigned if assigned else None,
        expected_drop_fraction_uniform=_expected_drops(costs), busiest_links=tuple(last.busiest),
        idle_time_s={"mean": float(np.average(idle, weights=weights)), "min": float(idle.min()),
                     "max": float(idle.max()), "devices": int(weights.sum())},
        events=sum(st.events for st in steps), wall_time_s=time.perf_counter() - wall,
        engine_time_s=sum(st.engine_s for st in steps), trace_records=tuple(trace), trace_labels=labels,
        mode_reason="; ".join(x for x in (_mode_reason(last.fold, reasons, options), router.reason()) if x),
        simulated_per_step=tuple(st.fold.classes for st in steps), moe=est.moe, warnings=est.warnings,
    )


def step_time(scenario: Scenario, layout: Layout, training: TrainingSpec | None = None,
              options: SimOptions | None = None, progress: Callable[[float], None] | None = None) -> float:
    """Mean simulated step time in seconds (default options, no trace): the search's refinement hook."""
    result = simulate(scenario, layout, options or SimOptions(trace=False), training=training, progress=progress)
    return float(np.mean(result.step_times_s))


__all__ = ["MODES", "SimOptions", "SimResult", "simulate", "step_time"]
