"""Per-operation costs for the simulator, taken from the analytical model's own functions.

Notation (per device, per micro-batch, as in moesim.estimate.terms): b sequences per micro-batch,
n tokens per sequence of a layer's stack, h d_model, t = b·n/tp tokens entering an MoE layer, S a
collective's size in nccl-tests convention, p its group size.

Compute kernels come from `TermBuilder` (per-stage forward/backward parts, `expert_ffn_time_s`,
`logits_time_s`); every collective is priced once by the collective model the estimate uses
(`CollectivePricer` over `default_model(hw)`), split into its latency T(0) and a bandwidth part
T(S) − T(0) during which each member moves its wire bytes S·busbw-factor (nccl-tests
PERFORMANCE.md), so a collective alone takes exactly T(S). Gradient bytes per layer follow the
estimate's parameter rule: dense (attention, dense FFN, shared experts) ÷ tp plus replicated
(router, norms); routed experts ÷ (ep·etp); embedding on the first stage, output head on the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from moesim.collectives.base import CollectiveModel, Group, wire_bytes_per_device
from moesim.collectives.call_model import model_for_call
from moesim.collectives.dispatch import KERNEL_BACKENDS
from moesim.collectives.nccl_no_pick import as_floor
from moesim.des.orders import device_of, virtual_stages
from moesim.estimate.candidates import effective_capacity_factor
from moesim.estimate.context_parallel import CP_COMM_CODES
from moesim.estimate.schedules import weight_grad_time_s
from moesim.estimate.pricing import CollectivePricer
from moesim.estimate.terms import ClassTerms, TermBuilder
from moesim.memory import RECOMPUTE_CODES
from moesim.ops.sm_share import overlapped_compute_share
from moesim.ops.vocab import embedding_tokens, vocab_calls
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec
from moesim.estimate.tp_grad_sync import reduces_over_tp, replicated_grad_bytes
from moesim.estimate.embedding_sync import (EMBEDDING_AXIS, embedding_grad_bytes, embedding_group, ends_apart,
                                            shares_embedding)
from moesim.topology.mapping import axis_sizes, mesh_strides
from moesim.workload import Workload, build_workload, layout_ranges, stage_ranges, v_shape_ranges


@dataclass(frozen=True)
class CommSpec:
    """One collective call as priced by the collective model, per member."""

    name: str
    axis: str
    op: str
    size_bytes: float
    group_size: int
    stride: int
    time_s: float  # T(S), alone on the network
    latency_s: float  # T(0)
    wire_bytes: float  # each member's bytes on the wire (uniform case)
    # wire bytes per byte of the plain all-to-all's S·(p−1)/p: DeepEP's records to the nodes (GPUs in one node) a
    # token reaches, what routing loads scale (variation.py); 1 for every other collective and backend
    dedup_factor: float = 1.0
    # A DeepEP all-to-all across nodes runs two stages at once (dispatch.py): the network one (wire_bytes, each
    # (token, remote node) record) in network_s, and the NVLink forwards inside the destination node,
    # forward_bytes per member (S·F/k·f) in forward_s; T(S) = T(0) + max of the two. 0 for every other call.
    forward_bytes: float = 0.0
    forward_s: float = 0.0
    network_s: float = 0.0

    @property
    def cap_bytes_per_s(self) -> float:
        """The rate the model moves the wire bytes at: wire / (T(S) − T(0)); a two-stage DeepEP call's network
        stage: wire / its own time."""
        busy = self.network_s if self.forward_bytes > 0 else self.time_s - self.latency_s
        return self.wire_bytes / busy if busy > 0 and self.wire_bytes > 0 else math.inf

    @property
    def forward_cap_bytes_per_s(self) -> float:
        """The rate of a DeepEP call's NVLink forwards: forward_bytes / forward_s (their stage alone)."""
        return self.forward_bytes / self.forward_s if self.forward_s > 0 else math.inf

    @property
    def span(self) -> int:
        return (self.group_size - 1) * self.stride + 1


