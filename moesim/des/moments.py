"""Moment-matched per-rank routing counts: dropless loads at cluster scale without visiting every token.

Notation (routing.py's): E experts on ep ranks (E/ep contiguous experts each), k experts per token, N
tokens a device routes in one MoE layer and micro-batch; c ∈ {0..E/ep}^ep the number of a token's k
experts on each rank (Σ_r c_r = k); μ = E[c], Σ = Cov(c) for one token of a layer.

A device's per-rank counts are X = Σ_{n ≤ N} c_n over its N iid tokens, so E[X] = N·μ and Cov(X) = N·Σ
exactly, and X is close to Normal(N·μ, N·Σ) when N is large (multivariate central limit theorem; with
N = 4096, k = 8 and 64 ranks each count averages 512). Dropless steps use nothing but X.

What is exact and what is not:
- μ and Σ are estimated once per layer from a pool of P tokens drawn with the exact per-token sampler
  (Gumbel race, node-limited or not): unbiased, with standard errors ~ sd(c_r)/√P. Under uniform
  popularity μ_r = k/ep by symmetry and is used exactly.
- X is then drawn as N·μ + √N·A·z, z ~ Normal(0, I), A·Aᵀ = Σ (Cholesky, zero pivots skipped), clipped at
  0 and rounded to integers (cumulative rounding) so that every device's counts sum to exactly N·k. Means and
  covariances match the per-token law up to the pool's estimation error and rounding; higher moments
  (skew, the far tail of the maximum load) are those of the normal approximation, not the exact law.
  tests/des/test_des_moments.py compares it with the per-token sampler (means, variances, max-load
  quantiles, Kolmogorov-Smirnov).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MOMENT_POOL_TOKENS = 8_192  # tokens per layer drawn with the exact sampler to estimate μ and Σ


@dataclass(frozen=True)
class RankMoments:
    """One layer's per-token rank-count moments: mean μ (ep,), a factor A (ep, ep) with A·Aᵀ = Σ, and k."""

    mean: np.ndarray
    factor: np.ndarray
    top_k: int
    pool_tokens: int


def rank_moments(per_expert: np.ndarray, ep: int, top_k: int, uniform: bool = False) -> RankMoments:
    """μ and a square root of Σ from per-token 0/1 expert choices (pool, E), summed per rank.

    `uniform`: the popularity is uniform, so μ_r = k/ep exactly (every rank holds E/ep equally likely experts)."""
    pool, num_experts = per_expert.shape
    grouped = per_expert.reshape(pool, ep, num_experts // ep)
    if np.issubdtype(grouped.dtype, np.integer) and grouped.shape[2] <= 16:
        # whole counts: slice by slice is exact and ~3x faster than numpy's reduction over a short last axis
        c = grouped[..., 0].copy()
        for j in range(1, grouped.shape[2]):
            c += grouped[..., j]
        c = c.astype(float)
    else:
        c = grouped.sum(axis=2).astype(float)
    mean = np.full(ep, top_k / ep) if uniform else c.mean(axis=0)
    cov = np.atleast_2d(np.cov(c, rowvar=False)) if pool > 1 else np.zeros((ep, ep))
    return RankMoments(mean=mean, factor=psd_cholesky(cov), top_k=top_k, pool_tokens=pool)


def psd_cholesky(cov: np.ndarray, tolerance: float = 1e-10) -> np.ndarray:
    """Lower-triangular L with L·Lᵀ = cov for a positive semi-definite cov (Cholesky-Banachiewicz, column by
    column; a pivot at most `tolerance` × the largest variance leaves its column zero, as a singular Σ - rows
    summing to 0, every token taking exactly k experts - needs). Plain numpy: LAPACK's threads cost more
    than the 64 × 64 factorisation on a busy machine."""
    n = len(cov)
    out = np.zeros_like(cov, dtype=float)
    floor = tolerance * max(float(np.max(np.diag(cov))), 0.0)
    for j in range(n):
        pivot = cov[j, j] - np.sum(out[j, :j] ** 2)
        if pivot <= floor:
            continue
        out[j, j] = root = np.sqrt(pivot)
        out[j + 1:, j] = (cov[j + 1:, j] - (out[j + 1:, :j] * out[j, :j]).sum(axis=1)) / root
    return out


def sample_rank_counts(tokens: int, moments: RankMoments, rng: np.random.Generator, groups: int) -> np.ndarray:
    """Per-rank counts (groups, ep) of `tokens` tokens: Normal(N·μ, N·Σ) rounded to integers summing to N·k."""
    ep = len(moments.mean)
    z = rng.standard_normal((groups, ep))
    # numpy's own loops, not BLAS: a threaded BLAS on a small product thrashes on a busy machine (10x slower)
    x = tokens * moments.mean + np.sqrt(tokens) * np.einsum("gj,rj->gr", z, moments.factor, optimize=False)
    return round_to_total(np.clip(x, 0.0, None), tokens * moments.top_k)


def round_to_total(x: np.ndarray, total: int) -> np.ndarray:
    """Rows of non-negative reals to non-negative integers summing to `total`.

    Cumulative rounding: entry j is round(x_1 + ... + x_j) − round(x_1 + ... + x_{j−1}), the last partial sum
    set to `total`, so every entry is within 1 of x_j (the last also takes up the row's own shortfall) and
    no sort is needed. Rows where that leaves a negative entry (clipping pushed the row past `total`) are
    rounded by largest remainder instead, the excess taken one unit at a time from their largest entries."""
    edges = np.floor(np.cumsum(x, axis=1) + 0.5)
    edges[:, -1] = total
    out = np.diff(edges, axis=1, prepend=0.0)
    for r in np.flatnonzero((out < 0).any(axis=1)):
        out[r] = _largest_remainder(x[r], total)
    return out


def _largest_remainder(x: np.ndarray, total: int) -> np.ndarray:
    """One row to non-negative integers summing to `total` (Hamilton's method, then the excess from the largest)."""
    out = np.floor(x)
    gap = int(total - out.sum())
    for j in np.argsort(out - x, kind="stable")[:max(gap, 0)]:
        out[j] += 1
    gap = int(total - out.sum())
    while gap != 0:
        j = int(np.argmax(out)) if gap < 0 else int(np.argmin(out - x))
        out[j] += 1 if gap > 0 else -1
        gap += -1 if gap > 0 else 1
    return out


__all__ = ["MOMENT_POOL_TOKENS", "RankMoments", "psd_cholesky", "rank_moments", "round_to_total", "sample_rank_counts"]
