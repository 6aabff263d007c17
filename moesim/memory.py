"""Memory per device: model states (ZeRO), activations (Korthikanti et al.), MoE buffers.

Pure functions over numbers or numpy arrays (the layout search evaluates thousands at once).

Notation (per device unless said): b micro-batch sequences, n tokens per sequence through a
layer, h d_model, a heads, f FFN width, t tp degree, E experts, r token slots an MoE layer
receives on the device, C capacity per expert per group; bytes per element q_p params, q_g grads,
q_s optimizer state, q_a activations (2, bf16), masks 1 byte, q_st the inputs of GEMMs kept for the
backward pass (q_a, or 1 + scale bytes where an FP8 recipe caches them in FP8: DeepSeek-V3 §3.3.4,
wave2.md §6.1); everything else (attention Q/K/V, norms, router, expert outputs) stays at q_a.
Source: Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models",
arXiv 2205.05198, §4 and Table 2 (the "unfused" attention kernel); a "flash" kernel's saved tensors as
TransformerEngine v2.11 and Megatron-LM 23e00ed0 keep them (`attention_core_bytes`); ZeRO, Rajbhandari et al.,
arXiv 1910.02054, §5.
"""

from __future__ import annotations

import numpy as np

from moesim.specs.model import GATED_FFN_KINDS
from moesim.specs.training import TrainingSpec

FP32_BYTES = 4
ACT_BYTES = 2  # Korthikanti assumes 16-bit activations
MASK_BYTES = 1  # dropout masks, 1 byte per element (Korthikanti §4.1)
RECOMPUTE_CODES = {"none": 0, "selective": 1, "full": 2}


def optimizer_state_bytes_per_param(training: TrainingSpec, rows: int, cols: int) -> float:
    """Optimizer bytes per parameter, K in ZeRO's 2Ψ + 2Ψ + KΨ (ZeRO §3.1: K = 12 for mixed-precision Adam).

    adam      : m and v (2·q_s) + fp32 master copy when params are below 32 bits
    sgd       : momentum (q_s) + master
    adafactor : factored second moment, (rows + cols) fp32 per rows×cols matrix (Shazeer & Stern
                2018, arXiv 1804.04235, §3), no first moment (T5 default) + master
    plus an EMA of the parameters kept on the device (ema_location = "device", q_ema bytes, sharded with the
    optimizer states); none with "host" (DeepSeek-V3 §3.2.3 keeps it in CPU memory) or "none".
    """
    master = training.bytes_of("master") if training.dtype_for("master") != training.param_dtype else 0
    master = master + ema_bytes_per_param(training)
    state = training.bytes_of("optimizer_state")
    if training.optimizer == "adam":
        return 2 * state + master
    if training.optimizer == "sgd":
        return state + master
    return FP32_BYTES * (rows + cols) / (rows * cols) + master


def ema_bytes_per_param(training: TrainingSpec) -> int:
    """q_ema of the parameters' EMA in device memory: ema_dtype bytes with ema_location = "device", else 0."""
    return training.bytes_of("ema") if training.ema_location == "device" else 0


def model_state_bytes(params, shard_group, zero_stage, training: TrainingSpec, optimizer_bytes_per_param):
    """(weights, grads, optimizer) bytes for `params` replicated over `shard_group` devices.

    ZeRO §5: stage 1 shards optimizer states, stage 2 also gradients, stage 3 also parameters,
    each over the data-parallel group (for experts: the expert-data-parallel group).
    """
    params = np.asarray(params, dtype=float)
    n = np.asarray(shard_group, dtype=float)
    zero = np.asarray(zero_stage)
    weights = training.bytes_of("param") * params / np.where(zero >= 3, n, 1)
    grads = training.bytes_of("grad") * params / np.where(zero >= 2, n, 1)
    optimizer = optimizer_bytes_per_param * params / np.where(zero >= 1, n, 1)
    return weights, grads, optimizer


def attention_core_bytes(b, n_q, n_kv, a, kernel: str = "unfused", mask=MASK_BYTES):
    """What the attention core keeps beyond Q, K, V and its output, per device before the tp split.

    unfused: softmax output 2 and, with dropout, its mask 1 and output 2 bytes per score element,
    5·a·n_q·n_kv·b (2·a·n_q·n_kv·b without dropout; Korthikanti §4.1).
    flash: the FP32 log-sum-exp per query row and head, 4·a·n_q·b ("softmaxStats [b, h, s_q, 1] float32",
    TransformerEngine v2.11 cpp_extensions/fused_attn.py fused_attn_fwd, saved by
    attention/dot_product_attention/backends.py FusedAttnFunc.forward); no dropout mask (the kernel keeps
    its RNG state and regenerates it)."""
    if kernel == "flash":
        return FP32_BYTES * a * n_q * b
    return (2 + (3 if mask else 0)) * a * n_q * n_kv * b


