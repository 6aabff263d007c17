"""Layout-independent per-layer quantities of a scenario, grouped into layer classes, and how a
pipeline of `pp` stages splits them (contiguous layers; uneven counts by `specs.layout.stage_layers`).

A layer class is every layer sharing (stack, MoE or dense, self-attention mask): they have identical parameters,
FLOPs and activations, so the cost model works on at most four classes per stage
(encoder-dense, encoder-MoE, decoder-dense, decoder-MoE) with a layer count each, times the masks of a
model's `attention.layer_pattern` (GPT-OSS: sliding-window and causal layers alternating).

Multi-token-prediction modules (DeepSeek-V3 §2.2) form a class of their own, after the main layers
in execution order, placed on the last pipeline stage (Megatron-Core puts its MTP layers in the
post-process stage; DeepSeek's DualPipe keeps them with the output head, §3.2.3); the split of the
main layers into stages does not count them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from moesim.arithmetic import (
    LayerShape, attention_duplicated_params, layer_params, layer_shapes, mtp_params, mtp_shape, norm_params,
    param_counts, position_params,
)
from moesim.flops import LayerFlops, layer_forward_flops, mtp_layer_forward_flops
from moesim.specs.layout import stage_layers
from moesim.specs.model import ModelSpec


@dataclass(frozen=True)
class LayerClass:
    """Layers sharing stack and kind, for a given sequence layout (per sequence, whole layer)."""

    stack: str
    is_moe: bool
    cross_attention: bool
    tokens: int  # tokens per sequence through this layer
    encoder_tokens: int  # cross-attended encoder tokens per sequence (0 without cross-attention)
    params_shardable: int  # attention + dense FFN + shared experts: split by tp
    params_replicated: int  # router + norms (+ MLA's down-projections and latent norms): every tp rank holds a copy
    params_experts: int  # all routed experts of one layer
    per_expert: int
    flops: LayerFlops  # forward FLOP per sequence
    mtp: bool = False  # a multi-token-prediction module (block + M_k projection + its norms)
    params_duplicated_gemm: int = 0  # of params_replicated: GEMM weights whole on every tp rank (MLA's down-projs)
    mask: str = ""  # self-attention mask from the model's attention.layer_pattern; "" = the model's one mask


@dataclass(frozen=True)
class Workload:
    """A model at a sequence length: its layer classes and whole-model extras."""

    model: ModelSpec
    seq_len: int
    decoder_seq_len: int
    classes: tuple[LayerClass, ...]
    layer_class_index: tuple[int, ...]  # class of every layer, execution order
    embedding_params: int  # input embedding (+ learned positions): first stage
    lm_head_params: int  # untied output projection: last stage
    position_params: int  # relative-bias tables (replicated, negligible): first stage
    final_norm_params: int
    output_tokens: int  # tokens per sequence through the logits
    mtp_layers: int = 0  # MTP modules, the last entries of layer_class_index (on the last stage)
    # The word embedding's copy on the last stage when pp > 1: where the embeddings are tied (Megatron's
    # output_layer.weight, allocated on a stage without pre_process and synced from the first: gpt_model.py
    # `skip_weight_param_allocation=self.pre_process and self.share_embeddings_and_output_weights`,
    # language_module.py setup_embeddings_and_output_layer; NVIDIA/Megatron-LM d98e8a6) or the MTP modules read it.
    embedding_copy_params: int = 0

    @property
    def num_layers(self) -> int:
        """Main-model layers: what the pipeline split divides (the MTP modules join the last stage)."""
        return len(self.layer_class_index) - self.mtp_layers

    @property
    def logit_heads(self) -> int:
        """Output-head passes per token: the main model's and one per MTP module (DeepSeek-V3 eq. 22)."""
        return 1 + self.mtp_layers


def _class_key(model: ModelSpec, shape: LayerShape) -> tuple[str, bool, str]:
    return (shape.stack, shape.is_moe, model.attention.pattern_mask(shape.index))


def _duplicated(model: ModelSpec, cross_attention: bool) -> tuple[int, int]:
    """(GEMM weights, all weights) of a layer's attention that every tp rank holds whole (arithmetic.
    attention_duplicated_params; a cross-attention layer has two attention blocks, as layer_params counts)."""
    gemm_weights, norm_weights = attention_duplicated_params(model.d_model, model.attention)
    blocks = 2 if cross_attention else 1
    return blocks * gemm_weights, blocks * (gemm_weights + norm_weights)


