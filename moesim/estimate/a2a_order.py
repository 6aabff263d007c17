"""Megatron-Core's EP A2A overlap as Megatron orders it: one forward chunk and another micro-batch's backward chunk,
layer by layer on two streams (training.moe_a2a_overlap; the estimate's price, the simulator's order in
moesim.des.pieces.overlapped).

Megatron-LM d98e8a64 megatron/core/models/common/model_chunk_schedule_plan.py: TransformerModelChunkSchedulePlan.run
pairs forward layer i with the backward's i-th layer from the end (`pop_layer`), and
TransformerLayerSchedulePlan.run issues each pair as

    comm stream: combine_bwd       | dispatch_fwd -> dispatch_bwd     | combine_fwd
    comp stream: pre_dispatch_fwd  | mlp_bwd -> mlp_bwd_dw -> mlp_fwd | pre_dispatch_bwd

each node waiting on its own micro-batch's previous node (one CUDA event per chunk, megatron/core/pipeline_parallel/
utils.py ScheduleNode.stream_acquire_context: event.wait, run, event.record) and each stream running its nodes in
the order issued: the layers stay aligned, no collective moves past its layer pair (DualPipe's list schedule,
moesim.des.pieces.pair_order, is not Megatron's). moesim's operators split at the EP all-to-alls into three
segments a pass: forward F0 (layer overhead, attention, router, permute) | dispatch | F1 (experts) | combine | F2
(unpermute, shared experts); backward B0 (recompute, layer overhead, shared experts, unpermute) | combine | B1
(experts) | dispatch | B2 (permute, router, attention), a MoE layer's backward kernels at their input-gradient share
(delay_wgrad_compute: 1 − W/backward each, the simulator's input-only scale) and its weight gradients off the chain:
W1 the experts' after B1 (mlp_bwd_dw), W2 the rest after B2 (pre_dispatch_computation.backward_dw: the shared experts'
and the attention's, megatron/core/models/common/utils.py _BackwardDWWrapper.backward_dw). On the compute stream
B0 F0 B1 W1 F1 B2 W2 F2, on the comm stream c_b d_f d_b c_f (the simulator's keys, moesim.des.schedule._Builder.add),
each operation after its chain's previous one: `layer_pairs_s` walks that, layer pair by layer pair. A dense layer is
one segment a pass, its W on the chain. The tp collectives run on the compute stream, inside the compute nodes that
issue them (the simulator's order runs them there too); the cp ring stays beside the attention it feeds.

The pipeline around the pairs (session 23, slotwalk): `slot_walk_s` walks the devices' slots of Megatron's
interleaved order (schedules.interleaved_order), each on its chunks' own times and each waiting on the pipeline sends
of its inputs as the simulator's p2p stream runs them; `walk_pipe_s` builds its inputs from the estimate's figures.
"""

from __future__ import annotations

import numpy as np

from functools import lru_cache

from moesim.estimate.pricing import grouped_rows
from moesim.estimate.schedules import interleaved_order, weight_grad_time_s

FWD_SEGMENTS = (("layer_overhead", "attention", "dense_ffn", "router", "permute"), ("expert_ffn",),
                ("unpermute", "shared_experts"))  # moesim.des.schedule layer_forward / _moe: F0 | F1 | F2
BWD_SEGMENTS = (("layer_overhead", "shared_experts", "unpermute"), ("expert_ffn",),
                ("permute", "router", "attention", "dense_ffn"))  # layer_backward / _moe backward: B0 | B1 | B2


def segments_s(parts: dict, names: tuple[str, ...]):
    """Sum of the named parts (absent: 0)."""
    return sum((np.asarray(parts[k], dtype=float) for k in names if k in parts), np.zeros(()))


