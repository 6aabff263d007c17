"""Per-device operation sequences for one training step: layers, micro-batches, pipeline order.

Every device of a pipeline stage runs the same program (`StageProgram`); what differs between
them (routing loads, stragglers, noise) is applied to its durations and bytes (`variation`).
Streams, as on a GPU: `compute` (kernels), `comm` (per-micro-batch collectives: tp, ep, etp,
ZeRO-3 gathers), `p2p` (pipeline sends), `grad` (gradient sync). A stream runs its operations in
order; an operation also waits for its `deps` (operations on other streams) and, for the first
operation of a micro-batch on a later stage, for the neighbour's transfer (`recv`).

One MoE layer forward (MCore token dispatcher; Switch §5.4), with c = `chunks` (Tutel's
a2a_ffn_overlap_degree; Tutel §3.2): router → permute → dispatch all-to-all_j (→ ETP all-gather_j)
→ expert FFN_j (→ ETP reduce-scatter_j) → combine all-to-all_j → unpermute → shared experts,
j = 1..c, all dispatches queued ahead of the combines on the comm stream. Backward runs the same
stages in reverse (the gradient of a combine is a dispatch-shaped all-to-all). TP blocks: all-gather
→ kernel → reduce-scatter with sequence parallelism, kernel → all-reduce without (Korthikanti §4.2.2).
Full recomputation replays the layer's forward before its backward; selective recomputes attention
scores. Each layer pass (forward, backward, full recompute) opens with the profile's fixed host cost
(`layer overhead`, ComputeEfficiency.layer_overhead_s) on the compute stream; none when it is 0.
Pipeline order: the slots of `moesim.des.orders.device_order` - GPipe, 1F1B (warm-up of pp − s − 1
forwards, then alternate; Narayanan et al. 2021, arXiv 2104.04473, §2.2), interleaved (model
chunks), zb-h1 / zb-v (backward split into input-gradient I and weight-gradient W), DualPipe (two
directions; a forward and a backward chunk of two micro-batches overlapped: their kernels and
collectives merge in one program, the collectives of one beside the kernels of the other, as
DeepSeek-V3 Figure 4 pairs attention/MLP with dispatch/combine, in the order of a list schedule on the
model's times: pieces.pair_order). A slot's W runs as one compute operation of its layers' weight-gradient time.
Gradients of each layer are reduced on the grad stream in buckets as the last micro-batch's backward fills them (MCore
--overlap-grad-reduce; buckets of MCore's default max(40e6, 1e6·dp·cp) parameters, one size for
the dense and the expert buffers (moesim.estimate.grad_buckets.bucket_params); `bucket_params` sets
another; only the model's first piece on device 0 is bucketed, every other piece reduces as one bucket per axis
once its gradients are in (MCore's bucket size None for pp rank > 0 and chunks after the first, grad_buckets.bucketed);
with overlap_grad_reduce off, one bucket per axis after the device's last backward, as MCore's
bucket size None); the optimizer step follows the last bucket. ZeRO ≥ 1: each bucket's parameter all-gather runs
on the grad stream after the optimizer step (MCore's default, overlap_param_gather off: estimate/param_gather.py).
"""

from __future__ import annotations

import dataclasses

from moesim.des.costs import CommSpec, Costs, LayerCost
from moesim.des.layer_tp_calls import issue_amax, run_parts  # amax all-reduces, shared experts' tp calls
from moesim.des.orders import device_order, grad_passes_per_piece, pipeline_order
from moesim.des.param_sync import optimizer_step
from moesim.des.pieces import backward, forward, overlapped, weights
from moesim.des.program import (COLLECTIVE, COMM_NAMES, COMPUTE, EXPERT, FORWARD_SUFFIX, FROM_EXPERTS, GATHER, SEND,
                                STAGE_NAMES, STREAMS, TO_EXPERTS, Op, StageProgram)
