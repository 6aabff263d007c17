"""Training spec: batch, sequence, dtypes, optimizer, ZeRO stage, recomputation, micro-batches."""

from __future__ import annotations

from dataclasses import dataclass

from moesim.errors import SpecError
from moesim.specs.ranges import check_ranges
from moesim.specs.hardware import DTYPE_BYTES, DTYPES

OPTIMIZERS = ("adam", "adafactor", "sgd")
RECOMPUTE_MODES = ("none", "selective", "full")
PIPELINE_SCHEDULES = ("1f1b", "gpipe")
DISPATCH_IMPLS = ("index", "dense_einsum")
# How the expert all-to-all runs (moesim/collectives/dispatch.py): "nccl" the fastest of NCCL's pairwise
# all-to-all and the two-level (hierarchical) one; "pairwise"; "hierarchical" (Tutel/DeepSpeed 2DH);
# "deepep" DeepEP normal kernels (one copy per destination node over RDMA, NVLink forwarding);
# "deepep_ll" DeepEP low-latency kernels (pure RDMA, one message per selected expert).
DISPATCH_BACKENDS = ("nccl", "pairwise", "hierarchical", "deepep", "deepep_ll")
ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    """How the model is trained. Batch sizes count sequences; lengths count tokens.

    For an encoder-decoder model `seq_len` is the encoder input length and `decoder_seq_len`
    the target length (T5 span corruption: 512 inputs, 114 targets); 0 takes the model default.
    """

    global_batch_sequences: int
    seq_len: int = 0
    decoder_seq_len: int = 0
    micro_batches: int = 1
    param_dtype: str = "bfloat16"
    compute_dtype: str = "bfloat16"
    grad_dtype: str = "float32"
    dispatch_dtype: str = "bfloat16"  # tokens on their way to the experts (the dispatch all-to-all)
    combine_dtype: str = ""  # expert outputs on their way back (the combine all-to-all); "" = compute_dtype
    optimizer: str = "adam"
    optimizer_state_dtype: str = "float32"
    master_weights: bool = True
    zero_stage: int = 0
    recompute: str = "none"
    sequence_parallel: bool = True
    pipeline_schedule: str = "1f1b"
    overlap_grad_reduce: bool = True
    dispatch_impl: str = "index"
    dispatch_backend: str = "nccl"
    capacity_factor: float | None = None  # None: the model's train capacity factor
    memory_headroom_fraction: float = 0.05

    def __post_init__(self) -> None:
        check_ranges(self)
        for name in ("global_batch_sequences", "micro_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"must be an integer >= 1, got {value!r}", field=f"training.{name}", value=value)
        for name in ("seq_len", "decoder_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpecError(f"must be an integer >= 0, got {value!r}", field=f"training.{name}", value=value)
        for name in ("param_dtype", "compute_dtype", "grad_dtype", "dispatch_dtype", "optimizer_state_dtype",
                     "combine_dtype"):
            if getattr(self, name) not in DTYPES and not (name == "combine_dtype" and getattr(self, name) == ""):
                raise SpecError(f"unknown dtype '{getattr(self, name)}'", field=f"training.{name}",
                                value=getattr(self, name), allowed=DTYPES)
        checks = (("optimizer", OPTIMIZERS), ("recompute", RECOMPUTE_MODES),
                  ("pipeline_schedule", PIPELINE_SCHEDULES), ("dispatch_impl", DISPATCH_IMPLS),
                  ("dispatch_backend", DISPATCH_BACKENDS),
                  ("zero_stage", ZERO_STAGES))
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise SpecError(f"'{getattr(self, name)}' is not allowed", field=f"training.{name}",
                                value=getattr(self, name), allowed=allowed)
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise SpecError("capacity_factor must be > 0", field="training.capacity_factor",
                            value=self.capacity_factor)
        if not 0 <= self.memory_headroom_fraction < 1:
            raise SpecError("memory_headroom_fraction must be in [0, 1)", field="training.memory_headroom_fraction",
                            value=self.memory_headroom_fraction)

    def bytes_of(self, which: str) -> int:
        """Bytes per element of `param`, `compute`, `grad`, `dispatch`, `combine` or `optimizer_state`."""
        if which == "combine" and not self.combine_dtype:
            which = "compute"
        return DTYPE_BYTES[getattr(self, f"{which}_dtype")]
