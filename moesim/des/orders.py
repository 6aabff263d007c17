"""Which micro-batch chunk each pipeline device runs when: the order of one step, per schedule.

Notation: p pipeline devices (pp), m micro-batches, v virtual stages (model chunks) per device
(layout `vp`). The model is cut into V contiguous pieces ("virtual stages", vs = 0..V−1 along a
micro-batch's path); a device runs a list of `Slot`s in order:
  F  forward of one piece for one micro-batch
  B  full backward (input and weight gradients together)
  I  input-gradient backward only (ZB's "B"); its weight-gradient part W runs later
  W  weight-gradient pass of an earlier I (first in, first out)
  FB forward of (mb, vs) overlapped with the backward (`pair`) of another micro-batch (DualPipe; interleaved
     with the EP A2A overlap)

Pieces and devices per schedule (`virtual_stages`, `device_of`):
  1f1b, gpipe, zb-h1   V = p, piece s on device s
  interleaved          V = p·v, piece c·p + d on device d (Megatron, arXiv 2104.04473 §2.2.2)
  zb-v                 V = 2p, pieces d and 2p−1−d on device d (a "V"; Qi et al. ICLR'24 §6)
  dualpipe             V = p per direction; micro-batches 0..m/2−1 enter at device 0, the rest at
                       device p−1 and walk back (two model copies; DeepSeek-V3 §3.2.1)
Orders:
  1f1b / gpipe   Megatron's warm-up rule (p − d − 1 forwards, then one forward / one backward)
  interleaved    Megatron's `forward_backward_pipelining_with_interleaving`: warm-up
                 2(p − d − 1) + (v − 1)·p forwards; forward k runs chunk ⌊k/p⌋ mod v of micro-batch
                 ⌊k/(p·v)⌋·p + k mod p; backward k the chunk v − 1 − ⌊k/p⌋ mod v. With the EP A2A overlap
                 (training.moe_a2a_overlap) one more warm-up forward and every steady-state forward-backward
                 an FB slot (Megatron-Core's combined 1F1B); 1f1b at p = 1 with the overlap: that order at
                 v = 1 (F0, then forward i beside backward i − 1, then the last backward: Megatron-Core's
                 combined_1f1b_schedule_for_no_pipelining)
  zb-h1          greedy list scheduling on equal unit times (the paper's handcrafted shape): a device runs, when
                 free, a ready I before a ready F before a pending W; an F waits while the device holds 1F1B's
                 p − d pieces not yet consumed by their I. It reaches ZB-H1's (p−1)(F+B−W).
  zb-v           sail-sg's V scheduler (zerobubble/scheduler/zbv.py @ 39f2c186; moesim.des.zbv_order) on a
                 stage's F, I, W times when the caller gives them (the source runs it on profiled times, the median
                 device's for every piece): a W goes into a device's wait only where it ends before the input the
                 device waits for arrives (zbv.py l.186, l.224). Before session 22 (zbvslot) a greedy list schedule
                 on one F : I : W ratio for every piece, up to 28 % slower than the source's at p 8, m 9, B = 2F
                 (110 against 86 units). At equal times and m >= 2p every device, once started, runs without a gap to
                 its last W (the paper's zero bubble); a step that starts synchronised still pays the V's start-up
                 skew (p−1)·F/2 (the last device waits for p − 1 half-stage forwards), which the paper removes by not
                 synchronising before the optimizer step ("optimizer post-validation": the all-reduce "breaks
                 parallelogram and makes zero bubble impossible", sail-sg/zero-bubble-pipeline-parallelism README).
  dualpipe       the eight steps of `deepseek-ai/DualPipe:dualpipe/dualpipe.py@3da1bbea` (`step`):
                 nF0, nF0F1, nB1W1F1, nF0B1F1B0 (main, overlapped pairs), nB1F1B0, nB1B0, nWB0, nW.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from moesim.des.zbv_order import DEFAULT_MEMORY, zbv_orders
from moesim.estimate.schedules import interleaved_order

SCHEDULES = ("1f1b", "gpipe", "interleaved", "zb-h1", "zb-v", "dualpipe")


@dataclass(frozen=True)
class Slot:
    """One chunk of work on a device: `kind` of micro-batch `mb` on virtual stage `vs`."""

    kind: str  # F | B | I | W | FB
    mb: int
    vs: int
    pair: tuple[str, int, int] | None = None  # FB: the overlapped backward (kind B or I, mb, vs)


def virtual_stages(schedule: str, pp: int, vp: int) -> int:
    """V, the pieces along one micro-batch's path."""
    if schedule == "interleaved":
        return pp * vp
    if schedule == "zb-v":
        return 2 * pp
    return pp