@dataclass(frozen=True)
class LayerCost:
    """One layer of a class, per device per micro-batch."""

    is_moe: bool
    attention_blocks: int
    fwd_s: dict[str, float]
    bwd_s: dict[str, float]
    recompute: str
    recompute_s: float
    comms: dict[str, CommSpec]  # by CommCall name (tp_all_gather, ep_all_to_all_dispatch, ...)
    dense_grad_bytes: float
    expert_grad_bytes: float
    weight_grad_s: float = 0.0  # W: the weight-gradient part of bwd_s (zero-bubble schedules split it off)
    attention_core_s: float = 0.0  # forward attention scores, the part of fwd_s["attention"] a CP ring hides under
    slots: float = 0.0  # token slots the device sends per MoE layer (padded or k·t)
    capacity: int = 0  # per expert per routing group; 0 when dropless
    tokens: int = 0  # t, tokens per device entering the MoE layer
    # The parts as a DualPipe overlapped pair runs them, beside DeepEP's SMs (ClassTerms.*_pair_parts_s); None:
    # the same as fwd_s / bwd_s (nothing shares the chip).
    fwd_pair_s: dict[str, float] | None = None
    bwd_pair_s: dict[str, float] | None = None
    # Recompute module "moe": the MoE layer's forward parts re-run in backward, within recompute_s (empty: none)
    moe_recompute_s: dict[str, float] = field(default_factory=dict)
    # recompute_s as a DualPipe overlapped pair runs it (ClassTerms.recompute_pair_time_s); None: recompute_s
    recompute_pair_s: float | None = None

    def parts(self, backward: bool, paired: bool) -> dict[str, float]:
        """The stage parts' seconds: backward or forward, in a DualPipe overlapped pair or not."""
        pair = self.bwd_pair_s if backward else self.fwd_pair_s
        return pair if paired and pair is not None else (self.bwd_s if backward else self.fwd_s)


@dataclass(frozen=True)
class StageCost:
    """What differs between pipeline pieces (virtual stages, moesim.des.orders; a pipeline stage each
    under 1F1B): layers, boundary transfers, extras."""

    index: int
    layers: tuple[int, ...]  # global layer indices, execution order (uneven splits: workload.stage_ranges)
    send_forward: CommSpec | None  # activations to the next stage
    send_backward: CommSpec | None  # input gradient to the previous stage
    logits_s: float  # forward + backward, last stage only
    embedding_grad_bytes: float  # input embedding and position tables (first stage), ready last
    head_grad_bytes: float  # output projection and final norms (last stage), ready first
    param_dense_bytes: float  # whole-stage parameters per device, for ZeRO-3 gathers
    param_expert_bytes: float
    embedding_fwd_s: float = 0.0  # the input embedding's operators (first stage; moesim.ops.vocab)
    embedding_bwd_s: float = 0.0  # its backward: all weight gradient
    # Gradient bytes of the parameters whole on every tp rank (norms, router, MLA's duplicated weights), all-reduced
    # over tp once a step under sequence parallelism (moesim/estimate/tp_grad_sync.py); 0 where not reduced.
    replicated_grad_bytes: float = 0.0
    # The embedding's (first stage) and output heads' (last stage) tp collectives: (end, pass, before the end's
    # compute, CommSpec), one entry per call, in execution order (moesim.ops.vocab.vocab_calls).
    end_comms: tuple = ()

    def end_calls(self, end: str, pass_: str, before: bool) -> list[CommSpec]:
        """The collectives of `end` (embedding | head) in `pass_` before (or after) its compute."""
        return [spec for e, p, b, spec in self.end_comms if (e, p, b) == (end, pass_, before)]