def layer_pairs_s(fwd, bwd, weights, ends: bool = False) -> tuple[np.ndarray, ...]:
    """(paired, serial) seconds of forward layers run beside as many backward layers in Megatron's order (module
    docstring): fwd[i] = (F0, F1, F2, dispatch, combine) of forward layer i, bwd[i] = (B0, B1, B2, dispatch,
    combine, W1, W2) of the backward layer paired with it (a dense layer: its pass in F0 / B0, no all-to-all; W1
    the experts' weight gradients after B1, W2 the rest after B2, each off its chain), weights[i] that pair's count
    (1, a fraction for the chunk's last, 0 past it); all broadcasting arrays. `ends`: also (lead, tail), the time
    the compute stream runs before the forward's first operation (the first pair's B0) and after the backward's
    last (from its last pair's B2 to its F2): an FB slot's forward input may arrive that much after the slot
    starts, its input gradient leaves that much before it ends (`slot_walk_s`)."""
    comp = comm = f_ready = b_ready = paired = serial = tail = np.zeros(())
    lead = np.asarray(bwd[0][0], dtype=float) if len(bwd) else np.zeros(())  # the first pair's B0 opens the slot
    for (f0, f1, f2, d_f, c_f), (b0, b1, b2, d_b, c_b, w1, w2), share in zip(fwd, bwd, weights):
        # model_chunk_schedule_plan.py TransformerLayerSchedulePlan.run: the issue order on each stream
        e_b0 = np.maximum(comp, b_ready) + b0
        e_cb = np.maximum(comm, e_b0) + c_b
        e_f0 = np.maximum(e_b0, f_ready) + f0
        e_df = np.maximum(e_cb, e_f0) + d_f
        e_b1 = np.maximum(e_f0, e_cb) + b1
        e_w1 = e_b1 + w1  # mlp_bwd_dw: the compute stream's next, dispatch_bwd does not wait for it
        e_db = np.maximum(e_df, e_b1) + d_b
        e_f1 = np.maximum(e_w1, e_df) + f1
        e_cf = np.maximum(e_db, e_f1) + c_f
        e_b2 = np.maximum(e_f1, e_db) + b2
        e_w2 = e_b2 + w2  # pre_dispatch_computation.backward_dw, likewise off the chain
        e_f2 = np.maximum(e_w2, e_cf) + f2
        tail = np.where(share > 0, e_f2 - e_b2, tail)
        paired = paired + share * (e_f2 - comp)
        serial = serial + share * (f0 + f1 + f2 + d_f + c_f + b0 + b1 + b2 + d_b + c_b + w1 + w2)
        comp, comm, f_ready, b_ready = (np.where(share > 0, new, old) for new, old in
                                        ((e_f2, comp), (e_cf, comm), (e_f2, f_ready), (e_b2, b_ready)))
    return (paired, serial, lead, tail) if ends else (paired, serial)


MEGATRON_A2A_NODES = ("ep_all_to_all_dispatch", "ep_all_to_all_combine")  # moe_dispatch, moe_combine (comm stream)
# The token dispatcher's collectives run in the dispatch / combine nodes on the comm stream (Megatron-LM
# fine_grained_callables.py build_layer_callables: moe_dispatch, moe_combine); a layer's tp / cp collectives run
# inside its compute nodes, on the compute stream
MEGATRON_COMM_STREAM = MEGATRON_A2A_NODES + ("ep_all_to_all_probs", "etp_all_gather", "etp_reduce_scatter")
OFF_COMPUTE_STREAM = MEGATRON_COMM_STREAM + ("cp_ring_send_recv",)  # the cp ring runs beside the attention it feeds
A2A_OF_CALL = {"ep_all_to_all_dispatch": "dispatch", "ep_all_to_all_probs": "dispatch",
               "ep_all_to_all_combine": "combine"}  # estimate.terms call names -> Megatron's comm nodes


def add_call(a2a_call: dict, c: int, name: str, t_call, calls_stage, layers) -> None:
    """Record one collective of layer class `c` (its time on each stage `t_call` over `calls_stage` calls, `layers`
    layers of the class there) in `a2a_call`: (c, "dispatch" | "combine") one call's time, (c, "tp_fwd" |
    "tp_bwd") a layer's forward / backward tp and cp collectives (on the compute stream in Megatron's order; a
    weight gradient's gather in the backward, the rest half and half: a forward and a backward call each)."""
    per = lambda a, n: np.divide(a, n, out=np.zeros_like(a), where=n > 0)  # noqa: E731
    if name in A2A_OF_CALL:
        key = (c, A2A_OF_CALL[name])
        a2a_call[key] = a2a_call.get(key, 0.0) + per(t_call, calls_stage)
    elif name not in OFF_COMPUTE_STREAM:
        layer_s = per(t_call, np.asarray(layers, dtype=float))
        shares = (("tp_bwd", 1.0),) if "wgrad" in name else (("tp_fwd", 0.5), ("tp_bwd", 0.5))
        for key, share in shares:
            a2a_call[(c, key)] = a2a_call.get((c, key), 0.0) + share * layer_s


