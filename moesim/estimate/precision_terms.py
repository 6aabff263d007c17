"""FP8 quantise operators of one layer, per device per micro-batch (issue 12, precision per tensor class).

An FP8 recipe quantises the input of every Linear in forward (Fprop; the transposed copy serves Wgrad)
and the gradient of its output in backward (Dgrad and Wgrad); `moesim.precision.quantise_pass_bytes` gives
the bytes of both passes (TE's cast-transpose, or DeepSeek-V3's transposed re-quantisation in backward).
Here: how many elements each part of a layer quantises, and the bytes those
memory-bound operators move (the operator list prices them). The time is reported by the part whose GEMMs consume the casts (attention projections in
"attention", dense FFN in "dense_ffn", shared experts in "shared_experts"; the routed experts' casts in
"permute", where DeepSeek-V3 quantises tokens before dispatch, §3.3.4), so both engines run it.

Notation: b micro-batch sequences, n tokens per sequence, h d_model, f FFN width, t tp, r token
slots on the device, W_in / W_out the summed GEMM input / output widths of an attention block
(arithmetic.attention_gemm_widths). The first input and last output of a block (width h) are whole on
every tp rank (the gathered input, the partial output before its reduce); the inner widths split by t. Under
Megatron-LM + TE with SP those two are cast on the sequence shard, h / t, and gathered in FP8 (te_shard_casts).
"""

from __future__ import annotations

import numpy as np

from moesim.arithmetic import MTP_PROJECTION_INPUTS, attention_gemm_widths, ffn_matrices
from moesim.precision import (QUANTISED_COPIES, quantise_pass_bytes, scale_bytes_per_element, weight_quantise_cost,
                              weight_transpose_bytes)
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec
from moesim.workload import LayerClass


def _ffn_elements(tokens, h: int, f: int, gated: bool, split, outer=None):
    """(forward inputs, backward output gradients) of one FFN: in h + f/t, out (2f or f)/t + h per token (`outer`
    in place of h: the dense MLP's h / t where its gathers carry FP8 shards, quantised_elements `shard_casts`)."""
    outer = h if outer is None else outer
    return tokens * (outer + f / split), tokens * ((2 if gated else 1) * f / split + outer)


