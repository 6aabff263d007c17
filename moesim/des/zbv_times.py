"""ZB-V's order's inputs from a step's costs (moesim.des.schedule reads them; moesim.des.zbv_order orders by them):
each piece's and a stage's (F, I, W) times as sail-sg's runtime gives its scheduler, one pipeline transfer and a
piece's activation sizes. Moved from schedule.py unchanged (session 24, tidy24)."""

from __future__ import annotations

from moesim.des.costs import Costs
from moesim.des.zbv_order import activation_memory
from moesim.flops import BACKWARD_TO_FORWARD


def zbv_piece_times(costs: Costs) -> tuple[tuple[float, float, float], ...]:
    """(F, I, W) of each piece per micro-batch on its compute stream, for ZB-V's order (moesim.des.zbv_order: sail-sg
    builds it from profiled times): its layers' forward, input-gradient (with any recompute) and weight-gradient
    parts, the embedding's forward on the first piece and its backward in W (pieces._embedding_backward), the head's
    forward, dX and dW as a third of `logits_s` each on the last (pieces._backward_start, pieces.weights)."""
    classes, index = costs.classes, costs.workload.layer_class_index
    head = 1 / (1 + BACKWARD_TO_FORWARD)  # one forward's share of the head's forward + backward (Kaplan et al. §2.1)
    times = []
    for piece in costs.stages:
        layers = [classes[index[layer]] for layer in piece.layers]
        w = sum(c.weight_grad_s for c in layers)
        f = sum(sum(c.fwd_s.values()) for c in layers) + piece.embedding_fwd_s + piece.logits_s * head
        i = sum(sum(c.bwd_s.values()) + c.recompute_s for c in layers) - w + \
            piece.logits_s * head * (BACKWARD_TO_FORWARD - 1)
        times.append((f, i, w + piece.logits_s * head + piece.embedding_bwd_s))
    return tuple(times)


def zbv_stage_times(costs: Costs) -> tuple[float, float, float]:
    """(F, I, W) of a device's stage for ZB-V's order as sail-sg's runtime gives its scheduler: each device's mean over
    its pieces, then the median device's (runtime.py l.1401-1403 `avg_then_mid`, sorted(a)[len(a) // 2], @ 39f2c186)
    for every piece, here twice that: a stage of two pieces."""
    pieces, p = zbv_piece_times(costs), costs.layout.pp
    device = [[(pieces[d][k] + pieces[2 * p - 1 - d][k]) / 2 for d in range(p)] for k in range(3)]
    return tuple(2 * sorted(means)[p // 2] for means in device)


def zbv_inputs(costs: Costs) -> dict:
    """ZB-V's order's inputs: the stage's times, one pipeline transfer (the longest; sail-sg's profiled c) and a
    piece's activation sizes as sail-sg's runtime approximates them (zbv_order.activation_memory)."""
    sends = [spec.time_s for piece in costs.stages for spec in (piece.send_forward, piece.send_backward) if spec]
    model = costs.scenario.model
    seq = costs.scenario.seq_lens[0]
    return {"times": zbv_stage_times(costs), "send_s": max(sends, default=0.0),
            "memory": activation_memory(model.d_model, model.attention.num_heads, seq)}
