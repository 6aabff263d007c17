"""The dtype of every operator, from one place (the precision interface agreed with the precision work).

Today every GEMM, attention and memory-bound operator runs at the training spec's compute dtype and the
router at the model's router dtype. When TrainingSpec gains per-tensor-class dtypes (`dtype_for`), this
helper is the one place that maps operator kinds onto them.
"""

from __future__ import annotations

from moesim.specs.training import TrainingSpec

# Operator kind -> tensor class of TrainingSpec.dtype_for (when it exists).
KIND_CLASS = {"gemm": "gemm", "grouped_gemm": "gemm", "attention": "attention", "memory": "activation"}


def op_dtype(training: TrainingSpec, op_kind: str) -> str:
    """Dtype an operator of `op_kind` runs in under `training`."""
    dtype_for = getattr(training, "dtype_for", None)
    if callable(dtype_for):
        return dtype_for(KIND_CLASS.get(op_kind, "gemm"))
    return training.compute_dtype
