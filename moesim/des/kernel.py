"""The fast engine: engine.py's semantics without simpy's per-event cost, over folded devices.

Same model as `moesim.des.engine` (read it first): streams run their operations in order, an
operation waits for its dependencies and its pipeline receive; compute holds the stream; a
collective waits for its group, pays T(0), then moves each member's egress and ingress as flows
paced at the model's rate and shared max-min fairly on links (network.py); a send is one flow over
both ports. What differs is how it is computed:

- Compute does not touch the network, so a stream's compute operations are resolved as a
  dataflow (start = max(stream free, dependencies' ends, receive), end = start + duration) the
  moment their inputs are known, with no event at all. Only the network needs time order: one
  heap of (time, sequence, action) holds collective launches, flow ends and pipeline transfers.
  Every time derived from an event is at or after that event's time, so the heap never receives
  the past, and the result is the simpy engine's (asserted on small cases, tests/des/test_des_fold.py).
- Devices are a `Fold` (fold.py): the simulated ones stand for classes; a collective waits for one
  representative per class in its group, a flow counts once per class member behind a link.
- Links and flows: flows.py (network.py's max-min sharing, with lazy ends for flows alone).
- Bookkeeping is flat: per device one array of operation end times, durations and the bytes
  routing loads set (variation.StageWork); a counter of events (operations completed + heap events).
"""

from __future__ import annotations

import heapq
from array import array

import numpy as np

from moesim.des.fabric import PortFabric
from moesim.des.fold import Fold
from moesim.des.flows import FlowSharing
from moesim.des.forwards import ForwardStages
from moesim.estimate.embedding_sync import EMBEDDING_AXIS
from moesim.des.schedule import COLLECTIVE, COMPUTE, StageProgram

_COMPUTE, _COLLECTIVE, _SEND = 0, 1, 2
_PLAIN, _PLAIN_NEEDED, _STEP_COMPUTE, _STEP_COLLECTIVE, _STEP_SEND = 0, 1, 2, 3, 4  # Compiled.step
_NAN = float("nan")
PROGRESS_EVERY = 20_000  # heap events between progress reports


class Compiled:
    """A stage program as flat lists, shared by every device of the stage."""

    def __init__(self, program: StageProgram, cols) -> None:
        ops = program.ops
        self.program = program
        self.ops = ops
        self.kind = [_COMPUTE if op.kind == COMPUTE else _COLLECTIVE if op.kind == COLLECTIVE else _SEND for op in ops]
        self.deps = [op.deps for op in ops]
        self.recv = [op.recv for op in ops]
        self.streams = [(name, list(idx)) for name, idx in program.streams.items()]
        self.col = [-1] * len(ops)
        for k, i in enumerate(cols):
            self.col[int(i)] = k
        # compute with nothing to wait for but its stream: resolved in a tight loop
        self.plain = [op.kind == COMPUTE and not op.deps and op.recv is None for op in ops]
        self.needed = [i in program.needed for i in range(len(ops))]
        # what _advance does with each operation, in one lookup: plain compute (needed or not by another
        # stream), compute that waits, a collective, a send; traced runs record every compute (no plain path)
        self.step = [(_PLAIN_NEEDED if self.needed[i] else _PLAIN) if self.plain[i]
                     else _STEP_COMPUTE if k == _COMPUTE else _STEP_COLLECTIVE if k == _COLLECTIVE else _STEP_SEND
                     for i, k in enumerate(self.kind)]
        self.step_traced = [_STEP_COMPUTE if c <= _PLAIN_NEEDED else c for c in self.step]
        self.comm = [op.comm for op in ops]
        if len(ops) >= 1 << 24:
            raise ValueError("a stage program of 2**24 operations or more: collective instance keys would collide")


def _doubles(values) -> array:
    """A compact array of floats (indexing gives Python floats, fast), from a float64 numpy array."""
    out = array("d")
    out.frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return out