def device_of(schedule: str, pp: int, vs: int, mb: int, micro_batches: int) -> int:
    """The pipeline device that runs piece `vs` of micro-batch `mb`."""
    if schedule == "interleaved":
        return vs % pp
    if schedule == "zb-v":
        return vs if vs < pp else 2 * pp - 1 - vs
    if schedule == "dualpipe" and mb >= micro_batches // 2:
        return pp - 1 - vs
    return vs


def device_order(schedule: str, micro_batches: int, pp: int, vp: int, device: int,
                 times: tuple[float, float, float] | None = None, a2a_overlap: bool = False, send_s: float = 0.0,
                 memory: tuple[int, int] = DEFAULT_MEMORY) -> list[Slot]:
    """The slots device `device` runs in one step, in order (module docstring). ZB-V's order is built on `times` =
    (F, I, W) of a device's stage per micro-batch, half of it a piece (equal times without), with `send_s` one
    pipeline transfer and `memory` = (f_mem, w_mem) of a piece's activations (moesim.des.zbv_order). `a2a_overlap`:
    interleaved, or 1f1b at pp 1, with Megatron-Core's EP A2A overlap (training.moe_a2a_overlap)."""
    m, p = micro_batches, pp
    if schedule == "1f1b" and a2a_overlap and p == 1:
        # Megatron-LM d98e8a64 combined_1f1b.py l.35-135 combined_1f1b_schedule_for_no_pipelining: F0 alone, then
        # forward i with backward i − 1 (FB), the last backward alone: the interleaved order at p = v = 1
        return _interleaved(m, 1, 1, 0, True)
    if schedule in ("1f1b", "gpipe"):
        if schedule == "gpipe":
            return [Slot("F", i, device) for i in range(m)] + [Slot("B", i, device) for i in range(m)]
        warm = min(p - device - 1, m)
        order = [Slot("F", i, device) for i in range(warm)]
        for i in range(m - warm):
            order += [Slot("F", warm + i, device), Slot("B", i, device)]
        return order + [Slot("B", i, device) for i in range(m - warm, m)]
    if schedule == "interleaved":
        return _interleaved(m, p, vp, device, a2a_overlap)
    if schedule == "zb-h1":  # the paper's handcrafted 1F1B-with-deferred-W shape: equal times
        return list(_greedy_h1(m, p)[device])
    if schedule == "zb-v":
        piece = tuple(x / 2 for x in times) if times is not None else (1.0, 1.0, 1.0)
        return [Slot(*slot) for slot in zbv_orders(m, p, piece, send_s if times is not None else 0.0, memory)[device]]
    if schedule == "dualpipe":
        return _dualpipe(m, p, device)
    raise ValueError(schedule)


def _interleaved(m: int, p: int, v: int, d: int, a2a_overlap: bool = False) -> list[Slot]:
    # Megatron-LM schedules.py get_pp_rank_microbatches: with the EP A2A overlap one more warm-up forward, so that
    # each steady-state forward runs with an independent backward (combined 1F1B: an FB slot, as DualPipe's); the
    # order is moesim.estimate.schedules.interleaved_order, the one both engines run (session 23, slotwalk)
    order = []
    for f, b in interleaved_order(m, p, v, d, a2a_overlap):
        if f is not None and b is not None:
            order.append(Slot("FB", *f, pair=("B", *b)))
        else:
            order.append(Slot("F", *f) if f is not None else Slot("B", *b))
    return order


