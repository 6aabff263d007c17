"""What the term builder gives per layer class (moesim.estimate.terms.TermBuilder): a layer's collectives
(`CommCall`) and its cost terms per device per micro-batch (`ClassTerms`), and their expansion from the distinct
candidate rows priced to every candidate. Moved from terms.py unchanged (session 24, tidy24)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CommCall:
    """A collective issued per layer of a class per micro-batch."""

    name: str
    axis: str
    op: str
    size_bytes: np.ndarray
    calls: np.ndarray  # per layer per micro-batch


@dataclass
class ClassTerms:
    """Cost terms of one layer of a class, per device per micro-batch."""

    fwd_time_s: np.ndarray
    bwd_time_s: np.ndarray
    recompute_time_s: np.ndarray
    model_flops: np.ndarray  # fwd + bwd, no padding or recompute
    hardware_flops: np.ndarray  # what the device executes: padding, einsum dispatch, recompute
    activation_bytes: np.ndarray
    comms: list[CommCall] = field(default_factory=list)
    slots: np.ndarray | None = None
    capacity: np.ndarray | None = None
    tokens_per_device: np.ndarray | None = None
    dispatch_einsum_flops: np.ndarray | float = 0.0  # forward FLOP of the dense dispatch einsum (one of two)
    # Forward and backward time by MoE pipeline stage (layer_overhead, attention, dense_ffn, router,
    # permute, expert_ffn, unpermute, shared_experts), in execution order; they sum to fwd/bwd_time_s.
    # layer_overhead is the profile's fixed host cost per layer per pass (the same both ways).
    # The simulator (moesim.des) runs them as separate kernels.
    fwd_parts_s: dict[str, np.ndarray] = field(default_factory=dict)
    bwd_parts_s: dict[str, np.ndarray] = field(default_factory=dict)
    # The operator lists these times were priced from (moesim.ops), on the distinct candidate rows.
    ops_fwd: list = field(default_factory=list, repr=False)
    ops_bwd: list = field(default_factory=list, repr=False)
    attention_core_time_s: np.ndarray | float = 0.0  # forward attention scores (what a CP ring hides under)
    # W: the weight-gradient operators of bwd_time_s (pass "wgrad": every GEMM's dW, launches included), what
    # zero-bubble schedules split off (Qi et al. 2023 §2); None before the operator lists are priced.
    weight_grad_s: np.ndarray | None = None
    # The stage parts' times as a DualPipe overlapped pair runs them, beside DeepEP's kernels: the compute-bound
    # operators at the SMs those leave (moesim.ops.sm_share); empty when nothing shares the chip (= the parts).
    fwd_pair_parts_s: dict[str, np.ndarray] = field(default_factory=dict)
    bwd_pair_parts_s: dict[str, np.ndarray] = field(default_factory=dict)
    # Recompute module "moe": the part of recompute_time_s that is the MoE layer's forward again, by stage part (the
    # simulator runs it around the layer's all-to-alls; moesim/estimate/selective.py); empty without it.
    moe_recompute_parts_s: dict[str, np.ndarray] = field(default_factory=dict)
    # recompute_time_s as a DualPipe overlapped pair runs it, its GEMMs beside DeepEP's kernels at the SMs those leave
    # (the selective modules' GEMMs but the "moe" checkpoint's, which the simulator runs at its own parts; a full
    # recompute's forward at the pair's parts); None when nothing shares the chip (= recompute_time_s).
    recompute_pair_time_s: np.ndarray | None = None

    def recompute_pair_s(self) -> np.ndarray:
        """The recompute in a DualPipe overlapped pair (recompute_time_s without sharing)."""
        return self.recompute_time_s if self.recompute_pair_time_s is None else self.recompute_pair_time_s

    def pair_time_s(self) -> np.ndarray:
        """Forward plus backward time of the layer in a DualPipe overlapped pair (fwd + bwd without sharing)."""
        if not self.fwd_pair_parts_s:
            return self.fwd_time_s + self.bwd_time_s
        return sum(self.fwd_pair_parts_s.values()) + sum(self.bwd_pair_parts_s.values())


MOE_PARTS = ("router", "permute", "expert_ffn", "unpermute", "shared_experts")


def expand(terms: ClassTerms, inverse: np.ndarray) -> ClassTerms:
    """`terms` computed on distinct candidate rows, expanded to every candidate (row i takes inverse[i])."""
    x = lambda a: a[inverse] if isinstance(a, np.ndarray) and a.ndim == 1 else a  # noqa: E731
    out = ClassTerms(**{name: x(getattr(terms, name)) for name in
                        ("fwd_time_s", "bwd_time_s", "recompute_time_s", "model_flops", "hardware_flops",
                         "activation_bytes", "slots", "capacity", "tokens_per_device", "dispatch_einsum_flops",
                         "attention_core_time_s", "weight_grad_s", "recompute_pair_time_s")})
    out.comms = [CommCall(c.name, c.axis, c.op, x(np.asarray(c.size_bytes)), x(np.asarray(c.calls)))
                 for c in terms.comms]
    out.fwd_parts_s = {k: x(v) for k, v in terms.fwd_parts_s.items()}
    out.bwd_parts_s = {k: x(v) for k, v in terms.bwd_parts_s.items()}
    out.fwd_pair_parts_s = {k: x(v) for k, v in terms.fwd_pair_parts_s.items()}
    out.bwd_pair_parts_s = {k: x(v) for k, v in terms.bwd_pair_parts_s.items()}
    out.ops_fwd, out.ops_bwd = terms.ops_fwd, terms.ops_bwd
    return out
