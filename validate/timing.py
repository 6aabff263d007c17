"""Phase timers, cross-rank synchronisation and order statistics.

On CUDA a phase is bracketed by ``torch.cuda.Event`` records and read after a device synchronise;
on CPU by ``time.perf_counter`` (the wall clock, ``clock="wall"``, the default) or, with
``clock="cpu"``, by ``time.thread_time``: the CPU time of the calling thread, which is what the
phase costs on an idle core (time other processes hold the core is not counted; on a box shared by
many jobs wall-clock phases inflate 2-10x). Phases in ``WAIT_PHASES`` (collectives, which wait for
their peers) keep the wall clock under either clock. Under the CPU clock a phase that holds a gloo
collective inside it (``backward``, ``layer``) counts only the calling thread's work: gloo runs the
exchange on its own threads while the caller waits, so neither the wire time nor the wait is in it
(moesim/calibrate/predict.py leaves the collectives out of those phases for such records).
With ``sync_phases`` every phase starts after a device synchronise plus a barrier, so all ranks
enter it together and the previous phase's GPU work is finished.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist

CLOCKS = ("wall", "cpu")
# Phases that are collectives (they wait for their peers): timed by the wall clock under every clock.
WAIT_PHASES = ("dispatch_a2a", "combine_a2a", "grad_sync")


def synchronize(device: torch.device, group=None) -> None:
    """Wait for this device's queued work, then for every rank of ``group`` (barrier)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier(group=group)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """Records named phase intervals of one iteration on this rank.

    ``current`` names the phase in progress (used to say where a collective hung).
    """

    def __init__(self, device: torch.device, sync_phases: bool, clock: str = "wall"):
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        if clock == "cpu" and device.type == "cuda":
            raise ValueError("clock 'cpu' times CPU work; on CUDA the phases are timed by CUDA events")
        self.device = device
        self.sync_phases = sync_phases
        self.clock = clock
        self.current: str | None = None
        self._marks: dict[str, tuple[object, object]] = {}

    def _mark(self, name: str = "") -> object:
        if self.device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        if self.clock == "cpu" and name not in WAIT_PHASES:
            return time.thread_time()
        return time.perf_counter()

    def clock_of(self, name: str) -> str:
        """Which clock timed phase ``name``: "cuda_events", "wall" or "cpu"."""
        if self.device.type == "cuda":
            return "cuda_events"
        return "cpu" if self.clock == "cpu" and name not in WAIT_PHASES else "wall"

    @contextlib.contextmanager
    def phase(self, name: str, sync: bool | None = None) -> Iterator[None]:
        """Time the body as phase ``name``; ``sync`` overrides ``sync_phases`` for this phase."""
        outer = self.current
        self.current = name
        if self.sync_phases if sync is None else sync:
            synchronize(self.device)
        start = self._mark(name)
        yield
        self._marks[name] = (start, self._mark(name))
        self.current = outer

    def durations_s(self) -> dict[str, float]:
        """Seconds per recorded phase (synchronises the device on CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return {k: s.elapsed_time(e) / 1e3 for k, (s, e) in self._marks.items()}
        return {k: e - s for k, (s, e) in self._marks.items()}


class NullTimer:
    """A timer that records nothing (used when the layer runs untimed)."""

    current: str | None = None

    @contextlib.contextmanager
    def phase(self, name: str, sync: bool | None = None) -> Iterator[None]:
        yield


def max_over_ranks(rows: Sequence[Sequence[float]], device: torch.device, group=None) -> list[list[float]]:
    """Element-wise MAX over ranks of a [repeats][phases] table (the slowest rank sets the time)."""
    t = torch.tensor(rows, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return t.cpu().tolist()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method), ``q`` in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Median, p10, p90, min, max, mean (seconds) and count of per-repeat samples."""
    s = sorted(samples_s)
    return {
        "median_s": percentile(s, 50.0),
        "p10_s": percentile(s, 10.0),
        "p90_s": percentile(s, 90.0),
        "min_s": s[0],
        "max_s": s[-1],
        "mean_s": sum(s) / len(s),
        "n": len(s),
    }
