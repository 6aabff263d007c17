"""The operations of one pipeline piece (virtual stage) for one slot of a device's order (moesim.des.orders).

`b` is the stage program's builder (moesim.des.schedule._Builder): it appends operations, chains them
through `b.last` and orders each stream by `b.key`. A piece's forward receives its input from the
device of the previous piece (none when that is this device), its backward the gradient from the
next; a W slot runs the piece's weight-gradient GEMMs as one kernel; an FB slot merges a forward and
a backward of two micro-batches (DualPipe).
"""

from __future__ import annotations

from typing import Any

from moesim.des.costs import Costs
from moesim.des.orders import Slot
from moesim.flops import BACKWARD_TO_FORWARD

Builder = Any  # moesim.des.schedule._Builder (imported there; typed loosely to keep the import one-way)


def _peer(costs: Costs, vs: int, mb: int, stage: int) -> int:
    return costs.device_of(vs, mb) - stage


def forward(b, costs: Costs, mb: int, vs: int) -> None:
    """Forward of piece `vs` for micro-batch `mb`."""
    b.vs = vs
    b.recv = ("act", mb, vs) if vs and _peer(costs, vs - 1, mb, b.stage) else None
    if costs.training.zero_stage >= 3:
        b.zero3_gather(mb, "fwd")
    b.param_wait(vs, mb, -1)  # overlap_param_gather: the piece's gathers waited on in its first forward
    if vs == 0:
        _embedding_forward(b, costs, mb)
    for i, layer in enumerate(costs.stages[vs].layers):
        b.segment = 0
        b.param_wait(vs, mb, i)
        b.layer_forward(layer, mb)
    _forward_end(b, costs, mb, vs)


def _embedding_forward(b: Builder, costs: Costs, mb: int) -> None:
    """The input embedding of micro-batch `mb` and its tp collective (first piece; moesim.ops.vocab)."""
    piece = costs.stages[0]
    b.compute("embedding", "fwd", -1, mb, piece.embedding_fwd_s)
    for spec in piece.end_calls("embedding", "fwd", False):
        b.comm(spec, "fwd", -1, mb)


def _embedding_backward(b: Builder, costs: Costs, mb: int, kind: str) -> None:
    """The embedding's backward collective and, in a full backward (B), its weight-gradient operators (an I leaves
    them to its W)."""
    piece = costs.stages[0]
    for spec in piece.end_calls("embedding", "bwd", True):
        b.comm(spec, "bwd", -1, mb)
    if kind == "B":
        b.compute("embedding", "bwd", -1, mb, piece.embedding_bwd_s)


def _head(b: Builder, piece, mb: int, pass_: str, duration_s: float) -> None:
    """The output heads' compute (logits GEMM and cross-entropy) between their tp collectives (moesim.ops.vocab)."""
    for spec in piece.end_calls("head", pass_, True):
        b.comm(spec, pass_, -1, mb)
    b.compute("logits", pass_, -1, mb, duration_s)
    for spec in piece.end_calls("head", pass_, False):
        b.comm(spec, pass_, -1, mb)


def _forward_end(b: Builder, costs: Costs, mb: int, vs: int) -> None:
    piece = costs.stages[vs]
    if vs == len(costs.stages) - 1:
        _head(b, piece, mb, "fwd", piece.logits_s / (1 + BACKWARD_TO_FORWARD))
    else:
        b.send(piece.send_forward, _peer(costs, vs + 1, mb, b.stage), mb, "fwd")


def _backward_start(b: Builder, costs: Costs, mb: int, vs: int, kind: str = "B", left: dict | None = None) -> None:
    """The head's backward on the last piece: a full backward (B) runs its dX and dW (2 forwards: Kaplan et al. 2020
    §2.1); an I its dX only, the dW (one forward) left to the piece's W (`weights`; before session 20, zbvagree, an
    I ran both and its W the dW again). On the piece's last full backward the head's gradient goes to the buckets
    right after it, as MCore's hook fires for the output layer's weight (Megatron-LM d98e8a64
    distributed_data_parallel.py l.553-582; session 22, pp1gap: before, it waited for the last layer's backward)."""
    piece = costs.stages[vs]
    b.vs = vs
    last = vs == len(costs.stages) - 1
    b.recv = ("grad", mb, vs) if not last and _peer(costs, vs + 1, mb, b.stage) else None
    if costs.training.zero_stage >= 3:
        b.zero3_gather(mb, "bwd")
    if last:
        passes = BACKWARD_TO_FORWARD - (kind == "I")  # forwards' worth: dX and dW, or dX alone
        _head(b, piece, mb, "bwd", piece.logits_s * passes / (1 + BACKWARD_TO_FORWARD))
        if kind == "B" and left is not None and left[vs] == 1 and piece.head_grad_bytes > 0:
            b.grad_bucket((0,), piece.layers[-1], vs)  # unit 0, the head's (schedule._Builder._bucket_units)