def saving_s(terms, a2a_call: dict, counts: np.ndarray, vp, of, paired: bool, layer_classes, ends: bool = False):
    """(candidates, stages) seconds a forward-backward pair of micro-batches saves under Megatron's order against
    running them one after the other: each of the device's v chunks of counts/v layers, forward layer i beside
    the backward's i-th from the end (`layer_pairs_s`). The chunk's layers follow the model's decoder pattern
    (`layer_classes`, moesim.workload) from its first MoE layer on: a model alternating dense and MoE layers pairs
    a dense forward with a MoE backward (the estimate keeps no stage's own layer order; DERIVED). `terms` per layer
    class on the order-free rows (`of` maps each candidate to its row; None: the same rows), `a2a_call` from
    `add_call`, `paired`: the compute-bound parts at the rate beside DeepEP's SMs (ClassTerms.*_pair_parts_s), as
    the simulator runs an FB slot. `ends`: also `layer_pairs_s`' (lead, tail) of one chunk pair, (candidates,
    stages) each."""
    v = np.asarray(vp, dtype=float)[:, None]
    per_class_f, per_class_b = [], []
    for c, t in enumerate(terms):
        def rows(a):
            a = np.broadcast_to(np.asarray(a, dtype=float), np.shape(t.fwd_time_s) or (1,))
            return (np.take(a, of, axis=0) if of is not None else a)[:, None]

        fwd, bwd = (t.fwd_pair_parts_s, t.bwd_pair_parts_s) if paired and t.fwd_pair_parts_s else \
            (t.fwd_parts_s, t.bwd_parts_s)
        moe = (c, "dispatch") in a2a_call or (c, "combine") in a2a_call
        f_names, b_names = (FWD_SEGMENTS, BWD_SEGMENTS) if moe else \
            ((sum(FWD_SEGMENTS, ()), (), ()), (sum(BWD_SEGMENTS, ()), (), ()))  # no all-to-all: one segment
        f = [rows(segments_s(fwd, names)) for names in f_names]
        b = [rows(segments_s(bwd, names)) for names in b_names]
        # delay_wgrad_compute: a MoE layer's W share r of every backward kernel off its chain (the simulator's
        # input-only scale, moesim.des.schedule layer_backward), the experts' after B1, the rest after B2
        r = rows(weight_grad_time_s(t) / np.maximum(segments_s(t.bwd_parts_s, sum(BWD_SEGMENTS, ())), 1e-300)) \
            if moe else np.zeros((1, 1))
        w = (r * b[1], r * (b[0] + b[2]))
        b = [(1 - r) * x for x in b]
        # the simulator's recompute opens the backward (schedule.py), beside DeepEP's SMs in a pair
        b[0] = b[0] + rows(t.recompute_pair_s() if paired else t.recompute_time_s)
        f[0] = f[0] + a2a_call.get((c, "tp_fwd"), 0.0)  # the tp collectives, forward and backward
        b[-1 if moe else 0] = b[-1 if moe else 0] + a2a_call.get((c, "tp_bwd"), 0.0)
        d, cmb = a2a_call.get((c, "dispatch"), 0.0), a2a_call.get((c, "combine"), 0.0)
        shape = counts.shape[:2]
        per_class_f.append(np.stack([np.broadcast_to(a, shape) for a in (*f, d, cmb)]))
        per_class_b.append(np.stack([np.broadcast_to(a, shape) for a in (*b, d, cmb, *w)]))
    f_all, b_all = np.stack(per_class_f), np.stack(per_class_b)  # (class, segment, candidate, stage)
    classes = np.asarray(layer_classes)
    moe_at = [i for i, c in enumerate(classes) if (c, "dispatch") in a2a_call or (c, "combine") in a2a_call]
    if not moe_at:
        zero = np.zeros(counts.shape[:2])
        return (zero, zero, zero) if ends else zero
    pattern = classes[moe_at[0]:]
    k = counts.sum(axis=2) / v  # layers per chunk on each stage
    n = np.ceil(k).astype(int)
    fwd_layers, bwd_layers, weights = [], [], []
    for i in range(int(n.max())):
        fwd_layers.append(f_all[pattern[i % len(pattern)]])
        at = np.take(pattern, np.maximum(n - 1 - i, 0) % len(pattern))  # (candidate, stage) class of the partner
        one = at.size and (at == at.flat[0]).all()  # one class for every partner: its rows as they are
        bwd_layers.append(b_all[at.flat[0]] if one else np.take_along_axis(
            b_all, np.broadcast_to(at, (1, b_all.shape[1], *at.shape)), axis=0)[0])
        weights.append(np.clip(k - i, 0.0, 1.0))
    together, serial, lead, tail = layer_pairs_s(fwd_layers, bwd_layers, weights, ends=True)
    return (v * (serial - together), lead, tail) if ends else v * (serial - together)


