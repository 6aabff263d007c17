"""Forward and training FLOPs of a model, per sequence and per token; pure functions.

Two conventions:
- "exact": every matmul where it happens — Q/O projections on the query tokens, cross-attention
  K/V on the encoder tokens, QKᵀ and AV both counted (PaLM, arXiv 2204.02311, App. B counts both),
  router h·E per token, k experts per token, output logits on the decoder's tokens. No causal
  halving (kernels compute the full score matrix). This is what MFU uses.
- "kaplan": C_forward = 2·N + 2·n_layer·n_ctx·d_attn per token (Kaplan et al. 2020, arXiv
  2001.08361, Table 1 / Eq. 2.2), N the non-embedding active parameters of the stack a token
  passes through (attention and FFN/expert weights: Kaplan's operations table has no router),
  plus the de-embedding 2·h·V per output token. Switch Table 9 reports FLOPs/seq "as done in
  Kaplan et al." (footnote 9); golden tests compare in this convention.
Training = 3 × forward (backward ≈ 2 × forward; Kaplan §2.1).
Multi-token prediction (DeepSeek-V3 §2.2): each of D modules adds, per token, one transformer block
like the last layer, its 2h→h projection and one more output-head pass (in both conventions); the
modules are training work, so `mtp=True` (the default) counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.arithmetic import (
    MTP_PROJECTION_INPUTS, LayerShape, attention_params, ffn_params, layer_params, layer_shapes, mtp_shape,
)
from moesim.specs.model import ModelSpec

FLOPS_PER_MAC = 2  # one multiply-accumulate = 2 FLOP
BACKWARD_TO_FORWARD = 2  # backward ≈ 2 × forward (Kaplan et al. 2020 §2.1)
CONVENTIONS = ("exact", "kaplan")


@dataclass(frozen=True)
class LayerFlops:
    """Forward FLOP of one layer for one sequence, by component."""

    attention_proj: float
    attention_scores: float
    dense_ffn: float
    experts: float  # routed experts, k per token, no capacity padding
    shared_experts: float
    router: float
    mtp_projection: float = 0.0  # an MTP module's M_k: 2·n·2h·h (DeepSeek-V3 eq. 21); 0 in main-model layers

    @property
    def total(self) -> float:
        return (self.attention_proj + self.attention_scores + self.dense_ffn + self.experts
                + self.shared_experts + self.router + self.mtp_projection)


def _projection_flops(model: ModelSpec, n_q: int, n_kv: int, cross: bool) -> float:
    """2·(params touched per token)·tokens for the attention projections of one attention block."""
    att, h = model.attention, model.d_model
    if not cross:
        return FLOPS_PER_MAC * n_q * attention_params(h, att)
    q_out = att.num_heads * att.head_dim
    kv_out = att.num_kv_heads * att.head_dim
    # Cross-attention: Q, O on the decoder tokens; K, V on the encoder tokens.
    return FLOPS_PER_MAC * (n_q * 2 * h * q_out + n_kv * 2 * h * kv_out)


def _score_flops(model: ModelSpec, n_q: int, n_ctx: int) -> float:
    """QKᵀ: 2·n_q·n_ctx·a·d_qk, plus AV: 2·n_q·n_ctx·a·d_v (Vaswani et al. 2017 Eq. 1)."""
    att = model.attention
    d_qk = att.head_dim + att.qk_rope_head_dim
    d_v = att.v_head_dim or att.head_dim
    return FLOPS_PER_MAC * n_q * n_ctx * att.num_heads * (d_qk + d_v)


def layer_forward_flops(model: ModelSpec, shape: LayerShape, n_tokens: int, n_encoder: int = 0) -> LayerFlops:
    """Exact forward FLOP of layer `shape` on one sequence of `n_tokens` (decoder cross-attends
    to `n_encoder` encoder tokens)."""
    h = model.d_model
    proj = _projection_flops(model, n_tokens, n_tokens, cross=False)
    scores = _score_flops(model, n_tokens, n_tokens)
    if shape.cross_attention:
        proj += _projection_flops(model, n_tokens, n_encoder, cross=True)
        scores += _score_flops(model, n_tokens, n_encoder)
    if not shape.is_moe:
        dense = FLOPS_PER_MAC * n_tokens * ffn_params(h, model.d_ff, model.ffn_kind)
        return LayerFlops(proj, scores, dense, 0.0, 0.0, 0.0)
    moe = model.moe
    per_expert = ffn_params(h, moe.expert_d_ff, model.ffn_kind)
    shared = moe.num_shared_experts * ffn_params(h, moe.shared_expert_d_ff, model.ffn_kind)
    return LayerFlops(
        attention_proj=proj,
        attention_scores=scores,
        dense_ffn=0.0,
        experts=FLOPS_PER_MAC * n_tokens * moe.top_k * per_expert,
        shared_experts=FLOPS_PER_MAC * n_tokens * shared,
        router=FLOPS_PER_MAC * n_tokens * h * moe.num_experts,  # logits x·W_r (Switch Eq. 1)
    )


def mtp_layer_forward_flops(model: ModelSpec, n_tokens: int) -> LayerFlops:
    """One MTP module's block on `n_tokens`: the block's FLOPs plus M_k's 2·n·2h·h (no output head).

    Source: DeepSeek-V3 (arXiv 2412.19437) §2.2, eq. 21-22."""
    block = layer_forward_flops(model, mtp_shape(model), n_tokens)
    projection = FLOPS_PER_MAC * n_tokens * MTP_PROJECTION_INPUTS * model.d_model * model.d_model
    return LayerFlops(block.attention_proj, block.attention_scores, block.dense_ffn, block.experts,
                      block.shared_experts, block.router, projection)


def mtp_forward_flops(model: ModelSpec, n_tokens: int, convention: str = "exact") -> float:
    """D·(block + M_k + output head 2·h·V) forward FLOP on `n_tokens` (0 without MTP modules).

    "kaplan": the block's active non-embedding parameters and attention as Kaplan Eq. 2.2, + M_k + head."""
    if not model.mtp_depth:
        return 0.0
    one = mtp_layer_forward_flops(model, n_tokens)
    if convention == "kaplan":
        shape = mtp_shape(model)
        p = layer_params(model, shape)
        active = p.attention + p.dense_ffn + p.shared_experts + (model.moe.top_k * p.per_expert if shape.is_moe else 0)
        d_attn = model.attention.num_heads * model.attention.head_dim
        block = n_tokens * (FLOPS_PER_MAC * active + FLOPS_PER_MAC * n_tokens * d_attn)
        return model.mtp_depth * (block + one.mtp_projection + logits_flops(model, n_tokens))
    return model.mtp_depth * (one.total + logits_flops(model, n_tokens))


