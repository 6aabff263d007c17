"""The vocabulary ends of a Megatron GPT model on GPUs: the input embedding's operators (first stage) and the
tensor-parallel collectives of the embedding, the output head and its cross-entropy (first / last stage).

Notation as moesim.ops.layer: b sequences per micro-batch per device, t = b·n tokens (n per sequence), h d_model,
V vocabulary, tp the tensor-parallel degree, q the embedding's bytes per element (training "head" dtype), q_g the
main gradients' bytes, q_a the activations' on the wire. Per device per micro-batch.

Embedding (Megatron-LM core/tensor_parallel/layers.py VocabParallelEmbedding.forward, models/common/embeddings/
language_model_embedding.py LanguageModelEmbedding.forward):
  embedding_lookup     F.embedding of the local shard [V/tp, h]: read t rows, write t rows, 2·t·h·q
  embedding_mask       tp > 1: output_parallel[input_mask, :] = 0, one write of t·h·q; its backward zeroes the
                       same rows of the gradient (t·h·q)
  embedding_transpose  b > 1: [b, n, h] -> [n, b, h] .contiguous(), 2·t·h·q (b = 1: already contiguous, no copy)
  embedding_clone      sequence parallel: the scattered output cloned (clone_scatter_output_in_embedding, on by
                       default), 2·t/tp·h·q
  backward             embedding_grad_zero: PyTorch's embedding backward writes a zeroed dense [V/tp, h] gradient,
                       V/tp·h·q, and embedding_grad_scatter sums the token rows into it through float partial sums:
                       t·h·(q + 4 + 4 + q) (aten/src/ATen/native/cuda/EmbeddingBackwardKernel.cu); then Megatron's
                       backward hook adds it to the fp32 main gradient, embedding_main_grad_add: V/tp·h·(q_g + q +
                       q_g) (core/distributed/distributed_data_parallel.py _make_backward_post_hook:
                       param.main_grad.add_(param.grad.data); the embedding has no gradient-accumulation fusion),
                       every micro-batch
Collectives, each of size S = t·h·q_a (nccl-tests convention, as the layers' tp collectives):
  embedding   sequence parallel: reduce-scatter forward (reduce_scatter_to_sequence_parallel_region), its
              backward an all-gather; without: all-reduce forward (reduce_from_tensor_model_parallel_region)
  head        ColumnParallelLinear (models/gpt/gpt_model.py output_layer) with sequence parallel: all-gather of
              the input forward, all-gather again for the weight gradient and reduce-scatter of the input
              gradient backward (LinearWithGradAccumulationAndAsyncCommunication); without: the input gradient's
              all-reduce backward
  cross-entropy  forward all-reduces of [t] float32 (core/tensor_parallel/cross_entropy.py
              _VocabParallelCrossEntropy.forward: logits_max (MAX), predicted_logits, sum_exp_logits (SUM): three
              of 4·t bytes; fused (core/fusions/fused_cross_entropy.py, --cross-entropy-fusion-impl native):
              logits_max, then the two concatenated, 4·t and 8·t bytes; Transformer Engine's implementation is
              not modelled apart); none backward
The head's GEMM and cross-entropy passes are moesim.ops.layer.logits_ops. Only GPU profiles run Megatron: TPU
programs (XLA/GSPMD) place these differently and the CPU harness is one layer, so every function returns nothing
for another device kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.ops.base import Op, memory
from moesim.ops.layer import FP32_BYTES, READ_WRITE
from moesim.ops.vocab_padding import padded_vocab_size
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec

PART = "dense_ffn"  # the part the head's operators are priced in too (moesim.ops.layer.logits_ops)
CE_ALL_REDUCES = 3  # unfused: logits_max, predicted_logits, sum_exp_logits, [t] float32 each (cross_entropy.py)
CE_FUSED_ALL_REDUCE_FLOATS = (1, 2)  # fused: logits_max, then predicted_logits ++ sum_exp_logits (floats per token)


def _is_gpu(device_kind: str) -> bool:
    return device_kind == "gpu"


def embedding_tokens(model: ModelSpec, seq_len: int, decoder_seq_len: int) -> int:
    """Tokens per sequence looked up in the input embedding: every stack's input (an encoder-decoder embeds both)."""
    return seq_len + decoder_seq_len if model.architecture == "encoder_decoder" else seq_len


