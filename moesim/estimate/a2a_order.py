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
"""

from __future__ import annotations

import numpy as np

from moesim.estimate.schedules import weight_grad_time_s

FWD_SEGMENTS = (("layer_overhead", "attention", "dense_ffn", "router", "permute"), ("expert_ffn",),
                ("unpermute", "shared_experts"))  # moesim.des.schedule layer_forward / _moe: F0 | F1 | F2
BWD_SEGMENTS = (("layer_overhead", "shared_experts", "unpermute"), ("expert_ffn",),
                ("permute", "router", "attention", "dense_ffn"))  # layer_backward / _moe backward: B0 | B1 | B2


def segments_s(parts: dict, names: tuple[str, ...]):
    """Sum of the named parts (absent: 0)."""
    return sum((np.asarray(parts[k], dtype=float) for k in names if k in parts), np.zeros(()))


def layer_pairs_s(fwd, bwd, weights) -> tuple[np.ndarray, np.ndarray]:
    """(paired, serial) seconds of forward layers run beside as many backward layers in Megatron's order (module
    docstring): fwd[i] = (F0, F1, F2, dispatch, combine) of forward layer i, bwd[i] = (B0, B1, B2, dispatch,
    combine, W1, W2) of the backward layer paired with it (a dense layer: its pass in F0 / B0, no all-to-all; W1
    the experts' weight gradients after B1, W2 the rest after B2, each off its chain), weights[i] that pair's count
    (1, a fraction for the chunk's last, 0 past it); all broadcasting arrays."""
    comp = comm = f_ready = b_ready = paired = serial = np.zeros(())
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
        paired = paired + share * (e_f2 - comp)
        serial = serial + share * (f0 + f1 + f2 + d_f + c_f + b0 + b1 + b2 + d_b + c_b + w1 + w2)
        comp, comm, f_ready, b_ready = (np.where(share > 0, new, old) for new, old in
                                        ((e_f2, comp), (e_cf, comm), (e_f2, f_ready), (e_b2, b_ready)))
    return paired, serial


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


def saving_s(terms, a2a_call: dict, counts: np.ndarray, vp, of, paired: bool, layer_classes) -> np.ndarray:
    """(candidates, stages) seconds a forward-backward pair of micro-batches saves under Megatron's order against
    running them one after the other: each of the device's v chunks of counts/v layers, forward layer i beside
    the backward's i-th from the end (`layer_pairs_s`). The chunk's layers follow the model's decoder pattern
    (`layer_classes`, moesim.workload) from its first MoE layer on: a model alternating dense and MoE layers pairs
    a dense forward with a MoE backward (the estimate keeps no stage's own layer order; DERIVED). `terms` per layer
    class on the order-free rows (`of` maps each candidate to its row; None: the same rows), `a2a_call` from
    `add_call`, `paired`: the compute-bound parts at the rate beside DeepEP's SMs (ClassTerms.*_pair_parts_s), as
    the simulator runs an FB slot."""
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
        return np.zeros(counts.shape[:2])
    pattern = classes[moe_at[0]:]
    k = counts.sum(axis=2) / v  # layers per chunk on each stage
    n = np.ceil(k).astype(int)
    fwd_layers, bwd_layers, weights = [], [], []
    for i in range(int(n.max())):
        fwd_layers.append(f_all[pattern[i % len(pattern)]])
        at = np.take(pattern, np.maximum(n - 1 - i, 0) % len(pattern))  # (candidate, stage) class of the partner
        bwd_layers.append(np.take_along_axis(b_all, np.broadcast_to(at, (1, b_all.shape[1], *at.shape)), axis=0)[0])
        weights.append(np.clip(k - i, 0.0, 1.0))
    together, serial = layer_pairs_s(fwd_layers, bwd_layers, weights)
    return v * (serial - together)


__all__ = ["A2A_OF_CALL", "BWD_SEGMENTS", "FWD_SEGMENTS", "MEGATRON_A2A_NODES", "MEGATRON_COMM_STREAM",
           "OFF_COMPUTE_STREAM", "add_call", "layer_pairs_s", "saving_s", "segments_s"]
