"""Prediction error of a collective model against an nccl-tests log, per message size, as busbw.

Error of one size = predicted busbw / measured busbw − 1 = measured time / predicted time − 1 (the busbw
factor cancels), taken on the faster of the out-of-place and in-place rows (nccl-tests prints both;
the faster one is the collective's time with less launch and scheduling noise). MAPE is the mean
absolute error over the sizes at or above LARGE_BYTES (1 MiB) and, separately, below it.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def log_error(points: tuple[CollectivePoint, ...], hardware: HardwareProfile, model=None) -> LogError:
    """Busbw error of `model` (default: the hardware's default collective model) on one log's points."""
    if not points:
        raise SpecError("no collective points to compare")
    if len({(p.op, p.group_size) for p in points}) != 1:
        raise SpecError("one log's points must share the collective and the group size")
    model = model or default_model(hardware)
    sizes = []
    for p in best_per_size(points):
        cost = model.cost(p.op, p.size_bytes, Group(size=p.group_size, devices=p.group_size))
        sizes.append(SizeError(p.size_bytes, p.time_s, cost.time_s, cost.algorithm))
    return LogError(points[0].op, points[0].group_size, tuple(sizes))
