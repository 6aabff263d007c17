"""MLA's tensor-parallel traffic under sequence parallelism (Megatron-Core with TransformerEngine).

NVIDIA/Megatron-LM 23e00ed0, megatron/core/transformer/multi_latent_attention.py. With TE's spec the q and kv
down-projections are TELinear `parallel_mode='duplicated'` (l.368-370, 407-409) and read `hidden_states` as they
arrive (l.530, 548): under SP the layer input's sequence shard [s/t, h], which nothing gathers first. Their outputs
keep the shard ("q_compressed: [s / TP, b, q_lora_rank]", l.526-529; kv_compressed, l.560; k_pos_emb gathered below);
the column-parallel up-projections (linear_q_up_proj, linear_kv_up_proj, l.590 and l.677) all-gather their latent
inputs to the whole sequence, and k_pos_emb is gathered by `gather_from_sequence_parallel_region` (l.566-569). Without
q_lora_rank, linear_q_proj is column-parallel on the hidden states themselves (l.594): it gathers h. The attention
output projection is row-parallel as in every attention: its reduce-scatter is [s, h].

So per token an MLA block's forward gathers r_q + r_kv + d_r elements (DeepSeek-V3: 1,536 + 512 + 64 = 2,112; h +
r_kv + d_r without q_lora_rank), not h; the backward reduce-scatters the same gradients; the up-projections'
weight gradients re-gather their inputs (r_q + r_kv: TE's Linear keeps the shard under SP and gathers it again, as
for every column-parallel GEMM in moesim.estimate.terms `_tp_comms`). Priced as one call of the summed width per
direction (Megatron issues two or three calls: q, kv and k_pos_emb; the per-call latency of the other one or two is
not priced).
"""

from __future__ import annotations

from moesim.specs.model import ModelSpec

# The breakdown's entries (both engines): the gather of the latents, its backward reduce-scatter, the wgrad re-gather.
MLA_GATHER = "tp_all_gather_mla_latents"
MLA_SCATTER = "tp_reduce_scatter_mla_latents"
MLA_WGRAD_GATHER = "tp_all_gather_wgrad_mla_latents"


def mla_sp_widths(model: ModelSpec) -> tuple[int, int] | None:
    """(gathered, re-gathered for wgrad) elements per token of an MLA block under SP; None for other attention.
    gathered = r_q + r_kv + d_r (h + r_kv + d_r without q_lora_rank); re-gathered = r_q + r_kv (h + r_kv)."""
    att = model.attention
    if att.kind != "mla":
        return None
    q_in = att.q_lora_rank or model.d_model  # no q_lora_rank: linear_q_proj reads the hidden states
    return q_in + att.kv_lora_rank + att.qk_rope_head_dim, q_in + att.kv_lora_rank


__all__ = ["MLA_GATHER", "MLA_SCATTER", "MLA_WGRAD_GATHER", "mla_sp_widths"]
