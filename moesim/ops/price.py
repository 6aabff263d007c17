"""Pricing operators from a hardware profile, over arrays of candidates.

  compute (gemm, grouped_gemm, attention)  t = flops / (peak[dtype] · η) + kernels · t_launch
  memory                                   t = bytes / (HBM bandwidth · η_mem) + kernels · t_launch
  host                                     t = time_s
η is the profile's operator table for the kind, dtype and pass at the operator's shape
(moesim.ops.tables); without one, the FLOP-keyed `efficiency.matmul` at `fallback_kernel_flops`
(compute) or `efficiency.memory_bandwidth` (memory). t_launch is `efficiency.kernel_launch_us`.
"""

from __future__ import annotations

import numpy as np

from moesim.ops.base import Op
from moesim.ops.sm_share import SHARED_KINDS, shared_extra_s
from moesim.ops.tables import select_table, table_efficiency
from moesim.specs.hardware import HardwareProfile


def op_efficiency(op: Op, hw: HardwareProfile) -> np.ndarray | float:
    """Fraction of peak (compute) or of HBM bandwidth (memory) the operator achieves."""
    names = (op.name, op.mask) if op.kind == "attention" else (op.name,)
    dtype = op.dtype
    if op.meta:
        if "table_op" in op.meta:  # an operator priced by another's measured table (moesim/ops/layer.py)
            names = names + (op.meta["table_op"],)
        # a kernel no table of its dtype measures reads another dtype's table (LayerOps.expert_gemm), at its own peak
        dtype = op.meta.get("table_dtype", dtype)
    table = select_table(hw.efficiency.op_tables, op.kind, dtype, op.pass_, names)
    if table is None and dtype == "float8" and op.kind != "memory" and op.pass_ != "fwd":
        # --- issue 12 (modern): an FP8 dgrad / wgrad without a table of its pass reads the FP8 forward table at
        # its own shape (base.backward_ops: dgrad (m, k, n), wgrad (k, n, m)); a GEMM kernel is keyed by M×N×K,
        # and DeepGEMM's H800 tables time the FP8 kernel DeepSeek-V3 runs in all three passes (§3.3.1).
        table = select_table(hw.efficiency.op_tables, op.kind, dtype, "fwd", names)
    if table is None and dtype == "float8" and op.kind != "memory":
        # No FP8 table: an FP8 kernel is taken to reach the fraction of the FP8 peak that the BF16 kernel of
        # the same shape reaches of the BF16 peak (precision, issue 12; DeepGEMM's H800 FP8 GEMMs reach 1426
        # of 1979 TFLOPS at 4096×7168×16384, wave2.md §7.2, about BF16's large-GEMM fraction). Without it an
        # FP8 operator would fall back to the FLOP-keyed prior while its BF16 twin reads a measured table.
        table = select_table(hw.efficiency.op_tables, op.kind, "bfloat16", op.pass_, names)
    if table is not None:
        return table_efficiency(table, op.shape)
    if op.kind == "memory":
        return hw.efficiency.memory_bandwidth
    size = op.fallback_kernel_flops if op.fallback_kernel_flops is not None else op.flops
    return hw.efficiency.matmul.at_array(size)


def op_time_s(op: Op, hw: HardwareProfile) -> np.ndarray | float:
    """Seconds for `op` on `hw` (module docstring)."""
    if op.kind == "host":
        return op.time_s
    launch = op.launch_count * hw.efficiency.kernel_launch_s if hw.efficiency.kernel_launch_s else 0.0
    if op.kind == "memory":
        return op.bytes / (hw.chip.hbm_bw_bytes_per_s * op_efficiency(op, hw)) + launch
    return op.flops / (hw.chip.peak_for(op.dtype) * op_efficiency(op, hw)) + launch


def ops_time_by_part(ops: list[Op], hw: HardwareProfile, n: int) -> dict[str, np.ndarray]:
    """Σ op_time_s per stage part, as (n,) arrays, in first-seen order."""
    out: dict[str, np.ndarray] = {}
    for op in ops:
        t = np.asarray(op_time_s(op, hw), dtype=float)
        t = t if t.shape == (n,) else np.broadcast_to(t, (n,))  # most are (n,) already: no view to build
        out[op.part] = out[op.part] + t if op.part in out else t.copy()
    return out


def ops_time_by_part_shared(ops: list[Op], hw: HardwareProfile, n: int,
                            share) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(Σ op_time_s per stage part, the same with the operators at `share` of the chip's SMs: moesim.ops.sm_share),
    as (n,) arrays in first-seen order; each operator is priced once, the shared kinds' extra added per part."""
    out: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    launch_s = hw.efficiency.kernel_launch_s or 0.0
    for op in ops:
        t = np.asarray(op_time_s(op, hw), dtype=float)
        t = t if t.shape == (n,) else np.broadcast_to(t, (n,))
        out[op.part] = out[op.part] + t if op.part in out else t.copy()
        if op.kind in SHARED_KINDS:
            e = shared_extra_s(t, op.launch_count * launch_s, share)
            extra[op.part] = extra[op.part] + e if op.part in extra else e
    return out, {p: out[p] + extra[p] if p in extra else out[p] for p in out}
