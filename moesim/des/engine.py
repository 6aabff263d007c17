"""The simpy engine: devices run their stage programs on streams; collectives meet and move bytes.

A device runs one simpy process per stream (compute, comm, p2p, grad); each process takes its
operations in order, waits for their dependencies, then
  compute      holds the stream for the kernel's duration;
  collective   joins the collective instance of its group (the group of the operation's mesh axis
               that holds the device): when every simulated member has joined, the collective pays
               its latency T(0), then each member moves its egress and ingress bytes as flows over its
               ports, paced at the model's rate (wire bytes / (T(S) − T(0))); a member is done when
               both of its flows are. Alone and balanced, that is exactly the model's T(S).
  send         a pipeline transfer to the neighbour stage's device: latency, then one flow over both
               ports; it also releases the receiver's operation that waits for it.
Without contention a member's flows are not shared: it finishes at T(0) + max(egress, ingress)/rate.
Ties resolve as simpy orders events (time, priority, insertion id); operations are created and
collectives joined in a fixed order, so runs are reproducible.

Every device is simulated here, each flow counting once on its links: folding identical devices into
one representative is the fast engine's (kernel.py, fold.py), tested against this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import simpy
from simpy.core import NORMAL

from moesim.des.costs import Costs
from moesim.des.fabric import PortFabric
from moesim.des.fold import group_members
from moesim.des.network import Link, Network
from moesim.estimate.embedding_sync import EMBEDDING_AXIS
from moesim.des.schedule import COMPUTE, COLLECTIVE, FORWARD_SUFFIX, Op, StageProgram


class CountingEnvironment(simpy.Environment):
    """simpy's Environment, counting the events it schedules."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def schedule(self, event, priority=NORMAL, delay=0) -> None:
        self.scheduled += 1
        super().schedule(event, priority, delay)


@dataclass
class DeviceRun:
    """One simulated device in one step: its program and its own durations and bytes."""

    device: int
    program: StageProgram
    durations_s: np.ndarray  # per operation (compute)
    egress_bytes: np.ndarray  # per operation (collective, send)
    ingress_bytes: np.ndarray
    weight: int = 1  # devices this one stands for: always 1 here (step.py reads both engines' runs alike)
    busy_s: float = 0.0
    end_s: float = 0.0
    done: list = field(default_factory=list)


@dataclass
class _Instance:
    expected: int
    members: list = field(default_factory=list)


def _after(env: simpy.Environment, delay_s: float, action: Callable[[], None]) -> None:
    if delay_s > 0:
        env.timeout(delay_s).callbacks.append(lambda _event: action())
    else:
        action()


