"""One simulated training step: draw what varies, fold identical devices, run an engine.

Order (fixed, so the random numbers drawn do not depend on the mode): stragglers for every device,
then per stage (first to last) its devices' kernel noise (variation.stage_work). The devices are
then folded into classes (fold.py) unless the mode says `full`, and the representatives run on
the fast engine (kernel.py) - or, as a reference, every device on the simpy engine (engine.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from moesim.des.costs import Costs
from moesim.des.engine import CountingEnvironment, DeviceRun, Engine
from moesim.des.fabric import PortFabric
from moesim.des.fold import Fold, refine
from moesim.des.kernel import Compiled, Device, Kernel
from moesim.des.network import Network
from moesim.des.variation import StageWork, stage_work
from moesim.errors import SpecError

ENGINES = ("fast", "simpy")
BUSIEST_LINKS = 5


@dataclass
class Setup:
    """Everything fixed across steps: costs, programs, fabric, which stage each device is on."""

    costs: Costs
    programs: list
    fabric: PortFabric
    stage_of: np.ndarray
    compiled: list | None = None

    @property
    def stage_devices(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.stage_of == s) for s in range(len(self.programs))]


@dataclass
class Step:
    """One simulated step's outcome."""

    time_s: float
    idle: list  # (idle seconds, devices it stands for) per simulated device
    busiest: list
    events: int
    engine_s: float
    fold: Fold
    reasons: list  # why devices differ (empty when everything folded to one device per stage)


def work_reasons(options, load_timing: bool) -> list[str]:
    """What makes devices of one stage differ this step (their work, before links and groups)."""
    return [r for r, bad in (("routing loads set the work (dropless, sampled or skewed)", load_timing),
                             ("stragglers", options.straggler_fraction > 0 and options.straggler_slowdown > 1),
                             ("kernel noise", options.noise_sigma > 0)) if bad]


def _fold(setup: Setup, works: list[StageWork], mode: str, reasons: list[str]) -> Fold:
    costs, n = setup.costs, setup.costs.scenario.devices
    if mode == "full":
        return Fold.identity(n, costs.sizes, costs.strides, setup.fabric)
    work = np.zeros(n, dtype=np.int64)
    offset = 0
    for w in works:
        seen: dict[bytes, int] = {}  # equal bytes, equal work (exact; by hash, not by sorting rows)
        local = [seen.setdefault(row.tobytes(), len(seen)) for row in np.ascontiguousarray(w.signature())]
        work[w.devices] = offset + np.array(local)
        offset += len(seen)
    labels = refine(work, costs.sizes, costs.strides, setup.fabric, costs.layout.pp)
    fold = Fold(labels, costs.sizes, costs.strides, setup.fabric)
    if mode == "aggregated" and not fold.folded:
        raise SpecError("cannot aggregate devices: every device differs (" + "; ".join(reasons or ["links"]) + ")",
                        field="mode", value="aggregated")
    if not fold.folded:
        return Fold.identity(n, costs.sizes, costs.strides, setup.fabric)
    return fold


def run_step(setup: Setup, options, loads: list | None, rng: np.random.Generator, trace: list | None,
             reasons: list[str], progress: Callable[[float], None] | None = None) -> Step:
    """Simulate one step; `loads` per stage (run._Router); `progress(fraction of operations done)` now and then."""
    costs = setup.costs
    devices = costs.scenario.devices
    slowdown = np.ones(devices)
    n_slow = int(round(options.straggler_fraction * devices))
    if n_slow and options.straggler_slowdown > 1:
        slowdown[rng.choice(devices, size=n_slow, replace=False)] = options.straggler_slowdown
    works = [stage_work(costs, program, devs, loads=None if loads is None else loads[s], slowdown=slowdown[devs],
                        noise_sigma=options.noise_sigma, rng=rng)
             for s, (program, devs) in enumerate(zip(setup.programs, setup.stage_devices))]
    mode = "full" if options.engine == "simpy" else options.mode
    fold = _fold(setup, works, mode, reasons)
    started = time.perf_counter()
    if options.engine == "simpy":
        runs, events, busiest = _simpy(setup, options, works, trace)
    else:
        runs, events, busiest = _fast(setup, options, works, fold, trace, progress)
    engine_s = time.perf_counter() - started
    step_time = float(max(run.end_s for run in runs))
    idle = [(step_time - run.busy_s, run.weight) for run in runs]
    return Step(step_time, idle, busiest(step_time), events, engine_s, fold, reasons)


def _fast(setup: Setup, options, works: list[StageWork], fold: Fold, trace: list | None, progress):
    """The representatives of `fold` on the fast engine."""
    if setup.compiled is None:
        setup.compiled = [Compiled(p, w.cols) for p, w in zip(setup.programs, works)]
    position = np.empty(setup.costs.scenario.devices, dtype=np.int64)
    for w in works:
        position[w.devices] = np.arange(len(w.devices))
    kernel = Kernel(setup.fabric, fold, setup.costs.strides["pp"], contention=options.contention, trace=trace)
    wires = [w.wire.tolist() for w in works]
    runs = []
    for rep in fold.reps:
        s, j = int(setup.stage_of[rep]), int(position[rep])
        w = works[s]
        runs.append(Device(int(rep), setup.compiled[s], w.row(j)[0], wires[s],
                           None if w.egress_cols is None else w.egress_cols[j],
                           None if w.ingress_cols is None else w.ingress_cols[j], fold.weight(int(rep))))
    kernel.run(runs, progress)
    return runs, kernel.events, lambda elapsed: kernel.busiest(elapsed, BUSIEST_LINKS)


def _simpy(setup: Setup, options, works: list[StageWork], trace: list | None):
    """Every device on the simpy engine (the reference the fast engine is tested against)."""
    env = CountingEnvironment()
    network = Network(env, contention=options.contention)
    n = setup.costs.scenario.devices
    engine = Engine(env, network, setup.fabric, setup.costs, set(range(n)), trace=trace)
    runs = []
    for s, w in enumerate(works):
        for j, device in enumerate(w.devices):
            durations, egress, ingress = w.row(j)
            runs.append(DeviceRun(int(device), w.program, durations, egress, ingress, 1))
    for run in runs:
        engine.start(run)
    env.run()
    return runs, env.scheduled, lambda elapsed: network.busiest(elapsed, BUSIEST_LINKS)


__all__ = ["BUSIEST_LINKS", "ENGINES", "Setup", "Step", "run_step", "work_reasons"]