class Device:
    """One simulated device: its work and its progress."""

    __slots__ = ("device", "code", "dur", "wire", "egc", "inc", "weight", "end", "pos", "ready", "start",
                 "waiters", "busy_s", "end_s", "groups", "ws", "pairs")

    def __init__(self, device: int, code: Compiled, durations, wire, egress_cols, ingress_cols, weight: int) -> None:
        self.device, self.code, self.weight = device, code, weight
        self.dur = _doubles(durations)
        self.wire = wire
        self.egc = _doubles(egress_cols) if egress_cols is not None else None
        self.inc = _doubles(ingress_cols) if ingress_cols is not None else None
        self.end = array("d", [_NAN]) * len(durations)
        n = len(code.streams)
        # per stream: the position of its next operation, or ~position while that operation is in flight
        self.pos, self.ready, self.start = [0] * n, [0.0] * n, [0.0] * n
        self.waiters: dict[int, list[tuple]] = {}  # operation -> the (device, stream) work items waiting for it
        self.busy_s = 0.0
        self.end_s = 0.0
        self.groups: dict[str, tuple[int, int]] = {}  # axis -> (instance key base, representatives to wait for)
        self.ws = [(self, s) for s in range(n)]  # the work item of each stream, made once
        self.pairs: dict[int, tuple] = {}  # level -> the kernel's (egress path, ingress path, single)

    def bytes(self, i: int) -> tuple[float, float]:
        c = self.code.col[i]
        if c >= 0 and self.egc is not None:
            return self.egc[c], self.inc[c]
        w = self.wire[i]
        return w, w


