"""Expert capacity and dropped tokens: pure formulas shared by the estimate, the simulator and validate.

Notation: t tokens in one routing group (one source device's tokens for one MoE layer and
micro-batch), E experts, k experts per token, CF capacity factor, C capacity (token slots per
expert per group).
"""

from __future__ import annotations

import math

import numpy as np

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


def capacity_floor_note(tokens: int, num_experts: int, top_k: int, capacity_factor: float | None, rule: str,
                        min_capacity: int) -> str | None:
    """When the floor `min_capacity` raises the capacity the rule gives (so the capacity factor sets nothing), a
    sentence saying so, with the factor from which the rule alone would reach the floor; None otherwise."""
    if rule == "dropless" or capacity_factor is None or not min_capacity:
        return None
    raw = expert_capacity(tokens, num_experts, top_k, capacity_factor, rule)
    if raw >= min_capacity:
        return None
    per_expert = tokens * (1 if rule == "switch" else top_k) / num_experts  # slots per unit of capacity factor
    # floor rules reach the floor at CF >= m / per_expert; megatron's ceil above (m - 1) / per_expert
    lift = (f"from capacity factor {min_capacity / per_expert:.4g} on" if rule != "megatron"
            else f"above capacity factor {(min_capacity - 1) / per_expert:.4g}")
    return (f"capacity factor {capacity_factor:g} gives {raw} slot{'' if raw == 1 else 's'} per expert per routing "
            f"group of {tokens:,} tokens ({rule} rule, {num_experts:,} experts), below min_expert_capacity "
            f"{min_capacity}: {min_capacity} are used, so the capacity factor sets nothing here (the rule alone "
            f"reaches {min_capacity} {lift})")


def stack_floor_notes(moe, moe_info: dict) -> dict[str, str]:
    """capacity_floor_note for each stack of an estimate's `moe` JSON (`moe_info`: an encoder-decoder's
    moe.by_stack, whose decoder routes groups of its own; else its top-level figures under the key ""), keyed by
    stack; only the stacks whose floor binds. `moe` is the model's MoESpec."""
    stacks = moe_info.get("by_stack") or {"": moe_info}
    notes = {stack: capacity_floor_note(int(figures["routing_group_tokens"]), moe.num_experts, moe.top_k,
                                        moe_info["capacity_factor"], moe.capacity_rule, moe.min_expert_capacity)
             for stack, figures in stacks.items()}
    return {stack: note for stack, note in notes.items() if note}


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


# Above this expected share of dropped assignments a capacity rule is worth a warning: Switch saw
# "typically < 1%" of tokens dropped (Switch Transformers, arXiv 2101.03961, §2.2), so a few per cent
# under uniform routing means the rule and capacity factor, not the routing, are the cause.
DROP_WARNING_FRACTION = 0.02


def drop_warning(moe, drop_fraction: float | None, capacity_factor: float | None) -> str | None:
    """A one-line warning when the capacity rule drops more than DROP_WARNING_FRACTION of the token-expert
    assignments under uniform routing (None otherwise); names the Switch rule's top-k blind spot."""
    if drop_fraction is None or drop_fraction <= DROP_WARNING_FRACTION:
        return None
    text = (f"capacity rule '{moe.capacity_rule}' at capacity factor {capacity_factor:g} drops {drop_fraction:.1%} "
            f"of token-expert assignments under uniform routing (model FLOPs and MFU count only those processed)")
    if moe.capacity_rule == "switch" and moe.top_k > 1:
        text += (f"; the switch rule sizes capacity as floor(t·CF/E), ignoring top_k = {moe.top_k}: rule "
                 f"'megatron' or 'megablocks' counts k, or raise the capacity factor about {moe.top_k}x")
    return text


def binom_pmf(x: np.ndarray, m: int, p: float) -> np.ndarray:
    """scipy.stats.binom.pmf(x, m, p) for integer x in 0..m, bit for bit, through the ufunc it calls (Boost's binomial
    pdf, scipy.special._ufuncs._binom_pmf: scipy/stats/_discrete_distns.py binom_gen._pmf, scipy 1.17) without
    importing scipy.stats: that import was most of a cold `moesim search` (session 16, newcomer2). A scipy without
    the ufunc takes scipy.stats."""
    try:
        from scipy.special._ufuncs import _binom_pmf
    except ImportError:
        from scipy import stats  # here, not at the top: importing scipy.stats is most of `moesim`'s start (calspeed)

        return stats.binom.pmf(x, m, p)
    return np.clip(_binom_pmf(x, m, p), 0, 1)  # rv_discrete.pmf clips too


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
        overflow = float(np.sum((x - capacity) * binom_pmf(x, m, p))) * step
    else:
        x = np.arange(low, capacity + 1, step)
        overflow = mean - capacity + float(np.sum((capacity - x) * binom_pmf(x, m, p))) * step
    return min(1.0, max(0.0, overflow / mean))  # a fraction: rounding may not push it past 1 (1.0000000000000004)


def expected_drop_fraction_array(tokens: np.ndarray, num_experts: int, top_k: int, capacity: np.ndarray,
                                 dropless: np.ndarray) -> np.ndarray:
    """`expected_drop_fraction` over arrays (each distinct (tokens, capacity) pair computed once);
    0 where `dropless`."""
    tokens, capacity, dropless = np.broadcast_arrays(np.floor(np.asarray(tokens, dtype=float)),
                                                     np.asarray(capacity, dtype=float), np.asarray(dropless))
    out = np.zeros(tokens.shape)
    pairs = np.stack([tokens[~dropless], capacity[~dropless]], axis=1)
    if len(pairs):
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        values = np.array([expected_drop_fraction(int(t), num_experts, top_k, int(c)) for t, c in unique])
        out[~dropless] = values[inverse.reshape(-1)]
    return out


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
    from scipy import stats  # (as in expected_drop_fraction)

    tail = 1.0 - stats.binom.cdf(x, m, p) ** num_groups
    return float(low + np.sum(tail))