@lru_cache(maxsize=256)
def slot_plan(m: int, pp: int, vp: int) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """The max-plus walk's plan of Megatron's interleaved order with the EP A2A overlap (schedules.interleaved_order,
    Megatron-LM d98e8a64 schedules.py / combined_1f1b.py): (levels, slots, last). `slots` (n, 9): per slot its
    device, forward chunk, backward chunk (−1: none), the positions of the slots whose forward / backward send it
    reads (1: none), its own and its device's previous slot's (0: the start, for a device's first), and whether it
    sends its forward output / input gradient on (1 / 0); the rows in level order, row i at position i + 2.
    `levels`: slices of the rows, every slot's inputs and its device's previous slot in an earlier one; `last`: each
    device's last slot's position. Forward (mb, vs) reads (mb, vs − 1) from the upstream
    device, backward (mb, vs) reads (mb, vs + 1) from the downstream one (the ring at the ends: virtual stage c·p + d
    on device d); backward (mb, p·v − 1) follows its own device's forward, an earlier slot (no send), and the head's
    chunk sends no forward, the embedding's no backward."""
    p, v = int(pp), int(vp)
    orders = [interleaved_order(m, p, v, d, True) for d in range(p)]
    width = max(len(o) for o in orders)
    made_f, made_b = {}, {}
    for d, order in enumerate(orders):
        for k, (f, b) in enumerate(order):
            made_f.update({f: 2 + d * width + k} if f else {})
            made_b.update({b: 2 + d * width + k} if b else {})
    rows, level = [], {0: -1, 1: -1}
    for d, order in enumerate(orders):
        for k, (f, b) in enumerate(order):
            f_in = made_f[(f[0], f[1] - 1)] if f and f[1] > 0 else 1
            b_in = made_b[(b[0], b[1] + 1)] if b and b[1] < p * v - 1 else 1
            at = 2 + d * width + k
            rows.append((d, f[1] // p if f else -1, b[1] // p if b else -1, f_in, b_in, at, at - 1 if k else 0,
                         int(bool(f) and f[1] < p * v - 1), int(bool(b) and b[1] > 0)))
    # levels, device by device as far as each device's inputs have one (the orders are deadlock-free: each round
    # places at least one slot)
    first = [sum(len(o) for o in orders[:d]) for d in range(p)]
    done = [0] * p
    while any(done[d] < len(orders[d]) for d in range(p)):
        placed = False
        for d in range(p):
            while done[d] < len(orders[d]):
                row = rows[first[d] + done[d]]
                before = (row[6], row[3], row[4])
                if not all(x in level for x in before):
                    break
                level[row[5]] = 1 + max(level[x] for x in before)
                done[d] += 1
                placed = True
        if not placed:
            raise ValueError(f"interleaved order waits on itself (m={m}, pp={p}, vp={v})")
    table = np.array(rows, dtype=np.int64)
    depth = np.array([level[x] for x in table[:, 5]])
    # the slots in level order, renumbered so that a level's own positions are one run: it is written whole
    order = np.argsort(depth, kind="stable")
    table, depth = table[order], depth[order]
    renumber = np.arange(int(table[:, 5].max()) + 1)
    renumber[table[:, 5]] = 2 + np.arange(len(table))
    table[:, 3:7] = renumber[table[:, 3:7]]
    ends = np.searchsorted(depth, np.arange(int(depth.max()) + 2))
    groups = tuple(slice(int(lo), int(hi)) for lo, hi in zip(ends[:-1], ends[1:]))
    last = renumber[[2 + d * width + len(o) - 1 for d, o in enumerate(orders)]]
    return groups, table, last


