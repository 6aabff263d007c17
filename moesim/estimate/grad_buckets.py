"""How many buckets a stage's gradient sync is made of (Megatron-Core's --overlap-grad-reduce).

MCore lays the parameters into buckets in reverse order (megatron/core/distributed/param_and_grad_buffer.py,
`_ParamAndGradBuffer.__init__`: `for param in params[::-1]`) and launches a bucket's reduce-scatter / all-reduce once
all its gradients are ready, on the last micro-batch (`_ParamAndGradBucketGroup.register_grad_ready`). A bucket
closes at a layer's end once it holds `bucket_params` parameters (the simulator's `_Builder.grad_bucket`,
moesim/des/schedule.py), so a stage of L layers carrying B gradient bytes, layers of B / L bytes each, closes a
bucket every ceil(threshold / (B / L)) layers. With overlap_grad_reduce off MCore sets the bucket size to None: one
bucket (distributed_data_parallel.py, `DistributedDataParallel.__init__`).

The bucket size (`bucket_params`) is MCore's default, max(40e6, 1e6 · dp·cp) parameters: megatron/training/training.py
`resolve_ddp_bucket_size` sizes it from the dp·cp group (`pg_collection.dp_cp`) when neither `--ddp-bucket-size` nor
`--ddp-num-buckets` is given, and `wrap_model_chunks_with_ddp` hands that one size to every buffer of the chunk,
the expert-parallel ones (reduced over the expert data-parallel group) included (NVIDIA/Megatron-LM d98e8a6).
"""

from __future__ import annotations

import numpy as np

# Megatron-Core's default bucket floor, in parameters (megatron/training/training.py, resolve_ddp_bucket_size:
# max(40000000, 1000000 * get_pg_size(dp_cp_group))).
DEFAULT_BUCKET_PARAMS = 40_000_000
# ... and its growth with the dp·cp group, in parameters per rank (the same line).
BUCKET_PARAMS_PER_DP_CP_RANK = 1_000_000


def bucket_params(dp_cp):
    """MCore's default gradient bucket size in parameters for a dp·cp group of `dp_cp` ranks (scalar or array):
    max(40e6, 1e6 · dp·cp) (training.py, resolve_ddp_bucket_size); one size for the dense and the expert buffers."""
    return np.maximum(DEFAULT_BUCKET_PARAMS, BUCKET_PARAMS_PER_DP_CP_RANK * np.asarray(dp_cp))


def bucket_count(grad_bytes: np.ndarray, layers: np.ndarray, bucket_bytes: float, overlap: bool) -> np.ndarray:
    """Buckets per stage (N, S) for `grad_bytes` spread over `layers` layers (both (N, S)) in buckets of
    `bucket_bytes` (a scalar or (N, 1)); 1 where either is 0 or overlap is off."""
    grad_bytes, layers = np.asarray(grad_bytes, dtype=float), np.asarray(layers, dtype=float)
    if not overlap:
        return np.ones_like(grad_bytes)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_layer_bytes = grad_bytes / layers
        layers_per_bucket = np.ceil(bucket_bytes / per_layer_bytes)
        n = np.ceil(layers / layers_per_bucket)
    return np.where((grad_bytes > 0) & (layers > 0) & np.isfinite(n), np.maximum(n, 1.0), 1.0)
