"""Single-process reference of the distributed layer, written the Mesh-TensorFlow way.

Each source rank's tokens form one routing group (capacity is per source rank). Dispatch and
combine are dense [T, E, C] tensors as in Switch App. F / Mesh-TF ``_top_2_gating`` (queue position
from a cumulative sum per choice slot, later slots start after the kept earlier ones), so the
assignment logic is independent of the sort/index implementation in :mod:`validate.routing`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from validate import data
from validate.config import LayerConfig
from validate.routing import load_balancing_loss, router_probs, top_k_gates
from validate.switch_layer import expert_ffn


@dataclass
class ReferenceResult:
    """Outputs per source rank, summed aux loss and kept-assignment counts."""

    outputs: list[torch.Tensor]   # per rank [T, d_model]
    aux_losses: list[torch.Tensor]  # per rank []
    kept: list[int]               # kept assignments per rank


def reference_group(x: torch.Tensor, w_router: torch.Tensor, w_in: torch.Tensor,
                    w_out: torch.Tensor, cfg: LayerConfig) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One routing group (one source rank): returns (output, aux loss, kept assignments).

    ``w_in`` [E, d_model, d_ff] and ``w_out`` [E, d_ff, d_model] hold all experts.
    """
    num_experts, capacity = cfg.num_experts, cfg.capacity
    probs = router_probs(x, w_router)
    gate, expert = top_k_gates(probs, cfg.top_k, cfg.normalize_gates)
    aux = load_balancing_loss(probs, expert, cfg.aux_loss_coef)
    filled = torch.zeros(num_experts, dtype=torch.int64)        # kept so far per expert
    dispatch = torch.zeros(x.shape[0], num_experts, capacity, dtype=torch.bool)
    combine = torch.zeros(x.shape[0], num_experts, capacity, dtype=torch.float32)
    for slot in range(cfg.top_k):
        mask = F.one_hot(expert[:, slot], num_experts)                   # [T, E]
        position = torch.cumsum(mask, dim=0) - 1 + filled                 # Mesh-TF position_in_expert
        mask = mask * (position < capacity)                               # drop beyond capacity
        filled = filled + mask.sum(dim=0)
        slot_dispatch = mask.unsqueeze(2) * F.one_hot(position.clamp(0, capacity - 1), capacity)
        dispatch |= slot_dispatch.bool()
        combine = combine + gate[:, slot, None, None] * slot_dispatch     # Switch App. F combine
    dtype = x.dtype
    expert_in = torch.einsum("tec,td->ecd", dispatch.to(dtype), x)        # Switch Eq. 7 dispatch
    expert_out = torch.stack([expert_ffn(expert_in[e], w_in[e], w_out[e])
                              for e in range(num_experts)])
    out = torch.einsum("tec,ecd->td", combine.to(dtype), expert_out)      # Switch App. F combine
    return out, aux, int(dispatch.sum())


def full_weights(cfg: LayerConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(router [E, d], W_in [E, d, f], W_out [E, f, d]) for all experts, float32, CPU."""
    ws = [data.expert_weights(cfg, e) for e in range(cfg.num_experts)]
    return (data.router_weight(cfg), torch.stack([w for w, _ in ws]),
            torch.stack([w for _, w in ws]))


def reference_forward(xs: list[torch.Tensor], w_router: torch.Tensor, w_in: torch.Tensor,
                      w_out: torch.Tensor, cfg: LayerConfig) -> ReferenceResult:
    """Run every source rank's group through :func:`reference_group`."""
    if cfg.capacity == 0:
        raise ValueError(f"config {cfg.name!r}: capacity is 0; the reference needs capacity >= 1")
    res = ReferenceResult([], [], [])
    for x in xs:
        out, aux, kept = reference_group(x, w_router, w_in, w_out, cfg)
        res.outputs.append(out)
        res.aux_losses.append(aux)
        res.kept.append(kept)
    return res