def embedding_ops(model: ModelSpec, training: TrainingSpec, b, tp, tokens: int,
                  device_kind: str = "gpu") -> tuple[list[Op], list[Op]]:
    """(forward, backward) memory operators of the input embedding on the first stage (module docstring)."""
    if not _is_gpu(device_kind):
        return [], []
    dt, q, q_g, h = training.dtype_for("head"), training.bytes_of("head"), training.bytes_of("grad"), model.d_model
    b, tp = np.asarray(b, dtype=float), np.asarray(tp, dtype=float)
    rows = b * tokens * h  # t·h elements
    # the local [V/tp, h] table of Megatron's padded vocabulary (vocab_padding: tokenizer.py _vocab_size_with_padding)
    shard = padded_vocab_size(model.vocab_size, tp, training.framework, device_kind) / tp * h
    split = tp > 1
    # layers.py VocabParallelEmbedding.forward: F.embedding reads and writes t rows; output_parallel[input_mask] = 0
    fwd = [memory(PART, "embedding_lookup", dt, READ_WRITE * rows * q),
           memory(PART, "embedding_mask", dt, np.where(split, rows * q, 0.0), kernels=np.where(split, 1.0, 0.0)),
           # VocabParallelEmbedding / LanguageModelEmbedding: [b, s, h] -> [s, b, h] .contiguous() (a copy for b > 1)
           memory(PART, "embedding_transpose", dt, np.where(b > 1, READ_WRITE * rows * q, 0.0),
                  kernels=np.where(b > 1, 1.0, 0.0))]
    if training.sequence_parallel:  # LanguageModelEmbedding.forward: clone_scatter_output_in_embedding (default on)
        fwd.append(memory(PART, "embedding_clone", dt, np.where(split, READ_WRITE * rows / tp * q, 0.0),
                          kernels=np.where(split, 1.0, 0.0)))
    # The mask's backward zeroes the same gradient rows; EmbeddingBackwardKernel.cu: zeroed [V/tp, h] gradient, the
    # rows summed through float partials (read q, write 4, read 4, write q); distributed_data_parallel.py backward
    # hook: param.main_grad.add_(param.grad) reads q_g + q and writes q_g over the shard.
    bwd = [memory(PART, "embedding_mask", dt, np.where(split, rows * q, 0.0), kernels=np.where(split, 1.0, 0.0),
                  pass_="bwd"),
           memory(PART, "embedding_grad_zero", dt, shard * q * np.ones_like(b), pass_="bwd"),
           memory(PART, "embedding_grad_scatter", dt, rows * (2 * q + 2 * FP32_BYTES), pass_="bwd"),
           memory(PART, "embedding_main_grad_add", "float32", shard * (2 * q_g + q) * np.ones_like(b), pass_="bwd")]
    return fwd, bwd


@dataclass(frozen=True)
class VocabCall:
    """One tensor-parallel collective of the model's ends per micro-batch: on the first stage (`end`
    "embedding") or the last ("head"), in pass `pass_` (fwd | bwd), `before` or after the end's compute."""

    name: str
    op: str
    size_bytes: np.ndarray | float
    end: str
    pass_: str
    before: bool
    calls: int = 1


def vocab_calls(training: TrainingSpec, d_model: int, b, input_tokens: int, output_tokens: int, heads: int,
                device_kind: str = "gpu") -> list[VocabCall]:
    """The embedding's, output heads' and cross-entropies' tp collectives (module docstring), in execution order
    within each (end, pass); `heads` output heads on the last stage (the main model's and one per MTP module)."""
    if not _is_gpu(device_kind):
        return []
    q_a, b = training.bytes_of("activation"), np.asarray(b, dtype=float)
    # [t, h] activations, the size convention of the layers' tp collectives (moesim.estimate.terms._tp_comms)
    s_in, s_out = b * input_tokens * d_model * q_a, b * output_tokens * d_model * q_a
    t_out = b * output_tokens
    if training.sequence_parallel:
        calls = [VocabCall("tp_embedding_reduce_scatter", "reduce_scatter", s_in, "embedding", "fwd", False),
                 VocabCall("tp_embedding_all_gather", "all_gather", s_in, "embedding", "bwd", True),
                 VocabCall("tp_head_all_gather", "all_gather", s_out, "head", "fwd", True, heads),
                 VocabCall("tp_head_all_gather_wgrad", "all_gather", s_out, "head", "bwd", True, heads),
                 VocabCall("tp_head_reduce_scatter", "reduce_scatter", s_out, "head", "bwd", False, heads)]
    else:
        calls = [VocabCall("tp_embedding_all_reduce", "all_reduce", s_in, "embedding", "fwd", False),
                 VocabCall("tp_head_all_reduce", "all_reduce", s_out, "head", "bwd", False, heads)]
    if training.fused_cross_entropy:
        calls += [VocabCall("tp_cross_entropy_all_reduce", "all_reduce", k * FP32_BYTES * t_out, "head", "fwd", False,
                            heads) for k in CE_FUSED_ALL_REDUCE_FLOATS]
    else:
        calls.append(VocabCall("tp_cross_entropy_all_reduce", "all_reduce", FP32_BYTES * t_out, "head", "fwd", False,
                               CE_ALL_REDUCES * heads))
    return calls


__all__ = ["VocabCall", "embedding_ops", "embedding_tokens", "vocab_calls"]
