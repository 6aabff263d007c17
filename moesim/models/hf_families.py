"""Per-family readers of HuggingFace config.json files (see `moesim.models.hf`).

Each reader follows the family's HF modeling code (transformers `models/<family>/modeling_*.py`):
  llama, mistral      dense SwiGLU decoder; llama's attention_bias/mlp_bias add biases
  mixtral             every layer MoE: num_local_experts SwiGLU experts, top num_experts_per_tok
  qwen2_moe           layer i sparse when (i+1) % decoder_sparse_step == 0 and i not in mlp_only_layers;
                      q/k/v biases; one shared expert behind a sigmoid gate Linear(h, 1)
  qwen3_moe           as qwen2_moe without the shared expert; explicit head_dim; attention_bias
  deepseek_v2, _v3    MLA attention; layer i sparse when i >= first_k_dense_replace and
                      i % moe_layer_freq == 0; n_shared_experts x moe_intermediate_size shared;
                      V3's noaux_tc routing adds e_score_correction_bias (E per layer)
  olmoe               every layer MoE with SwiGLU experts of intermediate_size
  gpt_oss             every layer MoE (num_local_experts, biases everywhere, router bias); layer_types as the
                      attention.layer_pattern (sliding_attention -> a sliding_window of `sliding_window` tokens,
                      full_attention -> causal); attention sinks (softmax_type learnable)
  dbrx                nested ffn_config (GLU experts) and attn_config (kv_n_heads)
  t5                  encoder-decoder, feed_forward_proj relu / gated-gelu, relative position bias
  switch_transformers T5 with sparse layers where i % sparse_step == 1 (every layer when step 1)
Training choices a config does not hold (sequence length, capacity factor) take the defaults
written in each spec's `notes`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from moesim.models.hf import HFConfig
from moesim.specs.model import AttentionSpec, ModelSpec, MoESpec

DEFAULT_DECODER_SEQ_LEN = 4096  # training sequence of an imported decoder when its context allows
T5_SEQ_LEN, T5_TARGETS = 512, 114  # T5 span corruption: 512 inputs, 114 targets (as the library files)
SWITCH_CAPACITY_FACTORS = (1.25, 2.0)  # train / eval (switch_base.gin); config.json holds none
# Gated activations: HF decoders' MLPs are act(x W_gate) * (x W_up); "silu" makes it SwiGLU.
GATED_ACTIVATIONS = {"silu": "swiglu", "swish": "swiglu", "gelu": "geglu", "gelu_new": "geglu",
                     "gelu_pytorch_tanh": "geglu"}
# transformers GptOssConfig layer_types (828a27fd models/gpt_oss/configuration_gpt_oss.py) -> moesim masks
HF_LAYER_TYPES = {"sliding_attention": "sliding_window", "full_attention": "causal"}
T5_FFN = {"relu": "relu", "gelu": "gelu", "gated-gelu": "geglu", "gated-silu": "swiglu"}


def _source(cfg: HFConfig, family: str) -> str:
    return f"HuggingFace config.json ({family}) read from {cfg.file}"


def _seq_len(cfg: HFConfig, key: str = "max_position_embeddings") -> tuple[int, int]:
    """(max_position_embeddings, default training sequence) from the config's context length."""
    context = cfg.opt(key, int, 0)
    return context, min(context, DEFAULT_DECODER_SEQ_LEN) if context else DEFAULT_DECODER_SEQ_LEN


def _gated_kind(cfg: HFConfig, default: str = "silu") -> str:
    act = cfg.opt("hidden_act", str, default)
    if act not in GATED_ACTIVATIONS:
        raise cfg.error("hidden_act", f"activation '{act}' is not supported", value=act,
                        allowed=tuple(GATED_ACTIVATIONS))
    return GATED_ACTIVATIONS[act]


def _attention(cfg: HFConfig, *, heads_key: str = "num_attention_heads", bias: bool = False,
               out_bias: bool = False) -> AttentionSpec:
    """MHA or GQA from num_attention_heads, num_key_value_heads (default: heads) and head_dim."""
    heads = cfg.req(heads_key, int)
    kv = cfg.opt("num_key_value_heads", int, heads)
    head_dim = cfg.opt("head_dim", int, 0) or cfg.req("hidden_size", int) // heads
    return AttentionSpec(kind="mha" if kv == heads else "gqa", num_heads=heads, num_kv_heads=kv,
                         head_dim=head_dim, qkv_bias=bias, out_bias=out_bias)