@dataclass
class Costs:
    """Everything the schedule needs, for one scenario, layout and training spec."""

    scenario: Scenario
    layout: Layout
    training: TrainingSpec
    workload: Workload
    builder: TermBuilder
    classes: list[LayerCost]
    stages: list[StageCost]
    micro_batches: int
    optimizer_s: float
    capacity_factor: float  # NaN: dropless
    pricer: CollectivePricer
    strides: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    # The word embedding's gradient all-reduce of the first and last device (estimate/embedding_sync.py); None: none.
    embedding_sync: CommSpec | None = None
    _expert_s: dict = field(default_factory=dict, repr=False)
    _pricers: dict = field(default_factory=dict, repr=False)  # per other model (collectives.call_model)

    def expert_ffn_s(self, slots: float, backward: bool, share: float = 1.0) -> float:
        """builder.expert_ffn_time_s for one device and `slots` token slots at `share` of the SMs, priced once per
        (slots, direction, share): every micro-batch of a layer class asks for the same."""
        key = (float(slots), bool(backward), float(share))
        hit = self._expert_s.get(key)
        if hit is None:
            hit = self._expert_s[key] = _f(self.builder.expert_ffn_time_s(slots, backward, share))
        return hit

    def pair_share(self) -> float:
        """The SM share of compute in an overlapped pair (DualPipe, moe_a2a_overlap; moesim.ops.sm_share): beside the
        all-to-all's kernels where the layout splits the experts (ep > 1), else the full chip."""
        if self.layout.ep <= 1:
            return 1.0
        return float(overlapped_compute_share(self.builder.hw, self.training, self.layout.ep, self.layout.etp))

    def device_of(self, vs: int, mb: int = 0) -> int:
        """The pipeline stage (device) that runs piece `vs` of micro-batch `mb`."""
        return device_of(self.training.pipeline_schedule, self.layout.pp, vs, mb, self.micro_batches)

    def price(self, name: str, axis: str, op: str, size_bytes: float) -> CommSpec | None:
        """The collective `op` of `size_bytes` on mesh `axis`; None when it costs nothing (group of one)."""
        p = self.sizes[axis]
        if p <= 1 or size_bytes <= 0:
            return None
        devices = self.scenario.devices
        # one group per pipeline on the embedding axis (embedding_sync.embedding_concurrent), else the axis tiles
        concurrent = devices // self.layout.pp if axis == EMBEDDING_AXIS else devices // p
        args = (float(size_bytes), p, self.strides[axis], concurrent)
        model, pricer = model_for_call(self.pricer.model, name, op), self.pricer  # CP's all-to-all: NCCL's
        if model is not pricer.model:
            pricer = self._pricers.get(id(model)) or \
                self._pricers.setdefault(id(model), CollectivePricer(model, devices))
        full = pricer.one(op, *args)
        with as_floor():  # the call's latency term: T(0) of a real call, not NCCL's discarded empty call
            empty = pricer.one(op, 0.0, *args[1:])
        wire = size_bytes if op == "send_recv" else wire_bytes_per_device(op, size_bytes, p)
        dedup, stages = 1.0, (0.0, 0.0, 0.0)
        if op == "all_to_all" and getattr(model, "backend", "") in KERNEL_BACKENDS:
            # DeepEP's flows carry its records: over the network each (token, node) pair once (one node: each
            # (token, GPU) pair over NVLink), the bytes the estimate prices (DispatchModel.stage_factors); across
            # nodes the NVLink forwards inside the destination node are flows of their own, each stage at the pace
            # of its own time (DispatchModel.stage_times_s, the terms of the estimate's max)
            nvlink, network = model.stage_factors(p)
            deepep_wire = size_bytes * (network if network > 0 else nvlink)
            dedup, wire = deepep_wire / wire, deepep_wire
            if network > 0 and nvlink > 0:
                forward_s, network_s = model.stage_times_s(size_bytes, Group(p, args[2], args[3], devices))
                stages = (size_bytes * nvlink, forward_s, network_s)
        return CommSpec(name, axis, op, float(size_bytes), p, self.strides[axis], full.time_s, empty.time_s, wire,
                        dedup, *stages)

    @property
    def dropless(self) -> bool:
        return bool(np.isnan(self.capacity_factor))