def qkv_per_token_flash(a, kv_heads, head_dim, v_head_dim=None):
    """Q, K, V elements per token a flash kernel keeps: a·d + g·d + g·d_v, K and V at the g KV heads as
    given (TransformerEngine v2.11 FusedAttnFunc saves q, k, v; Megatron-LM 23e00ed0's unfused
    core/transformer/dot_product_attention.py instead repeat_interleaves K and V to all a heads)."""
    return a * head_dim + kv_heads * (head_dim + (head_dim if v_head_dim is None else v_head_dim))


def attention_activation_bytes(b, n_q, n_kv, h, a, tp, sequence_parallel, recompute, q_store=ACT_BYTES,
                               q_input=None, mask=MASK_BYTES, qkv_per_token=None, proj_in_per_token=None,
                               q_proj=None, kernel: str = "unfused"):
    """One attention block, Korthikanti §4.1: 11·n·b·h + 5·a·n_q·n_kv·b bytes (q_st = 2, kernel "unfused").

    Unsharded by tp without sequence parallelism: block input q_in·nbh (the QKV GEMM's input, q_st;
    0 when the norm before it is recomputed) and output dropout mask nbh; the rest (Q, K, V 6nbh —
    2·qkv per token, e.g. MLA's latents r_q + r_kv + d_r when its up-projections are recomputed —
    scores, softmax, dropout, projection input q_st·nbh) splits over tp. The core is 5·a·n_q·n_kv·b
    with dropout (softmax output 2, mask 1, dropout output 2), 2·a·n_q·n_kv·b without; selective
    recomputation drops it (Korthikanti §5). The projection's input is the attention output, a·d_v elements
    per token (`proj_in_per_token`; h in Korthikanti, 16384 > h = 7168 in DeepSeek-V3's MLA, V2 §2.1.2 eq. 18)
    at q_proj bytes (q_st; DeepSeek-V3 §3.3.4 keeps it in 12-bit E5M6). With kernel "flash" the core is
    `attention_core_bytes`' softmax statistics; the kernel's saved output O is the projection's input (one
    storage: TE's FusedAttention returns a view of it, which Megatron-LM 23e00ed0 core/transformer/attention.py
    passes to linear_proj as core_attn_out).
    """
    q_input = q_store if q_input is None else q_input
    q_proj = q_store if q_proj is None else q_proj
    proj_in = h if proj_in_per_token is None else proj_in_per_token
    qkv = 3 * h if qkv_per_token is None else qkv_per_token
    replicated = (q_input + mask) * n_q * b * h
    core = attention_core_bytes(b, n_q, n_kv, a, kernel, mask)
    sharded = (ACT_BYTES * qkv + q_proj * proj_in) * n_q * b + np.where(recompute >= 1, 0.0, core)
    return _split(replicated, sharded, tp, sequence_parallel)


def ffn_inner_bytes_per_token(f, ffn_kind: str, q_store=ACT_BYTES, recompute_act_fn: bool = False,
                              q_act_input=None):
    """Bytes kept per token inside one FFN: the activation function's input (2f gated, f otherwise) at q_a
    and its output (FC2's input) f at q_st; with the activation function recomputed in backward, its input
    only, at q_act_input (None: q_st, DeepSeek-V3 §3.3.4: SwiGLU inputs cached in FP8, SwiGLU recomputed;
    Megatron's "moe_act" keeps FC1's output as computed, q_a: Megatron-LM 23e00ed0 moe/experts.py l.908-914)."""
    act_in = (2 if ffn_kind in GATED_FFN_KINDS else 1) * f
    if recompute_act_fn:
        return (q_store if q_act_input is None else q_act_input) * act_in
    return ACT_BYTES * act_in + q_store * f


def mlp_activation_bytes(b, n, h, f, tp, sequence_parallel, ffn_kind: str, q_store=ACT_BYTES,
                         recompute_act_fn: bool = False, q_input=None, mask=MASK_BYTES):
    """One dense MLP: input q_in·nbh (q_st; 0 with the norm before it recomputed) + mask nbh (replicated
    w/o SP), FC1 out and activation 4nbf (6nbf gated: FC1 emits 2f; `ffn_inner_bytes_per_token`) split
    by tp. f = 4h, q_st = 2 gives Korthikanti's 19·nbh."""
    q_input = q_store if q_input is None else q_input
    replicated = (q_input + mask) * n * b * h
    sharded = n * b * ffn_inner_bytes_per_token(f, ffn_kind, q_store, recompute_act_fn)
    return _split(replicated, sharded, tp, sequence_parallel)


def norm_activation_bytes(b, n, h, tp, sequence_parallel, norms: int):
    """Layer-norm inputs, 2nbh each (Korthikanti: 4sbh for a layer's two norms)."""
    return _split(norms * ACT_BYTES * n * b * h, 0.0, tp, sequence_parallel)


