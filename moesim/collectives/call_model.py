"""Which collective model prices a named call of the operator list, in both engines (estimate/comm_ledger.py and
des/costs.py): training.dispatch_backend names the MoE token dispatcher, so it prices the expert all-to-alls only.

- ep_all_to_all_dispatch / _combine: the backend, directed (collectives/dispatch.py for_call: their records differ);
- ep_all_to_all_probs (Megatron's alltoall dispatcher's probabilities, moesim/ops/mcore_moe.toml): the backend too, the
  same dispatcher on the same EP group (undirected, as before);
- every other all-to-all (context parallelism's Ulysses cp_all_to_all_qkv / _out, estimate/context_parallel.py): the
  scenario's NCCL model (a DispatchModel's `base`, what dispatch_backend "nccl" prices). DeepEP and HybridEP carry the
  MoE dispatch / combine only: Megatron-LM @ d98e8a64 megatron/core/transformer/moe/fused_a2a.py l.12, l.272 (deep_ep's
  Buffer and HybridEPBuffer) serve token_dispatcher.py's flex dispatcher (l.1151 hybrid_ep_dispatch, l.1320 / l.1379
  fused_dispatch / fused_combine), while the CP group is a torch.distributed NCCL group (parallel_state.py l.1118-1121,
  `get_nccl_options("cp", ...)`; the a2a+p2p hierarchical groups l.1130-1135, "hcp") that Megatron hands to TE
  (extensions/transformer_engine.py l.2135, l.2143-2153), whose Ulysses exchange is
  `torch.distributed.all_to_all_single(..., group=cp_group)` (TransformerEngine @ d0067d0d
  transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py l.387 flash_attn_a2a_communicate,
  l.426 and l.478).
Every other op (all-reduce, gathers, send/recv) is priced by the model given: a DispatchModel hands it to its base.
"""

from __future__ import annotations

from moesim.collectives.dispatch import DIRECTIONS, DispatchModel, for_call

# The expert all-to-alls of the operator list (estimate/terms.py CommCall names), all on the dispatch backend.
EXPERT_A2A_CALLS = frozenset(DIRECTIONS) | {"ep_all_to_all_probs"}
# The direction a wrapper's `directed` takes for its model's NCCL base (search/rank.py _MemoModel.directed).
NCCL_BASE = "nccl"


def nccl_model(model):
    """The model NCCL's own all-to-all is priced by: a DispatchModel's base; a memo wrapping one (its `directed`
    with NCCL_BASE) the memo of that base; any other model itself (its all-to-all is NCCL's already)."""
    if isinstance(model, DispatchModel):
        return model.base
    directed = getattr(model, "directed", None)
    return directed(NCCL_BASE) if directed is not None else model


def model_for_call(model, name: str, op: str):
    """The model that prices collective `name` (`op`): the expert all-to-alls on the dispatch backend (dispatch and
    combine directed: dispatch.for_call), every other all-to-all on NCCL (nccl_model), other ops on `model`."""
    if name in DIRECTIONS:
        return for_call(model, name)
    if op != "all_to_all" or name in EXPERT_A2A_CALLS:
        return model
    return nccl_model(model)