@lru_cache(maxsize=64)
def _greedy_h1(m: int, p: int) -> tuple[tuple[Slot, ...], ...]:
    """ZB-H1's greedy list schedule of F, I, W on equal unit times for every device (module docstring); device d
    runs piece d alone."""
    done: dict[tuple[str, int, int], float] = {}
    clock = [0.0] * p
    orders: list[list[Slot]] = [[] for _ in range(p)]
    next_f, next_i = [0] * p, [0] * p  # each device's next forward and input gradient (its forwards, its I's)
    waiting_w: list[list[tuple[int, int]]] = [[] for _ in range(p)]
    left = 3 * m * p
    while left:
        best = None
        for d in range(p):
            now, options = clock[d], []
            i = next_i[d]
            if i < m and ("F", i, d) in done:
                ready = done[("F", i, d)] if d == p - 1 else done.get(("I", i, d + 1))
                if ready is not None:
                    options.append((max(ready, now), 0, -d, "I", i, d))
            f = next_f[d]
            if f < m and f - i < p - d:  # 1F1B's in-flight pieces
                ready = 0.0 if d == 0 else done.get(("F", f, d - 1))
                if ready is not None:
                    options.append((max(ready, now), 1, -d, "F", f, d))
            if waiting_w[d]:
                options.append((now, 2, 0, "W", *waiting_w[d][0]))
            if not options:
                continue
            ready_now = [o for o in options if o[0] <= now]
            pick = min(ready_now, key=lambda o: o[1:3]) if ready_now else min(options)
            if best is None or pick[0] < best[1][0]:
                best = (d, pick)
        d, (start, _, _, kind, mb, vs) = best
        clock[d] = start + 1.0
        done[(kind, mb, vs)] = clock[d]
        orders[d].append(Slot(kind, mb, vs))
        left -= 1
        if kind == "F":
            next_f[d] = mb + 1
        elif kind == "I":
            next_i[d] = mb + 1
            waiting_w[d].append((mb, vs))
        else:
            waiting_w[d].pop(0)
    return tuple(tuple(o) for o in orders)


