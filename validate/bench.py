"""Benchmark one Switch layer configuration and build its ``"kind": "switch_layer"`` record body.

Each repeat runs two iterations on every rank:

- an *instrumented* one: every phase starts after a device synchronise + barrier and is timed on
  its own (``router_matmul``, ``router_gating``, ``dispatch_permute`` ... ``combine_unpermute``,
  ``backward``; ``router`` is router_matmul + router_gating on each rank); ``layer`` spans the whole
  forward+backward of that iteration (so it contains every phase plus the barriers between them);
  ``grad_sync`` (the data-parallel gradient all-reduces) is timed after it, outside ``layer``;
- a *free-running* one (``layer_unsynced``): forward+backward with synchronisation only before and
  after, the number to compare with a model's per-layer time.

With ``clock="cpu"`` (CPU only) the compute phases, ``backward`` and the layer totals are each rank's
CPU time (``time.thread_time``; validate/timing.py), collective phases stay wall-clock; the record
says which clock timed each phase (``clock``, ``phase_clocks``).

Per repeat and phase the slowest rank's time is kept (all-reduce MAX); the record holds the order
statistics of those per-repeat maxima.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict

import torch
import torch.distributed as dist

from validate import data
from validate.comm import gather_rows, parallel_groups
from validate.config import DTYPE_BYTES, LayerConfig
from validate.switch_layer import FORWARD_PHASES, ROUTER_PARTS, SwitchMoELayer
from validate.timing import CLOCKS, PhaseTimer, max_over_ranks, summarize

PHASES = FORWARD_PHASES[:1] + ROUTER_PARTS + FORWARD_PHASES[1:] + ("backward", "layer", "layer_unsynced",
                                                                    "grad_sync")


class Progress:
    """Where a benchmark is (for error messages): step text and the live phase timer."""

    def __init__(self) -> None:
        self.step = "setup"
        self.timer: PhaseTimer | None = None

    def describe(self) -> str:
        phase = self.timer.current if self.timer is not None else None
        return self.step + (f", phase '{phase}'" if phase else "")


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, kind): CUDA allocator peak since the last reset, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # getrusage(2): KiB on Linux, bytes on macOS
    return rss * scale, "cpu_ru_maxrss_process_peak"


def _iteration(layer: SwitchMoELayer, x: torch.Tensor, up: torch.Tensor, device: torch.device,
               instrumented: bool, progress: Progress, clock: str = "wall") -> dict[str, float]:
    """One forward+backward (+ gradient sync when instrumented); returns this rank's durations."""
    x.grad = None
    layer.zero_grad(set_to_none=True)
    timer = PhaseTimer(device, sync_phases=instrumented, clock=clock)
    progress.timer = timer
    with timer.phase("layer" if instrumented else "layer_unsynced", sync=True):
        out, aux = layer(x, timer if instrumented else None)
        with timer.phase("backward"):
            torch.autograd.backward([out, aux], [up, torch.ones_like(aux)])
    if instrumented:
        with timer.phase("grad_sync"):
            layer.sync_gradients()
    durations = timer.durations_s()
    if instrumented:
        durations[FORWARD_PHASES[0]] = sum(durations[p] for p in ROUTER_PARTS)
    else:
        durations.pop("backward")
    progress.timer = None
    return durations


def bench_layer(cfg: LayerConfig, device: torch.device, progress: Progress, clock: str = "wall") -> dict:
    """Run warm-up and timed repeats of ``cfg`` on all ranks; return the record body (all ranks).
    ``clock``: "wall" or "cpu" (module docstring)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.world_size != world:
        raise ValueError(f"config {cfg.name!r} needs world_size={cfg.world_size}, running {world}")
    dtype = data.TORCH_DTYPES[cfg.dtype]
    groups = parallel_groups(cfg.ep)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    layer = SwitchMoELayer(cfg, groups, device)
    x = data.tokens(cfg, rank).to(device, dtype).requires_grad_()
    up = data.upstream_grad(cfg, rank).to(device, dtype)

    for i in range(cfg.warmup):
        progress.step = f"warm-up {i + 1}/{cfg.warmup}"
        _iteration(layer, x, up, device, True, progress, clock)
        _iteration(layer, x, up, device, False, progress, clock)
    rows = []
    for i in range(cfg.repeats):
        progress.step = f"repeat {i + 1}/{cfg.repeats}"
        d = _iteration(layer, x, up, device, True, progress, clock)
        d.update(_iteration(layer, x, up, device, False, progress, clock))
        rows.append([d[p] for p in PHASES])
    progress.step = "gathering results"
    maxed = max_over_ranks(rows, device)
    phases = {p: summarize([row[j] for row in maxed]) for j, p in enumerate(PHASES)}

    st = layer.last_stats
    mem, mem_kind = peak_memory(device)
    per_rank = gather_rows([st.dispatch_bytes, st.dispatch_remote_bytes, st.kept, st.assignments,
                            st.received_rows, st.expert_flops_forward, mem], device)
    cols = list(zip(*per_rank))
    elem = DTYPE_BYTES[cfg.dtype]
    kept, assignments = sum(cols[2]), sum(cols[3])
    del layer, x, up

    def mx_mean(col: int) -> tuple[float, float]:
        return max(cols[col]), sum(cols[col]) / world

    return {
        "config": asdict(cfg),
        "derived": {
            "num_experts": cfg.num_experts, "ep_size": cfg.ep, "dp_size": cfg.dp,
            "capacity_per_expert_per_rank": cfg.capacity,
            "assignments_per_rank": cfg.tokens_per_rank * cfg.top_k, "element_bytes": elem,
        },
        "phases": phases,
        "clock": "cuda_events" if device.type == "cuda" else clock,
        "phase_clocks": {p: PhaseTimer(device, False, clock).clock_of(p) for p in PHASES},
        "bytes": {
            "dispatch_bytes_per_rank_max": int(mx_mean(0)[0]),
            "dispatch_bytes_per_rank_mean": mx_mean(0)[1],
            "dispatch_remote_bytes_per_rank_max": int(mx_mean(1)[0]),
            "dispatch_remote_bytes_per_rank_mean": mx_mean(1)[1],
            "combine_bytes_per_rank_max": int(mx_mean(4)[0]) * cfg.d_model * elem,
            "combine_bytes_per_rank_mean": mx_mean(4)[1] * cfg.d_model * elem,
            # Switch Fig. 3 / App. F: the padded [E, C, d] buffer a capacity-padded dispatch sends
            "dispatch_bytes_capacity_padded_per_rank": cfg.num_experts * cfg.capacity * cfg.d_model * elem,
            "dispatch_count_bytes_per_rank": cfg.num_experts * 8,
        },
        "tokens": {
            "assignments_total": int(assignments),
            "kept_assignments_total": int(kept),
            "received_rows_per_rank_max": int(mx_mean(4)[0]),
            "received_rows_per_rank_mean": mx_mean(4)[1],
        },
        "dropped_token_fraction": (assignments - kept) / assignments,
        "expert_flops_per_rank_forward": int(mx_mean(5)[0]),
        "expert_flops_per_rank_forward_mean": mx_mean(5)[1],
        "peak_memory_bytes": int(mx_mean(6)[0]),
        "peak_memory_kind": mem_kind,
        "status": "ok",
    }