def _stack_tokens(model: ModelSpec, seq_len: int, decoder_seq_len: int) -> dict[str, int]:
    if model.architecture == "encoder_decoder":
        return {"encoder": seq_len, "decoder": decoder_seq_len}
    return {"decoder": seq_len}


def logits_flops(model: ModelSpec, n_out_tokens: int) -> float:
    """Output projection 2·h·V per output token (Kaplan Table 1, "De-embed")."""
    return FLOPS_PER_MAC * n_out_tokens * model.d_model * model.vocab_size


def forward_flops_per_sequence(
    model: ModelSpec, seq_len: int, decoder_seq_len: int = 0, convention: str = "exact", mtp: bool = True
) -> float:
    """Forward FLOP for one sequence (encoder input `seq_len`, decoder targets `decoder_seq_len`), with the
    MTP modules unless `mtp` is False."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    tokens = _stack_tokens(model, seq_len, decoder_seq_len)
    out_tokens = tokens["decoder"]
    extra = mtp_forward_flops(model, out_tokens, convention) if mtp else 0.0
    if convention == "exact":
        return sum(
            layer_forward_flops(model, s, tokens[s.stack], tokens.get("encoder", 0)).total
            for s in layer_shapes(model)
        ) + logits_flops(model, out_tokens) + extra
    total = logits_flops(model, out_tokens) + extra
    d_attn = model.attention.num_heads * model.attention.head_dim
    for shape in layer_shapes(model):
        n = tokens[shape.stack]
        p = layer_params(model, shape)
        active = p.attention + p.dense_ffn + p.shared_experts
        if shape.is_moe:
            active += model.moe.top_k * p.per_expert
        n_ctx = n + (tokens["encoder"] if shape.cross_attention else 0)
        total += n * (FLOPS_PER_MAC * active + FLOPS_PER_MAC * n_ctx * d_attn)  # Kaplan Eq. 2.2
    return total


def sequence_tokens(model: ModelSpec, seq_len: int, decoder_seq_len: int = 0) -> int:
    """Tokens one sequence puts through the model: encoder inputs + decoder targets (or the context)."""
    return sum(_stack_tokens(model, seq_len, decoder_seq_len).values())


def training_flops_per_sequence(model: ModelSpec, seq_len: int, decoder_seq_len: int = 0,
                                convention: str = "exact", mtp: bool = True) -> float:
    """Forward + backward = 3 × forward (Kaplan §2.1)."""
    return (1 + BACKWARD_TO_FORWARD) * forward_flops_per_sequence(model, seq_len, decoder_seq_len, convention, mtp)