@lru_cache(maxsize=256)
def _walk_rows(m: int, p: int, v: int) -> tuple[np.ndarray, ...]:
    """`slot_plan`'s slots by kind, a kind's inputs rows of `slot_walk_s`' input table (its inputs' columns f (p·v),
    b (p·v), saving (p), send (1), lead (p·v), tail (p·v), then ZERO: 0.0, INF: +inf and the send times 0.0):
    (kinds, kind, f_ready, prev, f_in, b_in). kinds (8, K) per kind the rows of its forward chunk's time, its
    backward chunk's, its pair's saving, its lead (ZERO where the slot has none of each), whether its lead is its
    whole time (a backward alone), the row of its input gradient's ready time before its end (INF: no backward
    send) and its sends' times (the send's row, or the send times 0.0 where it sends nothing); kind (n,) each
    slot's kind; f_ready (n, 1) 0.0 where the slot sends its activation on, +inf where not; prev, f_in, b_in
    `slot_plan`'s positions of each slot's previous slot and inputs."""
    _, table, _ = slot_plan(m, p, v)
    d, cf, cb, f_in, b_in, _, prev, f_out, b_out = table.T
    pv = p * v
    send, zero, inf, no_send = 2 * pv + p, 4 * pv + p + 1, 4 * pv + p + 2, 4 * pv + p + 3
    fb = (cf >= 0) & (cb >= 0)
    rows = np.stack([np.where(cf >= 0, d * v + cf, zero), np.where(cb >= 0, pv + d * v + cb, zero),
                     np.where(fb, 2 * pv + d, zero), np.where(fb, 2 * pv + p + 1 + d * v + cb, zero),
                     ~fb & (cf < 0), np.where(b_out > 0, np.where(fb, 3 * pv + p + 1 + d * v + cf, zero), inf),
                     np.where(b_out > 0, send, no_send), np.where(f_out > 0, send, no_send)])
    kinds, kind = np.unique(rows, axis=1, return_inverse=True)
    f_ready = np.where(f_out > 0, 0.0, np.inf)[:, None]  # its activation's send ready at its end (+inf: none)
    return kinds, kind.reshape(-1), f_ready, prev, f_in, b_in


def distinct_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, again) of a float array (n, k): its distinct rows, bit for bit, and each row's index among them, so
    that rows[again] is `a` (what np.unique(a, axis=0, return_inverse=True) gives, in another order, without its
    sort of whole rows): the collectives' row grouping (estimate.pricing.grouped_rows: a 64-bit hash, checked, a
    collision answered exactly) on the rows' bits, so 0.0 and −0.0 stay apart."""
    a = np.ascontiguousarray(a, dtype=float)
    if not a.size:
        rows, again = np.unique(a, axis=0, return_inverse=True)
        return rows, again.reshape(-1)
    first, again = grouped_rows(list(a.view(np.uint64).T))
    return a[first], again