def _dualpipe(m: int, p: int, rank: int) -> list[Slot]:
    """DualPipe's eight steps for `rank` (module docstring); m ≥ 2p, m and p even."""
    half_ranks, half = p // 2, min(rank, p - 1 - rank)
    second = rank >= half_ranks
    middle = half == half_ranks - 1
    count = {"F": [0, 0], "B": [0, 0]}
    weights: list[tuple[int, int]] = []
    order: list[Slot] = []

    def where(phase: int) -> tuple[int, int]:
        direction = phase ^ second
        return direction, (rank if direction == 0 else p - 1 - rank)

    def take(kind: str, phase: int) -> tuple[int, int]:
        direction, vs = where(phase)
        n = count[kind][direction]
        count[kind][direction] += 1
        return n + direction * (m // 2), vs

    def forward(phase: int) -> None:
        order.append(Slot("F", *take("F", phase)))

    def backward(phase: int, zb: bool = False) -> None:
        mb, vs = take("B", phase)
        order.append(Slot("I" if zb else "B", mb, vs))
        if zb:
            weights.append((mb, vs))

    def weight() -> None:
        order.append(Slot("W", *weights.pop(0)))

    def overlapped(f_phase: int, b_phase: int) -> None:
        mb_f, vs_f = take("F", f_phase)
        mb_b, vs_b = take("B", b_phase)
        order.append(Slot("FB", mb_f, vs_f, ("B", mb_b, vs_b)))

    for _ in range((half_ranks - half - 1) * 2):  # 1: nF0
        forward(0)
    for _ in range(half + 1):  # 2: nF0F1
        forward(0)
        forward(1)
    for _ in range(half_ranks - half - 1):  # 3: nB1W1F1
        backward(1, zb=True)
        weight()
        forward(1)
    for i in range(m // 2 - p + half + 1):  # 4: nF0B1F1B0
        if i == 0 and middle:
            forward(0)
            backward(1)
        else:
            overlapped(0, 1)
        overlapped(1, 0)
    for _ in range(half_ranks - half - 1):  # 5: nB1F1B0
        backward(1)
        overlapped(1, 0)
    zb = False
    steps = half + 1
    for i in range(steps):  # 6: nB1B0, the second half with zero bubble
        if i == steps // 2 and half % 2 == 1:
            zb = True
        backward(1, zb)
        if i == steps // 2 and half % 2 == 0:
            zb = True
        backward(0, zb)
    for _ in range(half_ranks - half - 1):  # 7: nWB0
        weight()
        backward(0, zb=True)
    for _ in range(half + 1):  # 8: nW
        weight()
    return order


def order_makespan(schedule: str, micro_batches: int, pp: int, vp: int, f_s: float, b_s: float, w_s: float) -> float:
    """Step time of the orders when a device's stage takes F = f_s, I = b_s, W = w_s per micro-batch
    (split evenly over its pieces; B = I + W, FB = F + B), transfers free and each slot starting once
    its inputs are there: the pure schedule whose bubble the published formulas give."""
    return max(end for _, end in device_spans(schedule, micro_batches, pp, vp, f_s, b_s, w_s))


def device_spans(schedule: str, micro_batches: int, pp: int, vp: int, f_s: float, b_s: float,
                 w_s: float, piece_times: tuple[tuple[float, float, float], ...] | None = None
                 ) -> list[tuple[float, float]]:
    """(start of the first slot, end of the last) per device, as `order_makespan` runs the orders. A device
    busy from start to end without a gap has end − start = m·(F + I + W): the zero-bubble schedules'
    "parallelogram" (Qi et al.), whose bubble the synchronised step adds only at its two ends. `piece_times`:
    (F, I, W) of each piece in place of the even split (the orders are still built on f_s, b_s, w_s)."""
    m, p = micro_batches, pp
    V = virtual_stages(schedule, p, vp)
    share = p / V
    time = {"F": f_s * share, "I": b_s * share, "W": w_s * share, "B": (b_s + w_s) * share}
    orders = [device_order(schedule, m, p, vp, d, (f_s, b_s, w_s)) for d in range(p)]
    done: dict[tuple[str, int, int], float] = {}
    clock, position = [0.0] * p, [0] * p
    first: list[float | None] = [None] * p

    def ready(kind: str, mb: int, vs: int) -> float | None:
        if kind == "F":
            return 0.0 if vs == 0 else done.get(("F", mb, vs - 1))
        if kind == "W":
            return 0.0
        if ("F", mb, vs) not in done:
            return None
        return done[("F", mb, vs)] if vs == V - 1 else done.get(("B", mb, vs + 1))

    left = sum(len(o) for o in orders)
    while left:
        moved = False
        for d in range(p):
            if position[d] == len(orders[d]):
                continue
            slot = orders[d][position[d]]
            items = [("F" if slot.kind == "FB" else slot.kind, slot.mb, slot.vs)] + ([slot.pair] if slot.pair else [])
            starts = [ready(*item) for item in items]
            if any(t is None for t in starts):
                continue
            begin = max([clock[d], *starts])
            first[d] = begin if first[d] is None else first[d]
            clock[d] = begin + sum(time[item[0]] if piece_times is None else _piece_time(piece_times, *item)
                                   for item in items)
            for kind, mb, vs in items:
                done[("B" if kind in ("B", "I") else kind, mb, vs)] = clock[d]
            position[d] += 1
            left -= 1
            moved = True
        if not moved:
            raise ValueError(f"{schedule}: the orders wait on each other (m={m}, pp={p}, vp={vp})")
    return [(first[d] or 0.0, clock[d]) for d in range(p)]


def _piece_time(piece_times, kind: str, mb: int, vs: int) -> float:
    f, i, w = piece_times[vs]
    return {"F": f, "I": i, "W": w, "B": i + w}[kind]


def grad_passes_per_piece(slots) -> dict[int, int]:
    """Weight-gradient passes (B, W, and an F&B pair's B) of each piece a device runs in one step: a piece's gradients
    are final after its last one. An F&B slot's `pair` is (kind, mb, vs): its piece is pair[2] (before session 20 the
    pair's micro-batch was read as its piece, so a DualPipe piece's gradients flushed one or more passes early)."""
    passes = [s.vs for s in slots if s.kind in ("B", "W")] + \
        [s.pair[2] for s in slots if s.kind == "FB" and s.pair[0] == "B"]
    return {vs: passes.count(vs) for vs in dict.fromkeys(passes)}


def pipeline_order(schedule: str, micro_batches: int, pp: int, stage: int) -> list[tuple[str, int]]:
    """("F"|"B", micro-batch) in execution order on `stage`: GPipe or 1F1B (Megatron's warm-up rule)."""
    return [(s.kind, s.mb) for s in device_order(schedule, micro_batches, pp, 1, stage)]


__all__ = ["SCHEDULES", "Slot", "device_of", "device_order", "device_spans", "grad_passes_per_piece", "order_makespan",
           "pipeline_order", "virtual_stages"]
