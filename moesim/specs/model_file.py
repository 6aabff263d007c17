"""Reading a model file (or a scenario's inline [model] table) into a ModelSpec, strictly."""

from __future__ import annotations

from pathlib import Path

from moesim.specs.data_files import SCHEMA_VERSION, read_data_file, resolve_ref, str_list, with_file
from moesim.specs.fields import Table, check_file_kind, check_schema_version
from moesim.specs.model import (
    ARCHITECTURES, ATTENTION_KINDS, ATTENTION_MASKS, CAPACITY_RULES, FFN_KINDS, MOE_STACKS, NORM_KINDS, POSITION_KINDS,
    ROUTER_SCORES, SOFTMAX_TYPES, AttentionSpec, ModelSpec, MoESpec,
)


def model_from_table(t: Table) -> ModelSpec:
    """Build a ModelSpec from a strict table (a model file, or a scenario's inline [model])."""
    check_file_kind(t, "model")
    check_schema_version(t, SCHEMA_VERSION)
    arch = t.choice("architecture", ARCHITECTURES)
    att_t = t.sub("attention")
    attention = AttentionSpec(
        kind=att_t.choice("kind", ATTENTION_KINDS, "mha"),
        num_heads=att_t.req("num_heads", int),
        head_dim=att_t.req("head_dim", int),
        num_kv_heads=att_t.opt("num_kv_heads", int, 0),
        qkv_bias=att_t.opt("qkv_bias", bool, False),
        out_bias=att_t.opt("out_bias", bool, False),
        q_lora_rank=att_t.opt("q_lora_rank", int, 0),
        kv_lora_rank=att_t.opt("kv_lora_rank", int, 0),
        qk_rope_head_dim=att_t.opt("qk_rope_head_dim", int, 0),
        v_head_dim=att_t.opt("v_head_dim", int, 0),
        mask=att_t.opt("mask", str, ""),
        window_tokens=att_t.opt("window_tokens", int, 0),
        sparse_stride_tokens=att_t.opt("sparse_stride_tokens", int, 0),
        sparse_summary_tokens=att_t.opt("sparse_summary_tokens", int, 0),
        layer_pattern=tuple(str_list(att_t, "layer_pattern", ATTENTION_MASKS, [])),
        softmax_type=att_t.choice("softmax_type", SOFTMAX_TYPES, "vanilla"),
    )
    att_t.finish()
    moe = None
    moe_t = t.sub("moe", required=False)
    if moe_t is not None:
        rule = moe_t.choice("capacity_rule", CAPACITY_RULES, "switch")
        dropless = rule == "dropless"
        cf_train = moe_t.opt("capacity_factor_train", float, None)
        cf_eval = moe_t.opt("capacity_factor_eval", float, None)
        if not dropless and cf_train is None:
            raise moe_t.error("capacity_factor_train", "required unless capacity_rule = 'dropless'")
        moe = MoESpec(
            num_experts=moe_t.req("num_experts", int),
            top_k=moe_t.opt("top_k", int, 1),
            expert_d_ff=moe_t.req("expert_d_ff", int),
            layer_freq=moe_t.opt("layer_freq", int, 1),
            leading_dense_layers=moe_t.opt("leading_dense_layers", int, 0),
            stacks=tuple(str_list(moe_t, "stacks", MOE_STACKS, default=list(MOE_STACKS))),
            num_shared_experts=moe_t.opt("num_shared_experts", int, 0),
            shared_expert_d_ff=moe_t.opt("shared_expert_d_ff", int, 0),
            shared_expert_gate=moe_t.opt("shared_expert_gate", bool, False),
            capacity_factor_train=None if dropless else cf_train,
            capacity_factor_eval=cf_eval,
            capacity_rule=rule,
            min_expert_capacity=moe_t.opt("min_expert_capacity", int, 0),
            group_size_tokens=moe_t.opt("group_size_tokens", int, 0),
            router_score=moe_t.choice("router_score", ROUTER_SCORES, "softmax"),
            router_dtype=moe_t.opt("router_dtype", str, "float32"),
            router_bias=moe_t.opt("router_bias", bool, False),
            max_nodes_per_token=moe_t.opt("max_nodes_per_token", int, 0),
        )
        moe_t.finish()
    if arch == "encoder_decoder":
        enc, dec = t.req("encoder_layers", int), t.req("decoder_layers", int)
    else:
        enc, dec = 0, t.req("layers", int)
    spec = ModelSpec(
        name=t.req("name", str),
        family=t.opt("family", str, ""),
        aliases=tuple(t.opt("aliases", list, [])),
        architecture=arch,
        d_model=t.req("d_model", int),
        encoder_layers=enc,
        decoder_layers=dec,
        vocab_size=t.req("vocab_size", int),
        tied_embeddings=t.req("tied_embeddings", bool),
        ffn_kind=t.choice("ffn_kind", FFN_KINDS),
        d_ff=t.req("d_ff", int),
        ffn_bias=t.opt("ffn_bias", bool, False),
        attention=attention,
        norm_kind=t.choice("norm_kind", NORM_KINDS, "rmsnorm"),
        position_embedding=t.choice("position_embedding", POSITION_KINDS, "rope"),
        relative_attention_num_buckets=t.opt("relative_attention_num_buckets", int, 32),
        max_position_embeddings=t.opt("max_position_embeddings", int, 0),
        moe=moe,
        mtp_depth=t.opt("mtp_depth", int, 0),
        default_seq_len=t.opt("default_seq_len", int, 2048),
        default_decoder_seq_len=t.opt("default_decoder_seq_len", int, 0),
        source=t.req("source", str),
        notes=t.opt("notes", str, ""),
    )
    t.finish()
    return spec


def load_model(ref: str | Path, *, relative_to: Path | None = None) -> ModelSpec:
    """A model by built-in name (e.g. `switch-c-2048`), or from a model TOML or HF `config.json`."""
    path = resolve_ref(ref, "models", relative_to=relative_to)
    if path.name == "config.json" or (path.suffix == ".json" and "model_type" in read_data_file(path)):
        from moesim.models.hf import model_from_hf_config

        return model_from_hf_config(path)
    return with_file(path, lambda: model_from_table(Table(read_data_file(path), file=str(path))))