from moesim.des.zbv_times import zbv_inputs, zbv_piece_times, zbv_stage_times
from moesim.estimate.a2a_order import MEGATRON_A2A_NODES, OFF_COMPUTE_STREAM
from moesim.estimate.context_parallel import RING_BACKWARD_MULTIPLE
from moesim.estimate.grad_buckets import bucket_params as mcore_bucket_params  # the estimate's bucket size, one rule
from moesim.estimate.grad_buckets import bucketed, grad_reduce_overlapped, mcore_buckets
from moesim.estimate.mla_tp_comms import MLA_GATHER, MLA_SCATTER, MLA_WGRAD_GATHER
from moesim.estimate.param_gather import (ALIGNED_SCHEDULES, PARAM_GATHER_LABEL, PARAM_WAIT_LABEL, gathers_after_step,
                                          gathers_in_forward, gathers_with_step)
from moesim.estimate.tp_grad_sync import TP_GRAD_ALL_REDUCE


class _Builder:
    """Appends operations; `last` is the operation the next one in the data chain waits for."""

    def __init__(self, costs: Costs, stage: int, chunks: int, bucket_params: float) -> None:
        self.costs, self.stage, self.chunks, self.bucket_params = costs, stage, chunks, bucket_params
        # overlap_grad_reduce as the run has it: off under a zero-bubble schedule (grad_buckets.SYNC_AFTER_PIPELINE)
        self.overlap_grad_reduce = grad_reduce_overlapped(costs.training.overlap_grad_reduce,
                                                          costs.training.pipeline_schedule)
        self.ops: list[Op] = []
        self.keys: list[tuple] = []  # stream order: by key (creation order unless a DualPipe pair merges)
        self.key: tuple = (0,)  # prefix of the next operation's key
        self._segment = 0  # collectives so far in the current layer pass (DualPipe pairs merge by it)
        self.a2a_segments = False  # an FB slot in Megatron's order: segments split at the EP all-to-alls only
        self._a2a_segment = 0  # EP dispatch / combine all-to-alls so far in the current layer pass
        self.side = 0  # in a DualPipe pair: 0 forward chain, 1 backward chain
        self.last: int | None = None
        self.recv: tuple[str, int, int] | None = None
        self.vs = -1
        self.scale = 1.0  # backward kernels' share run now (input-gradient only: 1 − W/backward)
        self.paired = False  # inside a DualPipe overlapped pair: compute beside DeepEP's SMs (LayerCost.*_pair_s)
        self.pending: dict[tuple[str, int], float] = {}  # (axis, piece): gradient bytes waiting for their bucket
        self.gathers: list[tuple[str, float]] = []  # ZeRO >= 1: (axis, bytes) of each bucket's parameter all-gather
        self.units: dict[int, tuple[dict, dict]] = {}  # piece: its gradient units and closing units (_bucket_units)
        # overlap_param_gather: each piece's gathers in its first forward (param_gather.gathers_in_forward)
        self.forward_gathers = gathers_in_forward(costs.training)
        self.gather_mb: dict[int, int] = {}  # piece: the micro-batch of its first forward
        self.aligned = costs.training.pipeline_schedule in ALIGNED_SCHEDULES  # the schedule dispatches (align)
        # with_optimizer_step: chunk 0's gathers after its optimizer step (param_sync.py); no chunk bucketed
        self.with_step, self.with_step_buckets = gathers_with_step(costs.training), \
            costs.training.overlap_param_gather_with_optimizer_step
        self.dispatched: dict[tuple[int, str, int], int | None] = {}  # (piece, axis, k): its gather (None: unpriced)
        moe_layers = [i for i, c in enumerate(costs.workload.layer_class_index) if costs.workload.classes[c].is_moe]
        self.moe_number = {layer: n for n, layer in enumerate(moe_layers)}

    @property
    def segment(self) -> int:
        return self._a2a_segment if self.a2a_segments else self._segment

    @segment.setter
    def segment(self, value: int) -> None:  # a layer pass starts: both counters from 0
        self._segment = self._a2a_segment = value

    def add(self, stream: str, kind: str, name: str, phase: str, layer: int, mb: int, deps=(), *,
            chain: bool = True, **kw) -> int:
        deps = tuple(d for d in deps if d is not None)
        spec = kw.get("comm")
        if self.a2a_segments and stream == "comm" and spec is not None and spec.name not in OFF_COMPUTE_STREAM:
            stream = "compute"  # Megatron's order: a tp / cp collective runs inside its compute node (a2a_order)
        if chain and self.last is not None:
            deps = deps + (self.last,)
        deps = tuple(sorted({d for d in deps if self.ops[d].stream != stream}))
        recv, self.recv = (self.recv, None) if chain else (None, self.recv)
        op = Op(len(self.ops), stream, kind, name, phase, layer, mb, deps, recv=recv, vs=self.vs, **kw)
        self.ops.append(op)
        # DualPipe pairs: the backward's segment j sorts between the forward's j − 1 and j (see _overlapped).
        merged = (2 * self.segment - self.side,) if len(self.key) > 1 else ()
        self.keys.append(self.key + merged + (len(self.ops),))
        if kind == COLLECTIVE:
            self._segment += 1
            # Megatron's order (moesim.estimate.a2a_order): its comm nodes are the dispatch and the combine
            self._a2a_segment += spec is not None and spec.name in MEGATRON_A2A_NODES
        if chain:
            self.last = op.index
        return op.index

    def compute(self, name: str, phase: str, layer: int, mb: int, duration_s: float, **kw) -> int | None:
        if phase == "bwd":
            duration_s *= self.scale
        if duration_s <= 0 and not kw.get("load"):
            return None
        return self.add("compute", COMPUTE, name, phase, layer, mb, duration_s=duration_s, **kw)

    def comm(self, spec: CommSpec | None, phase: str, layer: int, mb: int, **kw) -> int | None:
        if spec is None:
            return None
        return self.add("comm", COLLECTIVE, COMM_NAMES.get(spec.name, spec.name), phase, layer, mb, comm=spec, **kw)

    # Layers ----------------------------------------------------------------------------------

    def _block(self, lc: LayerCost, name: str, duration_s: float, phase: str, layer: int, mb: int) -> None:
        gather, wgrad, scatter = "tp_all_gather", "tp_all_gather_wgrad", "tp_reduce_scatter"
        if name == "attention" and MLA_GATHER in lc.comms:  # MLA under SP (estimate/mla_tp_comms.py)
            # forward: the latents gathered, the out-projection's h scattered; backward the other way round
            gather, wgrad, scatter = (MLA_GATHER, None, "tp_reduce_scatter") if phase != "bwd" else \
                ("tp_all_gather", MLA_WGRAD_GATHER, MLA_SCATTER)
        issue_amax(self, lc, name, phase, layer, mb)  # FP8 current scaling's, before the cast and the gather
        self.comm(lc.comms.get(gather), phase, layer, mb)
        if phase == "bwd" and wgrad:  # sequence parallelism: the input gathered again for the weight gradient
            self.comm(lc.comms.get(wgrad), phase, layer, mb)
        if name == "attention" and self.costs.layout.cp > 1:
            self._context_parallel_attention(lc, duration_s, phase, layer, mb)
        else:
            self.compute(name, phase, layer, mb, duration_s)
        self.comm(lc.comms.get(scatter), phase, layer, mb)
        self.comm(lc.comms.get("tp_all_reduce"), phase, layer, mb)

    def _context_parallel_attention(self, lc: LayerCost, duration_s: float, phase: str, layer: int, mb: int) -> None:
        """Attention on a CP rank (moesim.estimate.context_parallel): Ulysses all-to-alls around it, or the
        KV ring's c − 1 steps (twice the volume backward) on the comm stream beside it, waited for after."""
        ring = lc.comms.get("cp_ring_send_recv")
        if ring is None:
            self.comm(lc.comms.get("cp_all_to_all_qkv"), phase, layer, mb)
            self.compute("attention", phase, layer, mb, duration_s)
            self.comm(lc.comms.get("cp_all_to_all_out"), phase, layer, mb)
            return
        steps = (self.costs.layout.cp - 1) * (RING_BACKWARD_MULTIPLE if phase == "bwd" else 1)
        # The ring's steps one after another, each a send/recv of one KV chunk (as the estimate counts them).
        spec = dataclasses.replace(ring, size_bytes=ring.size_bytes * steps, time_s=ring.time_s * steps,
                                   latency_s=ring.latency_s * steps, wire_bytes=ring.wire_bytes * steps)
        # The ring moves KV while the attention core runs; Q, K, V projections come before it, the output
        # projection after (3 : 1 of the projections' time; backward scales every part alike).
        total = lc.fwd_s["attention"] / lc.attention_blocks
        core = duration_s * (lc.attention_core_s / lc.attention_blocks) / total if total > 0 else 0.0
        projections = duration_s - core
        self.compute("attention QKV projections", phase, layer, mb, projections * 3 / 4)
        moving = self.add("comm", COLLECTIVE, "CP ring send/recv", phase, layer, mb, (self.last,), chain=False,
                          comm=spec)
        self.compute("attention", phase, layer, mb, core)
        self.add("compute", COMPUTE, "CP ring wait", phase, layer, mb, (moving,), duration_s=0.0)
        self.compute("attention output projection", phase, layer, mb, projections / 4)

    def _chunk_spec(self, lc: LayerCost, name: str) -> CommSpec | None:
        spec = lc.comms.get(name)
        if spec is None or self.chunks == 1:
            return spec
        return self.costs.price(spec.name, spec.axis, spec.op, spec.size_bytes / self.chunks)

    def _moe(self, lc: LayerCost, phase: str, layer: int, mb: int, backward: bool, parts=None) -> None:
        """One MoE layer's pass; `parts`: the stage parts' seconds to run (default: the layer's own)."""
        c = self.chunks
        parts = lc.parts(backward, self.paired and phase != "recompute") if parts is None else parts
        first, second = ("ep_all_to_all_combine", "ep_all_to_all_dispatch") if backward else \
            ("ep_all_to_all_dispatch", "ep_all_to_all_combine")
        into, back = self._chunk_spec(lc, first), self._chunk_spec(lc, second)
        gather, scatter = self._chunk_spec(lc, "etp_all_gather"), self._chunk_spec(lc, "etp_reduce_scatter")
        # Megatron's alltoall dispatcher: the probabilities' all-to-all after the tokens' (forward) and its reverse
        # beside the tokens' way back (backward); only where the layer names that implementation (estimate.terms)
        probs = self._chunk_spec(lc, "ep_all_to_all_probs")
        moe = self.moe_number[layer]
        share = self.costs.pair_share() if self.paired and phase != "recompute" else 1.0
        expert_full_s = self.costs.expert_ffn_s(lc.slots / c, backward, share)
        expert_s = expert_full_s * (self.scale if backward else 1)  # input-gradient only: less the W share
        kw = dict(moe=moe, chunks=c, backward=backward)
        order = ("shared_experts", "unpermute") if backward else ("router", "permute")
        run_parts(self, lc, order, parts, phase, layer, mb, STAGE_NAMES)  # shared experts' tp calls around them
        start = self.last
        arrived = []
        for _ in range(c):
            a = self.add("comm", COLLECTIVE, COMM_NAMES[into.name], phase, layer, mb, (start,), chain=False,
                         comm=into, load=TO_EXPERTS, **kw) if into else start
            if probs and not backward:
                a = self.add("comm", COLLECTIVE, COMM_NAMES[probs.name], phase, layer, mb, (a,), chain=False,
                             comm=probs, load=TO_EXPERTS, **kw)
            if gather:
                a = self.add("comm", COLLECTIVE, COMM_NAMES[gather.name], phase, layer, mb, (a,), chain=False,
                             comm=gather, load=GATHER, **kw)
            arrived.append(a)
        computed = [self.add("compute", COMPUTE, STAGE_NAMES["expert_ffn"], phase, layer, mb, (a,), chain=False,
                             duration_s=expert_s, load=EXPERT, share=share, **kw) for a in arrived]
        if backward and self.a2a_segments and expert_s < expert_full_s:  # mlp_bwd_dw, off the chain (a2a_order)
            for e in computed:
                self.add("compute", COMPUTE, "expert FFN weight gradients", phase, layer, mb, (e,), chain=False,
                         duration_s=expert_full_s - expert_s, load=EXPERT, share=share, **kw)
        for e in computed:
            r = e
            if scatter:
                r = self.add("comm", COLLECTIVE, COMM_NAMES[scatter.name], phase, layer, mb, (r,), chain=False,
                             comm=scatter, load=GATHER, **kw)
            if back:
                r = self.add("comm", COLLECTIVE, COMM_NAMES[back.name], phase, layer, mb, (r,), chain=False,
                             comm=back, load=FROM_EXPERTS, **kw)
            if probs and backward:
                r = self.add("comm", COLLECTIVE, COMM_NAMES[probs.name], phase, layer, mb, (r,), chain=False,
                             comm=probs, load=FROM_EXPERTS, **kw)
            self.last = r
        run_parts(self, lc, ("permute", "router") if backward else ("unpermute", "shared_experts"), parts, phase,
                  layer, mb, STAGE_NAMES)

    def layer_forward(self, layer: int, mb: int, phase: str = "fwd") -> None:
        lc = self.costs.classes[self.costs.workload.layer_class_index[layer]]
        parts = lc.parts(False, self.paired and phase != "recompute")
        self.compute(STAGE_NAMES["layer_overhead"], phase, layer, mb, parts["layer_overhead"])
        attention = parts["attention"] / lc.attention_blocks
        for _ in range(lc.attention_blocks):
            self._block(lc, "attention", attention, phase, layer, mb)
        if lc.is_moe:
            self._moe(lc, phase, layer, mb, backward=False)
        else:
            self._block(lc, "dense FFN", parts["dense_ffn"], phase, layer, mb)

    def layer_backward(self, layer: int, mb: int, input_only: bool = False) -> None:
        """Backward of one layer; `input_only` leaves out its weight-gradient part W (every backward
        kernel scaled by 1 − W/backward; zero-bubble schedules run W later)."""
        lc = self.costs.classes[self.costs.workload.layer_class_index[layer]]
        if lc.recompute == "full":
            self.layer_forward(layer, mb, "recompute")
        elif lc.recompute == "selective":
            mlp = not lc.is_moe and "mlp" in self.costs.training.recompute_modules
            if mlp:  # the checkpointed dense MLP's forward again, its tp collectives with it (estimate/terms.py)
                issue_amax(self, lc, "dense FFN", "recompute", layer, mb)
                self.comm(lc.comms.get("tp_all_gather"), "recompute", layer, mb)
            moe = lc.moe_recompute_s
            redo_s = lc.recompute_pair_s if self.paired and lc.recompute_pair_s is not None else lc.recompute_s
            self.compute("attention recompute", "recompute", layer, mb, max(redo_s - sum(moe.values()), 0.0))
            if moe:  # the "moe" checkpoint: the MoE layer's forward again, all-to-alls and all (estimate/selective.py)
                self._moe(lc, "recompute", layer, mb, backward=False,
                          parts={p: moe.get(p, 0.0) for p in ("router", "permute", "unpermute", "shared_experts")})
            if mlp:
                self.comm(lc.comms.get("tp_reduce_scatter"), "recompute", layer, mb)
                self.comm(lc.comms.get("tp_all_reduce"), "recompute", layer, mb)
        # delay_wgrad_compute in Megatron's order (moesim.estimate.a2a_order): a MoE layer's weight gradients leave its
        # chain, the experts' after their backward, the rest (attention, shared experts) after the layer's backward
        delayed = self.a2a_segments and lc.is_moe and not input_only
        total = sum(lc.bwd_s.values())
        self.scale = 1 - lc.weight_grad_s / total if (input_only or delayed) and total > 0 else 1.0
        parts = lc.parts(True, self.paired)
        self.compute(STAGE_NAMES["layer_overhead"], "bwd", layer, mb, parts["layer_overhead"])
        if lc.is_moe:
            self._moe(lc, "bwd", layer, mb, backward=True)
        else:
            self._block(lc, "dense FFN", parts["dense_ffn"], "bwd", layer, mb)
        attention = parts["attention"] / lc.attention_blocks
        for _ in range(lc.attention_blocks):
            self._block(lc, "attention", attention, "bwd", layer, mb)
        if delayed and self.scale < 1:  # pre_dispatch_computation.backward_dw: off the chain, on the compute stream
            rest_s = (1 - self.scale) * sum(v for k, v in parts.items() if k != "expert_ffn")
            self.add("compute", COMPUTE, "weight gradients (delayed)", "bwd", layer, mb, (self.last,), chain=False,
                     duration_s=rest_s)
        self.scale = 1.0

    # Gradient sync, ZeRO-3, pipeline -------------------------------------------------------------

    def _bucket_units(self, piece: int) -> tuple[dict, dict]:
        """Piece `piece`'s gradient units per axis in the order they reach the buffers (0: the head's, 1 + n: the
        n-th layer from the end, L + 1: the embedding's; bytes) and the units that close a bucket before the piece's
        end (grad_buckets.mcore_buckets, on a bucketed piece only; elsewhere the one bucket is the flush's)."""
        if piece not in self.units:
            tr, st = self.costs.training, self.costs.stages[piece]
            q_g = tr.bytes_of("grad")
            classes = [self.costs.classes[self.costs.workload.layer_class_index[layer]] for layer in st.layers[::-1]]
            units = {"dp": (st.head_grad_bytes, *(c.dense_grad_bytes for c in classes), st.embedding_grad_bytes),
                     "edp": (0.0, *(c.expert_grad_bytes for c in classes), 0.0)}
            # overlap_grad_reduce off, a later piece or with_optimizer_step: bucket size None (grad_buckets.bucketed)
            sized = self.overlap_grad_reduce and bucketed(self.stage, piece) and not self.with_step_buckets
            closes = {axis: frozenset(i for i, _ in mcore_buckets([u / q_g for u in units[axis]], self.bucket_params))
                      if sized else frozenset() for axis in units}
            self.units[piece] = (units, closes)
        return self.units[piece]

    def forward_buckets(self, piece: int) -> dict[str, list[tuple[int, float]]]:
        """Piece `piece`'s buckets per axis in forward order (the reverse of their reduction, grad_bucket's): each
        its forward position that first uses it (−1 the piece's start, before the embedding; i the piece's i-th layer;
        the head's alone waited on at the last layer) and the parameter bytes it gathers."""
        tr, st = self.costs.training, self.costs.stages[piece]
        q_ratio = tr.bytes_of("param") / tr.bytes_of("grad")
        sizes, closes = self._bucket_units(piece)
        n = len(st.layers)
        position = {0: n - 1, n + 1: -1, **{1 + i: n - 1 - i for i in range(n)}}  # unit -> forward position
        out = {}
        for axis in ("dp", "edp"):
            buckets, pending, used = [], 0.0, []
            for unit, size in enumerate(sizes[axis]):
                pending += size
                used += [position[unit]] if size > 0 else []
                if (unit in closes[axis] or unit == len(sizes[axis]) - 1) and pending > 0:
                    buckets.append((max(min(used), -1), pending * q_ratio))
                    pending, used = 0.0, []
            out[axis] = buckets[::-1]
        return out

    def param_wait(self, piece: int, mb: int, position: int) -> None:
        """overlap_param_gather, at forward position `position` of piece `piece` (−1: its start; i: before its i-th
        layer): on the piece's first forward, wait on the gathers of the buckets first used here, each dispatched
        here if not yet (the first of its chain), and dispatch the next of the chain once one is waited on (Megatron-LM
        d98e8a64 param_and_grad_buffer.py l.538-575 finish_param_sync; distributed_data_parallel.py l.517-551: the
        forward pre-hook; the NCCL call waits for the compute stream so far). At the start a zero-length pre-hook
        takes the piece's receive: nothing is dispatched before it (no align_param_gather outside the interleaved
        schedule, arguments.py l.1013)."""
        if not self.forward_gathers or self.gather_mb.setdefault(piece, mb) != mb or (self.with_step and
                                                                                      piece == self.stage):
            return  # with_optimizer_step: chunk 0's gathers dispatched after its optimizer step, waited on there
        if position == -1:
            self.add("compute", COMPUTE, "forward pre-hook", "fwd", -1, mb, duration_s=0.0)
        for axis, chain in self.forward_buckets(piece).items():
            for k, (used_at, _) in enumerate(chain):
                if used_at != position:
                    continue
                gather = self._dispatch(piece, axis, k, mb)
                if gather is not None:
                    self.add("compute", COMPUTE, PARAM_WAIT_LABEL, "fwd", -1, mb, (gather,), duration_s=0.0)
                if k + 1 < len(chain) and not self.aligned:  # aligned: skip_next_bucket_dispatch
                    self._dispatch(piece, axis, k + 1, mb)

    def dispatch_chunk(self, piece: int) -> None:
        """align_param_gather: every bucket of piece `piece` dispatched now, in buffer order (each buffer's bucket
        groups from its first, the model's last layers; the dense buffer's, then the expert buffer's: Megatron-LM
        d98e8a64 distributed_data_parallel.py start_param_sync), after the compute so far."""
        for axis, chain in self.forward_buckets(piece).items():
            for k in reversed(range(len(chain))):
                self._dispatch(piece, axis, k, -1)

    def _dispatch(self, piece: int, axis: str, k: int, mb: int) -> int | None:
        """The parameter all-gather of piece `piece`'s k-th bucket (forward order) on `axis`, on the grad stream after
        the compute so far (dispatched once)."""
        if (piece, axis, k) not in self.dispatched:
            nbytes = self.forward_buckets(piece)[axis][k][1]
            spec = self.costs.price(f"{axis}_all_gather", axis, "all_gather", nbytes)
            vs, self.vs = self.vs, piece  # the gather's piece (dispatched ahead of its forward when aligned)
            self.dispatched[piece, axis, k] = None if spec is None else self.add(
                "grad", COLLECTIVE, PARAM_GATHER_LABEL.format(axis=axis), "fwd", -1, mb, (self.last,), chain=False,
                comm=spec)
            self.vs = vs
        return self.dispatched[piece, axis, k]

    def grad_bucket(self, units: tuple[int, ...], layer: int, piece: int, flush: bool = False) -> None:
        """Hand gradient units `units` of model piece `piece` (indices as `_bucket_units`) to its open buckets; reduce
        a bucket at the unit that closes it in MCore's layout (grad_buckets.mcore_buckets: only piece 0 on device 0
        is bucketed, the first chunk of pp rank 0, grad_buckets.bucketed) and the rest when `flush` (end of the
        piece's backward; with overlap_grad_reduce off, of the device's). ZeRO-0: all-reduce; ZeRO ≥ 1:
        reduce-scatter, on the grad stream after the operation that produced the last gradient, and the bucket's
        parameter all-gather after the optimizer step (`build_stage_program`)."""
        tr, ready = self.costs.training, self.last
        q_ratio = tr.bytes_of("param") / tr.bytes_of("grad")
        sizes, closes = self._bucket_units(piece)
        for axis in ("dp", "edp"):
            key = (axis, piece if self.overlap_grad_reduce else -1)  # off: every piece waits for the device's end
            buckets = []
            for unit in units:
                self.pending[key] = self.pending.get(key, 0.0) + sizes[axis][unit]
                if unit in closes[axis] and self.pending[key] > 0:
                    buckets.append(self.pending[key])
                    self.pending[key] = 0.0
            if flush and self.pending.get(key, 0.0) > 0:
                buckets.append(self.pending[key])
                self.pending[key] = 0.0
            for size in buckets:
                self._reduce(axis, size, layer, ready, q_ratio)

    def _reduce(self, axis: str, size: float, layer: int, ready, q_ratio: float) -> None:
        """One bucket of `size` gradient bytes on `axis`, after operation `ready`; ZeRO ≥ 1: its parameter all-gather
        kept for after the optimizer step (`gathers`, estimate/param_gather.py)."""
        if not gathers_after_step(self.costs.training.zero_stage):
            steps = ((f"{axis}_all_reduce", "all_reduce", size),)
        else:
            steps = ((f"{axis}_reduce_scatter", "reduce_scatter", size),)
            self.gathers.append((axis, size * q_ratio))
        for name, op, nbytes_call in steps:
            spec = self.costs.price(name, axis, op, nbytes_call)
            if spec is not None:
                label = f"gradient {op.replace('_', '-')} ({axis})"
                self.add("grad", COLLECTIVE, label, "grad", layer, -1, (ready,), chain=False, comm=spec)

    def zero3_gather(self, mb: int, phase: str) -> None:
        st = self.costs.stages[self.stage]
        for axis, nbytes in (("dp", st.param_dense_bytes), ("edp", st.param_expert_bytes)):
            spec = self.costs.price(f"{axis}_param_all_gather", axis, "all_gather", nbytes)
            if spec is not None:
                self.add("comm", COLLECTIVE, f"ZeRO-3 parameter all-gather ({axis})", phase, -1, mb, comm=spec)

    def send(self, spec: CommSpec | None, peer: int, mb: int, phase: str) -> None:
        if spec is not None and peer != 0:  # a piece on the same device needs no transfer
            self.add("p2p", SEND, "pipeline send", phase, -1, mb, (self.last,), chain=False, comm=spec, peer=peer)


