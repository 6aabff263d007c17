"""What the analytical step model returns: arrays over a batch of candidates (moesim.estimate.core.evaluate).

`estimate()` / `step_estimate()` (moesim.estimate.result) turn one entry into a StepEstimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moesim.estimate.candidates import Candidates
from moesim.estimate.tp_grad_sync import TP_GRAD_ALL_REDUCE

PER_MB_AXES = ("tp", "ep", "etp", "pp", "cp")
# Collectives on those axes issued once a step, not per micro-batch (finalize_model_grads' tp all-reduce).
PER_STEP_NAMES = (TP_GRAD_ALL_REDUCE,)


def per_micro_batch(name: str, axis: str) -> bool:
    """Whether the named collective on `axis` is recorded per micro-batch (a layer's, a pipeline send's)."""
    return axis in PER_MB_AXES and name not in PER_STEP_NAMES


@dataclass
class CommTotal:
    """One named collective per candidate: per-step totals on the slowest stage."""

    axis: str
    op: str
    size_bytes: np.ndarray  # per call (largest over layer classes)
    calls_per_step: np.ndarray
    bytes_per_device: np.ndarray  # sent per step
    time_s: np.ndarray  # per step
    costs: np.ndarray  # CollectiveCost of the largest call (algorithm, bottleneck)
    overlappable: bool = False


@dataclass
class Evaluation:
    """Arrays over candidates; `estimate()` turns one entry into a StepEstimate."""

    candidates: Candidates
    step_time_s: np.ndarray
    step_time_no_overlap_s: np.ndarray
    compute_time_s: np.ndarray
    communication_time_s: np.ndarray
    exposed_communication_time_s: np.ndarray
    bubble_time_s: np.ndarray
    optimizer_time_s: np.ndarray
    memory: dict[str, np.ndarray]
    memory_total_bytes: np.ndarray
    memory_capacity_bytes: float
    fits: np.ndarray
    model_flops_per_step: np.ndarray  # drop-aware: only the assignments experts process
    hardware_flops_per_step: np.ndarray
    mfu: np.ndarray
    hfu: np.ndarray
    tokens_per_s: np.ndarray
    comms: dict[str, CommTotal] = field(default_factory=dict)
    slowest_stage: np.ndarray | None = None
    memory_stage: np.ndarray | None = None
    expert_capacity: np.ndarray | None = None
    tokens_per_device: np.ndarray | None = None
    drop_fraction: np.ndarray | None = None  # expected dropped share of every MoE layer's assignments (uniform routing)
    rows: np.ndarray | None = None  # evaluate(fitting_only=True): the input candidates these rows are (None: all)
    # (expert capacity, tokens per device) of each stack's first MoE layer class, by stack name; the two fields above
    # are the first stack's (an encoder-decoder's encoder)
    moe_by_stack: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
