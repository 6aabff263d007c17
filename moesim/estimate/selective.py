"""Selective recomputation (TrainingSpec.recompute_modules), and dropout masks.

With recompute = "selective" moesim recomputes the listed modules (Megatron-Core's --recompute-modules; the
default is the attention core alone, Korthikanti §5):
  core_attn    the attention core runs again; its saved state (a flash kernel's softmax statistics, an
               unfused core's scores) is not stored.
  layernorm    the norms run again in backward, so their outputs — the QKV GEMM's input, the FFN's or the
               router's input, an MTP module's M_k input — are not stored.
  mla_up_proj  MLA's Q and KV up-projections run again, so Q, K, V are not stored, only the latents
               c_Q (r_q), c_KV (r_kv) and the shared rotary key (d_r) (DeepSeek-V2 §2.1.2, eq. 9-14).
  mlp          a dense layer's MLP is one checkpoint (Megatron-LM 23e00ed0 transformer_layer.py l.425-427 and
               l.605-620: tensor_parallel.checkpoint / te_checkpoint of self.mlp, MoE layers excluded): it keeps
               its input only (the norm's input, counted already), so nothing of FC1's input, FC1's output or the
               activation is stored; its norm, FC1, activation and FC2 run again in backward. The bias-dropout-add
               after it is outside the checkpoint (its mask stays).
  moe_act      the routed experts' activation is discarded after FC2 reads it and recomputed before FC2's
               backward (Megatron-LM 23e00ed0 moe/experts.py l.804-806, l.908-914: CheckpointWithoutOutput): the
               activation's input (FC1's output, activation dtype) stays, FC2's input and the expert outputs are
               not kept (the routing weight is applied inside the activation); the shared experts are untouched.
               Its FP8 form needs a current or block scaling (transformer_config.py l.916). The DeepSeek-V3 form,
               input cached in FP8 and the shared experts too, is training.moe_activation_recompute.
  moe          the whole MoE layer is one checkpoint (Megatron-LM 23e00ed0 moe/moe_layer.py l.115-117 and
               l.265-286, custom_forward under tensor_parallel.checkpoint / te_checkpoint; d98e8a64 l.701-718):
               it keeps its input only (the pre-MLP norm's output, the router's input, counted already; the norm
               and the bias-dropout-add after the layer are outside, in transformer_layer.py), so nothing of the
               router, the permutation, the experts, the shared experts or the combine is stored; all of them run
               again in backward, the dispatch and combine all-to-alls (and the probabilities' and the expert-tp
               collectives) with them. Nested modules run a second time inside it: moe_act's activation is
               discarded again in the re-run forward and recomputed once more before FC2's backward, and the
               shared_experts checkpoint's forward runs in the re-run and again in its own backward.
  shared_experts  the shared experts are one checkpoint (moe_layer.py l.118-121, l.204-220; d98e8a64 l.517-529):
               they keep only their input (the same norm output the router keeps), and their FC1, activation and
               FC2 run again in backward.
The cost is the recomputed forward operators at their forward prices (`recomputed_ops`: the one operator list).
DeepSeek-V3 §3.2.3 recomputes the norms and the up-projections, not the attention core (its H800 trace has no
attention kernel in the backward besides the flash backward).
Without dropout (training.dropout false) no 1-byte masks are stored (Korthikanti §4.1 counts them).
With a flash attention kernel (training.attention_kernel) Q, K and V are kept as the kernel gets them
(`flash_qkv_per_token`); with the unfused one Korthikanti's 3h (K and V repeated to every head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim import memory as mem
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec


@dataclass(frozen=True)
class StoredInputs:
    """Bytes per element of what a layer keeps, per candidate (arrays)."""

    q_gemm_input: np.ndarray  # a norm output feeding a GEMM (q_st, or 0 when the norm is recomputed)
    q_router_input: np.ndarray  # the MoE block input the router reads (q_a, or 0)
    mask: float  # dropout mask bytes per element
    qkv_per_token: np.ndarray | None  # Q, K, V elements kept per token (None: Korthikanti's 3h)


def recomputed(training: TrainingSpec, recompute, module: str) -> np.ndarray:
    """Per candidate: `module` is recomputed (recompute = "selective" and the module listed)."""
    return (np.asarray(recompute) == mem.RECOMPUTE_CODES["selective"]) & (module in training.recompute_modules)


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
    norms = recomputed(training, recompute, "layernorm")
    qkv = flash_qkv_per_token(model) if training.attention_kernel == "flash" else None
    if model.attention.kind == "mla":
        up = recomputed(training, recompute, "mla_up_proj")
        qkv = np.where(up, mla_latents_per_token(model), 3 * model.d_model if qkv is None else qkv)
    return StoredInputs(q_gemm_input=np.where(norms, 0.0, q_store), q_router_input=np.where(norms, 0.0, mem.ACT_BYTES),
                        mask=mem.MASK_BYTES if training.dropout else 0.0, qkv_per_token=qkv)


# The forward operators each module runs again (moesim/ops/layer.py names): every RMSNorm / LayerNorm, including
# MLA's latent norms and an MTP module's two input norms (DeepSeek-V3 §3.2.3 "recompute all RMSNorm operations";
# DeepSeek's H800 trace, tests/data/dsv3_trace: attn_norm, q_norm, kv_norm and moe_norm kernels in the backward),
# and MLA's Q and KV up-projections with the RoPE and copies of their outputs (§3.2.3 "MLA up-projections"; the
# trace's q / kv up-projection GEMMs, rotary_kernel, _copy_tensor_kernel and 65536-block copy again there), and
# under DeepSeek's FP8 casts the up-projections' input casts (precision_terms.up_projection_cast_elements: the trace's
# two per_token casts before the recomputed GEMMs; session 24, dsv3casts).
# "mlp": a dense layer's whole MLP but its residual add (moesim/ops/layer.py dense_ffn, part "dense_ffn"); "moe_act":
# the routed experts' activation (layer.py experts), priced as its forward (read 2f or f, write f per slot).
RECOMPUTED_OPS = {"layernorm": ("attn_norm", "q_norm", "kv_norm", "mlp_norm", "moe_norm", "mtp_norms"),
                  "mla_up_proj": ("q_up_proj", "kv_up_proj", "rope_and_copies", "up_proj_quantise"),
                  "mlp": ("mlp_norm", "fc1", "activation", "fc2"),
                  "moe_act": ("expert_activation",)}
RECOMPUTED_PART = {"mlp": "dense_ffn"}  # modules whose operators are taken from one part only
# Modules whose operators are every operator of some parts (moesim/estimate/terms.py MOE_PARTS) but the named ones:
# "moe" the MoE layer (Megatron-LM 23e00ed0 moe_layer.py l.265-272, router to combine; its pre-MLP norm and the
# residual add after it live in transformer_layer.py, outside the checkpoint), "shared_experts" their FFN.
RECOMPUTED_PARTS = {"moe": (("router", "permute", "expert_ffn", "unpermute", "shared_experts"),
                            ("moe_norm", "moe_residual")),
                    "shared_experts": (("shared_experts",), ())}


def _whole_parts(module: str, fwd_ops: list) -> list:
    """The operators of a RECOMPUTED_PARTS module."""
    parts, outside = RECOMPUTED_PARTS[module]
    return [op for op in fwd_ops if op.part in parts and op.name not in outside]


def recomputed_ops(training: TrainingSpec, fwd_ops: list) -> list:
    """The forward operators a selective recomputation runs again in backward, to be priced as the forward prices
    them (one operator list): the attention core with core_attn, the operators RECOMPUTED_OPS names for the others,
    the shared experts' with shared_experts; with "moe" the MoE layer's operators once more, so that a module nested
    in it (moe_act, shared_experts) is counted twice, as Megatron runs it (module docstring)."""
    modules = training.recompute_modules
    names = {name for module in modules for name in RECOMPUTED_OPS.get(module, ()) if module not in RECOMPUTED_PART}
    parts = {(RECOMPUTED_PART[module], name) for module in modules if module in RECOMPUTED_PART
             for name in RECOMPUTED_OPS[module]}
    shared = {id(op) for op in _whole_parts("shared_experts", fwd_ops)} if "shared_experts" in modules else set()
    redo = [op for op in fwd_ops if (op.kind == "attention" and "core_attn" in modules) or op.name in names
            or (op.part, op.name) in parts or id(op) in shared]
    return redo + moe_recomputed_ops(training, fwd_ops)


def moe_recomputed_ops(training: TrainingSpec, fwd_ops: list) -> list:
    """The MoE layer's forward operators the "moe" checkpoint runs again (empty without it): the simulator runs
    them with the layer's all-to-alls in its recompute phase (moesim/des/schedule.py)."""
    return _whole_parts("moe", fwd_ops) if "moe" in training.recompute_modules else []


def core_recompute_code(training: TrainingSpec, recompute) -> np.ndarray:
    """The recompute code the attention core's saved state follows: selective without core_attn keeps the core's
    state (the softmax statistics of a flash kernel) as no recomputation would."""
    selective = np.asarray(recompute) == mem.RECOMPUTE_CODES["selective"]
    none = mem.RECOMPUTE_CODES["none"]
    return np.where(selective & ("core_attn" not in training.recompute_modules), none, recompute)