def quantised_elements(model: ModelSpec, cls: LayerClass, b, tp, etp, slots, deepseek_casts: bool = False,
                       te_casts: bool = False, sequence_parallel: bool = False,
                       shard_casts: bool = False) -> dict[str, tuple]:
    """Part name -> (elements cast forward, elements cast backward) for one layer of `cls`.

    `shard_casts` (Megatron-LM + TE under SP, `te_shard_casts`): the tp blocks' gathered tensors are cast on the
    sequence shard and gathered in FP8 (sp_gather_element_bytes): the column-parallel input (linear_qkv's, a dense
    fc1's, MLA's q_proj without a q LoRA rank) and the row-parallel output gradient (linear_proj's, fc2's), each
    tokens · h / t on a rank, not tokens · h.

    `sequence_parallel`: MLA's down projections (TELinear, parallel_mode 'duplicated') read the layer input's
    sequence shard [s/t, h] as it arrives, gathered by nothing first, so each of their casts is tokens · h / t on a
    rank (q_proj without a q LoRA rank is column-parallel and reads the gathered input: whole, as linear_qkv's).

    `te_casts` (Megatron-LM + TransformerEngine's own casts, `te_casts_apply`): MLA's down projections are unfused
    (mla_down_proj_fusion off, Megatron's default, set by no Megatron-Bridge release read), so linear_q_down_proj
    (linear_q_proj without a q LoRA rank) and linear_kv_down_proj are two Linears that each cast the layer input
    (te_cast_kernels counts the two kernels): h once more per token forward; the backward casts their output
    gradients, already counted (session 24, mladown).

    `deepseek_casts` (DeepSeek-V3's recipe: FP8 dispatch and the transposed re-quantisation, `deepseek_casts_apply`;
    DeepSeek's H800 trace, tests/data/dsv3_trace, kernel by kernel in session 22, dsv3ops):
    - MLA's two down-projections are two Linears, each casting the layer input (forward: two
      per_token_cast_to_fp8 of [t, h] in attn(F); backward: two per_channel_cast_and_transpose of it in attn(B)):
      h once more per token in both passes.
    - The MoE's up-projection input is cast once per token before the dispatch and the routed experts read the
      dispatched FP8 rows (arXiv 2412.19437 §3.3.4, "we quantize the activation before MoE up-projections into FP8
      and then apply dispatch components"; the trace's last per_token cast of attn(F), grid = the tokens); the
      shared experts' fc1 reads that copy too (no cast of its own before it in mlp(F)): forward t·h + r·f routed,
      f_s per token shared. "A similar strategy is applied to the activation gradient before MoE
      down-projections" (§3.3.4): fc2's output gradient is cast 1x128 once per token before the combine's
      backward (the trace's combine(B) per_token cast, grid = the tokens) and 128x1 per row for Wgrad, and the
      shared fc2's Dgrad reads that copy. The backward's bytes stay the requantise formula's, twice the output
      gradients and the inputs once (moesim.precision.quantise_pass_bytes) over these inputs: routed
      2·r·(2f + h) + t·h + r·f is the trace's fc1 gradients twice (2·2f·r), fc2's gradient on the tokens and the
      rows (t·h + r·h) and the re-quantised inputs (r·h + r·f); shared 2·t·(2f_s + h) + t·f_s is fc1's gradients
      twice, fc2's 128x1 (t·h) and the inputs (t·h + t·f_s)."""
    h, n = model.d_model, cls.tokens
    gated = ffn_matrices(model.ffn_kind) == 3
    w_in, w_out = attention_gemm_widths(h, model.attention)
    blocks = 2 if cls.cross_attention else 1
    tokens = b * n
    mla = model.attention.kind == "mla"
    # a down projection's input per token: under SP the sequence shard, h / t (Megatron-LM 23e00ed0
    # multi_latent_attention.py l.526-530: "elif linear_q_down_proj is Linear: q_compressed: [s / TP, b, q_lora_rank]")
    down_in = h / tp if mla and sequence_parallel else h
    # TE v2.14 (f031cf87) layernorm_linear.py l.149 / l.209-225 / l.255-275: the norm runs on the shard, its output
    # cast there (the quantized norm) and gathered in FP8; base.py l.1186 / l.1228-1233: a row-parallel grad output too
    gathered = h / tp if shard_casts else h
    first_in = down_in if mla and model.attention.q_lora_rank else gathered  # no q LoRA rank: q_proj's gathered h
    att_in = blocks * tokens * (first_in + (w_in - h) / tp)
    att_out = blocks * tokens * ((w_out - h) / tp + gathered)
    if deepseek_casts and mla and model.attention.q_lora_rank:
        att_in = att_in + blocks * tokens * down_in  # q_down and kv_down each cast the (duplicated) input
    if te_casts and mla:
        # Megatron-LM d98e8a64 gpt_layer_specs.py l.295-308 (00611e6e's MLA branch): q_down / q_proj and kv_down
        # are separate Linears (backend.linear()), each casting its own copy of the layer input
        att_in = att_in + blocks * tokens * down_in
    if cls.flops.mtp_projection:  # an MTP module's M_k: input 2h, output h (DeepSeek-V3 eq. 21)
        att_in, att_out = att_in + tokens * MTP_PROJECTION_INPUTS * h / tp, att_out + tokens * h
    parts = {"attention": (att_in, att_out)}
    if not cls.is_moe:
        parts["dense_ffn"] = _ffn_elements(tokens, h, model.d_ff, gated, tp, gathered)
        return parts
    moe = model.moe
    parts["permute"] = _ffn_elements(slots, h, moe.expert_d_ff, gated, etp)
    if moe.num_shared_experts:
        # fc1 a TE column-parallel Linear, fc2 row-parallel (Megatron-Core 9539a12e moe_module_specs.py l.53-63):
        # under TE + SP its input and fc2's output gradient cast on the shard, as a dense MLP's (session 25, sharedfp8)
        parts["shared_experts"] = _ffn_elements(tokens, h, moe.num_shared_experts * moe.shared_expert_d_ff, gated,
                                                tp, gathered)
    if deepseek_casts:  # the up-projections' input cast per token before the dispatch, read by both (docstring)
        routed_in, routed_grads = parts["permute"]
        parts["permute"] = (routed_in - (slots - tokens) * h, routed_grads)
        if "shared_experts" in parts:
            shared_in, shared_grads = parts["shared_experts"]
            parts["shared_experts"] = (shared_in - tokens * gathered, shared_grads)  # its fc1 input cast, any width
    return parts