def build_stage_program(costs: Costs, stage: int, chunks: int = 1,
                        bucket_params: int | None = None) -> StageProgram:
    """The program of every device of pipeline `stage` for one training step; `bucket_params` None: MCore's
    default bucket size for the layout's dp·cp group."""
    if bucket_params is None:
        bucket_params = float(mcore_bucket_params(costs.layout.dp * costs.layout.cp))
    b = _Builder(costs, stage, chunks, bucket_params)
    tr, m = costs.training, costs.micro_batches
    zbv = zbv_inputs(costs) if tr.pipeline_schedule == "zb-v" else {}
    slots = device_order(tr.pipeline_schedule, m, costs.layout.pp, costs.layout.vp, stage,
                         a2a_overlap=tr.moe_a2a_overlap, **zbv)
    left = grad_passes_per_piece(slots)
    pieces_left = [len(left)]
    replicated = sum(costs.stages[vs].replicated_grad_bytes for vs in {s.vs for s in slots})  # the device's pieces
    pp, vp = costs.layout.pp, costs.layout.vp
    aligned = b.forward_gathers and b.aligned  # align_param_gather: chunks 0 and 1 at the step's start
    for chunk in range(int(b.with_step), min(2, vp)) if aligned else ():  # d98e8a64 schedules.py l.1219-1221
        b.dispatch_chunk(chunk * pp + stage)
    forwards = 0
    for n, slot in enumerate(slots):
        b.key = (n,)
        if aligned and slot.kind == "F":
            # the forward of virtual micro-batch j + rank, the first of chunk c: chunk c + 1 dispatched (1 < c + 1 <
            # v; schedules.py l.1341-1356, is_first_microbatch_for_model_chunk: j + rank = c·pp)
            ahead = forwards + stage
            if ahead % pp == 0 and 1 < ahead // pp + 1 < vp:
                b.dispatch_chunk((ahead // pp + 1) * pp + stage)
            forwards += 1
        if slot.kind == "FB":
            overlapped(b, costs, slot, left, pieces_left)
        elif slot.kind == "F":
            forward(b, costs, slot.mb, slot.vs)
        elif slot.kind == "W":
            weights(b, costs, slot.mb, slot.vs, left, pieces_left)
        else:
            backward(b, costs, slot.mb, slot.vs, slot.kind, left, pieces_left)
    b.key = (len(slots),)
    # Megatron finalize_model_grads: after the data-parallel sync, the tp all-reduce of the gradients whole on every
    # tp rank under sequence parallelism, the device's pieces coalesced into one call (estimate/tp_grad_sync.py).
    spec = costs.price(TP_GRAD_ALL_REDUCE, "tp", "all_reduce", replicated) if replicated > 0 else None
    if spec is not None:
        b.add("grad", COLLECTIVE, COMM_NAMES[TP_GRAD_ALL_REDUCE], "grad", -1, -1, (b.last,), chain=False, comm=spec)
    if costs.embedding_sync is not None and stage in (0, costs.layout.pp - 1):
        # Megatron finalize_model_grads: the data-parallel sync finished (finish_grad_sync), the first and last
        # stage all-reduce the shared word embedding's gradient, then the optimizer (estimate/embedding_sync.py).
        b.add("grad", COLLECTIVE, "embedding gradient all-reduce", "grad", -1, -1, (b.last,), chain=False,
              comm=costs.embedding_sync)
    optimizer_step(b, costs)  # the optimizer, then the parameter gathers it launches (des/param_sync.py)
    ops = tuple(b.ops)
    streams = {s: tuple(sorted((op.index for op in ops if op.stream == s), key=b.keys.__getitem__))
               for s in STREAMS}
    needed = frozenset(d for op in ops for d in op.deps)
    return StageProgram(stage, ops, {s: v for s, v in streams.items() if v}, needed)


__all__ = ["COLLECTIVE", "COMPUTE", "EXPERT", "FORWARD_SUFFIX", "FROM_EXPERTS", "GATHER", "Op", "SEND", "STREAMS",
           "StageProgram", "TO_EXPERTS", "build_stage_program", "grad_passes_per_piece", "pipeline_order",
           "zbv_piece_times", "zbv_stage_times"]
