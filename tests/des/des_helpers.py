"""Helpers for the simulator tests: hand-made programs on a toy fabric, and small scenarios."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from moesim.des.costs import CommSpec
from moesim.des.engine import CountingEnvironment, DeviceRun, Engine
from moesim.des.network import Link, Network
from moesim.des.schedule import COLLECTIVE, COMPUTE, Op, StageProgram
from moesim.specs.load import load_hardware, load_model
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec

DATA = Path(__file__).parent / "data"
TINY_MODEL = Path(__file__).parents[1] / "data" / "tiny-moe-decoder.toml"


class ToyFabric:
    """One level; each device has its own egress link, or all share one; ejection links are unlimited."""

    def __init__(self, capacity: float = 1e30, shared: bool = False) -> None:
        self.capacity, self.shared = capacity, shared

    def level(self, span: int) -> int:
        return 0

    def mates(self, device: int, level: int):
        return (range(device, device + 1),)

    def egress(self, device: int, level: int):
        return (Link("shared" if self.shared else f"tx{device}", self.capacity),)

    def ingress(self, device: int, level: int):
        return (Link(f"rx{device}", 1e30),)


def comm(axis: str, time_s: float, latency_s: float = 0.0, wire_bytes: float = 100.0, size: int = 2) -> CommSpec:
    """A collective that takes `time_s` alone: latency, then `wire_bytes` at wire/(time − latency)."""
    return CommSpec("toy", axis, "all_reduce", wire_bytes, size, 1, time_s, latency_s, wire_bytes)


def op(index: int, stream: str, name: str, deps=(), duration_s: float = 0.0, spec: CommSpec | None = None) -> Op:
    kind = COLLECTIVE if spec is not None else COMPUTE
    return Op(index, stream, kind, name, "fwd", -1, -1, tuple(deps), duration_s=duration_s, comm=spec)


def program(ops: list[Op]) -> StageProgram:
    streams = {}
    for o in ops:
        streams.setdefault(o.stream, []).append(o.index)
    return StageProgram(0, tuple(ops), {k: tuple(v) for k, v in streams.items()},
                        frozenset(d for o in ops for d in o.deps))


def run_toy(prog: StageProgram, devices: dict[int, dict], *, sizes: dict, contention: bool = True,
            fabric: ToyFabric | None = None) -> tuple[list[tuple], float]:
    """Run `prog` on each device (per-device `durations` / `egress` overrides by op index);
    returns ([(start, end, device, name)] sorted, makespan)."""
    env = CountingEnvironment()
    network = Network(env, contention=contention)
    costs = SimpleNamespace(sizes=sizes, strides={k: 1 for k in sizes})
    trace: list = []
    engine = Engine(env, network, fabric or ToyFabric(), costs, set(devices), trace=trace)
    base_d = np.array([o.duration_s for o in prog.ops])
    base_w = np.array([o.comm.wire_bytes if o.comm else 0.0 for o in prog.ops])
    runs = []
    for device, over in devices.items():
        d, w = base_d.copy(), base_w.copy()
        for i, v in over.get("durations", {}).items():
            d[i] = v
        for i, v in over.get("egress", {}).items():
            w[i] = v
        runs.append(DeviceRun(device, prog, d, w, w.copy()))
        engine.start(runs[-1])
    env.run()
    timeline = sorted((round(r[6], 12), round(r[7], 12), r[0], r[2]) for r in trace)
    return timeline, max(r.end_s for r in runs)


def tiny_scenario(devices: int = 8, *, dropless: bool = False, model_changes: dict | None = None,
                  **training) -> Scenario:
    """The tiny decoder-only MoE (16 experts, top-2) on H100s; dropless on request."""
    model = load_model(str(TINY_MODEL))
    moe_changes = dict(model_changes or {})
    if dropless:
        moe_changes["capacity_rule"] = "dropless"
    if moe_changes:
        model = dataclasses.replace(model, moe=dataclasses.replace(model.moe, **moe_changes))
    base = dict(global_batch_sequences=16, seq_len=1024)
    base.update(training)
    return Scenario(name="tiny-moe", model=model, hardware=load_hardware("h100-sxm"), devices=devices,
                    training=TrainingSpec(**base))


def pipeline_send_engines(changes: dict[str, dict]) -> dict[str, tuple[float, float, float, float]]:
    """Both engines on tiny_scenario(16) at pp=2, dp=8, ep=8 (a pipeline send between two H100 nodes), under
    model_for(scenario) with each entry's fields replaced ({name: {field: value}}; {} = as shipped): {name: (simulated
    step s, analytical step s, the estimate's per-call pipeline send s, the simulator's first send_forward s)}. One copy
    for tests/collectives' checks that an option moves both engines' pipeline send together (session 11, tidy)."""
    from moesim.collectives.select import model_for
    from moesim.des import SimOptions, simulate
    from moesim.des.costs import build_costs
    from moesim.estimate import estimate
    from moesim.specs.layout import Layout

    sc = tiny_scenario(16, global_batch_sequences=64, micro_batches=4)
    layout = Layout(pp=2, dp=8, ep=8)
    out = {}
    for name, fields in changes.items():
        model = dataclasses.replace(model_for(sc), **fields) if fields else model_for(sc)
        result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False),
                          collective_model=model)
        est = estimate(sc, layout, collective_model=model)
        costs = build_costs(sc, layout, sc.training, model, est.optimizer_time_s)
        sends = [st.send_forward for st in costs.stages if st.send_forward is not None]
        per_call = est.communication["pp_send_recv"]["time_s"] / est.communication["pp_send_recv"]["calls_per_step"]
        out[name] = (result.step_times_s[0], result.analytical_step_time_s, per_call, sends[0].time_s)
    return out