# TransformerEngine v2.14's current-scaling cast of one tensor (Float8CurrentScalingQuantizer::quantize_impl,
# transformer_engine/pytorch/csrc/quantizer.cpp l.857-896): the amax zeroed (common/recipe/current_scaling.cu l.75),
# the amax reduced over the tensor (l.97-107), the scale computed from it (l.258), the cast (nvte_quantize_v2).
CURRENT_SCALING_CAST_KERNELS = 4
# The input of TE's LayerNormLinear: the norm kernel computes the amax (pytorch/csrc/extensions/normalization.cpp
# l.351-355, FUSED_NORM_AMAX_FP8), so the cast is the amax's zeroing (quantizer.cpp l.755), the scale and the cast.
CURRENT_SCALING_NORM_FED_CAST_KERNELS = 3
# TE v2.14's MXFP8 cast of one tensor (MXFP8Quantizer::quantize, quantizer.cpp l.1645-1657): one nvte_quantize_v2
# launch writes the rowwise and the columnwise 1x32-block copies with their E8M0 scales.
MXFP8_CAST_KERNELS = 1
# A LayerNormLinear's input under MXFP8: the norm writes BF16 and the quantizer casts it after (normalization.cpp
# l.345-350 / l.386-390 / l.431-433, Impl::UNFUSED) unless NVTE_NORM_FWD_USE_CUDNN is set, which no Megatron-Bridge
# release recipe read sets (17a381f95, 74695a06d, 63b08b397: git grep, no hit).
MXFP8_NORM_FED_CAST_KERNELS = 1
# fp8_scaling -> (a plain tensor's cast kernels, a norm-fed input's) where Megatron-LM + TE counts them per tensor
TE_CAST_KERNELS = {"per_tensor_current": (CURRENT_SCALING_CAST_KERNELS, CURRENT_SCALING_NORM_FED_CAST_KERNELS),
                   "mxfp8": (MXFP8_CAST_KERNELS, MXFP8_NORM_FED_CAST_KERNELS)}


def te_casts_apply(training: TrainingSpec, te: bool) -> bool:
    """Whether a layer's FP8 casts are Megatron-LM + TransformerEngine's, one tensor at a time (te_cast_kernels,
    quantised_elements `te_casts`): `te` (runs_megatron_te), current scaling or MXFP8, TE's cast-transpose."""
    return te and training.fp8_scaling in TE_CAST_KERNELS and training.fp8_transpose == "cast_transpose"


