"""The last stage's output head as operators (moesim.ops.layer re-exports it): the final norm, the logits GEMM over
Megatron's padded vocabulary shard and the cross-entropy over its logits. Moved from layer.py unchanged (session 24,
tidy24)."""

from __future__ import annotations

from dataclasses import replace

from moesim.megatron_rules import runs_megatron_te
from moesim.ops.base import Op, backward, gemm, memory
from moesim.ops.block_ops import FP32_BYTES, READ_WRITE, norm as _norm
from moesim.ops.dtypes import op_dtype
from moesim.ops.vocab_padding import padded_vocab_size
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec

# Megatron-LM's vocab-parallel cross-entropy, unfused (core/tensor_parallel/cross_entropy.py), per logit of the
# local vocabulary shard, in the passes SimuMax counts for the B200 "ce" efficiency it measured (SimuMax
# simumax/core/transformer/dense_module.py ParallelCE @ 4dcaae51): forward: cast to float32 (read q, write 4),
# max (read 4), subtract the max (read 4, write 4), exp (read 4, write 4), sum (read 4), divide (read 4,
# write 4: the softmax kept for backward); backward: subtract the one-hot (read 4, write 4), cast the gradient
# to the logits' dtype (read 4, write q). The fused kernel (Transformer Engine, --cross-entropy-loss-fusion)
# reads the logits and writes a saved buffer of their size forward, reads it and writes the gradient backward.
# An XLA-compiled program (TPU) fuses the softmax chain into one loop fusion (XLA's operator fusion pass), priced
# as one float32 read and write of the logits forward and backward.
CE_FWD_FP32_PASSES = 9  # 4-byte reads and writes of the forward besides the q-byte read of the logits
CE_BWD_FP32_PASSES = 3
CE_FWD_KERNELS, CE_BWD_KERNELS = 6, 2


def cross_entropy_ops(training: TrainingSpec, logits, q, compiled: bool) -> tuple[Op, Op]:
    """(forward, backward) memory operators of the cross-entropy over `logits` elements of q bytes each
    (`compiled`: an XLA program, its elementwise chain fused)."""
    if compiled:
        fwd = memory("dense_ffn", "cross_entropy", "float32", READ_WRITE * logits * FP32_BYTES)
        return fwd, replace(fwd, pass_="bwd")
    if training.fused_cross_entropy:
        fwd = memory("dense_ffn", "cross_entropy_fused", "float32", READ_WRITE * logits * q)
        return fwd, replace(fwd, pass_="bwd")
    fwd = memory("dense_ffn", "cross_entropy", "float32", logits * (q + CE_FWD_FP32_PASSES * FP32_BYTES),
                 kernels=CE_FWD_KERNELS)
    bwd = memory("dense_ffn", "cross_entropy", "float32", logits * (q + CE_BWD_FP32_PASSES * FP32_BYTES),
                 kernels=CE_BWD_KERNELS, pass_="bwd")
    return fwd, bwd


def logits_ops(model: ModelSpec, training: TrainingSpec, b, tp, output_tokens: int,
               device_kind: str = "gpu") -> tuple[list[Op], list[Op]]:
    """(forward, backward) operators of the output head on the last stage: the final norm, the [b·n, h]·[h, V/tp]
    GEMM (V padded Megatron's way where it runs: moesim.ops.vocab_padding) and the cross-entropy over its logits
    (memory: the passes of Megatron's vocab-parallel cross-entropy, of the fused kernel, or of XLA's fusion on TPUs;
    cross_entropy_ops)."""
    dt = training.dtype_for("head")  # the output head stays in BF16 under FP8 recipes (DeepSeek-V3 §3.3)
    m = b * output_tokens
    q = training.bytes_of("activation")
    # Megatron-LM TransformerBlock.forward: final_layernorm on the last stage, on the sequence shard with SP (the
    # head's ColumnParallelLinear gathers after it); one per MTP module too (MultiTokenPredictionLayer.final_layernorm)
    norm = _norm("dense_ffn", "final_norm", op_dtype(training, "memory"), q,
                 m / tp if training.sequence_parallel else m, model.d_model,
                 runs_megatron_te(training.framework, device_kind))
    # the head's shard of Megatron's padded vocabulary (moesim.ops.vocab_padding: tokenizer.py _vocab_size_with_padding)
    vocab = padded_vocab_size(model.vocab_size, tp, training.framework, device_kind)
    head = gemm("dense_ffn", "logits", dt, m, vocab / tp, model.d_model)
    ce_fwd, ce_bwd = cross_entropy_ops(training, m * vocab / tp, q, compiled=device_kind.startswith("tpu"))
    return [norm, head, ce_fwd], [ce_bwd] + backward(head) + backward(norm)
