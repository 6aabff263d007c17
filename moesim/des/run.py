"""`simulate()`: steps of a scenario through the engine, with the analytical estimate beside them.

Aggregation (exact, not an approximation): devices of one pipeline stage run the same program.
When nothing makes them differ - routing that does not change the work (capacity-padded, or
dropless with expected uniform loads), no stragglers, no kernel noise - and every shared link (a
chip's port, a domain's uplink) is shared only by devices of one stage, every device of a stage
has the same timeline in the full simulation. One representative per stage (the devices of the
pipeline group of device 0) is then simulated; its flows count once per device of the class on
every link it shares (see engine.py), and a collective waits only for simulated members. The
routing itself is still sampled for every device (drop statistics). Otherwise every device runs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from moesim.capacity import expected_drop_fraction
from moesim.collectives.base import CollectiveModel
from moesim.collectives.select import model_for
from moesim.des.costs import Costs, build_costs
from moesim.des.engine import CountingEnvironment, Engine
from moesim.des.fabric import PortFabric
from moesim.des.network import Network
from moesim.des.routing import SAMPLERS, parse_routing, popularity, route_layer
from moesim.des.schedule import DEFAULT_BUCKET_PARAMS, build_stage_program
from moesim.des.trace import chrome_trace
from moesim.des.variation import Loads, device_runs
from moesim.errors import SpecError
from moesim.specs.ranges import check_ranges
from moesim.estimate import estimate
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec

MODES = ("auto", "full", "aggregated")
BUSIEST_LINKS = 5


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
    grad_bucket_params: int = DEFAULT_BUCKET_PARAMS  # gradient bucket (parameters), see schedule.py

    def __post_init__(self) -> None:
        check_ranges(self, prefix="")
        for name in ("steps", "chunks", "grad_bucket_params"):
            value = getattr(self, name)
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


def _stage_of(costs: Costs) -> np.ndarray:
    pp, stride = costs.layout.pp, costs.strides["pp"]
    return (np.arange(costs.scenario.devices) // stride) % pp


def _asymmetric_links(fabric: PortFabric, stage_of: np.ndarray) -> list[str]:
    """Shared links whose devices sit on different stages (aggregation would be inexact)."""
    problems = []
    n = len(stage_of)
    for level, lv in enumerate(fabric.hardware.interconnect):
        for size, what in ((fabric.sharers(level), "port"), (fabric.inner_domain(level), "uplink")):
            if size <= 1:
                continue
            blocks = np.arange(n) // size
            first = stage_of[np.searchsorted(blocks, blocks)]
            if np.any(first != stage_of):
                problems.append(f"{lv.name} {what}s are shared by devices of different pipeline stages")
    return problems


def _ep_groups(costs: Costs, stage_of: np.ndarray, stage: int) -> np.ndarray:
    ep, stride = costs.sizes["ep"], costs.strides["ep"]
    devs = np.flatnonzero(stage_of == stage)
    bases = devs[(devs // stride) % ep == 0]
    return bases[:, None] + np.arange(ep)[None, :] * stride


class _Router:
    """Samples every MoE layer's routing for a step; keeps loads when they set the work."""

    def __init__(self, costs: Costs, options: SimOptions, rng: np.random.Generator, keep: bool) -> None:
        self.costs, self.options, self.rng, self.keep = costs, options, rng, keep
        moe = costs.scenario.model.moe
        wl = costs.workload
        self.layers = [i for i, c in enumerate(wl.layer_class_index) if wl.classes[c].is_moe] if moe else []
        self.spec = parse_routing(options.routing, moe.num_experts) if moe else None
        self.p = popularity(self.spec, moe.num_experts, len(self.layers), rng) if moe else None
        stage_of = _stage_of(costs)
        self.groups = [_ep_groups(costs, stage_of, s) for s in range(costs.layout.pp)] if moe else []
        self.uniform = self.spec is None or self.spec.kind == "uniform"
        self.stage_of_layer = {layer: costs.device_of(st.index) for st in costs.stages for layer in st.layers}
        self.node_limit = _node_limit(costs) if moe else None

    def step(self) -> tuple[Loads | None, float, float]:
        """(loads by (moe, mb) or None, dropped assignments, all assignments)."""
        if not self.layers:
            return None, 0.0, 0.0
        c, moe, o = self.costs, self.costs.scenario.model.moe, self.options
        loads: Loads = {}
        dropped = assigned = 0.0
        for n, layer in enumerate(self.layers):
            lc = c.classes[c.workload.layer_class_index[layer]]
            groups = self.groups[self.stage_of_layer[layer]]
            order = groups.reshape(-1)
            for mb in range(c.micro_batches):
                r = route_layer(self.p[n], groups, lc.tokens, moe.group_size_tokens, moe.top_k,
                                None if c.dropless else lc.capacity, self.rng, expected=o.expected_loads,
                                sampler=o.sampler, node_limit=self.node_limit)
                dropped += r.dropped
                assigned += r.assigned
                if self.keep:
                    full = [np.zeros(c.scenario.devices) for _ in range(3)]
                    for arr, value in zip(full, (r.sent_remote, r.received, r.received_remote)):
                        arr[order] = value
                    loads[(n, mb)] = tuple(full)
        return (loads if self.keep else None), dropped, assigned


