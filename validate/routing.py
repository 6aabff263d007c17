"""Switch/GShard routing on one rank's tokens: fp32 router, top-k gating, capacity dropping, aux loss.

The distributed layer (:mod:`validate.switch_layer`) uses :func:`route`; the reference
(:mod:`validate.reference`) re-implements the assignment logic densely so the two are independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Routing:
    """Routing decision for the tokens of one source rank.

    Kept assignments are sorted by expert id (stable in slot-major order), so they are already
    grouped by destination rank for the all-to-all.
    """

    probs: torch.Tensor          # [T, E] float32 router probabilities
    token_index: torch.Tensor    # [n_kept] int64, token of each kept assignment
    expert_index: torch.Tensor   # [n_kept] int64, global expert id of each kept assignment
    gate: torch.Tensor           # [n_kept] float32, gate value (differentiable)
    expert_counts: torch.Tensor  # [E] int64, kept assignments per expert
    aux_loss: torch.Tensor       # [] float32, alpha * E * sum_i f_i P_i
    num_assignments: int         # T * k
    num_kept: int                # assignments that fit in capacity


def router_logits(x: torch.Tensor, w_router: torch.Tensor) -> torch.Tensor:
    """The router matmul h(x) = W_r x in float32 ([T, E]): the harness's `router_matmul` phase.

    Selective precision (Switch §2.4): the router input is cast to float32 inside the router only.
    """
    return x.float() @ w_router.float().t()  # Switch Eq. 1: h(x) = W_r x


def router_probs(x: torch.Tensor, w_router: torch.Tensor) -> torch.Tensor:
    """Softmax router probabilities computed in float32 (Switch Eq. 1: p_i(x) = softmax(h(x))_i)."""
    return torch.softmax(router_logits(x, w_router), dim=-1)


def top_k_gates(probs: torch.Tensor, top_k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k expert choice per token; gates are the router probabilities of the chosen experts.

    Switch top-1 uses the raw probability as the gate (Switch Eq. 2); with ``normalize`` the k gates
    are divided by their sum (GShard Alg. 1 for top-2).
    """
    gate, expert = probs.topk(top_k, dim=-1)  # [T, k], slot 0 = highest probability
    if normalize:
        gate = gate / gate.sum(dim=-1, keepdim=True)  # GShard Alg. 1: g1 /= (g1 + g2)
    return gate, expert


def load_balancing_loss(probs: torch.Tensor, expert: torch.Tensor, coef: float) -> torch.Tensor:
    """Switch load-balancing loss alpha * E * sum_i f_i * P_i over this rank's tokens.

    f_i is the fraction of the T*k (pre-capacity) assignments that chose expert i (Switch Eq. 5 for
    k = 1; Megatron-Core ``switch_load_balancing_loss_func`` 1/(T*k) normalisation for k > 1), P_i is
    the mean router probability (Switch Eq. 6). f is not differentiable; the gradient flows via P.
    """
    num_tokens, num_experts = probs.shape
    counts = torch.bincount(expert.reshape(-1), minlength=num_experts).to(torch.float32)
    f = counts / expert.numel()                           # Switch Eq. 5
    p = probs.mean(dim=0)                                 # Switch Eq. 6
    return coef * num_experts * torch.sum(f * p)          # Switch Eq. 4


def route(x: torch.Tensor, w_router: torch.Tensor, top_k: int, capacity: int,
          normalize_gates: bool, aux_loss_coef: float) -> Routing:
    """Route ``x`` ([T, d_model]) to experts with per-expert ``capacity`` for this source rank:
    :func:`router_logits`, then :func:`gate_logits`."""
    return gate_logits(router_logits(x, w_router), top_k, capacity, normalize_gates, aux_loss_coef)


def gate_logits(logits: torch.Tensor, top_k: int, capacity: int, normalize_gates: bool,
                aux_loss_coef: float) -> Routing:
    """The routing bookkeeping after the router matmul (the harness's `router_gating` phase): softmax,
    top-k, aux loss, capacity positions (one-hot cumsum), the kept-assignment mask and its ordering.

    Dropping is by position: assignments are ranked slot-major (all first choices in token order,
    then all second choices, ...), as in GShard Alg. 1 / Mesh-TF ``_top_2_gating`` where second
    choices queue behind every first choice; an assignment whose position within its expert is
    ``>= capacity`` is dropped (the token gets no contribution from that expert).
    """
    probs = torch.softmax(logits, dim=-1)  # Switch Eq. 1: p_i(x) = softmax(h(x))_i
    num_tokens, num_experts = probs.shape
    gate, expert = top_k_gates(probs, top_k, normalize_gates)
    aux = load_balancing_loss(probs, expert, aux_loss_coef)

    flat_expert = expert.t().reshape(-1)                                   # [k*T] slot-major
    flat_gate = gate.t().reshape(-1)
    flat_token = torch.arange(num_tokens, device=logits.device).repeat(top_k)
    one_hot = F.one_hot(flat_expert, num_experts)                          # [k*T, E]
    position = (torch.cumsum(one_hot, dim=0) * one_hot).sum(dim=1) - 1     # Switch App. F cumsum
    kept = torch.nonzero(position < capacity, as_tuple=False).squeeze(1)
    order = torch.argsort(flat_expert[kept], stable=True)                  # group by expert/rank
    kept = kept[order]
    expert_index = flat_expert[kept]
    counts = torch.bincount(expert_index, minlength=num_experts)
    return Routing(
        probs=probs,
        token_index=flat_token[kept],
        expert_index=expert_index,
        gate=flat_gate[kept],
        expert_counts=counts,
        aux_loss=aux,
        num_assignments=num_tokens * top_k,
        num_kept=int(kept.numel()),
    )