def te_cast_kernels(model: ModelSpec, training: TrainingSpec, cls: LayerClass, ep, te: bool) -> dict[str, tuple]:
    """Part name -> (forward, backward) kernels of one layer's FP8 casts (its fp8_quantise operators) where
    Megatron-LM + TransformerEngine (`te`) runs current per-tensor scaling or MXFP8 (TE_CAST_KERNELS) with TE's
    cast-transpose; {} otherwise (one kernel a part, as before). Each GEMM input is cast in forward and each GEMM
    output gradient in backward, one tensor at a time: a TE GroupedLinear splits its input per local expert and casts
    each split on its own (TE v2.14 pytorch/csrc/extensions/cast.cpp split_quantize l.1317 -> l.1452-1467 ->
    multi_tensor_quantize_impl l.330-362: the fused multi-tensor kernel only for delayed scaling's Float8Quantizer,
    pybind.h l.53; MXFP8 gets a bulk allocation, l.1378-1382 / l.1406-1414, and the per-split loop;
    module/grouped_linear.py l.151-156 forward, l.363-367 backward). Megatron-Core's
    layer (core_v0.17.0 models/gpt/gpt_layer_specs.py l.139 / l.316 / l.151): linear_qkv is TE's LayerNormLinear (the
    norm-fed cast), linear_proj a Linear; a dense MLP's fc1 a LayerNormLinear, fc2 a Linear; an MoE layer's
    pre_mlp_layernorm a norm of its own, so the shared experts' and the routed experts' inputs are plain casts. MLA
    (Megatron-LM d98e8a64 gpt_layer_specs.py l.295-308, mla_down_proj_fusion off: transformer_config.py l.3338, set
    by no Megatron-Bridge release read, 17a381f95 / 63b08b397 git grep): the input norm a module of its own, so
    linear_q_down_proj and linear_kv_down_proj are plain casts of the same input (linear_q_proj without a q LoRA
    rank); linear_q_up_proj and linear_kv_up_proj LayerNormLinears (l.246-255 under qk_layernorm, which Bridge's
    DeepSeek providers set: deepseek_v3_bridge.py l.64), norm-fed; linear_proj a Linear. Without a q LoRA rank
    (DeepSeek-V2-Lite) linear_q_proj is a Linear of its own on the layer input (Megatron-LM 00611e6e
    gpt_layer_specs.py get_gpt_layer_with_transformer_engine_submodules, MLA branch:
    `linear_q_proj=backend.column_parallel_linear()`, plain): three plain inputs still, one norm-fed
    (linear_kv_up_proj), four output gradients (session 24, review24)."""
    if not te_casts_apply(training, te):
        return {}
    plain, fed = TE_CAST_KERNELS[training.fp8_scaling]
    blocks = 2 if cls.cross_attention else 1
    if model.attention.kind == "mla":  # (plain, norm-fed): q_down (or q_proj), kv_down, linear_proj; the up ones
        gemm_inputs = (3, 2 if model.attention.q_lora_rank else 1)
    else:  # linear_proj; linear_qkv
        gemm_inputs = (1, 1)
    extra = plain if cls.flops.mtp_projection else 0  # an MTP module's projection: a Linear of its own
    parts = {"attention": (blocks * (gemm_inputs[0] * plain + gemm_inputs[1] * fed) + extra,
                           blocks * sum(gemm_inputs) * plain + extra)}
    if not cls.is_moe:
        parts["dense_ffn"] = (fed + plain, 2 * plain)
        return parts
    local_experts = model.moe.num_experts / ep  # moesim/ops/layer.py LayerOps.experts: one group each
    parts["permute"] = (2 * plain * local_experts, 2 * plain * local_experts)
    if model.moe.num_shared_experts:
        parts["shared_experts"] = (2 * plain, 2 * plain)
    return parts


def norm_fed_cast_elements(model: ModelSpec, training: TrainingSpec, cls: LayerClass, b, tp,
                           te: bool) -> dict[str, float]:
    """Part name -> elements whose amax a LayerNormLinear's norm already took, so their current-scaling cast reads
    them once, not amax_read_passes times: TE v2.14's norm writes the amax (pytorch/csrc/extensions/normalization.cpp
    l.351-355, FUSED_NORM_AMAX_FP8) and the cast skips its own (quantizer.cpp l.903-909, quantize_with_amax ->
    quantize_impl(compute_amax = false), l.875-879). Where te_cast_kernels counts norm-fed casts under current
    scaling, {} otherwise; the elements as quantised_elements counts them: linear_qkv's input h a token (MHA / GQA),
    MLA's up projections' inputs (r_q + r_kv) / t a token, a dense MLP's fc1 input h a token."""
    if not te or training.fp8_scaling != "per_tensor_current" or training.fp8_transpose != "cast_transpose":
        return {}
    att, tokens = model.attention, b * cls.tokens
    gathered = model.d_model / tp if te_shard_casts(training, te) else model.d_model  # the norm on the shard
    width = (att.q_lora_rank + att.kv_lora_rank) / tp if att.kind == "mla" else gathered
    parts = {"attention": (2 if cls.cross_attention else 1) * tokens * width}
    if not cls.is_moe:
        parts["dense_ffn"] = tokens * gathered
    return parts


