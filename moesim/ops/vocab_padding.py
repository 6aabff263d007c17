"""The vocabulary a Megatron-LM run allocates: the tokenizer's size padded so that every tensor-parallel rank holds
an equal, GPU-friendly shard (Megatron-LM 23e00ed0 megatron/training/tokenizer/tokenizer.py
`_vocab_size_with_padding`: multiple = make_vocab_size_divisible_by · tensor_model_parallel_size, the size raised
to the next multiple; megatron/training/arguments.py `--make-vocab-size-divisible-by`, default 128). The padded
rows are real rows of the embedding and output-layer shards: the head's GEMM, the cross-entropy's logits and the
embedding's gradient run over them. Applied where training.framework is "megatron-te" on GPUs; TPU programs
(GShard, Mesh-TensorFlow) and framework "none" (e.g. DeepSeek's HAI-LLM) keep the model's vocabulary as given
(no source of theirs pads by tp: a model file states the size they ran, e.g. T5's 32128).
"""

from __future__ import annotations

import numpy as np

from moesim.megatron_rules import runs_megatron_te

MAKE_VOCAB_SIZE_DIVISIBLE_BY = 128  # Megatron-LM 23e00ed0 arguments.py: --make-vocab-size-divisible-by default 128


def padded_vocab_size(vocab_size: int, tp, framework: str, device_kind: str = "gpu") -> np.ndarray | int:
    """The vocabulary the run allocates at tensor-parallel degree `tp` (scalar or array): Megatron's
    _vocab_size_with_padding (tokenizer.py: ceil(V / (128·tp)) · 128·tp) where runs_megatron_te, else V."""
    if not runs_megatron_te(framework, device_kind):
        return vocab_size
    multiple = MAKE_VOCAB_SIZE_DIVISIBLE_BY * np.asarray(tp, dtype=float)
    padded = np.ceil(vocab_size / multiple) * multiple  # tokenizer.py: `while after % multiple: after += 1`
    return padded if np.ndim(padded) else int(padded)


__all__ = ["MAKE_VOCAB_SIZE_DIVISIBLE_BY", "padded_vocab_size"]
