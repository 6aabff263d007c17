"""What a stage's program is made of (moesim.des.schedule builds it): its streams, the kinds of operation and how
routing loads change them, the trace's names of the stage parts and collectives, one operation (`Op`) and the
program (`StageProgram`). Moved from schedule.py unchanged (session 24, tidy24)."""

from __future__ import annotations

from dataclasses import dataclass

from moesim.des.costs import CommSpec
from moesim.estimate.amax_comms import AMAX_ALL_REDUCE
from moesim.estimate.shared_tp_comms import SHARED_ALL_REDUCE, SHARED_GATHER, SHARED_SCATTER, SHARED_WGRAD_GATHER
from moesim.estimate.mla_tp_comms import MLA_GATHER, MLA_SCATTER, MLA_WGRAD_GATHER
from moesim.estimate.tp_grad_sync import TP_GRAD_ALL_REDUCE

STREAMS = ("compute", "comm", "p2p", "grad")
COMPUTE, COLLECTIVE, SEND = "compute", "collective", "send"
# How routing loads change an operation (see variation.py).
TO_EXPERTS, FROM_EXPERTS, EXPERT, GATHER = "to_experts", "from_experts", "expert", "gather"
STAGE_NAMES = {"layer_overhead": "layer overhead", "attention": "attention", "dense_ffn": "dense FFN",
               "router": "router", "permute": "permute",
               "expert_ffn": "expert FFN", "unpermute": "unpermute", "shared_experts": "shared experts"}
COMM_NAMES = {"tp_all_gather": "TP all-gather", "tp_all_gather_wgrad": "TP all-gather (wgrad input)",
              "tp_reduce_scatter": "TP reduce-scatter",
              "tp_all_reduce": "TP all-reduce", "ep_all_to_all_dispatch": "dispatch all-to-all",
              "ep_all_to_all_combine": "combine all-to-all",
              "ep_all_to_all_probs": "probs all-to-all", "etp_all_gather": "ETP all-gather",
              "etp_reduce_scatter": "ETP reduce-scatter", "tp_embedding_reduce_scatter": "embedding TP reduce-scatter",
              "tp_embedding_all_gather": "embedding TP all-gather", "tp_embedding_all_reduce": "embedding TP all-reduce",
              "tp_head_all_gather": "head TP all-gather", "tp_head_all_gather_wgrad": "head TP all-gather (wgrad input)",
              "tp_head_reduce_scatter": "head TP reduce-scatter", "tp_head_all_reduce": "head TP all-reduce",
              "tp_cross_entropy_all_reduce": "cross-entropy TP all-reduce",
              TP_GRAD_ALL_REDUCE: "TP gradient all-reduce (replicated weights)",
              MLA_GATHER: "TP all-gather (MLA latents)", MLA_SCATTER: "TP reduce-scatter (MLA latents)",
              MLA_WGRAD_GATHER: "TP all-gather (MLA latents, wgrad input)", AMAX_ALL_REDUCE: "TP all-reduce (FP8 amax)",
              SHARED_GATHER: "TP all-gather (shared experts)", SHARED_SCATTER: "TP reduce-scatter (shared experts)",
              SHARED_WGRAD_GATHER: "TP all-gather (shared experts, wgrad input)",
              SHARED_ALL_REDUCE: "TP all-reduce (shared experts)"}
FORWARD_SUFFIX = " (NVLink forwards)"  # trace name of a DeepEP member's NVLink stage across nodes: its call's + this


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a stage's program."""

    index: int
    stream: str
    kind: str
    name: str
    phase: str  # fwd | bwd | recompute | grad | step
    layer: int
    mb: int
    deps: tuple[int, ...]
    duration_s: float = 0.0
    comm: CommSpec | None = None
    load: str = ""
    moe: int = -1  # MoE layer number (routing), -1 when none
    chunks: int = 1
    backward: bool = False
    recv: tuple[str, int, int] | None = None  # ("act" | "grad", micro-batch, piece) from another stage
    peer: int = 0  # SEND: the receiving stage minus this one (+1 next, −1 previous under 1F1B)
    vs: int = -1  # the pipeline piece (virtual stage, moesim.des.orders) the operation belongs to
    share: float = 1.0  # an expert FFN's share of the SMs (beside DeepEP in a DualPipe pair: moesim.ops.sm_share)


@dataclass(frozen=True)
class StageProgram:
    """The operations of one pipeline stage and their split into streams."""

    stage: int
    ops: tuple[Op, ...]
    streams: dict[str, tuple[int, ...]]
    needed: frozenset[int]  # operations some other operation waits for