def slot_walk_s(m: int, pp: int, vp: int, fwd_chunk_s, bwd_chunk_s, pair_saving_s, send_s, lead_s=None,
                tail_s=None) -> np.ndarray:
    """(N,) T_pipe of Megatron's interleaved order with the EP A2A overlap as a max-plus walk over devices × slots
    (`slot_plan`). A slot lasts its chunks' own times, fwd_chunk_s / bwd_chunk_s (N, p, v) of device d's chunk c,
    less pair_saving_s (N, p) in an FB slot (what Megatron's per-layer order hides in one chunk pair, `saving_s` /
    v). It starts once its device's previous slot has ended and its backward's input gradient has arrived; its
    forward's first operation, lead_s (N, p, v: device d, backward chunk c) into an FB slot (the compute stream
    runs B0 before F0, TransformerLayerSchedulePlan.run's issue order in the module docstring; each chain's first
    operation waits for its own receive, as moesim.des.pieces.overlapped builds the slot), once its activation has.
    Its outputs leave, one send `send_s` (N,) each, on the device's one p2p stream in order: the backward's input
    gradient first, ready tail_s (N, p, v: device d, forward chunk c) before the end of an FB slot, then the
    forward's activation, ready at the slot's end (moesim.des.schedule _Builder.send: a send after its chunk on the
    "p2p" stream, which runs its operations in their keys' order; pieces.overlapped keys an FB slot's backward send
    before its forward's, _Builder.add's 2·segment − side). lead_s / tail_s None: 0. The step's pipeline ends with
    the last device's last slot."""
    groups, table, last = slot_plan(int(m), int(pp), int(vp))
    f, b = np.asarray(fwd_chunk_s, dtype=float), np.asarray(bwd_chunk_s, dtype=float)
    n, p, v = f.shape
    lead_s, tail_s = (np.broadcast_to(np.asarray(0.0 if x is None else x, dtype=float), f.shape)
                      for x in (lead_s, tail_s))
    # candidates alike in every input (bit for bit) walk once; the walk's columns are the distinct rows
    inputs = np.concatenate([f.reshape(n, -1), b.reshape(n, -1), np.asarray(pair_saving_s, dtype=float).reshape(n, p),
                             np.asarray(send_s, dtype=float).reshape(n, 1), lead_s.reshape(n, -1),
                             tail_s.reshape(n, -1)], axis=1)
    inputs, again = distinct_rows(inputs)
    # (input, candidate): the inputs' rows then rows of zeros, of infinities and of the send times 0.0
    h = inputs[:, 2 * p * v + p]
    x = np.concatenate([inputs.T, np.zeros((1, len(h))), np.full((1, len(h)), np.inf), (h * 0.0)[None]])
    (i_f, i_b, i_s, i_l, alone, i_r, i_hb, i_hf), kind, f_ready, prev, f_in, b_in = _walk_rows(int(m), p, v)
    # (kind, candidate) arrays, each slot reading its kind's row: a slot without a send passes its device's p2p
    # stream on unchanged (its output ready at +inf, the send 0 s)
    dur = x[i_f] + x[i_b] - x[i_s]  # its chunks' times, less the pair's saving in an FB slot
    lead = x[i_l]
    alone = alone.astype(bool)
    lead[alone] = dur[alone]  # a backward alone waits first, a forward alone not at all
    rest = dur - lead
    b_ready = x[i_r]  # its input gradient's send ready this much before the slot's end
    h_b, h_f = x[i_hb], x[i_hf]
    # a slot's end, its forward / backward send's arrival (the forward's the device's p2p stream after its sends);
    # rows 0 (the start: a device's first slot's previous) and 1 (no input)
    shape = (len(kind) + 2, len(inputs))
    end, sent_f, sent_b = np.empty(shape), np.empty(shape), np.empty(shape)
    end[:2], sent_f[0], sent_f[1], sent_b[:2] = 0.0, 0.0, -np.inf, -np.inf
    for g in groups:  # each level written in place, in its rows of the three tables
        at_g = slice(g.start + 2, g.stop + 2)
        before, k = prev[g], kind[g]
        e, after_b, after_f = end[at_g], sent_b[at_g], sent_f[at_g]
        np.maximum(end[before], sent_b[b_in[g]], out=e)
        e += lead[k]
        np.maximum(e, sent_f[f_in[g]], out=e)
        e += rest[k]
        np.subtract(e, b_ready[k], out=after_b)
        np.maximum(sent_f[before], after_b, out=after_b)
        after_b += h_b[k]
        np.subtract(e, f_ready[g], out=after_f)
        np.maximum(after_b, after_f, out=after_f)
        after_f += h_f[k]
    return end[last].max(axis=0)[again]


