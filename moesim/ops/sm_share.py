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
  plan->channelMask)); an all-to-all's rounds start on bit-reversed base channels among the communicator's
  p2pnChannels = pow2Up(min(nChannels, NCCL_MAX_P2P_NCHANNELS)) (src/graph/paths.cc l.984-990), each peer's send on
  its per-peer count of channels (nccl_p2p_schedule.py reads the same code). The SMs it holds are the channels rank
  0's rounds take, counted with that schedule at the per-peer count a large message reaches: inside one NVLink
  domain all 32 of [p2p] p2p_channels at 4 or 8 ranks; across domains at most the 16 of [p2p_net] p2p_channels (8 for
  16 H100s over 2 nodes, all 16 from 32 ranks). The p2p channel counts rest on nChannels, which NCCL's topology
  search sets and moesim does not model (nccl_tuning.toml [channels] says where the figures come from): hence an
  option, off by default.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moesim.collectives.dispatch import hybridep_kernel_sms, normal_kernel_sms
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_p2p import p2p_channel_rule, p2p_net_nchannels
from moesim.specs.hardware import HardwareProfile
from moesim.specs.training import TrainingSpec
from moesim.topology.system import build_system

SHARED_KINDS = ("gemm", "grouped_gemm")  # the operator kinds priced at the SMs left (compute-bound GEMMs)
SHARING_BACKENDS = ("deepep",)  # DeepEP's normal kernels hold SMs; its low-latency kernels use none (hook-based)
NCCL_A2A_BACKENDS = ("nccl", "pairwise", "hierarchical")  # the all-to-alls NCCL's send / recv kernels run


def compute_share(sm_count: int, comm_sms: int) -> float:
    """Fraction of the chip's SMs left to compute while a communication kernel holds `comm_sms` of `sm_count`:
    (SMs − comm SMs) / SMs (DeepSeek-V3 arXiv 2412.19437 §3.2.2: 20 of 132 SMs for communication)."""
    if not 0 <= comm_sms < sm_count:
        raise ValueError(f"communication SMs must be in [0, sm_count): {comm_sms} of {sm_count}")
    return (sm_count - comm_sms) / sm_count


# (the profile's chip and levels as text, n, local) -> nccl_a2a_sms: the count reads the NVLink tier's line rate and
# architecture, which two profiles of one name can differ in (a calibrated copy, a user's file), so not the name
_NCCL_SMS: dict = {}


def nccl_a2a_sms(hw: HardwareProfile, n: int, local: int) -> int:
    """SMs NCCL's all-to-all of `n` ranks, `local` of them in each NVLink domain, holds: one CTA per channel rank 0's
    rounds take (module docstring; nccl_p2p_schedule.channels_taken), each peer's send on the per-peer count of
    nccl_p2p.p2p_channel_rule; 0 where the NVLink tier's architecture has no p2p line rate (not priced by channel)."""
    key = (repr(hw.chip), repr(hw.interconnect), n, local)  # a profile holds dicts: not hashable itself
    if key not in _NCCL_SMS:
        system = build_system(hw, hw.interconnect[0].domain_devices * (1 if n <= local else 2))
        net_tier = system.tiers[1] if n > local and len(system.tiers) > 1 else None
        rule = p2p_channel_rule(n, system.tiers[0], net_tier)
        total = tuning()["p2p"]["p2p_channels"] if net_tier is None else p2p_net_nchannels()
        counts = (n,) if net_tier is None else (local, n)
        if rule is None:
            _NCCL_SMS[key] = 0
        else:
            from moesim.collectives.nccl_p2p_schedule import channels_taken  # imported where used (session 23)

            _NCCL_SMS[key] = channels_taken(n, counts, rule[3], total, tuning()["p2p_net"]["max_p2p_per_batch"],
                                            tuning()["p2p_schedule"]["group_size"])
    return _NCCL_SMS[key]