def _f(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def _boundary_tokens(workload: Workload, ranges: tuple[range, ...]) -> list[int]:
    """Tokens per sequence stage s sends on: its stack's, plus the encoder output once in the decoder
    (the rule of moesim.estimate.stages)."""
    out = [0] * len(ranges)
    for s in range(len(ranges) - 1):
        cls = workload.classes[workload.layer_class_index[ranges[s][-1]]]
        out[s] = cls.tokens + (workload.seq_len if cls.stack == "decoder" and cls.cross_attention else 0)
    return out


def build_costs(scenario: Scenario, layout: Layout, training: TrainingSpec, model: CollectiveModel,
                optimizer_s: float) -> Costs:
    """Costs of every layer class and stage. `optimizer_s` is the estimate's optimizer step time."""
    spec, hw, tr = scenario.model, scenario.hardware, training
    seq, dec = scenario.seq_lens
    wl = build_workload(spec, seq, dec)
    m, pp, tp = tr.micro_batches, layout.pp, layout.tp
    one = lambda v: np.array([v], dtype=float)  # noqa: E731
    b = tr.global_batch_sequences / (layout.dp * m) / layout.cp  # per device (context parallelism)
    cf = effective_capacity_factor(scenario, tr)
    builder = TermBuilder(spec, hw, tr, one(b), one(tp), one(layout.ep), one(layout.etp),
                          np.array([RECOMPUTE_CODES[tr.recompute]]), one(cf), one(layout.cp),
                          np.array([CP_COMM_CODES[layout.cp_comm]]))
    strides, sizes = dict(mesh_strides(layout)), dict(axis_sizes(layout))
    if layout.cp > 1:  # gradients reduce over dp·cp (as the estimate: exact when dp follows tp·cp)
        sizes["dp"], strides["dp"] = layout.dp * layout.cp, min(strides["cp"], strides["dp"])
    # Megatron finalize_model_grads, _allreduce_word_embedding_grads: a group of the first and last stage, where
    # they are apart and share the embedding (estimate/embedding_sync.py); a group of one otherwise.
    synced = ends_apart(tr.pipeline_schedule, layout.pp) and shares_embedding(spec, wl)
    size, stride = embedding_group(layout.pp if synced else 1, strides["pp"])
    sizes[EMBEDDING_AXIS], strides[EMBEDDING_AXIS] = int(size), int(stride)
    costs = Costs(scenario, layout, tr, wl, builder, [], [], m, optimizer_s, cf,
                  CollectivePricer(model, scenario.devices), strides, sizes)
    costs.embedding_sync = costs.price("embedding_grad_all_reduce", EMBEDDING_AXIS, "all_reduce",
                                       float(embedding_grad_bytes(spec, wl, tr, tp)))
    q_g, q_p, q_a = tr.bytes_of("grad"), tr.bytes_of("param"), tr.bytes_of("activation")
    for cls in wl.classes:
        terms: ClassTerms = builder.build(cls)
        comms = {}
        for call in terms.comms:
            spec_ = costs.price(call.name, call.axis, call.op, _f(call.size_bytes))
            if spec_ is not None and _f(call.calls) > 0:
                comms[call.name] = spec_
        dense = cls.params_shardable / tp + cls.params_replicated
        costs.classes.append(LayerCost(
            is_moe=cls.is_moe, attention_blocks=2 if cls.cross_attention else 1,
            fwd_s={k: _f(v) for k, v in terms.fwd_parts_s.items()},
            bwd_s={k: _f(v) for k, v in terms.bwd_parts_s.items()},
            fwd_pair_s={k: _f(v) for k, v in terms.fwd_pair_parts_s.items()} or None,
            bwd_pair_s={k: _f(v) for k, v in terms.bwd_pair_parts_s.items()} or None,
            recompute=tr.recompute, recompute_s=_f(terms.recompute_time_s), comms=comms,
            dense_grad_bytes=dense * q_g, expert_grad_bytes=cls.params_experts / (layout.ep * layout.etp) * q_g,
            weight_grad_s=_f(weight_grad_time_s(terms)),
            attention_core_s=_f(terms.attention_core_time_s),
            slots=_f(terms.slots) if terms.slots is not None else 0.0,
            capacity=0 if np.isnan(cf) or terms.capacity is None else int(_f(terms.capacity)),
            tokens=int(round(_f(terms.tokens_per_device))) if terms.tokens_per_device is not None else 0,
            moe_recompute_s={k: _f(v) for k, v in terms.moe_recompute_parts_s.items()},
            recompute_pair_s=None if terms.recompute_pair_time_s is None else _f(terms.recompute_pair_time_s),
        ))
    pieces = virtual_stages(tr.pipeline_schedule, pp, layout.vp)
    ends = (layout.first_stage_layers, layout.last_stage_layers)
    ranges = stage_ranges(wl, pp, *ends) if pieces == pp else \
        v_shape_ranges(wl, pp, *ends) if tr.pipeline_schedule == "zb-v" else \
        layout_ranges(wl, layout.chunk_layers) if layout.chunk_layers else stage_ranges(wl, pieces)
    out = _boundary_tokens(wl, ranges)
    sp_split = tp if tr.sequence_parallel else 1
    tp_reduced = bool(reduces_over_tp(tr.sequence_parallel, tp, hw.device_kind))
    logits = _f(builder.logits_time_s(wl.output_tokens, wl.logit_heads))
    in_tokens = embedding_tokens(spec, seq, dec)
    embedding_fwd, embedding_bwd = (_f(builder.embedding_time_s(in_tokens, backward_only)) for backward_only in (0, 1))
    end_comms = [(call.end, call.pass_, call.before, costs.price(call.name, "tp", call.op, _f(call.size_bytes)))
                 for call in vocab_calls(tr, spec.d_model, one(b), in_tokens, wl.output_tokens, wl.logit_heads,
                                         hw.device_kind) for _ in range(call.calls)]
    for s in range(pieces):
        layers = tuple(ranges[s])
        first, last = s == 0, s == pieces - 1
        fwd_bytes = b * out[s] * spec.d_model * q_a / sp_split
        bwd_bytes = b * (out[s - 1] if s else out[0]) * spec.d_model * q_a / sp_split
        embedding = wl.embedding_params / tp + wl.position_params if first else 0.0
        head = wl.lm_head_params / tp + wl.final_norm_params if last else 0.0
        head += wl.embedding_copy_params / tp if last and not first else 0.0  # tied / MTP: the embedding's copy
        classes = [costs.classes[wl.layer_class_index[i]] for i in layers]
        dense = sum(c.dense_grad_bytes for c in classes) / q_g + embedding + head
        expert = sum(c.expert_grad_bytes for c in classes) / q_g
        replicated = replicated_grad_bytes(wl, sum(wl.classes[wl.layer_class_index[i]].params_replicated
                                                   for i in layers), last, q_g) if tp_reduced else 0.0
        costs.stages.append(StageCost(
            index=s, layers=layers,
            send_forward=None if last else costs.price("pp_send_recv", "pp", "send_recv", fwd_bytes),
            send_backward=None if first else costs.price("pp_send_recv", "pp", "send_recv", bwd_bytes),
            logits_s=logits if last else 0.0, embedding_grad_bytes=embedding * q_g, head_grad_bytes=head * q_g,
            param_dense_bytes=dense * q_p, param_expert_bytes=expert * q_p,
            embedding_fwd_s=embedding_fwd - embedding_bwd if first else 0.0,
            embedding_bwd_s=embedding_bwd if first else 0.0, replicated_grad_bytes=float(replicated),
            end_comms=tuple(c for c in end_comms if c[3] is not None and (first if c[0] == "embedding" else last)),
        ))
    return costs


__all__ = ["CommSpec", "Costs", "LayerCost", "StageCost", "build_costs"]