def walk_pipe_s(rows: np.ndarray, cands, wl, m, pp, vp, stage_mb, compute_mb, compute_pair_mb, saved, fwd, logits_s,
                embedding_s, embedding_bwd_s, send_s, lead_s, tail_s) -> np.ndarray:
    """(N,) the interleaved T_pipe under the EP A2A overlap by `slot_walk_s` for the candidates `rows` (NaN
    elsewhere), each device's time per micro-batch (stage_mb, (N, S) over pipeline_stages' columns, its collectives
    in) shared evenly over its v chunks but the output head's (logits_s, one third forward) on the last device's
    last chunk and the input embedding's (embedding_s, its backward embedding_bwd_s) on device 0's first, a chunk's
    forward share its device's forward compute `fwd` over its compute; in an FB slot the pair hides
    (compute_mb − compute_pair_mb + saved) / v (`saving_s`; the pair rate beside DeepEP's SMs), as a2a_pair_s
    prices the pair; the sends `send_s` (N,) one each (core.py's `hop`); lead_s / tail_s (N, S) `saving_s`' ends
    of a chunk pair, the head's backward added to its chunk's lead and its forward to the tail. Candidates of one
    (m, p, v, first, last) walk together (m, pp, vp: (N,) arrays)."""
    from moesim.estimate.stages import device_columns

    out = np.full(len(cands), np.nan)
    keys = np.stack([np.asarray(a).astype(np.int64)[rows] for a in (
        m, pp, vp, cands.first_stage_layers, cands.last_stage_layers)], axis=1)
    # the groups in np.unique(keys, axis=0)'s order, each its rows in their order (a stable sort)
    order = np.lexsort(keys.T[::-1])
    by_key = keys[order]
    cut = np.flatnonzero((by_key[1:] != by_key[:-1]).any(axis=1)) + 1
    for group in np.split(order, cut) if len(order) else ():
        n_mb, p, v, first, last = (int(k) for k in keys[group[0]])
        at = rows[group]
        cols = device_columns(wl, p, first or None, last or None)
        dev = lambda a: np.asarray(a, dtype=float)[np.ix_(at, cols)]  # noqa: E731  (n, p): each device's column
        ends = np.zeros((len(at), p))
        head, emb = ends.copy(), ends.copy()
        head[:, -1], emb[:, 0] = logits_s[at], embedding_s[at]
        layers = dev(compute_mb) - head - emb
        phi = np.divide(dev(fwd), layers, out=np.zeros_like(layers), where=layers > 0)
        base = (dev(stage_mb) - head - emb) / v
        f = np.repeat((base * phi)[:, :, None], v, axis=2)
        b = np.repeat((base * (1 - phi))[:, :, None], v, axis=2)
        f[:, -1, -1] += logits_s[at] / 3  # the head's forward, one third of it (core.py, compute_mb / bwd_mb)
        b[:, -1, -1] += 2 * logits_s[at] / 3
        f[:, 0, 0] += embedding_s[at] - embedding_bwd_s[at]
        b[:, 0, 0] += embedding_bwd_s[at]
        saving = (dev(compute_mb) - dev(compute_pair_mb) + dev(saved)) / v
        lead = np.repeat(dev(lead_s)[:, :, None], v, axis=2)
        tail = np.repeat(dev(tail_s)[:, :, None], v, axis=2)
        lead[:, -1, -1] += 2 * logits_s[at] / 3  # the head's backward opens its chunk's (pieces._backward_start)
        tail[:, -1, -1] += logits_s[at] / 3  # its forward closes its chunk's (pieces._forward_end)
        out[at] = slot_walk_s(n_mb, p, v, f, b, saving, np.asarray(send_s, dtype=float)[at], lead, tail)
    return out


__all__ = ["A2A_OF_CALL", "BWD_SEGMENTS", "FWD_SEGMENTS", "MEGATRON_A2A_NODES", "MEGATRON_COMM_STREAM",
           "OFF_COMPUTE_STREAM", "add_call", "distinct_rows", "layer_pairs_s", "saving_s", "segments_s", "slot_plan",
           "slot_walk_s", "walk_pipe_s"]
