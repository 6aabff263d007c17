"""How nccl-tests runs a collective, priced: one helper for the per-log error (nccl_error.py) and the fit
(predict.py term_time_s, design.py probe), so both price an nccl-tests row the same way.

- alltoall_perf issues one flat exchange, ncclSend + ncclRecv to every rank in one group (ncclAlltoAll from
  NCCL 2.28), never a two-level (2DH) exchange: an all-to-all row is priced with the model's `pairwise`
  candidate where it has one (training's `nccl` dispatch backend may still pick 2DH).
  Source: NVIDIA/nccl-tests src/alltoall.cu @a0b82b2 (v2.19.6) AlltoAllRunColl.
- The per-call time is the slower of the GPU's collective and the host's work per iteration; with `-g N` one
  thread issues N kernel launches per iteration, so host time >= N x efficiency.kernel_launch_us.
  Source: NVIDIA/nccl-tests src/common.cu @358ca29 (v2.19.4) BenchTime / startColl.
"""

from __future__ import annotations

from moesim.calibrate.records import Measurements
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.specs.hardware import HardwareProfile


def check_gpus_per_thread(gpus_per_thread) -> int:
    """`gpus_per_thread` (nccl-tests -g N) as an integer >= 1, else a SpecError naming the field."""
    if isinstance(gpus_per_thread, bool) or not isinstance(gpus_per_thread, int) or gpus_per_thread < 1:
        raise SpecError("gpus_per_thread must be an integer >= 1 (nccl-tests -g N)", field="gpus_per_thread",
                        value=gpus_per_thread)
    return gpus_per_thread


def host_floor_s(hardware: HardwareProfile, gpus_per_thread: int) -> float:
    """Host time of one nccl-tests iteration: gpus_per_thread kernel launches from one thread (module doc)."""
    return gpus_per_thread * hardware.efficiency.kernel_launch_s


def benchmark_cost(model, op: str, size_bytes: float, group: Group) -> tuple[float, str]:
    """(time, algorithm) of the collective as nccl-tests runs it: the model's choice, except that an all-to-all is
    the flat pairwise exchange alltoall_perf issues (module doc) where the model offers that candidate."""
    if op == "all_to_all" and hasattr(model, "candidates"):
        flat = [c for c in model.candidates(op, size_bytes, group) if c.algorithm == "pairwise"]
        if flat:
            best = min(flat, key=lambda c: c.time_s)
            return best.time_s, best.label
    cost = model.cost(op, size_bytes, group)
    return cost.time_s, cost.algorithm


def nccl_tests_time_s(model, hardware: HardwareProfile, op: str, size_bytes: float, group: Group,
                      gpus_per_thread: int) -> tuple[float, str, bool]:
    """(seconds, algorithm, host-bound) of one nccl-tests row: max(benchmark_cost, host floor)."""
    time_s, algorithm = benchmark_cost(model, op, size_bytes, group)
    floor_s = host_floor_s(hardware, gpus_per_thread)
    return max(time_s, floor_s), algorithm, floor_s > time_s


def host_bound_rows(measurements: Measurements, hardware: HardwareProfile, gpus_per_thread: int = 1) -> set[int]:
    """Indices of the nccl-tests rows whose prior price is the host floor (gpus_per_thread launches per iteration
    above the collective: module doc), as log_error flags them. Left out of the fit, not down-weighted: their
    predicted time does not depend on any fitted figure, so they carry nothing about the links, and kept in
    they would only inflate the misfit scale that weighs the prior (solve.solve)."""
    model = default_model(hardware)
    out = set()
    for i, point in enumerate(measurements.collectives):
        if point.nccl_tests and point.group_size <= hardware.max_devices:
            group = Group(size=point.group_size, devices=point.group_size)
            if nccl_tests_time_s(model, hardware, point.op, point.size_bytes, group, gpus_per_thread)[2]:
                out.add(i)
    return out

