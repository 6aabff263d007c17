"""Selective recomputation beyond the attention core (TrainingSpec.recompute_modules), and dropout masks.

With recompute = "selective" moesim always recomputes the attention core (Korthikanti §5). Megatron-Core's
--recompute-modules (and DeepSeek-V3 §3.2.3) add:
  layernorm    the norms run again in backward, so their outputs — the QKV GEMM's input, the FFN's or the
               router's input, an MTP module's M_k input — are not stored; cost: one memory-bound pass per
               norm (read the stored input, write the output), 2·q_a·tokens·h bytes.
  mla_up_proj  MLA's Q and KV up-projections run again, so Q, K, V are not stored, only the latents
               c_Q (r_q), c_KV (r_kv) and the shared rotary key (d_r); cost: the up-projection GEMMs,
               2·tokens·(r_q·a(d + d_r) + r_kv·a(d + d_v)) FLOP (DeepSeek-V2 §2.1.2, eq. 9-14).
Without dropout (training.dropout false) no 1-byte masks are stored (Korthikanti §4.1 counts them).
With a flash attention kernel (training.attention_kernel) Q, K and V are kept as the kernel gets them
(`flash_qkv_per_token`); with the unfused one Korthikanti's 3h (K and V repeated to every head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim import memory as mem
from moesim.flops import FLOPS_PER_MAC
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec
from moesim.workload import LayerClass


@dataclass(frozen=True)
class StoredInputs:
    """Bytes per element of what a layer keeps, per candidate (arrays)."""

    q_gemm_input: np.ndarray  # a norm output feeding a GEMM (q_st, or 0 when the norm is recomputed)
    q_router_input: np.ndarray  # the MoE block input the router reads (q_a, or 0)
    mask: float  # dropout mask bytes per element
    qkv_per_token: np.ndarray | None  # Q, K, V elements kept per token (None: Korthikanti's 3h)


def _modules(training: TrainingSpec, recompute, module: str) -> np.ndarray:
    return (np.asarray(recompute) == mem.RECOMPUTE_CODES["selective"]) & (module in training.recompute_modules)


def mla_up_projection_flops_per_token(model: ModelSpec) -> float:
    """2·(r_q·a(d + d_r) + r_kv·a(d + d_v)): the MLA up-projections (no q_lora: Q projects h, not recomputed)."""
    att = model.attention
    q_up = att.q_lora_rank * att.num_heads * (att.head_dim + att.qk_rope_head_dim)
    kv_up = att.kv_lora_rank * att.num_heads * (att.head_dim + att.v_head_dim)
    return FLOPS_PER_MAC * (q_up + kv_up)


def mla_latents_per_token(model: ModelSpec) -> int:
    """r_q + r_kv + d_r elements per token kept instead of Q, K, V."""
    att = model.attention
    return att.q_lora_rank + att.kv_lora_rank + att.qk_rope_head_dim


def flash_qkv_per_token(model: ModelSpec) -> int:
    """Q, K, V elements per token a flash kernel keeps (mem.qkv_per_token_flash). MLA: Q and K of a heads of
    d + d_r (the rotary key expanded to every head and concatenated), V of a·d_v (Megatron-LM 23e00ed0
    core/transformer/multi_latent_attention.py qkv_up_proj_and_rope_apply), plus the latents the up-projections
    keep: c_Q as its layer norm's input and output (r_q twice: TransformerEngine v2.11 LayerNormLinear saves
    inputmat and ln_out), the KV down-projection's output r_kv + d_r (c_KV is a split view of it, kept whole as
    the kv up-projection's inputmat) and c_KV's norm output r_kv."""
    att = model.attention
    if att.kind == "mla":
        qkv = mem.qkv_per_token_flash(att.num_heads, att.num_heads, att.head_dim + att.qk_rope_head_dim,
                                      att.v_head_dim)
        return qkv + mla_latents_per_token(model) + att.q_lora_rank + att.kv_lora_rank
    return mem.qkv_per_token_flash(att.num_heads, att.num_kv_heads, att.head_dim, att.v_head_dim or None)


def stored_inputs(model: ModelSpec, training: TrainingSpec, recompute, q_store: float) -> StoredInputs:
    norms = _modules(training, recompute, "layernorm")
    qkv = flash_qkv_per_token(model) if training.attention_kernel == "flash" else None
    if model.attention.kind == "mla":
        up = _modules(training, recompute, "mla_up_proj")
        qkv = np.where(up, mla_latents_per_token(model), 3 * model.d_model if qkv is None else qkv)
    return StoredInputs(q_gemm_input=np.where(norms, 0.0, q_store), q_router_input=np.where(norms, 0.0, mem.ACT_BYTES),
                        mask=mem.MASK_BYTES if training.dropout else 0.0, qkv_per_token=qkv)


def recompute_extra(model: ModelSpec, training: TrainingSpec, cls: LayerClass, b, tp, recompute, hbm_bw_bytes_per_s,
                    matmul_time) -> tuple[np.ndarray, np.ndarray]:
    """(time, FLOP) the listed modules add to a layer's selective recomputation, per device per micro-batch.

    `matmul_time(flops, kernel_flops)` prices GEMMs as the layer's other matmuls."""
    tokens = b * cls.tokens
    norm_tokens = tokens / (tp if training.sequence_parallel else 1)
    norms = (3 if cls.cross_attention else 2) + (2 if cls.mtp else 0)
    norm_bytes = norms * 2 * mem.ACT_BYTES * norm_tokens * model.d_model
    time = np.where(_modules(training, recompute, "layernorm"), norm_bytes / hbm_bw_bytes_per_s, 0.0)
    flops = np.zeros_like(time)
    if model.attention.kind == "mla":
        up_flops = tokens * mla_up_projection_flops_per_token(model) / tp
        up = _modules(training, recompute, "mla_up_proj")
        time = time + np.where(up, matmul_time(up_flops, up_flops / 2), 0.0)
        flops = flops + np.where(up, up_flops, 0.0)
    return time, flops
