"""The word embedding's gradient all-reduce between the first and the last pipeline stage (Megatron-Core).

Where the input embedding and the output layer share one weight (tied embeddings), or the multi-token-prediction
modules on the last stage read the embedding, a pipeline of pp > 1 holds that weight twice: on the first stage's
embedding and on the last stage. After the data-parallel gradient sync and before the optimizer,
`finalize_model_grads` (megatron/core/distributed/finalize_model_grads.py, NVIDIA/Megatron-LM d98e8a6) calls
`_allreduce_word_embedding_grads`, which all-reduces the weight's main gradient, [V/tp, h] in the gradient dtype,
over the embedding group: the first and the last rank of each pipeline group (parallel_state.py,
`default_embedding_ranks`), 2 ranks. `_get_shared_word_embedding_weight` returns the weight only where
`share_embeddings_and_output_weights` or `mtp_num_layers` is set. Under ZB-V and DualPipe both ends of the model run
on the same device (moesim.des.orders): one copy, nothing to reduce.
"""

from __future__ import annotations

import numpy as np

from moesim.estimate import schedules as sch
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec
from moesim.workload import Workload

# The mesh axis name of the embedding group (the only collective whose members sit on different pipeline stages).
EMBEDDING_AXIS = "embd"
# The ranks of the embedding group: the first and the last stage of a pipeline (default_embedding_ranks).
EMBEDDING_GROUP_RANKS = 2


def shares_embedding(model: ModelSpec, wl: Workload) -> bool:
    """True where two pipeline stages hold the word embedding: tied input / output embeddings or MTP modules
    (finalize_model_grads.py, `_get_shared_word_embedding_weight`)."""
    return bool(model.tied_embeddings or wl.mtp_layers > 0)


def ends_apart(schedule, pp) -> np.ndarray:
    """True where the pipeline's first and last stage are different devices: pp > 1 and neither ZB-V nor DualPipe
    (both put the embedding and the head on one device)."""
    together = sch.is_schedule(schedule, "zb-v") | sch.is_schedule(schedule, "dualpipe")
    return (np.asarray(pp) > 1) & ~together


def embedding_grad_bytes(model: ModelSpec, wl: Workload, tr: TrainingSpec, tp):
    """Bytes of the all-reduced gradient per device, [V/tp, h] in the gradient dtype (VocabParallelEmbedding
    shards the vocabulary over tp); 0 where no weight is shared."""
    if not shares_embedding(model, wl):
        return np.zeros_like(np.asarray(tp, dtype=float))
    return wl.embedding_params / np.asarray(tp, dtype=float) * tr.bytes_of("grad")


def embedding_group(pp, pp_stride):
    """(size, stride) of the embedding group: 2 ranks pp_stride·(pp − 1) apart; size 1 where pp = 1. Priced with
    devices / pp groups at once (`embedding_concurrent`), one per pipeline, not devices / 2."""
    pp = np.asarray(pp)
    size = np.where(pp > 1, EMBEDDING_GROUP_RANKS, 1)
    return size, np.asarray(pp_stride) * np.maximum(pp - 1, 1)


def embedding_concurrent(devices: int, pp):
    """Embedding groups running at once: one per pipeline group, devices / pp."""
    return devices // np.asarray(pp)


def embedding_members(devices, pp: int, pp_stride: int):
    """The embedding group's (first, last) member of each of `devices` (an int or an array): the first and the last
    stage of the device's pipeline group (mesh strides: a pipeline group is base + k·pp_stride, k < pp)."""
    devices = np.asarray(devices)
    first = devices - ((devices // pp_stride) % pp) * pp_stride
    return first, first + (pp - 1) * pp_stride


__all__ = ["EMBEDDING_AXIS", "EMBEDDING_GROUP_RANKS", "embedding_concurrent", "embedding_grad_bytes", "embedding_group",
           "embedding_members", "ends_apart", "shares_embedding"]