class Engine:
    """Runs DeviceRuns over a network; records trace tuples when `trace` is a list."""

    def __init__(self, env: CountingEnvironment, network: Network, fabric: PortFabric, costs: Costs,
                 simulated: set[int], *, trace: list | None = None) -> None:
        self.env, self.network, self.fabric, self.costs = env, network, fabric, costs
        self.simulated, self.trace = simulated, trace
        self.contention = network.contention
        self.instances: dict[tuple, _Instance] = {}
        self.promises: dict[tuple, simpy.Event] = {}
        self._paths: dict[tuple, tuple] = {}
        self._expected: dict[tuple, int] = {}

    # Structure -----------------------------------------------------------------------------------

    def _group(self, axis: str, device: int) -> tuple[int, int]:
        """(first member, simulated members) of `device`'s group on `axis`."""
        members = group_members(self.costs.sizes, self.costs.strides, axis, device)
        key = (axis, members[0])
        if key not in self._expected:
            self._expected[key] = sum(1 for d in members if d in self.simulated)
        return members[0], self._expected[key]

    def _links(self, links: tuple[Link, ...]) -> tuple[tuple[int, int], ...]:
        return tuple((self.network.add_link(link), 1) for link in links)

    def path(self, direction: str, device: int, level: int) -> tuple[tuple[int, int], ...]:
        key = (direction, device, level)
        if key not in self._paths:
            links = self.fabric.egress(device, level) if direction == "egress" else self.fabric.ingress(device, level)
            self._paths[key] = self._links(links)
        return self._paths[key]

    def promise(self, key: tuple) -> simpy.Event:
        if key not in self.promises:
            self.promises[key] = self.env.event()
        return self.promises[key]

    # Running -----------------------------------------------------------------------------------

    def start(self, run: DeviceRun) -> None:
        prog = run.program
        run.done = [self.env.event() if i in prog.needed else None for i in range(len(prog.ops))]
        for stream, indices in prog.streams.items():
            self.env.process(self._stream(run, stream, indices))

    def _stream(self, run: DeviceRun, stream: str, indices: tuple[int, ...]):
        env, ops, done = self.env, run.program.ops, run.done
        trace = self.trace
        for i in indices:
            op = ops[i]
            for d in op.deps:
                if not done[d].processed:
                    yield done[d]
            if op.recv is not None:
                ev = self.promise((*op.recv, run.device))
                if not ev.processed:
                    yield ev
            start = env.now
            if op.kind == COMPUTE:
                duration = run.durations_s[i]
                yield env.timeout(duration)
                run.busy_s += duration
            elif op.kind == COLLECTIVE:
                yield self._join(run, op, run.egress_bytes[i], run.ingress_bytes[i])
            else:
                yield self._send(run, op, run.egress_bytes[i])
            if done[i] is not None:
                done[i].succeed()
            if trace is not None:
                trace.append((run.device, stream, op.name, op.phase, op.layer, op.mb, start, env.now))
        run.end_s = max(run.end_s, env.now)

    def _join(self, run: DeviceRun, op: Op, egress: float, ingress: float) -> simpy.Event:
        spec = op.comm
        base, expected = self._group(spec.axis, run.device)
        # The embedding group's one all-reduce joins two stages' programs: its key is the group's alone.
        key = (spec.axis, base) if spec.axis == EMBEDDING_AXIS else (run.program.stage, op.index, base)
        inst = self.instances.get(key)
        if inst is None:
            inst = self.instances[key] = _Instance(expected)
        done = self.env.event()
        inst.members.append((run.device, egress, ingress, done))
        if len(inst.members) == inst.expected:
            del self.instances[key]
            self._launch(inst.members, spec, op)
        return done

    def _launch(self, members: list, spec, op: Op) -> None:
        level = self.fabric.level(spec.span)
        cap = spec.cap_bytes_per_s
        # A DeepEP all-to-all across nodes also moves its NVLink forwards on level 0, each side the network's
        # bytes × forward / wire bytes, paced at their own stage's time (forwards.ForwardStages._launch_stages).
        ratio = spec.forward_bytes / spec.wire_bytes if spec.forward_bytes > 0 and spec.wire_bytes > 0 else 0.0
        forward_cap = spec.forward_cap_bytes_per_s
        if not self.contention:
            by_delay: dict[float, list] = {}
            for device, egress, ingress, done in members:
                self.network.account(self.path("egress", device, level), egress)
                self.network.account(self.path("ingress", device, level), ingress)
                delay = spec.latency_s + (max(egress, ingress) / cap if max(egress, ingress) > 0 else 0.0)
                if ratio:
                    self.network.account(self.path("egress", device, 0), egress * ratio)
                    self.network.account(self.path("ingress", device, 0), ingress * ratio)
                    most = max(egress, ingress) * ratio
                    forward = spec.latency_s + (most / forward_cap if most > 0 else 0.0)
                    self._trace_forwards(device, op, self.env.now + spec.latency_s, self.env.now + forward)
                    delay = max(delay, forward)
                by_delay.setdefault(delay, []).append(done)
            for delay, events in by_delay.items():
                _after(self.env, delay, lambda evs=events: [e.succeed() for e in evs])
            return

        def flows() -> None:
            for device, egress, ingress, done in members:
                parts = [self.network.transfer(self.path("egress", device, level), egress, cap),
                         self.network.transfer(self.path("ingress", device, level), ingress, cap)]
                if ratio:
                    nvlink = [self.network.transfer(self.path("egress", device, 0), egress * ratio, forward_cap),
                              self.network.transfer(self.path("ingress", device, 0), ingress * ratio, forward_cap)]
                    if self.trace is not None:
                        traced = self.env.event()
                        traced.callbacks.append(lambda _e, dev=device, t0=self.env.now: self._trace_forwards(
                            dev, op, t0, self.env.now))
                        _all_then(nvlink, traced)
                    parts += nvlink
                _all_then(parts, done)

        _after(self.env, spec.latency_s, flows)

    def _trace_forwards(self, device: int, op: Op, start_s: float, end_s: float) -> None:
        """Record a DeepEP member's NVLink stage (from T(0) to its forwards' end) when tracing, as the fast
        engine does."""
        if self.trace is not None:
            self.trace.append((device, op.stream, op.name + FORWARD_SUFFIX, op.phase, op.layer, op.mb, start_s, end_s))

    def _send(self, run: DeviceRun, op: Op, nbytes: float) -> simpy.Event:
        spec = op.comm
        peer = run.device + op.peer * self.costs.strides["pp"]
        level = self.fabric.level(spec.span)
        path = self.path("egress", run.device, level) + self.path("ingress", peer, level)
        # The receiver waits for ("act", mb, next piece) or ("grad", mb, previous piece) (schedule.py).
        forward = op.phase == "fwd"
        arrived = self.promise(("act" if forward else "grad", op.mb, op.vs + (1 if forward else -1), peer))
        done = self.env.event()

        def finish(_event=None) -> None:
            done.succeed()
            arrived.succeed()

        if not self.contention:
            self.network.account(path, nbytes)
            _after(self.env, spec.latency_s + nbytes / spec.cap_bytes_per_s, finish)
        else:
            _after(self.env, spec.latency_s,
                   lambda: self.network.transfer(path, nbytes, spec.cap_bytes_per_s).callbacks.append(finish))
        return done


def _all_then(events: list[simpy.Event], done: simpy.Event) -> None:
    """Trigger `done` once every event in `events` has fired."""
    left = [len(events)]

    def one(_event) -> None:
        left[0] -= 1
        if left[0] == 0:
            done.succeed()

    for ev in events:
        ev.callbacks.append(one)


__all__ = ["CountingEnvironment", "DeviceRun", "Engine"]