def _backward_layer(b: Builder, costs: Costs, mb: int, vs: int, n: int, kind: str, left: dict,
                    pieces_left: list) -> None:
    """Backward of the n-th layer from the end of piece `vs`; on the piece's last full backward its
    gradient goes to the buckets right after (as MCore's hooks fire)."""
    layers = costs.stages[vs].layers
    b.segment = 0
    b.layer_backward(layers[-1 - n], mb, input_only=kind == "I")
    grads = kind == "B" and left[vs] == 1
    if vs == 0 and n == len(layers) - 1:
        # the first layer's gradients reach their bucket before the embedding's backward, the embedding's after it
        # (MCore's hooks fire per parameter; session 23, buckets23: before, the layer's waited for the embedding's)
        if grads:
            b.grad_bucket((1 + n,), layers[0], vs)
        _embedding_backward(b, costs, mb, kind)
        if grads:
            flush = pieces_left[0] == 1 or b.overlap_grad_reduce
            b.grad_bucket((len(layers) + 1,), layers[0], vs, flush=flush)  # unit L + 1, the embedding's
    elif grads:
        _gradient_of(b, costs, vs, n, pieces_left[0] == 1, with_head=False)


def _backward_end(b: Builder, costs: Costs, mb: int, vs: int, kind: str, left: dict, pieces_left: list) -> None:
    piece = costs.stages[vs]
    if kind == "B":
        _gradients_done(vs, left, pieces_left)
    if vs:
        b.send(piece.send_backward, _peer(costs, vs - 1, mb, b.stage), mb, "bwd")


def backward(b, costs: Costs, mb: int, vs: int, kind: str, left: dict, pieces_left: list) -> None:
    """Full (B) or input-gradient-only (I) backward of piece `vs` for micro-batch `mb`."""
    _backward_start(b, costs, mb, vs, kind, left)
    for n in range(len(costs.stages[vs].layers)):
        _backward_layer(b, costs, mb, vs, n, kind, left, pieces_left)
    _backward_end(b, costs, mb, vs, kind, left, pieces_left)


def weights(b, costs: Costs, mb: int, vs: int, left: dict, pieces_left: list) -> None:
    """W of an earlier I: the piece's weight-gradient GEMMs as one kernel (Qi et al. ICLR'24 §2)."""
    b.vs = vs
    classes = costs.workload.layer_class_index
    duration = sum(costs.classes[classes[layer]].weight_grad_s for layer in costs.stages[vs].layers)
    duration += costs.stages[vs].logits_s / (1 + BACKWARD_TO_FORWARD)  # the head's dW (last piece only)
    duration += costs.stages[vs].embedding_bwd_s  # the embedding's backward, all dW (first piece only)
    b.compute("weight gradients", "bwd", -1, mb, duration)
    if left[vs] == 1:
        for n in range(len(costs.stages[vs].layers)):
            _gradient_of(b, costs, vs, n, pieces_left[0] == 1)
    _gradients_done(vs, left, pieces_left)


def _gradients_done(vs: int, left: dict, pieces_left: list) -> None:
    """Count one weight-gradient pass of piece `vs` (and the piece once its last is done)."""
    left[vs] -= 1
    if not left[vs]:
        pieces_left[0] -= 1


def _gradient_of(b: Builder, costs: Costs, vs: int, n: int, last_piece: bool, with_head: bool = True) -> None:
    """The n-th layer from the end of piece `vs` hands its gradients to the buckets (flush after the piece's last
    layer: MCore's buffers are per model chunk, each chunk's last bucket launched once its gradients are ready;
    with overlap_grad_reduce off, after the device's last layer); the head's with the first (`with_head`) where its
    backward did not hand them over itself (a W: `weights`)."""
    layers = costs.stages[vs].layers
    end = n == len(layers) - 1
    # units (schedule._Builder._bucket_units): 0 the head's, 1 + n the layer's, L + 1 the embedding's
    units = ((0,) if n == 0 and with_head else ()) + (1 + n,) + ((len(layers) + 1,) if end else ())
    flush = end and (last_piece or b.overlap_grad_reduce)
    b.grad_bucket(units, layers[-1 - n], vs, flush=flush)