def te_shard_casts(training: TrainingSpec, te: bool) -> bool:
    """Whether the tp blocks' gathers carry FP8 shards cast before them (quantised_elements `shard_casts`):
    Megatron-LM + TE (`te`), FP8 GEMMs of any TE scaling, sequence parallelism. TE v2.14 (f031cf87):
    layernorm_linear.py l.149 `with_input_all_gather = parallel_mode == "column" and sequence_parallel`, l.255-275
    the (norm-quantized) shard gathered with the quantizer; linear.py l.182-215 likewise; base.py l.1228-1233 the
    row-parallel grad output; the wgrad re-gather of the saved FP8 shard (layernorm_linear.py l.412 / l.669-688)."""
    return bool(te and training.fp8_scaling != "none" and training.sequence_parallel)


def sp_gather_element_bytes(training: TrainingSpec, te: bool) -> float:
    """Bytes per element of the tp blocks' SP all-gathers (tp_all_gather, tp_all_gather_wgrad): FP8 data plus the
    recipe's scales where te_shard_casts (distributed.py f031cf87 _all_gather_fp8 l.977-1060: the uint8 data, one
    scale_inv; _all_gather_mxfp8 l.1504-1600: the data and its 1x32 E8M0 scale_invs, rowwise forward, columnwise for
    wgrad), else the activations' (BF16)."""
    if not te_shard_casts(training, te):
        return float(training.bytes_of("activation"))
    return 1.0 + scale_bytes_per_element(training.fp8_scaling)


UP_PROJ_QUANTISE = "up_proj_quantise"  # the operator of up_projection_cast_elements (selective.py recomputes it)
# its kernels: per up-projection (q_up's c_Q, kv_up's c_KV) the 1x128 cast and its scales' transpose for the GEMM
# (DeepSeek's H800 trace: per_token_cast_to_fp8_with_channels, then dpsk::grouped_gemm::cuda::utils::transpose grid 32)
UP_PROJ_CASTS = 4.0


def up_projection_cast_elements(model: ModelSpec, cls: LayerClass, b, tp):
    """Elements MLA's Q and KV up-projections cast to FP8 in forward, per device per micro-batch: their inputs c_Q
    (r_q) and c_KV (r_kv) per token, split by tp as attention_gemm_widths' inner widths are (counted inside
    quantised_elements' attention inputs); 0 without a Q latent (no q_lora_rank) or outside MLA. DeepSeek's H800
    trace (tests/data/dsv3_trace): one per_token_cast_to_fp8_with_channels before each up-projection GEMM in attn(F)
    (grid 4096; [4096, 1536] and [4096, 512]) and again before each recomputed up-projection in attn(B) (DeepSeek-V3
    arXiv 2412.19437 §3.2.3 recomputes the "MLA up-projections"; session 24, dsv3casts)."""
    att = model.attention
    if att.kind != "mla" or not att.q_lora_rank:
        return 0.0
    blocks = 2 if cls.cross_attention else 1
    return blocks * b * cls.tokens * (att.q_lora_rank + att.kv_lora_rank) / tp


def deepseek_casts_apply(training: TrainingSpec) -> bool:
    """Whether a layer's FP8 casts are DeepSeek-V3's (quantised_elements `deepseek_casts`): FP8 GEMMs re-quantised
    transposed in backward (fp8_transpose = "requantise", §3.5.2) with the dispatch in FP8 (§3.3.4)."""
    return (training.fp8_scaling != "none" and training.fp8_transpose == "requantise"
            and training.dispatch_dtype == "float8")


