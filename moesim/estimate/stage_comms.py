"""Each stage's per-micro-batch collectives as `evaluate` prices them (moesim.estimate.core): every layer's calls
(terms.ClassTerms.comms) and the embedding's, output heads' and cross-entropies' tp calls (moesim.ops.vocab), their
backward share, and the forward's own where a zero-bubble schedule splits the passes. Moved from core.py unchanged
(session 24, tidy24).

Notation as moesim.estimate.core: arrays (N, S) over candidate rows and representative stages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim import memory as mem
from moesim.estimate.comm_ledger import CommLedger
from moesim.estimate.context_parallel import exposed_ring_time_s
from moesim.estimate.mla_tp_comms import MLA_WGRAD_GATHER
from moesim.estimate.shared_tp_comms import SHARED_WGRAD_GATHER
from moesim.ops.vocab import vocab_calls

# Per-layer collectives of the backward pass alone (terms.TermBuilder._tp_comms, mla_tp_comms, shared_tp_comms), which bwd_comm
# counts half in each pass as it does every layer call.
BACKWARD_ONLY_CALLS = ("tp_all_gather_wgrad", MLA_WGRAD_GATHER, SHARED_WGRAD_GATHER)


@dataclass(frozen=True)
class StageComms:
    """`stage_comms`' figures per row, seconds per micro-batch; a float 0.0 where no row needs it ("only where
    zb_split": where any row runs ZB-H1 or ZB-V)."""

    per_mb_comm: np.ndarray  # (N, S) every layer's and the embedding's collectives (the head's in head_comm)
    bwd_comm: np.ndarray  # (N, S) their backward share
    embedding_fb: np.ndarray | float  # the embedding's forward collectives less its backward ones
    backward_only: np.ndarray | float  # the wgrad re-gathers' share of bwd_comm
    layer_fwd_comm: np.ndarray | float  # the layers' forward collectives
    embedding_fwd_comm: np.ndarray | float  # the embedding's forward collectives
    leg_fwd_comm: np.ndarray | float  # ZB-V: the first-leg piece's forward collectives
    leg_comm: np.ndarray | float  # ZB-V: the first-leg piece's collectives
    a2a_call: dict  # Megatron's EP A2A overlap: (class, dispatch | combine) -> one call's time per stage
    head_comm: dict  # {"last" (and "first" where a row runs ZB-V): [all, backward]} the head's collectives