def _decoder(cfg: HFConfig, path: Path, family: str, *, attention: AttentionSpec, d_ff: int, ffn_kind: str,
             moe: MoESpec | None, notes: str, d_model_key: str = "hidden_size",
             layers_key: str = "num_hidden_layers", tied_default: bool = False, ffn_bias: bool = False,
             context_key: str = "max_position_embeddings") -> ModelSpec:
    context, seq = _seq_len(cfg, context_key)
    return ModelSpec(
        name=cfg.name(path), family=family, architecture="decoder_only", d_model=cfg.req(d_model_key, int),
        decoder_layers=cfg.req(layers_key, int), vocab_size=cfg.req("vocab_size", int),
        tied_embeddings=cfg.opt("tie_word_embeddings", bool, tied_default), ffn_kind=ffn_kind, d_ff=d_ff,
        ffn_bias=ffn_bias, attention=attention, norm_kind="rmsnorm", position_embedding="rope",
        max_position_embeddings=context, moe=moe, default_seq_len=seq, source=_source(cfg, family),
        notes=notes + f" Training sequence {seq} tokens (default, from the {context or 'unknown'}-token context).",
    )


def _dropless(num_experts: int, top_k: int, expert_d_ff: int, **extra) -> MoESpec:
    return MoESpec(num_experts=num_experts, top_k=top_k, expert_d_ff=expert_d_ff, capacity_rule="dropless",
                   capacity_factor_train=None, capacity_factor_eval=None, **extra)


# --- dense decoders ----------------------------------------------------------------------

def read_llama(cfg: HFConfig, path: Path, family: str = "llama") -> ModelSpec:
    bias = cfg.opt("attention_bias", bool, False)
    return _decoder(cfg, path, family, attention=_attention(cfg, bias=bias, out_bias=bias),
                    d_ff=cfg.req("intermediate_size", int), ffn_kind=_gated_kind(cfg), moe=None,
                    ffn_bias=cfg.opt("mlp_bias", bool, False), notes=f"Dense {family} decoder.")


def read_mistral(cfg: HFConfig, path: Path) -> ModelSpec:
    return _decoder(cfg, path, "mistral", attention=_attention(cfg), d_ff=cfg.req("intermediate_size", int),
                    ffn_kind=_gated_kind(cfg), moe=None,
                    notes="Dense mistral decoder (sliding-window attention counted over the full context).")


# --- MoE decoders ------------------------------------------------------------------------

def read_mixtral(cfg: HFConfig, path: Path) -> ModelSpec:
    d_ff = cfg.req("intermediate_size", int)
    moe = _dropless(cfg.req("num_local_experts", int), cfg.req("num_experts_per_tok", int), d_ff)
    return _decoder(cfg, path, "mixtral", attention=_attention(cfg), d_ff=d_ff, ffn_kind=_gated_kind(cfg),
                    moe=moe, notes="Every layer MoE (MixtralSparseMoeBlock), dropless.")


def _qwen_layout(cfg: HFConfig) -> dict:
    """layer_freq / leading_dense_layers equal to HF's (i+1) % decoder_sparse_step == 0 and mlp_only_layers."""
    step = cfg.opt("decoder_sparse_step", int, 1)
    dense = cfg.opt("mlp_only_layers", list, [])
    if not dense:
        return {"layer_freq": step}
    if step == 1 and dense == list(range(len(dense))):
        return {"layer_freq": 1, "leading_dense_layers": len(dense)}
    raise cfg.error("mlp_only_layers", "only a leading run of dense layers (0, 1, ..., k-1) with "
                    "decoder_sparse_step 1 can be expressed", value=dense)


