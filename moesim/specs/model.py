"""Model spec: the application noun — an encoder-decoder (T5/Switch) or decoder-only MoE model.

Frozen, keyword-only dataclasses that validate themselves at construction. Sizes are element
counts (hidden sizes, vocabulary), never bytes; dtypes live in the training spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moesim.errors import SpecError
from moesim.specs.dtypes import DTYPES
from moesim.specs.ranges import check_ranges

ARCHITECTURES = ("encoder_decoder", "decoder_only")
FFN_KINDS = ("relu", "gelu", "geglu", "swiglu")
GATED_FFN_KINDS = ("geglu", "swiglu")
ATTENTION_KINDS = ("mha", "gqa", "mla")
ATTENTION_MASKS = ("full", "causal", "sliding_window", "block_sparse_fixed", "block_sparse_strided")  # ops/attention
NORM_KINDS = ("rmsnorm", "layernorm")
POSITION_KINDS = ("relative_bias", "rope", "learned", "none")
# Capacity rules (../shared/reference/modeling.md §1.2): Switch/Mesh-TF floor(t·CF/E) per group;
# Megatron-Core ceil(t·k·CF/E); MegaBlocks floor(t·k·CF/E); dropless = no capacity.
CAPACITY_RULES = ("switch", "megatron", "megablocks", "dropless")
ROUTER_SCORES = ("softmax", "sigmoid")
# Megatron-LM d98e8a6 megatron/core/transformer/transformer_config.py l.170 softmax_type: "learnable" adds one learned
# logit per head to every softmax row (the attention sink), "off-by-one" a fixed zero logit.
SOFTMAX_TYPES = ("vanilla", "off-by-one", "learnable")
MOE_STACKS = ("encoder", "decoder")


def _positive(name: str, value: int | float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"expected a number, got {value!r}", field=name, value=value)
    if value < 0 or (value == 0 and not allow_zero):
        raise SpecError(f"must be {'>= 0' if allow_zero else '> 0'}, got {value}", field=name, value=value)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(f"'{value}' is not allowed", field=name, value=value, allowed=allowed)


@dataclass(frozen=True, kw_only=True)
class AttentionSpec:
    """Self-attention shape. `head_dim` is d_kv (for MLA: the non-rotary q/k head dim)."""

    kind: str = "mha"
    num_heads: int
    head_dim: int
    num_kv_heads: int = 0  # 0 means equal to num_heads (MHA)
    qkv_bias: bool = False
    out_bias: bool = False
    # Multi-head latent attention (DeepSeek-V2 §2.1.2, arXiv 2405.04434); zero when unused.
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # Self-attention mask (moesim/ops/attention.py): "" = causal in a decoder stack, full in an encoder.
    mask: str = ""
    window_tokens: int = 0  # sliding_window: band width
    sparse_stride_tokens: int = 0  # block_sparse_*: Child et al. 2019's l
    sparse_summary_tokens: int = 0  # block_sparse_fixed: Child et al.'s c
    # Masks per layer, cycled over a decoder-only model's layers in order (layer i: layer_pattern[i % len]); empty:
    # every layer `mask`. GPT-OSS ["sliding_window", "causal"] is Megatron-LM's window_attn_skip_freq = 2
    # (d98e8a6 megatron/core/transformer/utils.py l.531-542 is_layer_window_attention: 1-indexed layer l is windowed
    # unless l % 2 == 0), HF config.json's layer_types alternating from "sliding_attention".
    layer_pattern: tuple[str, ...] = ()
    softmax_type: str = "vanilla"  # SOFTMAX_TYPES; "learnable": attention sinks, one logit per head

    def __post_init__(self) -> None:
        check_ranges(self)
        _one_of("attention.kind", self.kind, ATTENTION_KINDS)
        _one_of("attention.softmax_type", self.softmax_type, SOFTMAX_TYPES)
        if self.mask and self.layer_pattern:
            raise SpecError("give either a mask for every layer or a layer_pattern, not both",
                            field="attention.layer_pattern", value=list(self.layer_pattern))
        for mask in self.layer_masks():
            self._check_mask(mask)
        _positive("attention.num_heads", self.num_heads)
        _positive("attention.head_dim", self.head_dim)
        for name in ("num_kv_heads", "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "v_head_dim"):
            _positive(f"attention.{name}", getattr(self, name), allow_zero=True)
        if self.num_kv_heads == 0:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.num_heads % self.num_kv_heads:
            raise SpecError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}",
                field="attention.num_kv_heads", value=self.num_kv_heads,
            )
        if self.kind == "mha" and self.num_kv_heads != self.num_heads:
            raise SpecError("MHA needs num_kv_heads == num_heads; use kind = 'gqa'",
                            field="attention.kind", value=self.kind, allowed=ATTENTION_KINDS)
        if self.kind == "mla" and (self.kv_lora_rank == 0 or self.v_head_dim == 0):
            raise SpecError("MLA needs kv_lora_rank and v_head_dim > 0", field="attention.kv_lora_rank",
                            value=self.kv_lora_rank)

    def layer_masks(self) -> tuple[str, ...]:
        """The masks the file names: the pattern's, or `mask` alone ("" = the stack's default)."""
        return self.layer_pattern or (self.mask,)

    def _check_mask(self, mask: str) -> None:
        field_name = "attention.layer_pattern" if self.layer_pattern else "attention.mask"
        if mask or self.layer_pattern:
            _one_of(field_name, mask, ATTENTION_MASKS)
        if mask == "sliding_window" and self.window_tokens < 1:
            raise SpecError("a sliding_window mask needs window_tokens >= 1", field="attention.window_tokens",
                            value=self.window_tokens)
        if mask.startswith("block_sparse") and self.sparse_stride_tokens < 1:
            raise SpecError("a block-sparse mask needs sparse_stride_tokens >= 1",
                            field="attention.sparse_stride_tokens", value=self.sparse_stride_tokens)

    def pattern_mask(self, layer: int) -> str:
        """The mask of decoder layer `layer` (0-based) under layer_pattern; "" without one."""
        return self.layer_pattern[layer % len(self.layer_pattern)] if self.layer_pattern else ""


@dataclass(frozen=True, kw_only=True)
class MoESpec:
    """Mixture-of-experts FFN layers: which layers, how many experts, how tokens are routed."""

    num_experts: int
    top_k: int = 1
    expert_d_ff: int
    layer_freq: int = 1  # every layer_freq-th FFN (after the leading dense ones) is an MoE layer
    leading_dense_layers: int = 0
    stacks: tuple[str, ...] = MOE_STACKS
    num_shared_experts: int = 0
    shared_expert_d_ff: int = 0  # 0 means expert_d_ff
    shared_expert_gate: bool = False
    capacity_factor_train: float | None = 1.0  # None = dropless
    capacity_factor_eval: float | None = 2.0
    capacity_rule: str = "switch"
    min_expert_capacity: int = 0
    # Routing group (T5X GROUP_SIZE, Mesh-TF moe_group_size: a scenario's [moe] table sets the run's own);
    # 0 = a device's tokens per layer and micro-batch.
    group_size_tokens: int = 0
    router_score: str = "softmax"
    router_dtype: str = "float32"
    # The dtype of the router GEMM's backward (dgrad, wgrad) where the run's framework computes it in another than the
    # forward's: "" = router_dtype. A scenario's [moe] table sets the run's own (Megatron-Core's moe_router_dtype
    # "fp32": BF16 forward, TF32 backward, tests/data/bridge_perf/router_dtypes.toml).
    router_bwd_dtype: str = ""
    router_bias: bool = False
    # Node-limited routing (DeepSeek-V3 §2.1.2: each token to at most M nodes, M = 4 of 8): 0 = no limit.
    max_nodes_per_token: int = 0
    # The framework implementation whose router / dispatcher kernels are priced (moesim/ops/mcore_moe.toml); "" =
    # moesim's generic operators (moesim/ops/layer.py). A scenario's [moe] table sets the run's own.
    router_impl: str = ""

    def __post_init__(self) -> None:
        check_ranges(self)
        _positive("moe.num_experts", self.num_experts)
        _positive("moe.top_k", self.top_k)
        _positive("moe.expert_d_ff", self.expert_d_ff)
        _positive("moe.layer_freq", self.layer_freq)
        for name in ("leading_dense_layers", "num_shared_experts", "shared_expert_d_ff", "min_expert_capacity",
                     "group_size_tokens", "max_nodes_per_token"):
            _positive(f"moe.{name}", getattr(self, name), allow_zero=True)
        if self.top_k > self.num_experts:
            raise SpecError(f"top_k={self.top_k} exceeds num_experts={self.num_experts}", field="moe.top_k",
                            value=self.top_k)
        _one_of("moe.capacity_rule", self.capacity_rule, CAPACITY_RULES)
        _one_of("moe.router_score", self.router_score, ROUTER_SCORES)
        if self.router_bwd_dtype:
            _one_of("moe.router_bwd_dtype", self.router_bwd_dtype, DTYPES)
        for stack in self.stacks:
            _one_of("moe.stacks", stack, MOE_STACKS)
        for name in ("capacity_factor_train", "capacity_factor_eval"):
            value = getattr(self, name)
            if value is not None:
                _positive(f"moe.{name}", value)
        if self.capacity_rule == "dropless" and self.capacity_factor_train is not None:
            object.__setattr__(self, "capacity_factor_train", None)
        if self.shared_expert_d_ff == 0:
            object.__setattr__(self, "shared_expert_d_ff", self.expert_d_ff)

    @property
    def dropless(self) -> bool:
        return self.capacity_factor_train is None or self.capacity_rule == "dropless"

    def is_moe_layer(self, stack: str, index: int) -> bool:
        """Layer `index` (0-based) of `stack` is an MoE layer.

        The first `leading_dense_layers` are dense; after them every `layer_freq`-th is sparse,
        counting so that layer_freq = 2 gives layers 1, 3, 5, ... as HF SwitchTransformers and
        T5X "every other layer" do (HF `encoder_sparse_step`).
        """
        if stack not in self.stacks or index < self.leading_dense_layers:
            return False
        return (index - self.leading_dense_layers + 1) % self.layer_freq == 0


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A transformer, dense or MoE. `d_ff` is the dense FFN width (and that of leading dense layers)."""

    name: str
    architecture: str
    d_model: int
    encoder_layers: int = 0
    decoder_layers: int
    vocab_size: int
    tied_embeddings: bool = True
    ffn_kind: str
    d_ff: int
    ffn_bias: bool = False
    attention: AttentionSpec
    norm_kind: str = "rmsnorm"
    position_embedding: str = "rope"
    relative_attention_num_buckets: int = 32
    max_position_embeddings: int = 0
    moe: MoESpec | None = None
    # Multi-token-prediction depth D (DeepSeek-V3 §2.2): D sequential modules, each one transformer block
    # like the last layer plus a 2h→h projection and two RMSNorms, sharing the embedding and output head.
    # Outside the main model's parameter count; trained, dropped at inference.
    mtp_depth: int = 0
    default_seq_len: int = 2048
    default_decoder_seq_len: int = 0
    source: str = ""
    notes: str = ""
    family: str = ""
    aliases: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.name:
            raise SpecError("a model needs a name", field="name")
        _one_of("architecture", self.architecture, ARCHITECTURES)
        _one_of("ffn_kind", self.ffn_kind, FFN_KINDS)
        _one_of("norm_kind", self.norm_kind, NORM_KINDS)
        _one_of("position_embedding", self.position_embedding, POSITION_KINDS)
        for name in ("d_model", "decoder_layers", "vocab_size", "d_ff", "default_seq_len"):
            _positive(name, getattr(self, name))
        _positive("encoder_layers", self.encoder_layers, allow_zero=True)
        _positive("mtp_depth", self.mtp_depth, allow_zero=True)
        if self.mtp_depth and self.architecture != "decoder_only":
            raise SpecError("multi-token prediction needs a decoder-only model", field="mtp_depth",
                            value=self.mtp_depth)
        if self.attention.layer_pattern and self.architecture != "decoder_only":
            raise SpecError("a per-layer attention pattern needs a decoder-only model",
                            field="attention.layer_pattern", value=list(self.attention.layer_pattern),
                            allowed=("decoder_only",))
        if self.architecture == "encoder_decoder":
            if self.encoder_layers == 0:
                raise SpecError("an encoder-decoder model needs encoder_layers > 0", field="encoder_layers")
            if self.default_decoder_seq_len <= 0:
                raise SpecError("an encoder-decoder model needs default_decoder_seq_len > 0",
                                field="default_decoder_seq_len", value=self.default_decoder_seq_len)
        elif self.encoder_layers:
            raise SpecError("a decoder-only model has no encoder layers", field="encoder_layers",
                            value=self.encoder_layers)
        if self.position_embedding == "learned" and self.max_position_embeddings <= 0:
            raise SpecError("learned positions need max_position_embeddings > 0",
                            field="max_position_embeddings")
        if self.moe is not None:
            layers = self.encoder_layers + self.decoder_layers
            if not any(self.moe.is_moe_layer(s, i) for s, n in self.stacks() for i in range(n)):
                raise SpecError(f"no layer of {layers} is an MoE layer with layer_freq={self.moe.layer_freq}"
                                f" and leading_dense_layers={self.moe.leading_dense_layers}",
                                field="moe.layer_freq", value=self.moe.layer_freq)

    def stacks(self) -> tuple[tuple[str, int], ...]:
        """(stack name, layer count) pairs: encoder first when present."""
        if self.architecture == "encoder_decoder":
            return (("encoder", self.encoder_layers), ("decoder", self.decoder_layers))
        return (("decoder", self.decoder_layers),)

    @property
    def num_layers(self) -> int:
        return self.encoder_layers + self.decoder_layers

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def num_moe_layers(self) -> int:
        if self.moe is None:
            return 0
        return sum(self.moe.is_moe_layer(s, i) for s, n in self.stacks() for i in range(n))
