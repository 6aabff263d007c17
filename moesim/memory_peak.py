"""What the peak allocated memory of a training step holds besides model states and saved activations (GPUs).

Megatron-LM 23e00ed0 with TransformerEngine 2.11 (the stack of SimuMax's B200 runs, docs/operators.md "Validation
against published B200 runs"); pure functions over numbers or numpy arrays, like moesim.memory.

Two parts, each its own key of `memory_bytes_per_device`:

- `framework_buffers` (resident, allocated once and kept; where training.framework is "megatron-te", the default,
  and zero where a scenario states "none", e.g. DeepSeek-V3's own HAI-LLM):
  * TE's dummy weight gradients: with gradient-accumulation fusion every linear layer's weight gradient is
    written into the fp32 main_grad buffer and the autograd function returns a dummy tensor of the weight's
    shape in its dtype, which TE caches, one per distinct (rows, cols, dtype): TE v2.11
    transformer_engine/pytorch/module/base.py l.79-92 `get_dummy_wgrad` (`_dummy_wgrads`), called from Linear
    (linear.py l.953-962), LayerNormLinear (layernorm_linear.py l.1002-1011), GroupedLinear (grouped_linear.py
    l.488-497) and, with TE importable, Megatron's own ColumnParallelLinear (the output layer; Megatron-LM
    23e00ed0 megatron/core/tensor_parallel/layers.py l.573-602).
  * Megatron's global all-gather buffer: with sequence parallelism the output layer (Megatron's
    ColumnParallelLinear, not TE) gathers its [s/t, h] input into GlobalMemoryBuffer's "mpu" tensor, [s, h] in the
    activations' dtype, cached for the run (layers.py l.470-476; megatron/core/utils.py l.512-538).
- `peak_transients`: the largest tensor alive for a moment on top of the in-flight saved activations, above what
  `moe_buffers` already charges (so the total holds the largest of the step's transients once):
  * the loss (last stage): Megatron's unfused VocabParallelCrossEntropy casts the logits to fp32 and saves that
    copy (the `activations` term); the output layer's logits in their own dtype stay referenced by GPTModel's
    forward while it runs (megatron/core/tensor_parallel/cross_entropy.py l.28 `.float()`; gpt_model.py
    l.533-562 `logits` then `compute_language_model_loss`); the backward's cast of the fp32 gradient back holds the
    same q_l + 4 bytes per logit. TE's fused cross-entropy writes the gradient into the logits in place
    (transformer_engine/pytorch/triton/cross_entropy.py `cross_entropy_forward`): nothing beyond them.
  * the output layer's backward (last stage): its input gradient [s, h] before the tp reduce-scatter and the
    [s/t, h] shard it scatters into (layers.py l.523 `grad_input = grad_output.matmul(weight)`, l.543
    `sub_grad_input`), beside the logits' gradient: in place in the logits with TE's fused CE; with the unfused
    CE a new q_l copy (autograd's cast of the fp32 gradient) once the 4-byte softmax is freed.
  * the embedding's gradient (first stage): PyTorch's embedding backward returns a dense [V/t, h] gradient in the
    weight's dtype (aten embedding_dense_backward), added to main_grad by Megatron DDP's hook
    (distributed_data_parallel.py `_make_backward_post_hook`); it runs after that micro-batch's activations are
    freed, so it counts only where it exceeds them.
  The optimizer step's temporaries (multi-tensor grad norm, clip) are small and come after the activations are
  freed: not a peak term.
"""

from __future__ import annotations

import numpy as np

from moesim.ops.layer import gate_factor
from moesim.specs.model import ModelSpec
from moesim.workload import LayerClass


def layer_weight_shapes(model: ModelSpec, cls: LayerClass, tp, ep, etp) -> list[tuple]:
    """(rows, cols) of every linear weight of one layer of `cls` on a device, Megatron's [out, in] layout, with the
    same tp / etp splits as moesim.ops.layer (which prices their GEMMs; MLA's down-projections whole). The MoE
    router's weight is a plain parameter (Megatron router.py l.50, TopKRouter), not a TE linear: no dummy weight gradient."""
    att, h, g = model.attention, model.d_model, gate_factor(model)
    a, d = att.num_heads, att.head_dim
    d_v = att.v_head_dim or d
    shapes = []
    if att.kind == "mla":
        d_r = att.qk_rope_head_dim
        # The down-projections are whole on every tp rank: TELinear parallel_mode='duplicated' (Megatron-LM d98e8a6
        # multi_latent_attention.py l.526-527, 573-574); the up-projections are column-parallel.
        if att.q_lora_rank:
            shapes += [(att.q_lora_rank, h), (a * (d + d_r) / tp, att.q_lora_rank)]
        else:
            shapes.append((a * (d + d_r) / tp, h))
        shapes += [(att.kv_lora_rank + d_r, h), (a * (d + d_v) / tp, att.kv_lora_rank)]
    else:
        kv = att.num_kv_heads or a
        shapes.append(((a + 2 * kv) * d / tp, h))
    shapes.append((h, a * d_v / tp))
    if cls.cross_attention:
        # Megatron CrossAttention: linear_q [a·d, h] and linear_kv [2·kv·d, h] (attention.py l.1089-1104).
        shapes += [(a * d / tp, h), (2 * (att.num_kv_heads or a) * d / tp, h)]
    if cls.mtp:
        # MultiTokenPredictionLayer.eh_proj: [2h] -> [h], column-parallel (multi_token_prediction.py l.457-463).
        shapes.append((h / tp, 2 * h))
    if cls.is_moe:
        moe = model.moe
        fe = moe.expert_d_ff / etp
        shapes += [(g * fe, h), (h, fe)]
        if moe.num_shared_experts:
            fs = moe.num_shared_experts * (moe.shared_expert_d_ff or moe.expert_d_ff) / tp
            shapes += [(g * fs, h), (h, fs)]
    else:
        shapes += [(g * model.d_ff / tp, h), (h, model.d_ff / tp)]
    n = np.broadcast(np.asarray(tp), np.asarray(ep), np.asarray(etp)).shape
    return [tuple(np.broadcast_to(np.asarray(x, dtype=float), n) for x in shape) for shape in shapes]


