"""The tensor-parallel all-reduce of the gradients every tp rank holds whole, under sequence parallelism (Megatron-Core).

NVIDIA/Megatron-LM 23e00ed0, megatron/core/distributed/finalize_model_grads.py: `finalize_model_grads` (l.376-445)
runs once a step after the data-parallel sync (`finish_grad_sync`, l.422) and before the word embedding's all-reduce (l.449); its
`_allreduce_non_tensor_model_parallel_grads` (l.298-366; `_allreduce_layernorm_grads` is its alias, l.373) does
nothing where the tp group has one rank (l.309-310), else flattens into one buffer the main gradient of every
parameter whose `sequence_parallel` attribute is set where `config.sequence_parallel` (l.334) and all-reduces it
(SUM) over the tp group in one call (l.355-356). With sequence parallelism each tp rank ran these weights on its own
shard of the tokens, so each holds a partial gradient; without it every rank computed the same gradient from the
same tokens and nothing is reduced.

The parameters that carry the attribute are the ones whole on every tp rank:
- TE's norms: RMSNorm / LayerNorm (TE v2.11 transformer_engine/pytorch/module/rmsnorm.py, layernorm.py l.133-135,
  built by Megatron's TENorm with `sequence_parallel=config.sequence_parallel`, transformer_engine.py l.163-190) and
  the norm fused into LayerNormLinear (layernorm_linear.py l.1442);
- the MoE router's weight (megatron/core/transformer/moe/router.py l.63);
- the duplicated TELinear's weights, MLA's down-projections (transformer_engine.py l.372-378: "Reduce the gradient
  further on the TP group since the weight is duplicated across TP ranks").
That is moesim's `params_replicated` of each layer class (router + norms + MLA's duplicated weights,
moesim.workload) and the final norm on the last stage (`final_norm_params`); the gradient dtype is the main
gradient's (`bytes_of("grad")`). Both engines read `replicated_grad_bytes`; the estimate adds the call's time to
its stage's end of step (not hidden: after the sync), the simulator issues it on the gradient stream after the
device's last gradient bucket and before the embedding's all-reduce and the optimizer.
"""

from __future__ import annotations

import numpy as np

from moesim.workload import Workload

# The entry's name: a tp collective issued once a step, not per micro-batch (moesim.estimate.evaluation).
TP_GRAD_ALL_REDUCE = "tp_grad_all_reduce"


def reduces_over_tp(sequence_parallel: bool, tp, device_kind: str) -> np.ndarray:
    """True where finalize_model_grads all-reduces the replicated gradients over tp: a GPU (Megatron's program; XLA
    places its reductions itself, as moesim.ops.vocab), sequence parallelism and tp > 1 (l.309-310, l.334)."""
    if device_kind != "gpu" or not sequence_parallel:
        return np.zeros(np.shape(tp), dtype=bool)
    return np.asarray(tp) > 1


def replicated_params(wl: Workload, per_layer_params, last) -> np.ndarray:
    """Parameters of a stage whose gradient is all-reduced over tp under SP: `per_layer_params` (Σ over the stage's
    layers of each class's `params_replicated`) plus the final norm(s) where `last`."""
    return np.asarray(per_layer_params, dtype=float) + np.where(last, float(wl.final_norm_params), 0.0)


def replicated_grad_bytes(wl: Workload, per_layer_params, last, q_grad: float) -> np.ndarray:
    """Bytes of the one coalesced all-reduce (replicated_params × the main gradient's bytes)."""
    return replicated_params(wl, per_layer_params, last) * q_grad


__all__ = ["TP_GRAD_ALL_REDUCE", "reduces_over_tp", "replicated_grad_bytes", "replicated_params"]