def overlapped(b, costs: Costs, slot: Slot, left: dict, pieces_left: list) -> None:
    """An F&B: forward of (mb, vs) and backward of `slot.pair`, built layer by layer as two chains, keyed
    so that the backward's j-th stage part (between its collectives) sorts before the forward's j-th (as in
    DeepSeek-V3 Figure 4, compute F attention | B MLP | F MLP | B attention beside comm B combine | F dispatch |
    B dispatch | F combine). DualPipe: each stream then runs the pair's operations in the order of a list schedule
    on the model's times (`pair_order`), whose ties keep that order. Megatron-Core's EP A2A overlap
    (training.moe_a2a_overlap): each stream runs them in that keyed order, layer pair by layer pair, the parts split
    at the EP dispatch and combine only (Megatron's comm nodes; moesim.estimate.a2a_order, which the estimate
    prices)."""
    megatron = costs.training.moe_a2a_overlap
    kind_b, mb_b, vs_b = slot.pair
    start = b.last
    fwd_layers, bwd_layers = costs.stages[slot.vs].layers, tuple(reversed(costs.stages[vs_b].layers))
    b.key, b.side = b.key + (0,), 0
    recv_f = ("act", slot.mb, slot.vs) if slot.vs and _peer(costs, slot.vs - 1, slot.mb, b.stage) else None
    chain_f = start
    b.last = start
    _backward_start(b, costs, mb_b, vs_b, kind_b, left)
    recv_b, b.recv = b.recv, None  # the backward's receive, unless its logits took it
    chain_b = b.last
    steps = max(len(fwd_layers), len(bwd_layers))
    sides: list[tuple[int, int]] = []  # (operation, 0 forward chain | 1 backward chain) of the layers below
    b.paired = True  # the layers' compute runs beside the other chunk's DeepEP kernels (moesim.ops.sm_share)
    b.a2a_segments = megatron
    for i in range(steps):
        if i < len(fwd_layers):
            b.key, b.side, b.last, b.vs = b.key[:1] + (1 + i,), 0, chain_f, slot.vs
            b.recv, recv_f = recv_f, None
            b.segment = 0
            made = len(b.ops)
            if i == 0 and slot.vs == 0:
                _embedding_forward(b, costs, slot.mb)
            b.layer_forward(fwd_layers[i], slot.mb)
            sides += [(k, 0) for k in range(made, len(b.ops))]
            chain_f = b.last
        if i < len(bwd_layers):
            b.key, b.side, b.last, b.vs = b.key[:1] + (1 + i,), 1, chain_b, vs_b
            b.recv, recv_b = recv_b, None
            made = len(b.ops)
            _backward_layer(b, costs, mb_b, vs_b, i, kind_b, left, pieces_left)
            sides += [(k, 1) for k in range(made, len(b.ops))]
            chain_b = b.last
    b.paired = b.a2a_segments = False
    if not megatron:  # DualPipe: the streams run the pair as a list schedule does
        for k, position in pair_order(b.ops, b.keys, sides).items():
            b.keys[k] = b.key[:1] + (1, position)
    b.key, b.side, b.segment = b.key[:1] + (steps + 1,), 0, 0
    b.last, b.vs = chain_f, slot.vs
    _forward_end(b, costs, slot.mb, slot.vs)
    b.side = 1
    b.last, b.vs = chain_b, vs_b
    _backward_end(b, costs, mb_b, vs_b, kind_b, left, pieces_left)
    b.key, b.side = b.key[:1] + (steps + 2,), 0
    b.last = max(i for i in (chain_f, chain_b, b.last) if i is not None)


PAIR_STREAMS = ("compute", "comm")


def pair_order(ops, keys: list[tuple], sides: list[tuple[int, int]]) -> dict[int, int]:
    """Position of each compute and collective operation of an F&B pair in the order a greedy list schedule on
    the model's own times runs them: repeatedly, the operation (head of a chain on a stream) that can start
    first, at a tie the chain with more collective time left, then the layer-by-layer order of Figure 4 (the
    backward's j-th stage part before the forward's j-th: the operations' keys, unchanged without collectives); an
    operation starts when its stream is free and its dependencies have ended (kernel: duration, collective:
    T(S) alone). `sides`: (operation, 0 forward | 1 backward chain) in creation order; other streams' operations
    keep their keys. So one chunk's collectives run under the other chunk's compute wherever their dependencies
    allow, whatever the layers they belong to: DeepSeek-V3 §3.2.1 rearranges a pair's components to hide its
    all-to-alls (Figure 4: "the boundaries of the transformer blocks are not aligned"); pairing layer i of one
    chunk with layer i of the other left a collective exposed where the other chunk's layer had no stage part
    beside it (a dense layer, the MTP module)."""
    queues: dict[tuple[int, str], list[int]] = {}
    left = [0.0, 0.0]
    for k, side in sides:
        op = ops[k]
        if op.stream in PAIR_STREAMS:
            queues.setdefault((side, op.stream), []).append(k)
            if op.comm is not None:
                left[side] += op.comm.time_s
    for q in queues.values():
        q.reverse()  # pop() takes a chain's next operation
    waiting = {k for q in queues.values() for k in q}
    end: dict[int, float] = {}
    free = dict.fromkeys(PAIR_STREAMS, 0.0)
    order: dict[int, int] = {}
    while waiting:
        best = None
        for (side, stream), q in queues.items():
            if not q:
                continue
            k = q[-1]
            start = free[stream]
            for d in ops[k].deps:  # operations before the pair have ended (0)
                e = end.get(d)
                if e is None:
                    if d in waiting:
                        break
                elif e > start:
                    start = e
            else:
                rank = (start, -left[side], keys[k])
                if best is None or rank < best[0]:
                    best = (rank, side, stream, k)
        (start, _, _), side, stream, k = best
        comm = ops[k].comm
        end[k] = free[stream] = start + (comm.time_s if comm is not None else ops[k].duration_s)
        if comm is not None:
            left[side] -= comm.time_s
        queues[(side, stream)].pop()
        waiting.discard(k)
        order[k] = len(order)
    return order


__all__ = ["backward", "forward", "overlapped", "pair_order", "weights"]
