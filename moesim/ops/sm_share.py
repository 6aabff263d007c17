"""Compute on the SMs a communication kernel leaves free.

DeepEP's normal dispatch / combine kernels hold a fixed number of SMs while they run (DeepSeek-V3 trains with 20
of the H800's 132 given to them, report §3.2.2), and DualPipe runs a forward chunk's compute beside another
micro-batch's all-to-alls (§3.2.1, Figure 4). A compute-bound kernel (GEMM, grouped GEMM) launched beside them gets
the SMs left: DeepGEMM's kernels in DeepSeek's H800 trace run 112 CTAs, one per SM left (docs/collectives-history.md,
Session 19 dsv3gap). Such a kernel runs at (SMs − comm SMs) / SMs of its full-chip throughput; its launch cost is
the same. Memory-bound operators and the attention core keep their price: no source gives HBM bandwidth or the
attention kernel's rate on fewer SMs (the H800 attention tables were measured beside DeepEP already).
"""

from __future__ import annotations

from moesim.collectives.dispatch import normal_kernel_sms
from moesim.specs.hardware import HardwareProfile
from moesim.specs.training import TrainingSpec

SHARED_KINDS = ("gemm", "grouped_gemm")  # the operator kinds priced at the SMs left (compute-bound GEMMs)
SHARING_BACKENDS = ("deepep",)  # DeepEP's normal kernels hold SMs; its low-latency kernels use none (hook-based)


def compute_share(sm_count: int, comm_sms: int) -> float:
    """Fraction of the chip's SMs left to compute while a communication kernel holds `comm_sms` of `sm_count`:
    (SMs − comm SMs) / SMs (DeepSeek-V3 arXiv 2412.19437 §3.2.2: 20 of 132 SMs for communication)."""
    if not 0 <= comm_sms < sm_count:
        raise ValueError(f"communication SMs must be in [0, sm_count): {comm_sms} of {sm_count}")
    return (sm_count - comm_sms) / sm_count


def overlapped_compute_share(hw: HardwareProfile, tr: TrainingSpec) -> float:
    """The compute share of an operator running beside the scenario's expert all-to-all: DeepEP's normal kernels'
    SMs (deepep.toml [sms]) out of the profile's `chip.sm_count`; 1.0 (full chip) for any other dispatch backend or
    a profile without an SM count."""
    if tr.dispatch_backend not in SHARING_BACKENDS or hw.chip.sm_count is None:
        return 1.0
    return compute_share(hw.chip.sm_count, normal_kernel_sms())


def shared_extra_s(time_s, launch_s, share):
    """What a SHARED_KINDS operator of `time_s` (launches `launch_s` of it) takes longer at `share` of the SMs: its
    throughput part (time − launch) over `share`, less the same at the full chip; launches unchanged."""
    return (time_s - launch_s) * (1 / share - 1)


def shared_time_s(kind: str, time_s, launch_s, share):
    """An operator's seconds at `share` of the SMs: a SHARED_KINDS operator's plus shared_extra_s; any other kind
    unchanged (module docstring)."""
    if kind not in SHARED_KINDS:
        return time_s
    return time_s + shared_extra_s(time_s, launch_s, share)