def _node_limit(costs: Costs) -> tuple[int, int] | None:
    """(nodes the EP group spans, moe.max_nodes_per_token) when node-limited routing bounds it, else None."""
    moe = costs.scenario.model.moe
    ep = costs.layout.ep
    per_node = costs.scenario.hardware.interconnect[0].domain_devices
    nodes = -(-ep // per_node)
    if moe.max_nodes_per_token <= 0 or moe.max_nodes_per_token >= nodes or moe.num_experts % nodes:
        return None
    return nodes, moe.max_nodes_per_token


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


@dataclass
class _Setup:
    """Everything fixed across steps: costs, programs, fabric, which devices run."""

    costs: Costs
    programs: list
    fabric: PortFabric
    stage_of: np.ndarray
    aggregated: bool
    reps: np.ndarray  # one device per stage (the pipeline group of device 0)


@dataclass
class _Step:
    """One simulated step's outcome."""

    time_s: float
    idle: list  # (idle seconds, devices it stands for) per simulated device
    busiest: list
    events: int
    engine_s: float


def _aggregation_blockers(fabric: PortFabric, stage_of: np.ndarray, options: SimOptions,
                          load_timing: bool) -> list[str]:
    reasons = [r for r, bad in (("routing loads set the work (dropless, sampled or skewed)", load_timing),
                                ("stragglers", options.straggler_fraction > 0 and options.straggler_slowdown > 1),
                                ("kernel noise", options.noise_sigma > 0)) if bad]
    return reasons + _asymmetric_links(fabric, stage_of)


def _run_step(setup: _Setup, options: SimOptions, loads, rng: np.random.Generator, trace: list | None) -> _Step:
    devices = setup.costs.scenario.devices
    slowdown = np.ones(devices)
    n_slow = int(round(options.straggler_fraction * devices))
    if n_slow and options.straggler_slowdown > 1:
        slowdown[rng.choice(devices, size=n_slow, replace=False)] = options.straggler_slowdown
    env = CountingEnvironment()
    network = Network(env, contention=options.contention)
    simulated = set(int(r) for r in setup.reps) if setup.aggregated else set(range(devices))
    engine = Engine(env, network, setup.fabric, setup.costs, simulated, aggregated=setup.aggregated, trace=trace)
    per_stage = devices // len(setup.programs)
    runs = []
    for s, program in enumerate(setup.programs):
        devs = setup.reps[s:s + 1] if setup.aggregated else np.flatnonzero(setup.stage_of == s)
        runs += device_runs(setup.costs, program, devs, loads=loads, slowdown=slowdown[devs],
                            noise_sigma=options.noise_sigma, rng=rng, weight=per_stage if setup.aggregated else 1)
    started = time.perf_counter()
    for run in runs:
        engine.start(run)
    env.run()
    engine_s = time.perf_counter() - started
    step_time = float(max(run.end_s for run in runs))
    return _Step(step_time, [(step_time - run.busy_s, run.weight) for run in runs],
                 network.busiest(step_time, BUSIEST_LINKS), env.scheduled, engine_s)


def simulate(scenario: Scenario, layout: Layout | None = None, options: SimOptions | None = None, *,
             training: TrainingSpec | None = None, collective_model: CollectiveModel | None = None) -> SimResult:
    """Simulate `options.steps` training steps of `scenario` with `layout` (default: the scenario's)."""
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
    stage_of = _stage_of(costs)
    rng = np.random.default_rng(options.seed)
    router = _Router(costs, options, rng, keep=False)
    router.keep = bool(router.layers) and costs.dropless and not (options.expected_loads and router.uniform)
    reasons = _aggregation_blockers(fabric, stage_of, options, router.keep)
    if options.mode == "aggregated" and reasons:
        raise SpecError("cannot aggregate devices: " + "; ".join(reasons), field="mode", value="aggregated")
    aggregated = options.mode == "aggregated" or (options.mode == "auto" and not reasons)
    setup = _Setup(costs, programs, fabric, stage_of, aggregated, np.arange(layout.pp) * costs.strides["pp"])
    steps: list[_Step] = []
    trace: list = []
    dropped = assigned = 0.0
    for n in range(options.steps):
        loads, d, a = router.step()
        dropped, assigned = dropped + d, assigned + a
        steps.append(_run_step(setup, options, loads, rng, trace if options.trace and n == 0 else None))
    idle = np.array([v for v, _ in steps[-1].idle])
    weights = np.array([w for _, w in steps[-1].idle], dtype=float)
    per_stage = scenario.devices // layout.pp
    labels = {int(r): f"device {int(r)} (stage {s}, stands for {per_stage} devices)"
              for s, r in enumerate(setup.reps)} if aggregated else None
    return SimResult(
        scenario=scenario.name, hardware=scenario.hardware.name, devices=scenario.devices,
        layout=layout.as_dict() | {"micro_batches": training.micro_batches,
                                   "pipeline_schedule": training.pipeline_schedule},
        options=options, mode="aggregated" if aggregated else "full",
        simulated_devices=len(setup.reps) if aggregated else scenario.devices,
        step_times_s=tuple(st.time_s for st in steps), analytical_step_time_s=est.step_time_s,
        dropped_token_fraction=dropped / assigned if assigned else None,
        expected_drop_fraction_uniform=_expected_drops(costs), busiest_links=tuple(steps[-1].busiest),
        idle_time_s={"mean": float(np.average(idle, weights=weights)), "min": float(idle.min()),
                     "max": float(idle.max()), "devices": int(weights.sum())},
        events=sum(st.events for st in steps), wall_time_s=time.perf_counter() - wall,
        engine_time_s=sum(st.engine_s for st in steps), trace_records=tuple(trace), trace_labels=labels,
    )


def step_time(scenario: Scenario, layout: Layout, training: TrainingSpec | None = None,
              options: SimOptions | None = None) -> float:
    """Mean simulated step time in seconds (default options, no trace): the search's refinement hook."""
    result = simulate(scenario, layout, options or SimOptions(trace=False), training=training)
    return float(np.mean(result.step_times_s))


__all__ = ["MODES", "SimOptions", "SimResult", "simulate", "step_time"]