def read_qwen2_moe(cfg: HFConfig, path: Path) -> ModelSpec:
    shared = cfg.opt("shared_expert_intermediate_size", int, 0)
    moe = _dropless(cfg.req("num_experts", int), cfg.req("num_experts_per_tok", int),
                    cfg.req("moe_intermediate_size", int), num_shared_experts=1 if shared else 0,
                    shared_expert_d_ff=shared, shared_expert_gate=bool(shared), **_qwen_layout(cfg))
    return _decoder(cfg, path, "qwen", attention=_attention(cfg, bias=True), d_ff=cfg.req("intermediate_size", int),
                    ffn_kind=_gated_kind(cfg), moe=moe,
                    notes="Qwen2-MoE: q/k/v biases, one shared expert behind a sigmoid gate, dropless.")


def read_qwen3_moe(cfg: HFConfig, path: Path) -> ModelSpec:
    bias = cfg.opt("attention_bias", bool, False)
    moe = _dropless(cfg.req("num_experts", int), cfg.req("num_experts_per_tok", int),
                    cfg.req("moe_intermediate_size", int), **_qwen_layout(cfg))
    return _decoder(cfg, path, "qwen", attention=_attention(cfg, bias=bias, out_bias=bias),
                    d_ff=cfg.req("intermediate_size", int), ffn_kind=_gated_kind(cfg), moe=moe,
                    notes="Qwen3-MoE, dropless; per-head q/k RMSNorm not counted.")


def _deepseek_leading_dense(cfg: HFConfig, first_k: int, freq: int, layers: int) -> int:
    """moesim's leading_dense_layers giving HF's sparse layers {i >= first_k, i % freq == 0}."""
    first = next((i for i in range(first_k, layers) if i % freq == 0), None)
    if first is None:
        raise cfg.error("first_k_dense_replace", f"no layer of {layers} is sparse", value=first_k)
    leading = first - (freq - 1)
    if leading < 0:
        raise cfg.error("moe_layer_freq", f"sparse layer {first} with moe_layer_freq {freq} cannot be expressed "
                        "(moesim counts every freq-th layer after the leading dense ones)", value=freq)
    return leading


def read_deepseek(cfg: HFConfig, path: Path, version: int) -> ModelSpec:
    layers = cfg.req("num_hidden_layers", int)
    freq = cfg.opt("moe_layer_freq", int, 1)
    first_k = cfg.opt("first_k_dense_replace", int, 0)
    default_scoring, default_topk = ("sigmoid", "noaux_tc") if version == 3 else ("softmax", "greedy")
    scoring = cfg.opt("scoring_func", str, default_scoring)
    if scoring not in ("softmax", "sigmoid"):
        raise cfg.error("scoring_func", f"'{scoring}' is not supported", value=scoring, allowed=("softmax", "sigmoid"))
    expert_d_ff = cfg.req("moe_intermediate_size", int)
    moe = _dropless(
        cfg.req("n_routed_experts", int), cfg.req("num_experts_per_tok", int), expert_d_ff, layer_freq=freq,
        leading_dense_layers=_deepseek_leading_dense(cfg, first_k, freq, layers),
        num_shared_experts=cfg.opt("n_shared_experts", int, 1 if version == 3 else 0, nullable=True),
        shared_expert_d_ff=expert_d_ff, router_score=scoring,
        router_bias=cfg.opt("topk_method", str, default_topk) == "noaux_tc",
    )
    heads = cfg.req("num_attention_heads", int)
    attention = AttentionSpec(
        kind="mla", num_heads=heads, num_kv_heads=heads, head_dim=cfg.req("qk_nope_head_dim", int),
        q_lora_rank=cfg.req("q_lora_rank", int, nullable=True) or 0, kv_lora_rank=cfg.req("kv_lora_rank", int),
        qk_rope_head_dim=cfg.req("qk_rope_head_dim", int), v_head_dim=cfg.req("v_head_dim", int),
    )
    mtp = cfg.opt("num_nextn_predict_layers", int, 0)
    notes = f"DeepSeek-V{version}: MLA, {moe.num_shared_experts} shared + routed experts, dropless."
    if mtp:
        notes += (f" The {mtp} multi-token-prediction module(s) (num_nextn_predict_layers) are outside the"
                  " main model's parameter count (param_counts(...).mtp counts them).")
    spec = _decoder(cfg, path, "deepseek", attention=attention, d_ff=cfg.req("intermediate_size", int),
                    ffn_kind=_gated_kind(cfg), moe=moe, notes=notes)
    return dataclasses.replace(spec, mtp_depth=mtp)