def stage_comms(tr, model, wl, hw, cands, sched: np.ndarray, calls: list, layer_calls: list, ledger: CommLedger,
                counts: np.ndarray, core_mb: np.ndarray | None, leg_share: np.ndarray | None, first: np.ndarray,
                last: np.ndarray, zb_v: np.ndarray, zb_split: bool, b: np.ndarray, in_tokens) -> StageComms:
    """The collectives of the rows of `cands`: `calls` per class the layer's CommCalls, `layer_calls` their calls per
    stage (N, S each), priced on `ledger`; `counts` (N, S, C) the layers per stage (stages.counts), `core_mb`
    (N, S, C) the attention cores a CP ring hides under (None: no cp > 1), `leg_share` (N, S, C) ZB-V's first-leg
    share of each class's layers (None: no ZB-V row), `zb_v` (N,) 1.0 on a ZB-V row, `zb_split` whether any row runs a
    zero-bubble schedule, `b` (N,) sequences per
    micro-batch, `in_tokens` the embedding's input tokens."""
    n_cand, n_stages = counts.shape[:2]
    add = ledger.add
    per_mb_comm = np.zeros((n_cand, n_stages))
    # Every per-layer collective runs once forward and once backward, plus once more forward when the
    # layer is recomputed in full; the backward share is what the gradient sync can hide under.
    backward_share = 1.0 / (2 + (np.asarray(cands.recompute, dtype=float) == mem.RECOMPUTE_CODES["full"]))[:, None]
    bwd_comm = np.zeros((n_cand, n_stages))
    # ZB-H1 and ZB-V: the forward pass's own collectives, which the simulator runs inside an F slot (its I the
    # backward's and a full recompute's; session 23 zbpipe): bwd_comm plus the forward-less-backward of the calls that
    # are not one per pass (embedding, head, pipeline sends); a layer's calls give each pass the same share.
    embedding_fb = 0.0  # the embedding's forward collectives less its backward ones (only where zb_split)
    # Sequence parallelism's wgrad re-gathers run in the backward only (terms.TermBuilder._tp_comms; the simulator's
    # des.schedule._Builder._block issues them where phase == "bwd"), not half in each pass as bwd_comm counts them:
    # their share of bwd_comm is no part of the forward's collectives (only where zb_split).
    backward_only = 0.0
    # ZB-V's pieces: the layers' forward collectives and the embedding's (the first leg's end), only where zb_split
    layer_fwd_comm, embedding_fwd_comm, leg_fwd_comm, leg_comm = 0.0, 0.0, 0.0, 0.0
    a2a_call = {}  # Megatron's EP A2A overlap: (class, dispatch | combine) -> one call's time per stage (a2a_order)
    for c, class_calls in enumerate(calls):
        for call, calls_stage in zip(class_calls, layer_calls[c]):
            t_call = add(call.name, call.axis, call.op, call.size_bytes, calls_stage, gated=True)
            if tr.moe_a2a_overlap:
                from moesim.estimate import a2a_order  # imported where used (session 22)

                a2a_order.add_call(a2a_call, c, call.name, t_call, calls_stage, counts[:, :, c])
            if call.name == "cp_ring_send_recv":  # ring steps hide under the attention they feed
                t_call = exposed_ring_time_s(t_call, core_mb[:, :, c])
            per_mb_comm += t_call
            bwd_comm += t_call * backward_share
            if leg_share is not None:  # a call's time is its calls' (∝ the class's layers on the stage)
                leg_comm = leg_comm + t_call * leg_share[:, :, c]
            if zb_split and call.name in BACKWARD_ONLY_CALLS:
                backward_only = backward_only + t_call * backward_share
            elif zb_split:
                layer_fwd_comm = layer_fwd_comm + t_call * backward_share
                if leg_share is not None:
                    leg_fwd_comm = leg_fwd_comm + t_call * backward_share * leg_share[:, :, c]
    # The embedding's, output heads' and cross-entropies' tp collectives on the first / last stage (moesim.ops.vocab).
    # The rows here hold every schedule at once (schedule_free_rows): the head's are priced on the last stage and,
    # where a candidate runs ZB-V, on the first too, each kept below where its schedule puts the head.
    head_ends = (("last", last, "head_last"),) + ((("first", first, "head_first"),) if zb_v.any() else ())
    head_comm = {end: [np.zeros((n_cand, n_stages)), np.zeros((n_cand, n_stages))] for end, _, _ in head_ends}
    for call in vocab_calls(tr, model.d_model, b, in_tokens, wl.output_tokens, wl.logit_heads, hw.device_kind):
        if call.end == "embedding":
            t_call = add(call.name, "tp", call.op, call.size_bytes, call.calls * first)
            per_mb_comm += t_call
            if call.pass_ == "bwd":  # (a forward call adds nothing: no pass of += 0.0 over the rows, searchspeed24)
                bwd_comm += t_call
            embedding_fb = embedding_fb + (-t_call if call.pass_ == "bwd" else t_call) if zb_split else 0.0
            embedding_fwd_comm = embedding_fwd_comm + (0.0 if call.pass_ == "bwd" else t_call) if zb_split else 0.0
            continue
        for end, mask, multiple in head_ends:
            t_call = add(call.name, "tp", call.op, call.size_bytes, call.calls * mask, multiple=multiple)
            head_comm[end][0] += t_call
            if call.pass_ == "bwd":
                head_comm[end][1] += t_call
    return StageComms(per_mb_comm=per_mb_comm, bwd_comm=bwd_comm, embedding_fb=embedding_fb,
                      backward_only=backward_only, layer_fwd_comm=layer_fwd_comm,
                      embedding_fwd_comm=embedding_fwd_comm, leg_fwd_comm=leg_fwd_comm, leg_comm=leg_comm,
                      a2a_call=a2a_call, head_comm=head_comm)
