"""Collective micro-benchmarks over the whole world: time vs message size, plus an alpha-beta fit.

Message size ``bytes`` follows nccl-tests (doc/PERFORMANCE.md): the buffer for all_reduce, the
full gathered output for all_gather, the full input for reduce_scatter, and the per-rank send
buffer for all_to_all_single (equal splits). Sizes are rounded down to a multiple of
world_size * element size (at least one element per rank).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch
import torch.distributed as dist

from validate.bench import Progress
from validate.config import DTYPE_BYTES, CollectiveConfig
from validate.data import TORCH_DTYPES
from validate.timing import PhaseTimer, max_over_ranks, summarize


def bus_factor(op: str, n: int) -> float:
    """nccl-tests busbw = algbw * factor: 2(n-1)/n for all-reduce, (n-1)/n for AG, RS, A2A."""
    if op == "all_reduce":
        return 2 * (n - 1) / n          # nccl-tests PERFORMANCE.md, AllReduce
    return (n - 1) / n                  # nccl-tests PERFORMANCE.md, AllGather/ReduceScatter/AlltoAll


def _make_op(op: str, numel: int, dtype: torch.dtype, device: torch.device, world: int) -> Callable[[], None]:
    """Allocate buffers for ``op`` with ``numel`` elements of message and return a closure."""
    zeros = lambda n: torch.zeros(n, dtype=dtype, device=device)  # noqa: E731 (zeros keep sums finite)
    if op == "all_to_all_single":
        src, dst = zeros(numel), zeros(numel)
        return lambda: dist.all_to_all_single(dst, src)
    if op == "all_reduce":
        buf = zeros(numel)
        return lambda: dist.all_reduce(buf)
    if op == "all_gather":
        src, dst = zeros(numel // world), zeros(numel)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: gather(dst, src)
    if op == "reduce_scatter":
        src, dst = zeros(numel), zeros(numel // world)
        scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        return lambda: scatter(dst, src)
    raise ValueError(f"unknown collective op {op!r}")


def alpha_beta_fit(points: list[dict]) -> dict | None:
    """Fit median_s = alpha_s + beta_s_per_byte * bytes by least squares weighted 1/median_s^2.

    Hockney model (modeling.md §0: alpha latency, beta = 1/W per byte); relative weighting keeps the
    small-message (latency) points from being swamped by the large ones.
    """
    if len(points) < 2:
        return None
    s = [float(p["bytes"]) for p in points]
    t = [p["median_s"] for p in points]
    w = [1.0 / ti ** 2 for ti in t]
    a, b = sum(w), sum(wi * si for wi, si in zip(w, s))
    c = sum(wi * si * si for wi, si in zip(w, s))
    d = sum(wi * ti for wi, ti in zip(w, t))
    f = sum(wi * si * ti for wi, si, ti in zip(w, s, t))
    det = a * c - b * b
    if det <= 0:
        return None
    alpha = (c * d - b * f) / det
    beta = (a * f - b * d) / det
    resid = max(abs(alpha + beta * si - ti) / ti for si, ti in zip(s, t))
    return {
        "alpha_s": alpha,
        "beta_s_per_byte": beta,
        "bandwidth_bytes_per_s": 1.0 / beta if beta > 0 else None,
        "max_rel_residual": resid,
        "method": "weighted least squares, median_s = alpha_s + beta_s_per_byte * bytes, weights 1/median_s^2",
    }


def bench_collective(cc: CollectiveConfig, device: torch.device, progress: Progress) -> dict:
    """Time ``cc.op`` for every size over the default group; return the record body (all ranks)."""
    world = dist.get_world_size()
    elem = DTYPE_BYTES[cc.dtype]
    dtype = TORCH_DTYPES[cc.dtype]
    points, seen = [], set()
    for size in cc.sizes_bytes:
        numel = max(world, size // (elem * world) * world)
        if numel in seen:
            continue
        seen.add(numel)
        run = _make_op(cc.op, numel, dtype, device, world)
        progress.step = f"{cc.op} {numel * elem} B warm-up"
        for _ in range(cc.warmup):
            run()
        rows = []
        for i in range(cc.repeats):
            progress.step = f"{cc.op} {numel * elem} B repeat {i + 1}/{cc.repeats}"
            timer = PhaseTimer(device, sync_phases=True)
            progress.timer = timer
            with timer.phase(cc.op):
                run()
            rows.append([timer.durations_s()[cc.op]])
        progress.timer = None
        maxed = [r[0] for r in max_over_ranks(rows, device)]
        stats = summarize(maxed)
        nbytes = numel * elem
        algbw = nbytes / stats["median_s"]
        points.append({"bytes": nbytes, "requested_bytes": size, **stats,
                       "algbw_bytes_per_s": algbw,
                       "busbw_bytes_per_s": algbw * bus_factor(cc.op, world)})
        del run
    return {
        "config": asdict(cc),
        "points": points,
        "fit": alpha_beta_fit(points),
        "bus_factor": bus_factor(cc.op, world),
        "status": "ok",
    }