def distinct_shape_bytes(rows, cols, present, q_bytes: float) -> np.ndarray:
    """Σ rows·cols·q over the distinct (rows, cols) present, along the last axis (K weights): TE keeps one
    dummy weight gradient per shape (base.py l.83: keyed by (shape[0], shape[1], dtype)). rows, cols (..., K); present
    broadcasts with them. Sorted as complex numbers rows + i·cols (lexicographic), a shape counts at its first
    place."""
    rows, cols, present = np.broadcast_arrays(np.asarray(rows, dtype=float), np.asarray(cols, dtype=float),
                                              np.asarray(present, dtype=bool))
    key = np.where(present, rows + 1j * cols, complex(np.inf, np.inf))
    order = np.argsort(key, axis=-1)
    key = np.take_along_axis(key, order, axis=-1)
    size = np.take_along_axis(np.where(present, rows * cols, 0.0), order, axis=-1)
    first = np.ones(key.shape, dtype=bool)
    first[..., 1:] = key[..., 1:] != key[..., :-1]
    return q_bytes * np.sum(np.where(first, size, 0.0), axis=-1)


def distinct_shape_bytes_by_pattern(code: np.ndarray, shapes: list[list[tuple]], row_of: np.ndarray,
                                    q_bytes: float) -> np.ndarray:
    """`distinct_shape_bytes` where group g is present where bit g of `code` (e.g. (N, S) candidates by stages) is
    set and its (rows, cols) are given on U distinct rows ((U,) arrays) that `row_of` (N,) maps each candidate to:
    every presence pattern that occurs is priced once on the U rows, then read back per candidate and stage (the
    search holds many candidates per layout shape)."""
    group = np.array([g for g, weights in enumerate(shapes) for _ in weights], dtype=np.int64)
    rows = np.stack([np.asarray(r, dtype=float) for weights in shapes for r, _ in weights], axis=-1)  # (U, K)
    cols = np.stack([np.asarray(c, dtype=float) for weights in shapes for _, c in weights], axis=-1)
    code = np.asarray(code, dtype=np.int64)
    patterns = np.flatnonzero(np.bincount(code.ravel(), minlength=1 << len(shapes)))  # the patterns that occur
    number = np.zeros(1 << len(shapes), dtype=np.int64)
    number[patterns] = np.arange(len(patterns))
    present = ((patterns[:, None] >> group[None, :]) & 1).astype(bool)[:, None, :]  # (P, 1, K)
    table = distinct_shape_bytes(rows[None], cols[None], present, q_bytes)  # (P, U)
    return table[number[code], np.asarray(row_of)[:, None]]


def loss_transient_bytes(b, n_out, vocab, tp, fused: bool, q_logits) -> np.ndarray:
    """Logits in their own dtype alive beside the fp32 copy the unfused cross-entropy saves: q_l·n·b·V/t (one
    output head at a time); 0 with the fused kernel (module docstring)."""
    if fused:
        return np.zeros(np.shape(np.asarray(b * tp, dtype=float)))
    return q_logits * n_out * b * vocab / np.asarray(tp, dtype=float)


def head_backward_excess_bytes(b, n_out, h, vocab, tp, sequence_parallel: bool, fused: bool, q_act,
                               q_logits) -> np.ndarray:
    """The output layer's backward above the forward's peak: input gradient n·b·h (+ its n·b·h/t reduce-scatter
    shard with SP) at q_a, and with the unfused CE the logits' gradient at q_l in place of the freed fp32 softmax
    (q_l − 4 bytes per logit; module docstring)."""
    tp = np.asarray(tp, dtype=float)
    shard = np.where(tp > 1, 1.0 / tp, 0.0) if sequence_parallel else 0.0
    dgrad = q_act * n_out * b * h * (1.0 + shard)
    return dgrad + (0.0 if fused else (q_logits - 4) * n_out * b * vocab / tp)


def gather_buffer_bytes(b, n_out, h, tp, sequence_parallel: bool, q_act) -> np.ndarray:
    """Megatron's "mpu" all-gather buffer kept by the output layer with SP: [n·b, h] at q_a where tp > 1."""
    tp = np.asarray(tp, dtype=float)
    return np.where(tp > 1, q_act * n_out * b * h, 0.0) if sequence_parallel else np.zeros(tp.shape)


def embedding_grad_bytes(vocab, h, tp, q_param) -> np.ndarray:
    """PyTorch's dense embedding gradient on the first stage: [V/t, h] at the weight's dtype."""
    return q_param * vocab * h / np.asarray(tp, dtype=float)


def peak_transient_bytes(moments: list, moe_buffers) -> np.ndarray:
    """The largest of the step's transients above the saved activations at their moments (the loss or the output
    layer's backward, the embedding's gradient past what its micro-batch frees) and the MoE dispatch buffers, less
    `moe_buffers`, which the total already holds."""
    largest = moe_buffers
    for moment in moments:
        largest = np.maximum(largest, moment)
    return np.maximum(largest - moe_buffers, 0.0)