class Kernel(FlowSharing, ForwardStages):
    """Runs Devices over the fabric's links; records trace tuples when `trace` is a list."""

    def __init__(self, fabric: PortFabric, fold: Fold, stride_pp: int, *, contention: bool,
                 trace: list | None = None) -> None:
        self.fabric, self.fold, self.stride_pp = fabric, fold, stride_pp
        self.contention, self.trace = contention, trace
        self.now = 0.0
        self.heap: list = []
        self.seq = 0
        self.events = 0
        self.ops_done = 0
        self.work: list = []  # (device, stream) to advance
        self.instances: dict[tuple, list] = {}
        self.arrivals: dict[tuple, float] = {}
        self.recv_waiting: dict[tuple, tuple] = {}
        self._paths: dict[tuple, tuple] = {}
        self._group_ids: dict[tuple, int] = {}  # fold.group's instance key -> group id
        self.devices: list[Device] = []
        self._forwards_alone: bool | None = None  # see forwards_alone
        self._init_links()

    # Structure -----------------------------------------------------------------------------------

    def path(self, direction: str, device: int, level: int) -> tuple[tuple[int, int], ...]:
        key = (direction, device, level)
        hit = self._paths.get(key)
        if hit is None:
            f = self.fabric
            links = f.egress(device, level) if direction == "egress" else tuple(reversed(f.ingress(device, level)))
            mates = f.mates(device, level)
            pairs = []
            for n, link in enumerate(links):
                canonical, weight = self.fold.link(link, mates[min(n, len(mates) - 1)], device, (level, direction, n))
                pairs.append((self._add_link(canonical), weight))
            hit = self._paths[key] = tuple(pairs) if direction == "egress" else tuple(reversed(pairs))
        return hit

    # Time ----------------------------------------------------------------------------------------

    def push(self, time_s: float, action, arg) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time_s, self.seq, action, arg))

    def run(self, devices: list[Device], progress=None) -> None:
        """Run every device to the end of its program; `progress(fraction of operations done)` now and then."""
        total = sum(len(d.dur) for d in devices) or 1
        self.devices = devices
        for d in devices:
            self.work.extend(d.ws)
        ops_before = self.ops_done
        self._drain()
        heap, work, advance = self.heap, self.work, self._advance
        pop, take = heapq.heappop, work.pop
        tick = 0
        while heap:
            time_s, _, action, arg = pop(heap)
            self.now = time_s
            action(arg)
            while work:  # _drain, inline
                d, s = take()
                advance(d, s)
            tick += 1
            if progress is not None and tick % PROGRESS_EVERY == 0:
                progress(min(self.ops_done / total, 1.0))
        self.events += tick + self.ops_done - ops_before  # one per heap event and per operation completed
        for d in devices:
            if d.waiters or any(p < len(idx) for p, (_, idx) in zip(d.pos, d.code.streams)):
                raise RuntimeError(f"device {d.device} did not finish its program (deadlock)")

    def _drain(self) -> None:
        work, advance = self.work, self._advance
        while work:
            d, s = work.pop()
            advance(d, s)

    def _wake(self, d: Device, i: int) -> None:
        w = d.waiters.pop(i, None)
        if w:
            self.work.extend(w)

    def complete(self, d: Device, i: int, end_s: float) -> None:
        d.end[i] = end_s
        self._wake(d, i)

    # Streams -------------------------------------------------------------------------------------

    def _advance(self, d: Device, s: int) -> None:
        code = d.code
        name, idx = code.streams[s]
        end = d.end
        pos = d.pos[s]
        trace = self.trace
        if pos < 0:  # woken by the end of the operation it issued
            i = idx[~pos]
            ready = end[i]
            if ready != ready:
                return  # still in flight
            pos = ~pos
            if trace is not None:
                self._record(d, name, i, d.start[s], ready)
            pos += 1
            done = 1
        else:
            ready = d.ready[s]
            done = 0
        step = code.step if trace is None else code.step_traced
        deps, dur, waiters = code.deps, d.dur, d.waiters
        n = len(idx)
        busy = d.busy_s
        while pos < n:
            i = idx[pos]
            c = step[i]
            if c <= _PLAIN_NEEDED:  # compute with nothing to wait for but its stream
                x = dur[i]
                ready += x
                busy += x
                end[i] = ready
                if c and i in waiters:
                    self._wake(d, i)
                pos += 1
                done += 1
                continue
            t = ready
            blocked = False
            for dep in deps[i]:
                e = end[dep]
                if e != e:
                    waiters.setdefault(dep, []).append(d.ws[s])
                    blocked = True
                    break
                if e > t:
                    t = e
            if blocked:
                break
            rv = code.recv[i]
            if rv is not None:
                key = (*rv, d.device)  # ("act" | "grad", mb, virtual stage, device), as pieces.py builds it
                a = self.arrivals.pop(key, None)  # read once: the operation goes ahead below
                if a is None:
                    self.recv_waiting[key] = d.ws[s]
                    break
                if a > t:
                    t = a
            if c == _STEP_COMPUTE:
                x = dur[i]
                e = t + x
                busy += x
                end[i] = e
                if i in waiters:
                    self._wake(d, i)
                if trace is not None:
                    self._record(d, name, i, t, e)
                ready = e
                pos += 1
                done += 1
                continue
            d.busy_s = busy
            d.start[s] = t
            waiters.setdefault(i, []).append(d.ws[s])
            d.pos[s] = ~pos
            d.ready[s] = ready
            self.ops_done += done
            if c == _STEP_COLLECTIVE:
                self._join(d, i, t)
            else:
                self._send(d, i, t)
            return
        d.busy_s = busy
        self.ops_done += done
        d.pos[s] = pos
        d.ready[s] = ready
        if pos == n and ready > d.end_s:
            d.end_s = ready

    def _record(self, d: Device, stream: str, i: int, start: float, end: float) -> None:
        op = d.code.ops[i]
        self.trace.append((d.device, stream, op.name, op.phase, op.layer, op.mb, start, end))

    # Collectives ---------------------------------------------------------------------------------

    def _join(self, d: Device, i: int, t: float) -> None:
        code = d.code
        spec = code.comm[i]
        base = d.groups.get(spec.axis)
        if base is None:  # the group as a small int: instance keys are ints, not tuples over the group's classes
            group, expected = self.fold.group(spec.axis, d.device)
            gid = self._group_ids.setdefault(group, len(self._group_ids))
            # The embedding group's one all-reduce joins two stages' programs: its key is the group's alone.
            stage = 0 if spec.axis == EMBEDDING_AXIS else code.program.stage << 24
            base = d.groups[spec.axis] = ((gid << 40) + stage, expected)
        # (group, stage, operation) as one int (Compiled keeps operations below 2**24)
        key = base[0] + (0 if spec.axis == EMBEDDING_AXIS else i)
        instances = self.instances
        inst = instances.get(key)
        if inst is None:
            inst = instances[key] = [t, []]
        elif t > inst[0]:
            inst[0] = t
        members = inst[1]
        c = code.col[i]
        if c >= 0 and d.egc is not None:
            members.append((d, i, t, d.egc[c], d.inc[c]))
        else:
            w = d.wire[i]
            members.append((d, i, t, w, w))
        if len(members) == base[1]:
            del instances[key]
            self._launch(members, spec, inst[0])

    def _launch(self, members: list, spec, start: float) -> None:
        level = self.fabric.level(spec.span)
        if spec.forward_bytes > 0:
            self._launch_stages(members, spec, start, level)
            return
        if not self.contention:
            cap = spec.cap_bytes_per_s
            for d, i, _, egress, ingress in members:
                self._account(self.path("egress", d.device, level), egress)
                self._account(self.path("ingress", d.device, level), ingress)
                most = max(egress, ingress)
                self.complete(d, i, start + (spec.latency_s + (most / cap if most > 0 else 0.0)))
            return
        self.push(start + spec.latency_s if spec.latency_s > 0 else start, self._flows,
                  (members, level, spec.cap_bytes_per_s, False))

    def _send(self, d: Device, i: int, t: float) -> None:
        op = d.code.ops[i]
        spec = op.comm
        peer = self.fold.rep(d.device + op.peer * self.stride_pp)
        level = self.fabric.level(spec.span)
        path = self.path("egress", d.device, level) + self.path("ingress", peer, level)
        # The receiver waits for ("act", mb, next piece) or ("grad", mb, previous piece) (schedule.py);
        # the direction is the phase, not the sign of the peer offset (interleaved wraps, DualPipe runs both ways).
        forward = op.phase == "fwd"
        key = ("act" if forward else "grad", op.mb, op.vs + (1 if forward else -1), peer)
        nbytes = d.bytes(i)[0]
        if not self.contention:
            self._account(path, nbytes)
            self._arrive(d, i, key, t + (spec.latency_s + nbytes / spec.cap_bytes_per_s))
            return
        self.push(t + spec.latency_s if spec.latency_s > 0 else t, self._start_send,
                  (path, nbytes, spec.cap_bytes_per_s, [1, d, i, key]))

    def _start_send(self, arg) -> None:
        path, nbytes, cap, done = arg
        f = self.transfer(path, nbytes, cap, done)
        if f is not None:
            self.push(f.end_s, self._lazy_end, (f,))

    def _arrive(self, d: Device, i: int, key, time_s: float) -> None:
        """A send's transfer (key: the receiver's ("act" | "grad", mb, piece, device)) or one stage of a DeepEP
        member (key: a part, forwards.py) has ended at `time_s`."""
        if key.__class__ is list:
            parent, label, start = key
            if label:
                op = d.code.ops[i]
                self.trace.append((d.device, op.stream, label, op.phase, op.layer, op.mb, start, time_s))
            parent[0] -= 1
            if parent[0] == 0:
                self.complete(d, i, time_s if time_s > parent[3] else parent[3])
            return
        self.complete(d, i, time_s)
        self.arrivals[key] = time_s
        waiting = self.recv_waiting.pop(key, None)
        if waiting is not None:
            self.work.append(waiting)

    def _flow_done(self, done: list) -> None:
        done[0] -= 1
        if done[0] == 0:
            if done[3] is None:
                self.complete(done[1], done[2], self.now)
            else:
                self._arrive(done[1], done[2], done[3], self.now)


__all__ = ["Compiled", "Device", "Kernel"]
