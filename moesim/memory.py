"""Memory per device: model states (ZeRO), activations (Korthikanti et al.), MoE buffers.

Pure functions over numbers or numpy arrays (the layout search evaluates thousands at once).

Notation (per device unless said): b micro-batch sequences, n tokens per sequence through a
layer, h d_model, a heads, f FFN width, t tp degree, E experts, r token slots an MoE layer
receives on the device, C capacity per expert per group; bytes per element q_p params, q_g grads,
q_s optimizer state, q_a activations (2, bf16), masks 1 byte.
Source: Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models",
arXiv 2205.05198, §4 and Table 2; ZeRO, Rajbhandari et al., arXiv 1910.02054, §5.
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
    """
    master = FP32_BYTES if training.master_weights and training.bytes_of("param") < FP32_BYTES else 0
    state = training.bytes_of("optimizer_state")
    if training.optimizer == "adam":
        return 2 * state + master
    if training.optimizer == "sgd":
        return state + master
    return FP32_BYTES * (rows + cols) / (rows * cols) + master


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


def attention_activation_bytes(b, n_q, n_kv, h, a, tp, sequence_parallel, recompute):
    """One attention block, Korthikanti §4.1: 11·n·b·h + 5·a·n_q·n_kv·b bytes.

    Unsharded by tp without sequence parallelism: block input 2nbh and output dropout mask nbh;
    the rest (Q, K, V, scores, softmax, dropout, projection input) splits over tp. Selective
    recomputation drops the attention core 5·a·n_q·n_kv·b (Korthikanti §5).
    """
    replicated = (ACT_BYTES + MASK_BYTES) * n_q * b * h
    core = 5 * a * n_q * n_kv * b
    sharded = 4 * ACT_BYTES * n_q * b * h + np.where(recompute >= 1, 0.0, core)
    return _split(replicated, sharded, tp, sequence_parallel)


def mlp_activation_bytes(b, n, h, f, tp, sequence_parallel, ffn_kind: str):
    """One dense MLP: input 2nbh + mask nbh (replicated w/o SP), FC1 out and activation 4nbf
    (6nbf gated: FC1 emits 2f) split by tp. f = 4h gives Korthikanti's 19·nbh."""
    replicated = (ACT_BYTES + MASK_BYTES) * n * b * h
    widths = 3 if ffn_kind in GATED_FFN_KINDS else 2
    sharded = widths * ACT_BYTES * n * b * f
    return _split(replicated, sharded, tp, sequence_parallel)


def norm_activation_bytes(b, n, h, tp, sequence_parallel, norms: int):
    """Layer-norm inputs, 2nbh each (Korthikanti: 4sbh for a layer's two norms)."""
    return _split(norms * ACT_BYTES * n * b * h, 0.0, tp, sequence_parallel)


def moe_activation_bytes(tokens_per_device, slots_per_device, h, f_e, num_experts, etp, ffn_kind: str,
                         dense_einsum: bool, capacity):
    """One MoE layer on one device (../shared/reference/modeling.md §4.2 [derived]).

    Block input 2th + mask th; router logits and probabilities fp32 8·t·E; permuted input 2h·r;
    expert FC1 out and activation 4f·r (6f·r gated), split by etp; expert outputs 2h·r kept for
    the gate's gradient; the dense one-hot dispatch/combine tensor 4·t·E·C (fp32) when dispatch is
    an einsum (GShard/Mesh-TF; Tutel App. B).
    """
    t, r = tokens_per_device, slots_per_device
    widths = 3 if ffn_kind in GATED_FFN_KINDS else 2
    total = (ACT_BYTES + MASK_BYTES) * t * h + 2 * FP32_BYTES * t * num_experts
    total = total + 2 * ACT_BYTES * h * r + widths * ACT_BYTES * f_e * r / etp
    if dense_einsum:
        total = total + FP32_BYTES * t * num_experts * capacity
    return total


def full_recompute_bytes(b, n, h, tp, sequence_parallel):
    """Full recomputation keeps each layer's input only: 2nbh (Korthikanti Table 2), split by tp with SP."""
    return _split(ACT_BYTES * n * b * h, 0.0, tp, sequence_parallel)


def logits_bytes(b, n_out, vocab, tp):
    """fp32 logits for the loss on the last stage, 4·n·b·V/t (Korthikanti §4.3 output layer)."""
    return FP32_BYTES * n_out * b * vocab / tp


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