def moe_activation_bytes(tokens_per_device, slots_per_device, h, f_e, num_experts, etp, ffn_kind: str,
                         dense_einsum: bool, capacity, q_store=ACT_BYTES, recompute_act_fn: bool = False,
                         q_input=ACT_BYTES, mask=MASK_BYTES, probs_in_activation: bool = False,
                         q_act_input=None):
    """One MoE layer on one device (../shared/reference/modeling.md §4.2 [derived]).

    Block input q_in·th (the router's input, 2; 0 with the norm before it recomputed) + mask th; router logits and probabilities fp32 8·t·E; permuted input q_st·h·r
    (the experts' FC1 input); expert FC1 out and activation 4f·r (6f·r gated, q_st = 2;
    `ffn_inner_bytes_per_token`), split by etp; expert outputs 2h·r kept for the gate's gradient;
    the dense one-hot dispatch/combine tensor 4·t·E·C (fp32) when dispatch is an einsum
    (GShard/Mesh-TF; Tutel App. B).
    With the expert activation recomputed (`recompute_act_fn`), the routing probability is applied inside
    it, act(x)·p, so the gate's gradient comes from the recomputed activation and the expert outputs are
    not kept (Megatron-Core grouped MLP `activation_func_with_probs` under the "moe_act" recompute
    module; DeepSeek-V3 §3.3.4 recomputes the MoE SwiGLU from its cached FP8 input). Megatron-Core applies
    the probability inside the activation without recomputing it too (`probs_in_activation`; Megatron-LM
    23e00ed0 core/transformer/moe/experts.py): the activation's input is kept as usual, the expert outputs not.
    `q_act_input`: bytes per element of the recomputed activation's kept input (ffn_inner_bytes_per_token).
    """
    t, r = tokens_per_device, slots_per_device
    total = (q_input + mask) * t * h + 2 * FP32_BYTES * t * num_experts
    total = total + (q_store + (0 if recompute_act_fn or probs_in_activation else ACT_BYTES)) * h * r
    total = total + r * ffn_inner_bytes_per_token(f_e, ffn_kind, q_store, recompute_act_fn, q_act_input) / etp
    if dense_einsum:
        total = total + FP32_BYTES * t * num_experts * capacity
    return total


def full_recompute_bytes(b, n, h, tp, sequence_parallel):
    """Full recomputation keeps each layer's input only: 2nbh (Korthikanti Table 2), split by tp with SP."""
    return _split(ACT_BYTES * n * b * h, 0.0, tp, sequence_parallel)


def mtp_input_activation_bytes(b, n, h, tp, sequence_parallel, q_store=ACT_BYTES, q_input=None):
    """An MTP module's inputs (DeepSeek-V3 eq. 21): M_k's input 2h per token at q_in (q_st; 0 with the norms
    recomputed) plus the inputs of its two RMSNorms (h_prev and Emb(t)) 2·2nbh; split by tp with SP."""
    q_input = q_store if q_input is None else q_input
    return _split((2 * q_input + 2 * ACT_BYTES) * n * b * h, 0.0, tp, sequence_parallel)


CE_ROW_STATS = 2  # per-row FP32 statistics a fused CE keeps (max and sum of exponentials)


def logits_bytes(b, n_out, vocab, tp, fused: bool = False, q_logits=ACT_BYTES, heads: int = 1):
    """Logits kept for the loss's backward on the last stage, per output head (1 + MTP modules).

    Unfused: the FP32 softmax, 4·n·b·V/t (Korthikanti §4.3 output layer; Megatron's vocab-parallel CE
    saves FP32 exp_logits). Fused (TransformerEngine's Triton CE, Megatron --cross-entropy-fusion-impl te):
    the logits in their own dtype q_l·n·b·V/t plus per-row FP32 max and sum-exp, 8·n·b.
    Source: ../shared/reference/wave2.md §8.2."""
    if fused:
        return heads * (q_logits * n_out * b * vocab / tp + CE_ROW_STATS * FP32_BYTES * n_out * b)
    return heads * FP32_BYTES * n_out * b * vocab / tp


def in_flight_micro_batches(schedule, micro_batches, pp, stage, vp=1):
    """Micro-batches whose activations a stage holds at peak: 1F1B min(m, pp − stage)
    (Narayanan et al. 2021, arXiv 2104.04473 §2.2); GPipe all m; interleaved, zero-bubble and
    DualPipe as moesim.estimate.schedules.in_flight. `schedule` is a name or an array of names."""
    from moesim.estimate.schedules import in_flight  # noqa: PLC0415 (estimate imports memory)
    return in_flight(np.asarray(schedule), micro_batches, pp, vp, stage)


def _split(replicated, sharded, tp, sequence_parallel):
    """Korthikanti Table 2: with sequence parallelism everything divides by t; without, only the
    tensor-parallel part does."""
    tp = np.asarray(tp, dtype=float)
    if sequence_parallel:
        return (replicated + sharded) / tp
    return replicated + sharded / tp
