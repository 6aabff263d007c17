"""Prediction error of a collective model against an nccl-tests log, per message size, as busbw.

Error of one size = predicted busbw / measured busbw − 1 = measured time / predicted time − 1 (the busbw
factor cancels), taken on the faster of the out-of-place and in-place rows (nccl-tests prints both;
the faster one is the collective's time with less launch and scheduling noise). MAPE is the mean
absolute error over the sizes at or above LARGE_BYTES (1 MiB) and, separately, below it.

How the log was run is part of the prediction: nccl-tests times `iters` back-to-back calls with a host clock
(BenchTime: a `timer` around the loop of startColl calls, then one stream synchronize, divided by iters), so
the per-call time is the slower of the GPU's collective and the host's work per iteration. With `-g N` one
thread drives N GPUs and issues their N calls inside one ncclGroupStart/End per iteration (startColl), so
each iteration launches N kernels from one thread: host time per iteration >= N x the profile's
`efficiency.kernel_launch_us` (host dispatch cost of one kernel launch). The manifest key `gpus_per_thread`
(tests/data/nccl/logs.toml; 1 = one process or thread per GPU) carries N.
Source: NVIDIA/nccl-tests src/common.cu @358ca29 (v2.19.4) BenchTime / startColl; src/timer.cc (steady_clock).
This floor is a property of the benchmark, not of training (one process per GPU there): the collective
models do not see it.

What alltoall_perf runs is part of it too: one flat exchange, ncclSend + ncclRecv to every rank in one group
(ncclAlltoAll from NCCL 2.28), never a two-level (2DH) exchange, so an all-to-all log is priced with the
model's `pairwise` candidate where it has one; training's `nccl` dispatch backend may still pick 2DH.
Source: NVIDIA/nccl-tests src/alltoall.cu @a0b82b2 (v2.19.6) AlltoAllRunColl.
Both are priced by moesim/calibrate/bench_cost.py, which the fit uses too (predict.py, design.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.calibrate.bench_cost import check_gpus_per_thread, nccl_tests_time_s
from moesim.calibrate.records import CollectivePoint
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.specs.hardware import HardwareProfile

LARGE_BYTES = 2**20


@dataclass(frozen=True)
class SizeError:
    size_bytes: float
    measured_s: float
    predicted_s: float
    algorithm: str
    host_bound: bool = False  # the host's launches per iteration, not the collective, set predicted_s

    @property
    def busbw_error(self) -> float:
        return self.measured_s / self.predicted_s - 1


@dataclass(frozen=True)
class LogError:
    """Per-log busbw error: MAPE at >= 1 MiB and below, signed mean at >= 1 MiB, and every size."""

    op: str
    ranks: int
    sizes: tuple[SizeError, ...]

    def _mape(self, large: bool) -> float | None:
        errs = [abs(e.busbw_error) for e in self.sizes if (e.size_bytes >= LARGE_BYTES) == large]
        return sum(errs) / len(errs) if errs else None

    @property
    def mape_large(self) -> float | None:
        return self._mape(True)

    @property
    def mape_small(self) -> float | None:
        return self._mape(False)

    @property
    def signed_large(self) -> float | None:
        errs = [e.busbw_error for e in self.sizes if e.size_bytes >= LARGE_BYTES]
        return sum(errs) / len(errs) if errs else None


def best_per_size(points: tuple[CollectivePoint, ...]) -> list[CollectivePoint]:
    """The faster of each size's rows (out-of-place, in-place), in size order."""
    best: dict[float, CollectivePoint] = {}
    for p in points:
        if p.size_bytes not in best or p.time_s < best[p.size_bytes].time_s:
            best[p.size_bytes] = p
    return [best[s] for s in sorted(best)]


def log_error(points: tuple[CollectivePoint, ...], hardware: HardwareProfile, model=None,
              gpus_per_thread: int = 1) -> LogError:
    """Busbw error of `model` (default: the hardware's default collective model) on one log's points, each
    size predicted as max(collective time, host floor of `gpus_per_thread` launches per iteration)."""
    check_gpus_per_thread(gpus_per_thread)
    if not points:
        raise SpecError("no collective points to compare")
    if len({(p.op, p.group_size) for p in points}) != 1:
        raise SpecError("one log's points must share the collective and the group size")
    model = model or default_model(hardware)
    sizes = []
    for p in best_per_size(points):
        group = Group(size=p.group_size, devices=p.group_size)
        time_s, algorithm, host_bound = nccl_tests_time_s(model, hardware, p.op, p.size_bytes, group, gpus_per_thread)
        sizes.append(SizeError(p.size_bytes, p.time_s, time_s, algorithm, host_bound))
    return LogError(points[0].op, points[0].group_size, tuple(sizes))


def pct(x: float | None) -> str:
    """A fraction as a percent with one decimal, '-' for None (the calibrate reports' MAPE cells)."""
    return "-" if x is None else f"{x:.1%}"