def a2a_kernel_sms(hw: HardwareProfile, tr: TrainingSpec, ep: int = 1, etp: int = 1) -> int:
    """SMs the scenario's expert all-to-all kernels hold while they run, by training.comm_sm_share (module
    docstring): DeepEP's normal kernels always; HybridEP's under "hybridep" and "nccl" (either: training.a2a_kernel_sms
    where the run sets it); NCCL's under "nccl" (an expert group of `ep` ranks at stride `etp`: Megatron's expert mesh
    puts etp innermost, then ep); else 0."""
    backend, mode, own = tr.dispatch_backend, tr.comm_sm_share, tr.a2a_kernel_sms
    if backend in SHARING_BACKENDS:
        return normal_kernel_sms() if own is None else own
    if backend == "hybridep" and mode in ("hybridep", "nccl"):
        return hybridep_kernel_sms() if own is None else own
    if backend in NCCL_A2A_BACKENDS and mode == "nccl" and ep > 1:
        return nccl_a2a_sms(hw, ep, max(1, min(ep, hw.interconnect[0].domain_devices // etp)))
    return 0


def overlapped_compute_share(hw: HardwareProfile, tr: TrainingSpec, ep=1, etp=1):
    """The compute share of an operator running beside the scenario's expert all-to-all: its kernels' SMs
    (a2a_kernel_sms) out of the profile's `chip.sm_count`; 1.0 (full chip) where they hold none or the profile has no
    SM count. `ep`, `etp`: scalars, or arrays over candidate rows (then an array of shares)."""
    if hw.chip.sm_count is None:
        return 1.0
    tr.check_a2a_kernel_sms(hw.name, hw.chip.sm_count)  # a Scenario checks it first, naming its file
    if tr.dispatch_backend not in NCCL_A2A_BACKENDS or tr.comm_sm_share != "nccl":  # no count reads the layout
        sms = a2a_kernel_sms(hw, tr)
        return 1.0 if sms == 0 else compute_share(hw.chip.sm_count, sms)
    if np.ndim(ep) == 0 and np.ndim(etp) == 0:
        sms = a2a_kernel_sms(hw, tr, int(ep), int(etp))
        return 1.0 if sms == 0 else compute_share(hw.chip.sm_count, sms)
    eps, etps = np.broadcast_arrays(np.asarray(ep), np.asarray(etp))
    pairs = {(int(e), int(t)) for e, t in zip(eps.ravel(), etps.ravel())}
    shares = {pair: overlapped_compute_share(hw, tr, *pair) for pair in pairs}
    return np.array([shares[int(e), int(t)] for e, t in zip(eps.ravel(), etps.ravel())], dtype=float).reshape(eps.shape)


def unmoved_setting_note(hw: HardwareProfile, tr: TrainingSpec, ep: int, etp: int) -> str:
    """Why training.comm_sm_share / a2a_kernel_sms, where set off their defaults, move nothing at a layout of expert
    degrees `ep`, `etp` ("" where they do): no overlapped pair (moe_a2a_overlap, dualpipe), no expert all-to-all, no
    SM count in the profile, or the same SMs held as the defaults' (a sweep's point says so, session 22 review22)."""
    said = [f"comm_sm_share = {tr.comm_sm_share}"] * (tr.comm_sm_share != "deepep") + \
        [f"a2a_kernel_sms = {tr.a2a_kernel_sms}"] * (tr.a2a_kernel_sms is not None)
    if not said:
        return ""
    said_text = " and ".join(said) + " move" + ("s" if len(said) == 1 else "")
    if not (tr.moe_a2a_overlap or tr.pipeline_schedule == "dualpipe"):
        return (f"{said_text} nothing: compute runs beside the all-to-all's kernels only in an overlapped pair "
                "(training.moe_a2a_overlap or the dualpipe schedule), and neither is set")
    if ep <= 1:
        return f"{said_text} nothing at ep 1: no expert all-to-all runs beside compute"
    if hw.chip.sm_count is None:
        return f"{said_text} nothing: hardware '{hw.name}' gives no chip.sm_count to share"
    held = a2a_kernel_sms(hw, tr, ep, etp)
    if held != a2a_kernel_sms(hw, replace(tr, comm_sm_share="deepep", a2a_kernel_sms=None), ep, etp):
        return ""
    return (f"{said_text} nothing with dispatch_backend {tr.dispatch_backend}: its all-to-all holds {held} SMs as "
            "under the defaults (\"hybridep\" counts HybridEP's kernels, \"nccl\" NCCL's all-to-all too, "
            "a2a_kernel_sms sets DeepEP's or HybridEP's count)")


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