def read_olmoe(cfg: HFConfig, path: Path) -> ModelSpec:
    d_ff = cfg.req("intermediate_size", int)
    bias = cfg.opt("attention_bias", bool, False)
    moe = _dropless(cfg.req("num_experts", int), cfg.req("num_experts_per_tok", int), d_ff)
    return _decoder(cfg, path, "olmoe", attention=_attention(cfg, bias=bias, out_bias=bias), d_ff=d_ff,
                    ffn_kind=_gated_kind(cfg), moe=moe, notes="Every layer MoE, dropless; QK-norm not counted.")


def _layer_pattern(cfg: HFConfig, layers: int) -> tuple[str, ...]:
    """HF layer_types as moesim masks, cut to their shortest repeating cycle (() when every layer is causal); absent,
    GptOssConfig's default: sliding_attention where (i + 1) % 2, full_attention otherwise."""
    types = cfg.opt("layer_types", list, None, nullable=True) or [
        "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)]
    for t in types:
        if t not in HF_LAYER_TYPES:
            raise cfg.error("layer_types", f"layer type '{t}' is not supported", value=t, allowed=tuple(HF_LAYER_TYPES))
    if len(types) != layers:
        raise cfg.error("layer_types", f"{len(types)} layer types for num_hidden_layers = {layers}", value=len(types))
    masks = [HF_LAYER_TYPES[t] for t in types]
    period = next(p for p in range(1, layers + 1) if layers % p == 0 and masks == masks[:p] * (layers // p))
    return () if set(masks) == {"causal"} else tuple(masks[:period])


def read_gpt_oss(cfg: HFConfig, path: Path) -> ModelSpec:
    layers, d_ff = cfg.req("num_hidden_layers", int), cfg.req("intermediate_size", int)
    pattern = _layer_pattern(cfg, layers)
    attention = dataclasses.replace(_attention(cfg, bias=True, out_bias=True), layer_pattern=pattern,
                                    window_tokens=cfg.req("sliding_window", int) if pattern else 0,
                                    softmax_type="learnable")
    moe = _dropless(cfg.req("num_local_experts", int), cfg.req("num_experts_per_tok", int), d_ff, router_bias=True)
    return _decoder(cfg, path, "gpt-oss", attention=attention, d_ff=d_ff, ffn_kind="swiglu", moe=moe, ffn_bias=True,
                    notes="GPT-OSS: every layer MoE, dropless, biases on the attention, expert and router linears; "
                          "attention per layer_types, sinks per head; SwiGLU for the clamped gated activation "
                          "(swiglu_limit: same GEMMs and bytes).")


def read_dbrx(cfg: HFConfig, path: Path) -> ModelSpec:
    ffn, attn = cfg.sub("ffn_config"), cfg.sub("attn_config")
    act = ffn.opt("ffn_act_fn", dict, {"name": "silu"}).get("name", "silu")
    if act not in GATED_ACTIVATIONS:
        raise ffn.error("ffn_act_fn", f"activation '{act}' is not supported", value=act,
                        allowed=tuple(GATED_ACTIVATIONS))
    heads, d_model = cfg.req("n_heads", int), cfg.req("d_model", int)
    kv = attn.req("kv_n_heads", int)
    attention = AttentionSpec(kind="mha" if kv == heads else "gqa", num_heads=heads, num_kv_heads=kv,
                              head_dim=d_model // heads)
    d_ff = ffn.req("ffn_hidden_size", int)
    moe = _dropless(ffn.req("moe_num_experts", int), ffn.req("moe_top_k", int), d_ff)
    return _decoder(cfg, path, "dbrx", attention=attention, d_ff=d_ff, ffn_kind=GATED_ACTIVATIONS[act], moe=moe,
                    d_model_key="d_model", layers_key="n_layers", context_key="max_seq_len",
                    notes="DBRX: GLU experts, LayerNorm without bias (counted as RMSNorm: h each), dropless.")


# --- encoder-decoders --------------------------------------------------------------------

def _t5_common(cfg: HFConfig, path: Path, family: str, moe: MoESpec | None, notes: str) -> ModelSpec:
    proj = cfg.opt("feed_forward_proj", str, "relu")
    if proj not in T5_FFN:
        raise cfg.error("feed_forward_proj", f"'{proj}' is not supported", value=proj, allowed=tuple(T5_FFN))
    layers = cfg.req("num_layers", int)
    return ModelSpec(
        name=cfg.name(path), family=family, architecture="encoder_decoder", d_model=cfg.req("d_model", int),
        encoder_layers=layers, decoder_layers=cfg.opt("num_decoder_layers", int, layers),
        vocab_size=cfg.req("vocab_size", int), tied_embeddings=cfg.opt("tie_word_embeddings", bool, True),
        ffn_kind=T5_FFN[proj], d_ff=cfg.req("d_ff", int),
        attention=AttentionSpec(kind="mha", num_heads=cfg.req("num_heads", int), head_dim=cfg.req("d_kv", int)),
        norm_kind="rmsnorm", position_embedding="relative_bias",
        relative_attention_num_buckets=cfg.opt("relative_attention_num_buckets", int, 32), moe=moe,
        default_seq_len=T5_SEQ_LEN, default_decoder_seq_len=T5_TARGETS, source=_source(cfg, family),
        notes=notes + f" Sequence {T5_SEQ_LEN} inputs + {T5_TARGETS} targets (T5 span corruption default).",
    )


def read_t5(cfg: HFConfig, path: Path) -> ModelSpec:
    return _t5_common(cfg, path, "t5", None, "Dense T5 encoder-decoder.")


def _sparse_step(cfg: HFConfig, stack: str, layers: int) -> int:
    """HF SwitchTransformersConfig: {stack}_sparse_step, else layers // num_sparse_{stack}_layers (0: none)."""
    if cfg.data.get(f"{stack}_sparse_step") is not None:
        return cfg.req(f"{stack}_sparse_step", int)
    sparse = cfg.req(f"num_sparse_{stack}_layers", int)
    return layers // sparse if sparse else 0


def read_switch(cfg: HFConfig, path: Path) -> ModelSpec:
    enc_layers = cfg.req("num_layers", int)
    dec_layers = cfg.opt("num_decoder_layers", int, enc_layers)
    steps = {"encoder": _sparse_step(cfg, "encoder", enc_layers), "decoder": _sparse_step(cfg, "decoder", dec_layers)}
    active = {s: step for s, step in steps.items() if step > 0}
    if not active:
        raise cfg.error("num_sparse_encoder_layers", "no sparse layer in either stack")
    if len(set(active.values())) > 1:
        raise cfg.error("decoder_sparse_step", f"encoder and decoder sparse steps differ ({steps}); moesim has one "
                        "layer_freq per model", value=steps["decoder"])
    step = next(iter(active.values()))
    train_cf, eval_cf = SWITCH_CAPACITY_FACTORS
    moe = MoESpec(num_experts=cfg.req("num_experts", int), top_k=cfg.opt("num_selected_experts", int, 1),
                  expert_d_ff=cfg.req("d_ff", int), layer_freq=step, stacks=tuple(active),
                  capacity_factor_train=train_cf, capacity_factor_eval=eval_cf,
                  router_bias=cfg.opt("router_bias", bool, False))
    notes = (f"Switch: sparse every {step} layer(s) in {', '.join(active)} (HF: i % step == 1, or all when 1; "
             f"moesim places them at (i+1) % step == 0: same count), capacity factor {train_cf} train / {eval_cf} eval "
             "assumed (config.json holds an absolute expert_capacity).")
    return _t5_common(cfg, path, "switch", moe, notes)


READERS: dict[str, Callable[[HFConfig, Path], ModelSpec]] = {
    "llama": read_llama,
    "mistral": read_mistral,
    "mixtral": read_mixtral,
    "qwen2_moe": read_qwen2_moe,
    "qwen3_moe": read_qwen3_moe,
    "deepseek_v2": lambda cfg, path: read_deepseek(cfg, path, 2),
    "deepseek_v3": lambda cfg, path: read_deepseek(cfg, path, 3),
    "olmoe": read_olmoe,
    "gpt_oss": read_gpt_oss,
    "dbrx": read_dbrx,
    "t5": read_t5,
    "switch_transformers": read_switch,
}
