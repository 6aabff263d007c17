"""Expert capacity and dropped tokens: pure formulas shared by the estimate, the simulator and validate.

Notation: t tokens in one routing group (one source device's tokens for one MoE layer and
micro-batch), E experts, k experts per token, CF capacity factor, C capacity (token slots per
expert per group).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from moesim.errors import SpecError
from moesim.specs.model import CAPACITY_RULES


def expert_capacity(tokens: int, num_experts: int, top_k: int, capacity_factor: float | None,
                    rule: str = "switch", min_capacity: int = 0) -> int:
    """Token slots per expert per routing group.

    switch     : floor(t·CF/E), top-k ignored (Switch Eq. 3; Mesh-TF per group, rounded down)
    megatron   : ceil(t·k·CF/E)          (Megatron-Core moe_utils.get_capacity)
    megablocks : floor(t·k·CF/E)         (databricks/megablocks, expert capacity)
    dropless   : no bound; returns t·k (every token could land on one expert)
    Never below `min_capacity` (T5X min_expert_capacity; DeepSpeed min_capacity).
    """
    if rule not in CAPACITY_RULES:
        raise SpecError(f"unknown capacity rule '{rule}'", field="capacity_rule", value=rule, allowed=CAPACITY_RULES)
    if rule == "dropless" or capacity_factor is None:
        return tokens * top_k
    if rule == "switch":
        capacity = math.floor(tokens * capacity_factor / num_experts)
    elif rule == "megatron":
        capacity = math.ceil(tokens * top_k * capacity_factor / num_experts)
    else:
        capacity = math.floor(tokens * top_k * capacity_factor / num_experts)
    return max(capacity, min_capacity)


def expert_capacity_array(tokens: np.ndarray, num_experts: int, top_k: int, capacity_factor: np.ndarray,
                          rule: str = "switch", min_capacity: int = 0) -> np.ndarray:
    """`expert_capacity` over arrays; NaN capacity factor means dropless (capacity = t·k)."""
    tokens = np.asarray(tokens, dtype=float)
    cf = np.asarray(capacity_factor, dtype=float)
    if rule == "switch":
        cap = np.floor(tokens * cf / num_experts + 1e-9)
    elif rule == "megatron":
        cap = np.ceil(tokens * top_k * cf / num_experts - 1e-9)
    else:
        cap = np.floor(tokens * top_k * cf / num_experts + 1e-9)
    cap = np.maximum(cap, min_capacity)
    dropless = np.isnan(cf) | (rule == "dropless")
    return np.where(dropless, tokens * top_k, cap)


def expected_drop_fraction(tokens: int, num_experts: int, top_k: int, capacity: int) -> float:
    """Expected fraction of token-expert assignments dropped under uniform routing.

    Each expert's load X ~ Binomial(m = t·k, 1/E); dropped = E[(X − C)+] / E[X]
    (../shared/reference/modeling.md §5.4 [derived]; exact binomial sum, no normal approximation).
    """
    m = tokens * top_k
    if m == 0:
        return 0.0
    p = 1.0 / num_experts
    mean = m * p
    if capacity >= m:
        return 0.0
    # The pmf beyond mean ± 40σ is below 1e-300: sum only that window (issue #14: a sum over all m
    # assignments allocated tens of GiB for a batch of 2^64). Above the window's lower end the sum
    # is E[(X − C)+] directly; below it, E[X] − C + E[(C − X)+], whose terms all lie in the window.
    sigma = math.sqrt(mean * (1 - p))
    low, high = max(0, math.floor(mean - 40 * sigma)), min(m, math.ceil(mean + 40 * sigma) + 1)
    # a window wider than 2e6 points (σ > 25,000) is summed every `step` points: a Riemann sum of a
    # pmf that is smooth on that scale
    step = max(1, math.ceil((high - low) / 2e6))
    if capacity + 1 >= low:
        x = np.arange(capacity + 1, high + 1, step)
        overflow = float(np.sum((x - capacity) * stats.binom.pmf(x, m, p))) * step
    else:
        x = np.arange(low, capacity + 1, step)
        overflow = mean - capacity + float(np.sum((capacity - x) * stats.binom.pmf(x, m, p))) * step
    return min(1.0, max(0.0, overflow / mean))  # a fraction: rounding may not push it past 1 (1.0000000000000004)


def expected_max_load(tokens: int, num_groups: int, top_k: int = 1) -> float:
    """E[max_i X_i] for m = t·k assignments spread uniformly over `num_groups` bins, X_i ~ Bin(m, 1/n).

    E[max] = Σ_x P(max > x) = Σ_x (1 − F(x)^n), treating the bins as independent (the balls-into-
    bins extreme value, Raab & Steger, RANDOM'98, whose leading term is μ + σ·√(2 ln n));
    summed over μ ± 12σ. Used for the dropless straggler factor (modeling.md §5.4).
    """
    m = tokens * top_k
    if num_groups <= 1:
        return float(m)
    p = 1.0 / num_groups
    mean = m * p
    sigma = math.sqrt(mean * (1 - p))
    low = max(0, int(mean - 12 * sigma) - 1)
    high = min(m, int(mean + 12 * sigma) + 2)
    x = np.arange(low, high + 1)
    tail = 1.0 - stats.binom.cdf(x, m, p) ** num_groups
    return float(low + np.sum(tail))
