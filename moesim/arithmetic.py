"""Model arithmetic: parameter counts and FLOPs, pure functions of a ModelSpec.

Notation (element counts, not bytes):
  h   d_model            f    dense d_ff           f_e  expert d_ff       V   vocabulary
  a   query heads        a_kv key/value heads      d    head dim (d_kv)   d_r rotary head dim (MLA)
  E   routed experts     k    experts per token    E_s  shared experts
  s   tokens per sequence (encoder input, or decoder-only context); s_t decoder targets (enc-dec)
Counts follow the released checkpoints: attention projections, FFN or expert matrices (+ biases
when the model has them), router h·E, norms (h scale; +h bias for LayerNorm), T5 relative
position bias (buckets·a, once per stack), input embedding V·h, output projection V·h when untied.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.specs.model import GATED_FFN_KINDS, AttentionSpec, ModelSpec


def ffn_matrices(ffn_kind: str) -> int:
    """Weight matrices in one FFN: 2 (W_in, W_out) or 3 for gated units (GLU variants, arXiv 2002.05202)."""
    return 3 if ffn_kind in GATED_FFN_KINDS else 2


def ffn_params(d_model: int, d_ff: int, ffn_kind: str, bias: bool = False) -> int:
    """n·h·f (+ biases (n−1)·f + h); n = 2, or 3 when gated (Shazeer 2020, Eq. 6)."""
    n = ffn_matrices(ffn_kind)
    return n * d_model * d_ff + ((n - 1) * d_ff + d_model if bias else 0)


def attention_params(d_model: int, att: AttentionSpec) -> int:
    """Projection parameters of one attention block.

    MHA/GQA: h·a·d (Q) + 2·h·a_kv·d (K, V) + a·d·h (O) (Vaswani et al. 2017 §3.2.2; GQA,
    Ainslie et al. 2023). MLA (DeepSeek-V2 §2.1.2, Eq. 9-14; HF DeepseekV3Attention): low-rank
    query h·r_q + r_q + r_q·a·(d + d_r) (or h·a·(d + d_r) without), joint KV down-projection
    h·(r_kv + d_r) + r_kv, up-projection r_kv·a·(d + d_v), output a·d_v·h. Either:
    + a attention sinks where learned (sink_params).
    """
    h, a = d_model, att.num_heads
    if att.kind == "mla":
        q_width = a * (att.head_dim + att.qk_rope_head_dim)
        q = (h * att.q_lora_rank + att.q_lora_rank + att.q_lora_rank * q_width) if att.q_lora_rank else h * q_width
        kv = h * (att.kv_lora_rank + att.qk_rope_head_dim) + att.kv_lora_rank
        kv += att.kv_lora_rank * a * (att.head_dim + att.v_head_dim)
        out = a * att.v_head_dim * h
        return q + kv + out + (h if att.out_bias else 0) + sink_params(att)
    q_out = a * att.head_dim
    kv_out = att.num_kv_heads * att.head_dim
    params = h * q_out + 2 * h * kv_out + q_out * h
    if att.qkv_bias:
        params += q_out + 2 * kv_out
    if att.out_bias:
        params += h
    return params + sink_params(att)


def sink_params(att: AttentionSpec) -> int:
    """a: one learned logit per head (the attention sinks) with softmax_type "learnable", else 0.

    Source: Megatron-LM d98e8a6 megatron/core/transformer/transformer_config.py l.170 (softmax_type, "learnable
    offset"); openai/gpt-oss a194b990 gpt_oss/torch/model.py AttentionBlock.sinks (num_attention_heads values).
    Split with the heads by tp."""
    return att.num_heads if att.softmax_type == "learnable" else 0


def attention_duplicated_params(d_model: int, att: AttentionSpec) -> tuple[int, int]:
    """(GEMM weights, norm weights) of one attention block that every tensor-parallel rank holds whole: MLA's
    down-projections h·r_q + h·(r_kv + d_r) and their latents' norms r_q + r_kv; (0, 0) for other attention.

    Megatron-LM d98e8a6 megatron/core/transformer/multi_latent_attention.py, MLASelfAttention.__init__:
    linear_q_down_proj / linear_kv_down_proj built as TELinear with parallel_mode='duplicated' (l.526-527,
    573-574), q_layernorm / kv_layernorm over the whole r_q / r_kv (l.619-630). Both are part of
    attention_params (which counts the block once, whatever the split)."""
    if att.kind != "mla":
        return 0, 0
    h, r_q, r_kv = d_model, att.q_lora_rank, att.kv_lora_rank
    return h * r_q + h * (r_kv + att.qk_rope_head_dim), r_q + r_kv


def attention_gemm_widths(d_model: int, att: AttentionSpec) -> tuple[int, int]:
    """(Σ input widths, Σ output widths) over the GEMMs of one attention block, a shared input counted once.

    MHA/GQA (Megatron's fused linear_qkv): in h + a·d, out (a + 2a_kv)·d + h. MLA (DeepSeek-V2 §2.1.2):
    in h (Q and KV down-projections share it) + r_q + r_kv + a·d_v; out r_q + a(d + d_r) + r_kv + d_r
    + a(d + d_v) + h (no q_lora: Q projects h to a(d + d_r) directly). An FP8 recipe quantises each
    GEMM's input forward and its output gradient backward: these widths count those elements per token.
    """
    h, a = d_model, att.num_heads
    if att.kind == "mla":
        q_width = a * (att.head_dim + att.qk_rope_head_dim)
        kv_up = a * (att.head_dim + att.v_head_dim)
        widths_in = h + att.q_lora_rank + att.kv_lora_rank + a * att.v_head_dim
        widths_out = att.q_lora_rank + q_width + att.kv_lora_rank + att.qk_rope_head_dim + kv_up + h
        return widths_in, widths_out
    return h + a * att.head_dim, (a + 2 * att.num_kv_heads) * att.head_dim + h


def norm_params(d_model: int, norm_kind: str) -> int:
    """h for RMSNorm / T5 LayerNorm (scale only); 2h for LayerNorm with bias (Ba et al. 2016)."""
    return d_model if norm_kind == "rmsnorm" else 2 * d_model


@dataclass(frozen=True)
class LayerShape:
    """One transformer layer: which stack, its index, MoE or dense, with cross-attention or not."""

    stack: str
    index: int
    is_moe: bool
    cross_attention: bool


def layer_shapes(model: ModelSpec) -> tuple[LayerShape, ...]:
    """Every layer, encoder first, in execution order."""
    shapes = []
    for stack, count in model.stacks():
        cross = model.architecture == "encoder_decoder" and stack == "decoder"
        for i in range(count):
            moe = model.moe is not None and model.moe.is_moe_layer(stack, i)
            shapes.append(LayerShape(stack, i, moe, cross))
    return tuple(shapes)


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one layer by kind."""

    attention: int
    dense_ffn: int
    experts: int  # all routed experts of the layer
    per_expert: int
    shared_experts: int
    router: int
    norms: int

    @property
    def total(self) -> int:
        return self.attention + self.dense_ffn + self.experts + self.shared_experts + self.router + self.norms

    @property
    def non_expert(self) -> int:
        return self.total - self.experts


def layer_params(model: ModelSpec, shape: LayerShape) -> LayerParams:
    """Parameters of layer `shape` of `model`."""
    h = model.d_model
    attn = attention_params(h, model.attention) * (2 if shape.cross_attention else 1)
    norms = norm_params(h, model.norm_kind) * (3 if shape.cross_attention else 2)
    if not shape.is_moe:
        return LayerParams(attn, ffn_params(h, model.d_ff, model.ffn_kind, model.ffn_bias), 0, 0, 0, 0, norms)
    moe = model.moe
    per_expert = ffn_params(h, moe.expert_d_ff, model.ffn_kind, model.ffn_bias)
    shared = moe.num_shared_experts * ffn_params(h, moe.shared_expert_d_ff, model.ffn_kind, model.ffn_bias)
    if moe.shared_expert_gate and moe.num_shared_experts:
        shared += h  # Qwen2-MoE shared_expert_gate: Linear(h, 1) (HF Qwen2MoeSparseMoeBlock)
    # Router: h·E weight (Switch Eq. 1), + E bias when present (DeepSeek-V3's e_score_correction_bias).
    router = h * moe.num_experts + (moe.num_experts if moe.router_bias else 0)
    return LayerParams(attn, 0, moe.num_experts * per_expert, per_expert, shared, router, norms)


@dataclass(frozen=True)
class ParamCounts:
    """Whole-model parameter counts by kind."""

    embedding: int
    lm_head: int
    attention: int
    dense_ffn: int
    experts: int
    shared_experts: int
    router: int
    norms_and_positions: int
    per_expert: int
    num_moe_layers: int
    top_k: int
    mtp: int = 0  # unique parameters of the multi-token-prediction modules: outside `total` (see mtp_params)

    @property
    def total(self) -> int:
        return (self.embedding + self.lm_head + self.attention + self.dense_ffn + self.experts
                + self.shared_experts + self.router + self.norms_and_positions)

    @property
    def non_expert(self) -> int:
        return self.total - self.experts

    @property
    def active(self) -> int:
        """Parameters one token uses: all but the routed experts, plus k experts per MoE layer."""
        return self.non_expert + self.top_k * self.per_expert * self.num_moe_layers

    def as_dict(self) -> dict[str, int]:
        return {
            "total_params": self.total, "active_params": self.active, "non_expert_params": self.non_expert,
            "expert_params": self.experts, "params_per_expert": self.per_expert,
            "embedding_params": self.embedding, "lm_head_params": self.lm_head,
            "attention_params": self.attention, "dense_ffn_params": self.dense_ffn,
            "shared_expert_params": self.shared_experts, "router_params": self.router,
            "norm_and_position_params": self.norms_and_positions, "mtp_params": self.mtp,
        }


def position_params(model: ModelSpec) -> int:
    """T5 relative bias buckets·a per stack (Raffel et al. 2020 §2.1); learned absolute positions P·h."""
    if model.position_embedding == "relative_bias":
        return len(model.stacks()) * model.relative_attention_num_buckets * model.attention.num_heads
    if model.position_embedding == "learned":
        return model.max_position_embeddings * model.d_model
    return 0


def param_counts(model: ModelSpec) -> ParamCounts:
    """Parameter counts of `model` by kind."""
    layers = [layer_params(model, shape) for shape in layer_shapes(model)]
    final_norms = len(model.stacks()) * norm_params(model.d_model, model.norm_kind)
    embedding = model.vocab_size * model.d_model
    return ParamCounts(
        embedding=embedding,
        lm_head=0 if model.tied_embeddings else embedding,
        attention=sum(p.attention for p in layers),
        dense_ffn=sum(p.dense_ffn for p in layers),
        experts=sum(p.experts for p in layers),
        shared_experts=sum(p.shared_experts for p in layers),
        router=sum(p.router for p in layers),
        norms_and_positions=sum(p.norms for p in layers) + final_norms + position_params(model),
        per_expert=max((p.per_expert for p in layers), default=0),
        num_moe_layers=model.num_moe_layers,
        top_k=model.moe.top_k if model.moe else 0,
        mtp=mtp_params(model).unique,
    )


# --- multi-token prediction (DeepSeek-V3 §2.2) ----------------------------------------------

MTP_PROJECTION_INPUTS = 2  # M_k ∈ R^{h×2h} maps [RMSNorm(h_prev); RMSNorm(Emb(t))] (DeepSeek-V3 eq. 21)
MTP_NORMS = 3  # enorm, hnorm (eq. 21) and the shared head's own final norm (README_WEIGHTS.md shared_head.norm)


def mtp_shape(model: ModelSpec) -> LayerShape:
    """The transformer block of an MTP module: a decoder block of the same kind as the model's last layer."""
    last = layer_shapes(model)[-1]
    return LayerShape("decoder", model.decoder_layers, last.is_moe, False)


@dataclass(frozen=True)
class MTPParams:
    """Parameters of the model's `depth` MTP modules (zero when it has none)."""

    depth: int
    block: int  # one transformer block: attention, MoE or FFN, its norms
    projection: int  # M_k: 2h·h
    norms: int  # MTP_NORMS·h
    shared: int  # embedding + output head, shared with the main model (eq. 21-22)

    @property
    def per_module(self) -> int:
        return self.block + self.projection + self.norms

    @property
    def unique(self) -> int:
        """D·(block + 2h·h + 3h): what the modules add to the main model (DeepSeek-V3: 11.5B, README_WEIGHTS.md)."""
        return self.depth * self.per_module

    @property
    def checkpoint(self) -> int:
        """unique + D·(V·h embedding + V·h head): the released checkpoint stores the shared embedding and
        head again with each module (DeepSeek-V3 README_WEIGHTS.md: 671B main + 14B MTP = 685B)."""
        return self.unique + self.depth * self.shared


def mtp_params(model: ModelSpec) -> MTPParams:
    """Parameters of the MTP modules of `model`: D·(block + 2h² + 3h), embedding and head shared.

    Source: DeepSeek-V3 (arXiv 2412.19437) §2.2, eq. 21-23; README_WEIGHTS.md (layer 61: eh_proj,
    enorm, hnorm, shared_head)."""
    if not model.mtp_depth:
        return MTPParams(0, 0, 0, 0, 0)
    h = model.d_model
    block = layer_params(model, mtp_shape(model)).total
    shared = model.vocab_size * h * 2
    return MTPParams(model.mtp_depth, block, MTP_PROJECTION_INPUTS * h * h, MTP_NORMS * norm_params(h, model.norm_kind),
                     shared)