@lru_cache(maxsize=64)
def build_workload(model: ModelSpec, seq_len: int, decoder_seq_len: int) -> Workload:
    """Group the layers of `model` into classes at the given sequence lengths."""
    shapes = layer_shapes(model)
    tokens = {"encoder": seq_len, "decoder": decoder_seq_len} if model.architecture == "encoder_decoder" \
        else {"decoder": seq_len}
    n_enc = tokens.get("encoder", 0)
    keys: list[tuple[str, bool]] = []
    classes: list[LayerClass] = []
    index: list[int] = []
    for shape in shapes:
        key = _class_key(model, shape)
        if key not in keys:
            keys.append(key)
            p = layer_params(model, shape)
            dup_gemm, dup = _duplicated(model, shape.cross_attention)
            classes.append(LayerClass(
                stack=shape.stack, is_moe=shape.is_moe, cross_attention=shape.cross_attention,
                tokens=tokens[shape.stack], encoder_tokens=n_enc if shape.cross_attention else 0,
                params_shardable=p.attention - dup + p.dense_ffn + p.shared_experts,
                params_replicated=p.router + p.norms + dup, params_duplicated_gemm=dup_gemm,
                params_experts=p.experts, per_expert=p.per_expert,
                flops=layer_forward_flops(model, shape, tokens[shape.stack], n_enc), mask=key[2],
            ))
        index.append(keys.index(key))
    mtp = mtp_params(model)
    if mtp.depth:
        shape, p = mtp_shape(model), layer_params(model, mtp_shape(model))
        dup_gemm, dup = _duplicated(model, False)
        classes.append(LayerClass(
            stack="decoder", is_moe=shape.is_moe, cross_attention=False, tokens=tokens["decoder"], encoder_tokens=0,
            params_shardable=p.attention - dup + p.dense_ffn + p.shared_experts + mtp.projection,
            params_replicated=p.router + p.norms + mtp.norms + dup, params_duplicated_gemm=dup_gemm,
            params_experts=p.experts, per_expert=p.per_expert,
            flops=mtp_layer_forward_flops(model, tokens["decoder"]), mtp=True,
            # an MTP module repeats the last decoder layer's spec, its attention kind included (Megatron-Bridge
            # 067f987d src/megatron/bridge/training/utils/flop_utils.py l.1434-1435)
            mask=model.attention.pattern_mask(model.decoder_layers - 1),
        ))
        index.extend([len(classes) - 1] * mtp.depth)
    counts = param_counts(model)
    return Workload(
        model=model, seq_len=seq_len, decoder_seq_len=decoder_seq_len, classes=tuple(classes),
        layer_class_index=tuple(index), embedding_params=counts.embedding,
        lm_head_params=counts.lm_head, position_params=position_params(model),
        final_norm_params=len(model.stacks()) * norm_params(model.d_model, model.norm_kind),
        output_tokens=tokens["decoder"], mtp_layers=mtp.depth,
        embedding_copy_params=counts.embedding if (mtp.depth or model.tied_embeddings) else 0,
    )


@lru_cache(maxsize=256)
def stage_ranges(workload: Workload, pp: int, first: int | None = None, last: int | None = None) -> tuple[range, ...]:
    """Global layer indices of each of `pp` contiguous stages, split by `specs.layout.stage_layers`
    (L/pp each when pp | L; else the leftover layers on the middle stages, latest first). The MTP
    modules, if any, end the last stage."""
    return _contiguous(stage_layers(workload.num_layers, pp, first, last), workload.mtp_layers)


def layout_ranges(workload: Workload, chunk_layers: tuple[int, ...]) -> tuple[range, ...]:
    """Global layer indices of each virtual stage of a pipeline layout (`specs.pipeline_layout`: its decoder layers
    per virtual stage in layer order, Megatron-LM pipeline_parallel_layer_layout.py's flatten_layout); the MTP
    modules end the last (the layout's 'm' is there: specs.pipeline_layout.parse)."""
    return _contiguous(tuple(chunk_layers), workload.mtp_layers)


def _contiguous(sizes, mtp_layers: int) -> tuple[range, ...]:
    """Consecutive layer ranges of `sizes` layers each, the MTP modules ending the last."""
    ends = np.cumsum(sizes)
    ends[-1] += mtp_layers
    return tuple(range(int(end - size), int(end)) for end, size in zip(ends, np.diff(ends, prepend=0)))


@lru_cache(maxsize=256)
def v_shape_ranges(workload: Workload, pp: int, first: int | None = None, last: int | None = None) -> tuple[range, ...]:
    """ZB-V's 2·pp pieces along a micro-batch's path, device d holding pieces d and 2·pp − 1 − d (Qi et al. ICLR'24
    §6): device d's layers are its stage's (`specs.layout.stage_layers`, as the estimate prices it), the first leg's
    piece taking the larger half (sail-sg/zero-bubble-pipeline-parallelism@035cda20 megatron/core/zbpp_utils.py
    `validate_arguments`: L/pp even, L/(2·pp) a chunk; an odd stage is moesim's case, split as stage_layers(n, 2)).
    The MTP modules, if any, end the last piece (device 0's, beside the head)."""
    pieces = [0] * (2 * pp)
    for d, n in enumerate(stage_layers(workload.num_layers, pp, first, last)):
        pieces[d], pieces[2 * pp - 1 - d] = stage_layers(n, 2)
    return _contiguous(pieces, workload.mtp_layers)


@lru_cache(maxsize=256)
def stage_class_counts(workload: Workload, pp: int, first: int | None = None, last: int | None = None) -> np.ndarray:
    """Layers of each class on each of `pp` contiguous stages (`stage_ranges`): shape (pp, classes)."""
    counts = np.zeros((pp, len(workload.classes)))
    for s, layers in enumerate(stage_ranges(workload, pp, first, last)):
        for layer in layers:
            counts[s, workload.layer_class_index[layer]] += 1
    return counts
