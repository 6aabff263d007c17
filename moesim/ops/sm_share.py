"""Compute on the SMs a communication kernel leaves free.

DeepEP's normal dispatch / combine kernels hold a fixed number of SMs while they run (DeepSeek-V3 trains with 20
of the H800's 132 given to them, report §3.2.2), and DualPipe runs a forward chunk's compute beside another
micro-batch's all-to-alls (§3.2.1, Figure 4). A compute-bound kernel (GEMM, grouped GEMM) launched beside them gets
the SMs left: DeepGEMM's kernels in DeepSeek's H800 trace run 112 CTAs, one per SM left (docs/collectives-history.md,
Session 19 dsv3gap). Such a kernel runs at (SMs − comm SMs) / SMs of its full-chip throughput; its launch cost is
the same. Memory-bound operators and the attention core keep their price: no source gives HBM bandwidth or the
attention kernel's rate on fewer SMs (the H800 attention tables were measured beside DeepEP already).

Beyond DeepEP (training.comm_sm_share, session 22 smshare2; default "deepep", the shipped behaviour):
- "hybridep": HybridEP's dispatch / combine kernels hold the 16 SMs its published rates were measured at
  (hybridep.toml [sms]);
- "nccl": also NCCL's all-to-all (dispatch_backend nccl, pairwise, hierarchical). NCCL launches one CTA per channel of
  the plan (NVIDIA/nccl v2.30.7-1 @5067397c src/enqueue.cc ncclLaunchKernel l.1756-1758: grid = countOneBits(
  plan->channelMask)); an all-to-all's rounds start on bit-reversed base channels and spread over every one of the
  communicator's p2pnChannels = pow2Up(min(nChannels, NCCL_MAX_P2P_NCHANNELS)) (src/graph/paths.cc l.984-990;
  nccl_p2p_schedule.py), so it holds p2pnChannels SMs: nccl_tuning.toml [p2p] p2p_channels inside one NVLink domain,
  [p2p_net] p2p_channels where the expert group spans domains. Those channel counts rest on nChannels, which NCCL's
  topology search sets and moesim does not model (nccl_tuning.toml [channels] says where the figures come from):
  hence an option, off by default.
"""

from __future__ import annotations

import numpy as np

from moesim.collectives.dispatch import hybridep_kernel_sms, normal_kernel_sms
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_p2p import p2p_net_nchannels
from moesim.specs.hardware import HardwareProfile
from moesim.specs.training import TrainingSpec

SHARED_KINDS = ("gemm", "grouped_gemm")  # the operator kinds priced at the SMs left (compute-bound GEMMs)
SHARING_BACKENDS = ("deepep",)  # DeepEP's normal kernels hold SMs; its low-latency kernels use none (hook-based)
NCCL_A2A_BACKENDS = ("nccl", "pairwise", "hierarchical")  # the all-to-alls NCCL's send / recv kernels run


def compute_share(sm_count: int, comm_sms: int) -> float:
    """Fraction of the chip's SMs left to compute while a communication kernel holds `comm_sms` of `sm_count`:
    (SMs − comm SMs) / SMs (DeepSeek-V3 arXiv 2412.19437 §3.2.2: 20 of 132 SMs for communication)."""
    if not 0 <= comm_sms < sm_count:
        raise ValueError(f"communication SMs must be in [0, sm_count): {comm_sms} of {sm_count}")
    return (sm_count - comm_sms) / sm_count


def nccl_a2a_sms(spans_domains):
    """SMs NCCL's all-to-all holds: one CTA per p2p channel, p2pnChannels of them (module docstring): [p2p]
    p2p_channels inside one NVLink domain, [p2p_net]'s (p2p_net_nchannels) where `spans_domains` (bool or array)."""
    return np.where(spans_domains, p2p_net_nchannels(), tuning()["p2p"]["p2p_channels"])


def a2a_kernel_sms(tr: TrainingSpec, spans_domains=False):
    """SMs the scenario's expert all-to-all kernels hold while they run, by training.comm_sm_share (module
    docstring): DeepEP's normal kernels always; HybridEP's under "hybridep" and "nccl"; NCCL's under "nccl"; else 0."""
    backend, mode = tr.dispatch_backend, tr.comm_sm_share
    if backend in SHARING_BACKENDS:
        return normal_kernel_sms()
    if backend == "hybridep" and mode in ("hybridep", "nccl"):
        return hybridep_kernel_sms()
    if backend in NCCL_A2A_BACKENDS and mode == "nccl":
        return nccl_a2a_sms(spans_domains)
    return 0


def overlapped_compute_share(hw: HardwareProfile, tr: TrainingSpec, ep=1, etp=1):
    """The compute share of an operator running beside the scenario's expert all-to-all: its kernels' SMs
    (a2a_kernel_sms) out of the profile's `chip.sm_count`; 1.0 (full chip) where they hold none or the profile has no
    SM count. `ep`, `etp` (scalars or arrays): the expert group spans NVLink domains where etp x ep exceeds the
    innermost level's domain (Megatron's expert mesh puts etp innermost, then ep); only NCCL's count reads it."""
    if hw.chip.sm_count is None:
        return 1.0
    spans = np.asarray(etp) * np.asarray(ep) > hw.interconnect[0].domain_devices
    sms = a2a_kernel_sms(tr, spans)
    if np.ndim(sms) == 0:
        return 1.0 if sms == 0 else compute_share(hw.chip.sm_count, int(sms))
    return np.array([compute_share(hw.chip.sm_count, int(c)) for c in np.ravel(sms)]).reshape(np.shape(sms))


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