def quantise_parts_bytes(training: TrainingSpec, elements: dict[str, tuple], amax_taken: dict | None = None
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(forward, backward) bytes the quantise casts move per part: empty dicts unless the GEMMs run in FP8. The
    forward cast reads `amax_taken`'s elements (norm_fed_cast_elements) one pass fewer: their amax is the norm's."""
    scaling = training.fp8_scaling
    if scaling == "none":
        return {}, {}
    q_src = training.bytes_of("activation")
    both = {name: quantise_pass_bytes(e[0], e[1], scaling, q_src, training.fp8_transpose)
            for name, e in elements.items()}
    taken = amax_taken or {}
    return ({name: b[0] - q_src * taken.get(name, 0.0) for name, b in both.items()},
            {name: b[1] for name, b in both.items()})


def weight_cast_bytes(training: TrainingSpec, cls: LayerClass, tp, ep, etp) -> dict[str, np.ndarray]:
    """Forward bytes moved casting one layer's weights to FP8 in every micro-batch (fp8_weight_cache off):
    non-expert weights in "attention" (the first GEMMs to run), the device's experts in "permute"."""
    scaling = training.fp8_scaling
    if scaling == "none" or training.fp8_weight_cache:
        return {}
    q_p = training.bytes_of("param")

    def cast(params):
        return weight_quantise_cost(params, scaling, q_p).bytes_moved

    # MLA's down-projections run in FP8 whole on every tp rank (moesim.arithmetic.attention_duplicated_params).
    parts = {"attention": cast(cls.params_shardable / tp + cls.params_duplicated_gemm)}
    if cls.is_moe:
        parts["permute"] = cast(cls.params_experts / (ep * etp))
    return parts


def cached_weight_copies(training: TrainingSpec) -> int:
    """FP8 copies of each weight the cache holds: 1 where Dgrad's transposed copy is made every micro-batch
    (fp8_weight_transpose = "per_micro_batch"), else 2 (rowwise and transposed, moesim.precision.QUANTISED_COPIES)."""
    return 1 if training.fp8_weight_transpose == "per_micro_batch" else QUANTISED_COPIES


def weight_transpose_parts_bytes(training: TrainingSpec, cls: LayerClass, tp, ep, etp
                                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(forward, backward) bytes of the FP8 -> FP8 weight transposes one layer runs every micro-batch (cached
    weights, fp8_weight_transpose = "per_micro_batch"; moesim.precision.weight_transpose_bytes). Where DeepSeek's
    H800 trace runs them (tests/data/dsv3_trace, cuda::batched_transpose, grid = the weight's 128x128 blocks): the
    non-expert weights in backward, each before its Dgrad GEMM (attn(B), mlp(B): out_proj 7168 blocks, q_up 2304,
    kv_up 1024, q_down 672, kv_down 280, the shared expert's 1792 + 896), part "attention"; the device's routed
    experts in forward, before their grouped GEMMs (mlp(F): 4 experts' fc1 7168, fc2 3584), part "permute"."""
    if training.fp8_scaling == "none" or not training.fp8_weight_cache \
            or training.fp8_weight_transpose != "per_micro_batch":
        return {}, {}
    scaling = training.fp8_scaling
    bwd = {"attention": weight_transpose_bytes(cls.params_shardable / tp + cls.params_duplicated_gemm, scaling)}
    fwd = {"permute": weight_transpose_bytes(cls.params_experts / (ep * etp), scaling)} if cls.is_moe else {}
    return fwd, bwd


def attention_output_cast_bytes(model: ModelSpec, training: TrainingSpec, cls: LayerClass, b, tp) -> tuple:
    """(forward, backward) bytes of the attention output's own storage format (attention_output_storage_bits set):
    forward a cast of the BF16 output into it beside the FP8 cast the output projection's GEMM reads, backward its
    dequantisation back to the activation dtype before the transposed re-quantisation for Wgrad. DeepSeek-V3 arXiv
    2412.19437 §3.3.4 ("a customized E5M6 data format" for the input of the Linear after attention); DeepSeek's H800
    trace: cuda::per_token_cast_to_fp8_with_fp8_special_fmt (attn(F), one CTA per token) and
    cuda::per_token_cast_back_special_fmt_impl (attn(B)). Elements: a·d_v/tp per token (the output projection's
    input), each moving q_a + q_e (q_e = bits/8 + the recipe's scales) one way, then back; (0, 0) without the key."""
    if not training.attention_output_storage_bits:
        return 0.0, 0.0
    att = model.attention
    blocks = 2 if cls.cross_attention else 1
    elements = blocks * b * cls.tokens * att.num_heads * (att.v_head_dim or att.head_dim) / tp
    per_element = training.bytes_of("activation") + training.attention_output_storage_bytes
    return elements * per_element, elements * per_element


def _activation_rows_bytes(model: ModelSpec, cls: LayerClass, b, tp, etp, slots, per_row) -> dict[str, np.ndarray]:
    """per_row(f, inputs) summed over the MoE activations of one layer: each routed slot (part "permute", f/etp)
    and each token of the shared experts (f_s/tp); inputs = the activation's input elements per output (2 gated)."""
    moe = model.moe
    widths = ffn_matrices(model.ffn_kind) - 1  # activation inputs per output element: 2 gated, 1 otherwise
    parts = {"permute": slots * per_row(moe.expert_d_ff / etp, widths)}
    if moe.num_shared_experts:
        shared = moe.num_shared_experts * moe.shared_expert_d_ff / tp
        parts["shared_experts"] = b * cls.tokens * per_row(shared, widths)
    return parts


def activation_recompute_bytes(model: ModelSpec, training: TrainingSpec, cls: LayerClass,
                               b, tp, etp, slots) -> dict[str, np.ndarray]:
    """Backward bytes moved recomputing the MoE activation function from its stored input (moe_activation_recompute):
    read the input (2f gated, f otherwise) at q_st, write the output f at q_a, per routed slot (part "permute",
    f/etp) and per token of the shared experts (f_s/tp); memory-bound. DeepSeek-V3 §3.3.4; Megatron "moe_act"."""
    if not (cls.is_moe and training.moe_activation_recompute):
        return {}
    q_in, q_out = training.element_bytes("activation_storage"), training.bytes_of("activation")
    return _activation_rows_bytes(model, cls, b, tp, etp, slots, lambda f, w: f * (w * q_in + q_out))


def activation_quantise_bytes(model: ModelSpec, training: TrainingSpec, cls: LayerClass,
                              b, tp, etp, slots) -> dict[str, np.ndarray]:
    """Forward bytes of storing the MoE activation's input in FP8 (the forward of activation_dequantise_bytes: §3.3.4,
    "cache the inputs of the SwiGLU operator ... in FP8"): read 2f at q_a, write 2f at q_st per routed slot and
    shared-expert token, under the same conditions. DeepSeek's H800 trace: per_token_cast_to_fp8_with_channels at
    the end of mlp(F), one over the routed rows (grid 28,416-34,688, 146-189 us) and one over the 4096 tokens
    (~26 us) (session 22, dsv3ops)."""
    return activation_dequantise_bytes(model, training, cls, b, tp, etp, slots)


def activation_dequantise_bytes(model: ModelSpec, training: TrainingSpec, cls: LayerClass,
                                b, tp, etp, slots) -> dict[str, np.ndarray]:
    """Backward bytes of dequantising the MoE activation's FP8-stored input before it is recomputed, where the recipe
    re-quantises in backward (fp8_transpose = "requantise": DeepSeek-V3 arXiv 2412.19437 §3.5.2, the stored FP8
    tensor "read out, dequantized"; §3.3.4, the SwiGLU input cached in FP8): read 2f at q_st, write 2f at q_a per
    routed slot and shared-expert token. DeepSeek's H800 trace: cuda::cast_back_impl<__nv_fp8x2_e4m3> in mlp(B),
    one before the shared expert's SwiGLU backward (~26 us at 4096 x 4096) and one before the routed experts'
    (155-179 us, in step with the backward chunk's routed rows 28,416-34,688)."""
    q_in, q_out = training.element_bytes("activation_storage"), training.bytes_of("activation")
    if not (cls.is_moe and training.moe_activation_recompute and training.fp8_transpose == "requantise"
            and q_in != q_out):
        return {}
    return _activation_rows_bytes(model, cls, b, tp, etp, slots, lambda f, w: f * w * (q_in + q_out))
