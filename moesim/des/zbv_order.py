"""ZB-V's order as sail-sg's V scheduler builds it, on one piece's F, I and W times (the median device's).

Source: sail-sg/zero-bubble-pipeline-parallelism @ 39f2c186,
megatron/core/pipeline_parallel/zerobubble/scheduler/zbv.py (`PipelineGraph.try_v_schedule`, l.31-252, and
`create_schedule`, l.282-298), read and written again here in moesim's words (no code copied). Device d holds the V's
pieces d (first leg) and 2p − 1 − d (second leg); a list of slots per device is built by a walk in five passes, each
slot starting when its device is free and its input has arrived (the cross-device input's end plus one send, `send`):
  1. every device runs micro-batch 0's first-leg F, device 0 first (l.121-122);
  2. from the last device back to device 0: while the V's return for micro-batch 0 has not reached device d, and the
     device holds at most 2p − 2 − 2d activations, one more first-leg F on devices 0 … d; then d's second-leg F
     (l.123-131);
  3. down the devices, forwards alternately of the two legs from the last device to device d until d has as many
     forwards as d − 1 and at least one second-leg forward more (l.132-143, the leg carried across devices);
  4. 2m rounds of one backward (I) on every device, second-leg I's first in device order, first-leg I's (once the
     neighbour's has run) from the last device back (l.155-194), then one forward on every device, first leg unless
     the second leg's input is there (l.196-230). Before each I or F, pending W's (first in, first out) fill the wait
     for its input while a W ends before the input arrives (l.186, l.224), and one W more where the wait exceeds
     the device's share of the largest bubble so far (l.189-193, l.227-229: after an I always for the first leg and
     under `fill_b` for the second, after an F under `fill_f`); an F waits for W's while the device's activation
     memory would pass 2p forwards' (l.216-218; one F holds f_mem, an I frees f_mem + w_mem and its W the rest:
     runtime.py l.1336-1338 sets f_mem = 34h + 5·a·s, w_mem = −32h, max_mem = 2p·f_mem by default, l.23);
  5. every device runs its remaining W's (l.232-234).
A device's bubble is its idle time once it has run its first forward (l.96-97). The walk is repeated with the
bubbles it found as the "approved" ones while the largest falls (l.239-249), and `create_schedule` keeps the least
largest bubble of fill_b, fill_f in (True, True), (True, False), (False, True), (False, False) (l.285-294).

The times: sail-sg runs the walk on one set, for every piece, the median over devices of each device's mean F, B, W
(runtime.py l.1507-1511 `avg_then_mid`, sorted(a)[len(a) // 2]); so does moesim (des.schedule.zbv_stage_times). Each
piece's own times were tried (session 22, zbvslot) and refused: the walk's passes 3 and 4 place forwards by counts
alone, which at equal times always find their input placed, and with the Llama-3-70B slice's heavier ends (m 8) one
forward came before its input (the source asserts it, zbv.py l.93). sail-sg reads a missing cross-device input
(fa_id = −1) as `end_time[-1]`, the last node's end, −1 until the very last W is placed: here no input means no wait
to fill (the same walk as zbv.py's over 1,170 (p, m, F, B, W) points, p 2-16, m 1 … 2p + 2, 3p and 4p, c = 0: every
order identical).
Times are turned into integers exactly (a float is an integer times a power of two; all share the smallest power),
so that sums and ties compare as the source's integer costs do.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

# sail-sg runtime.py l.1336-1338: f_mem_approx = 34h + 5·a·s, w_mem_approx = −32h (h hidden, a heads, s sequence)
F_MEM_PER_HIDDEN, F_MEM_PER_HEAD_TOKEN, W_MEM_PER_HIDDEN = 34, 5, -32
KINDS = ("F", "I", "W")
# sail-sg examples/pretrain_zero_bubble.sh l.50-51, l.79 (its default run): hidden 8192, 64 heads, sequence 4096;
# the orders without a model (des.orders.order_makespan) take its activation sizes
DEFAULT_SHAPE = {"hidden": 8192, "heads": 64, "seq_len": 4096}


def activation_memory(hidden: int, heads: int, seq_len: int) -> tuple[int, int]:
    """(f_mem, w_mem) of one micro-batch's piece as sail-sg's runtime approximates them (runtime.py l.1336-1337)."""
    return F_MEM_PER_HIDDEN * hidden + F_MEM_PER_HEAD_TOKEN * heads * seq_len, W_MEM_PER_HIDDEN * hidden


DEFAULT_MEMORY = activation_memory(**DEFAULT_SHAPE)


def zbv_orders(m: int, p: int, piece: tuple[float, float, float], send: float = 0.0,
               memory: tuple[int, int] = DEFAULT_MEMORY) -> tuple[tuple[tuple[str, int, int], ...], ...]:
    """(kind, micro-batch, piece) in order for every device: `piece` = (F, I, W) of one piece (every piece alike),
    `send` one pipeline transfer in the same unit, `memory` = (f_mem, w_mem) (module docstring)."""
    ratios = [float(x).as_integer_ratio() for x in (*piece, send)]
    if len(piece) != 3 or any(n < 0 for n, _ in ratios):
        raise ValueError(f"zb-v order: a piece's (F, I, W) must be three times >= 0, got {piece} and send {send}")
    scale = max(den for _, den in ratios)  # every denominator is a power of two: each divides the largest
    steps = [n * (scale // den) for n, den in ratios]
    return _orders(m, p, tuple(steps[:3]), steps[3], tuple(int(x) for x in memory))


@lru_cache(maxsize=64)
def _orders(m: int, p: int, steps: tuple, send: int, memory: tuple[int, int]):
    best = None
    for fill_b in (True, False):
        for fill_f in (True, False):
            walk = _Walk(m, p, steps, send, memory, fill_b, fill_f).best()
            if best is None or walk.largest_bubble() < best.largest_bubble():
                best = walk
    return tuple(tuple(order) for order in best.orders)


class _Walk:
    """One pass of sail-sg's V scheduler (zbv.py `try_v_schedule`); `approved`: the bubbles of the pass before."""

    def __init__(self, m, p, steps, send, memory, fill_b, fill_f, approved=None):
        self.m, self.p, self.steps, self.send = m, p, steps, send
        self.f_mem, self.w_mem = memory
        self.i_mem = -self.f_mem - self.w_mem
        self.max_mem = 2 * p * self.f_mem  # zbv.py l.23
        self.fill_b, self.fill_f, self.args = fill_b, fill_f, (m, p, steps, send, memory, fill_b, fill_f)
        self.approved = approved or [-1] * p
        self.clock, self.mem, self.bubble = [0] * p, [0] * p, [0] * p
        self.count = [{(k, leg): 0 for k in KINDS for leg in (0, 1)} for _ in range(p)]
        self.end: dict[tuple[str, int, int], int] = {}
        self.pending = [deque() for _ in range(p)]
        self.orders: list[list[tuple[str, int, int]]] = [[] for _ in range(p)]
        self._run()

    def best(self) -> "_Walk":
        """This pass, or a later one on its bubbles where the largest falls (zbv.py l.239-249)."""
        largest, approved = self.largest_bubble(), max(self.approved)
        if approved < 0 or largest < approved:
            again = _Walk(*self.args, approved=list(self.bubble)).best()
            if again.largest_bubble() < largest:
                return again
        return self

    def largest_bubble(self, d: int | None = None) -> int:
        """The largest bubble so far; for device d, at least the approved bubbles' gap above d's (zbv.py l.48-54)."""
        largest = max(0, *self.bubble)
        return largest if d is None else max(largest, max(self.approved) - self.approved[d])

    def piece(self, d: int, leg: int) -> int:
        return d if leg == 0 else 2 * self.p - 1 - d

    def source(self, kind: str, d: int, leg: int, mb: int) -> tuple[str, int, int] | None:
        """The slot on another device whose output (kind, mb, piece d's neighbour) this one waits for: an F on the
        piece before, an I on the piece after; None at the V's ends and its tip (one device holds both)."""
        vs = self.piece(d, leg)
        nb = vs - 1 if kind == "F" else vs + 1
        if nb < 0 or nb >= 2 * self.p or self.piece(d, 1 - leg) == nb:
            return None
        return kind, mb, nb

    def put(self, kind: str, d: int, leg: int, mb: int | None = None) -> None:
        mb = self.count[d][(kind, leg)] if mb is None else mb
        if mb >= self.m:
            raise AssertionError(f"zb-v order: {kind} of leg {leg} on device {d} past {self.m} micro-batches")
        vs = self.piece(d, leg)
        start = self.clock[d]
        src = self.source(kind, d, leg, mb) if kind != "W" else None
        if src is not None:
            if src not in self.end:
                raise AssertionError(f"zb-v order: {kind}{mb} of piece {vs} before its input {src}")
            start = max(start, self.end[src] + self.send)
        if self.count[d][("F", 0)] > 0:  # zbv.py l.96-97: idle counts once the device has started
            self.bubble[d] += start - self.clock[d]
        self.clock[d] = self.end[(kind, mb, vs)] = start + self.steps[KINDS.index(kind)]
        self.mem[d] += {"F": self.f_mem, "I": self.i_mem, "W": self.w_mem}[kind]
        self.orders[d].append((kind, mb, vs))
        self.count[d][(kind, leg)] += 1
        if kind == "I":
            self.pending[d].append((mb, leg))

    def put_w(self, d: int) -> None:
        mb, leg = self.pending[d].popleft()
        self.put("W", d, leg, mb)

    def fill(self, kind: str, d: int, leg: int, extra: bool) -> None:
        """W's before the next `kind` of `leg` on d while one ends before its input arrives (zbv.py l.186, l.224),
        and one more where the wait exceeds d's share of the largest bubble and `extra` (l.189-193, l.227-229)."""
        src = self.source(kind, d, leg, self.count[d][(kind, leg)])
        if src is None:
            return
        arrives = self.end[src] + self.send if src in self.end else None
        while self.pending[d] and arrives is not None and \
                arrives >= self.clock[d] + self.steps[2]:
            self.put_w(d)
        if self.pending[d] and arrives is not None and extra and \
                arrives - self.clock[d] > self.largest_bubble(d) - self.bubble[d]:
            self.put_w(d)

    def _run(self) -> None:
        m, p, c = self.m, self.p, self.count
        for d in range(p):  # 1 (l.121-122)
            self.put("F", d, 0)
        for d in range(p - 1, -1, -1):  # 2 (l.123-131)
            if d < p - 1:
                back = self.end[("F", 0, self.piece(d + 1, 1))] + self.send
                while self.mem[d] + self.f_mem * (2 + 2 * d) <= self.max_mem and \
                        self.clock[d] + self.steps[0] <= back and c[d][("F", 0)] < m:
                    for j in range(d + 1):
                        self.put("F", j, 0)
            self.put("F", d, 1)
        leg = 0
        for d in range(1, p):  # 3 (l.132-143)
            while sum(c[d][("F", g)] for g in (0, 1)) < sum(c[d - 1][("F", g)] for g in (0, 1)) or \
                    c[d][("F", 1)] <= c[d - 1][("F", 1)] < m:
                for j in range(p - 1, d - 1, -1):
                    if c[j][("F", leg)] < m:
                        self.put("F", j, leg)
                leg = 1 - leg
        for _ in range(2 * m):  # 4 (l.155-230)
            for d in range(p):
                while self.mem[d] + self.i_mem > self.max_mem:
                    self.put_w(d)
            first_leg, second_leg = [], []
            for d in range(p):
                if c[d][("I", 0)] >= c[d][("I", 1)]:
                    second_leg.append(d)
                elif d == p - 1 or ("I", c[d][("I", 0)], self.piece(d + 1, 0)) in self.end or c[d][("I", 1)] >= m:
                    first_leg.append(d)
                else:
                    second_leg.append(d)
            for d, leg in [(d, 0) for d in reversed(first_leg)] + [(d, 1) for d in second_leg]:
                self.fill("I", d, leg, leg == 0 or self.fill_b)
                self.put("I", d, leg)
            for d in range(p):
                leg = self._next_forward(d)
                if leg is None:
                    continue
                while self.mem[d] + self.f_mem > self.max_mem:
                    self.put_w(d)
                self.fill("F", d, leg, self.fill_f)
                self.put("F", d, leg)
        for d in range(p):  # 5 (l.232-234)
            while self.pending[d]:
                self.put_w(d)

    def _next_forward(self, d: int) -> int | None:
        """The leg of d's next forward in a round, or None (zbv.py l.197-214)."""
        c, m = self.count[d], self.m
        if c[("F", 1)] >= m:
            return None
        if c[("F", 1)] >= c[("F", 0)]:
            return 0
        if d == self.p - 1 or ("F", c[("F", 1)], self.piece(d + 1, 1)) in self.end:
            return 1
        if c[("F", 0)] < m and (d == 0 or ("F", c[("F", 0)], self.piece(d - 1, 0)) in self.end):
            return 0
        return None


__all__ = ["DEFAULT_MEMORY", "activation_memory", "zbv_orders"]
