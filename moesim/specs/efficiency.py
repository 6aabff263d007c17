"""Achieved fractions of peak: by problem size (EfficiencyTable: matmul FLOP per kernel, link bytes per message), by
operator shape (OpTable, the OP_* names its points and files use) and a chip's whole compute efficiency
(ComputeEfficiency). Split out of specs/hardware.py (session 11, tidy: a pure move)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property

from moesim.errors import SpecError
from moesim.specs.dtypes import DTYPES
from moesim.specs.ranges import check_ranges


@dataclass(frozen=True)
class EfficiencyTable:
    """Fraction of peak achieved as a function of problem size: [(size, efficiency), ...].

    Interpolated linearly in log(size), clamped at both ends (Calculon-style step tables,
    `calculon-ai/calculon: systems/a100_80g.json`). Size is FLOP per kernel for compute and
    bytes per message for links.
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise SpecError("an efficiency table needs at least one [size, efficiency] point")
        sizes = [p[0] for p in self.points]
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise SpecError(f"efficiency table sizes must increase strictly, got {sizes}")
        for size, eff in self.points:
            if not 0 < size < math.inf or not 0 < eff <= 1:
                raise SpecError(f"efficiency point [{size}, {eff}] needs size > 0 and 0 < efficiency <= 1")

    @classmethod
    def constant(cls, efficiency: float) -> "EfficiencyTable":
        return cls(((1.0, efficiency),))

    def at(self, size: float) -> float:
        """Efficiency at `size` (log-linear interpolation, clamped)."""
        pts = self.points
        if size <= pts[0][0]:
            return pts[0][1]
        if size >= pts[-1][0]:
            return pts[-1][1]
        sizes, logs = self._sizes_logs
        i = bisect.bisect_right(sizes, size)
        (_, e0), (_, e1) = pts[i - 1], pts[i]
        w = (math.log(size) - logs[i - 1]) / (logs[i] - logs[i - 1])
        return e0 + w * (e1 - e0)

    @cached_property
    def _sizes_logs(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The points' sizes and their logs, for `at` (computed once per table: it runs for every priced message)."""
        sizes = tuple(p[0] for p in self.points)
        return sizes, tuple(math.log(s) for s in sizes)

    def at_array(self, sizes):
        """`at` over a numpy array of sizes."""
        import numpy as np

        sizes = np.maximum(np.asarray(sizes, dtype=float), 1e-30)
        log_sizes = np.log([p[0] for p in self.points])
        return np.interp(np.log(sizes), log_sizes, [p[1] for p in self.points])


OP_KINDS = ("gemm", "grouped_gemm", "attention", "memory")
OP_PASSES = ("fwd", "dgrad", "wgrad", "bwd", "any")
# Shape coordinates of each operator kind's table, in the order a point lists them (moesim/ops/base.py).
OP_DIMS = {"gemm": ("m", "n", "k"), "grouped_gemm": ("groups", "m", "n", "k"),
           "attention": ("seq_len", "batch_heads", "head_dim"), "memory": ("bytes",)}
OP_STATUS = ("measured", "derived", "assumed")


@dataclass(frozen=True, kw_only=True)
class OpTable:
    """Measured fraction of peak (compute kinds) or of HBM bandwidth (memory) of one operator kind,
    dtype and pass, by shape: `points` are (coordinates in OP_DIMS[kind] order..., efficiency).

    moesim/ops/tables.py interpolates them linearly in log-shape space and takes the nearest measured
    shape outside their hull. `op` narrows a table to one operator name ("any": every operator of the
    kind; e.g. a memory table for "permute" only, an attention table for "block_sparse" masks)."""

    kind: str
    dtype: str
    points: tuple[tuple[float, ...], ...]
    pass_: str = "any"
    op: str = "any"
    status: str = "measured"
    measured_on: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        path = f"efficiency.op_table[{self.kind}/{self.dtype}/{self.pass_}]"
        if self.kind not in OP_KINDS:
            raise SpecError(f"unknown operator kind '{self.kind}'", field=f"{path}.kind", value=self.kind,
                            allowed=OP_KINDS)
        if self.dtype not in DTYPES:
            raise SpecError(f"unknown dtype '{self.dtype}'", field=f"{path}.dtype", value=self.dtype, allowed=DTYPES)
        if self.pass_ not in OP_PASSES:
            raise SpecError(f"unknown pass '{self.pass_}'", field=f"{path}.pass", value=self.pass_, allowed=OP_PASSES)
        if self.status not in OP_STATUS:
            raise SpecError(f"unknown status '{self.status}'", field=f"{path}.status", value=self.status,
                            allowed=OP_STATUS)
        if not self.points:
            raise SpecError("an operator table needs at least one point", field=f"{path}.points")
        width = len(OP_DIMS[self.kind]) + 1
        for point in self.points:
            if len(point) != width:
                raise SpecError(f"each point is [{', '.join(OP_DIMS[self.kind])}, efficiency]",
                                field=f"{path}.points", value=list(point))
            if any(not 0 < x < float("inf") for x in point[:-1]) or not 0 < point[-1] <= 2:  # NaN fails both
                raise SpecError("shape coordinates must be finite and > 0 and efficiency in (0, 2]",
                                field=f"{path}.points",
                                value=list(point))

    @property
    def dims(self) -> tuple[str, ...]:
        return OP_DIMS[self.kind]


@dataclass(frozen=True, kw_only=True)
class ComputeEfficiency:
    """Achieved fractions of peak: matmul by FLOP per kernel, memory-bound ops by HBM bandwidth; and the
    fixed host cost of one transformer layer per pass.

    `layer_overhead_s` is paid once per layer forward, once per layer backward (and once more when a
    layer is recomputed in full): kernel launches, host synchronisation of split sizes, framework
    dispatch (moesim reference modeling.md §6, "host overheads: per-layer fixed cost, calibrated";
    MCore token_dispatcher.py `_maybe_dtoh_and_synchronize`). Default 0; `moesim calibrate` fits it.
    """

    matmul: EfficiencyTable
    memory_bandwidth: float
    layer_overhead_s: float = 0.0
    source: str = ""
    # Per-operator measured tables (moesim/ops); `matmul` above prices any operator without one.
    op_tables: tuple[OpTable, ...] = ()
    kernel_launch_s: float = 0.0  # fixed cost of one kernel launch (moesim/ops: every operator pays it)
    op_tables_from: str = ""  # the profile whose op_tables were borrowed into op_tables ("": none)

    def __post_init__(self) -> None:
        check_ranges(self)
        if not 0 < self.memory_bandwidth <= 1:
            raise SpecError("memory_bandwidth efficiency must be in (0, 1]", field="efficiency.memory_bandwidth",
                            value=self.memory_bandwidth)
        if not 0 <= self.layer_overhead_s < math.inf:
            raise SpecError("layer overhead must be a finite number >= 0", field="efficiency.layer_overhead_s",
                            value=self.layer_overhead_s)
        if not 0 <= self.kernel_launch_s < math.inf:
            raise SpecError("kernel launch cost must be a finite number >= 0", field="efficiency.kernel_launch_us",
                            value=self.kernel_launch_s)
