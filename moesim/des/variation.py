"""What makes one device's step differ from its stage's program: routing loads, stragglers, noise.

Routing loads (dropless, where they set the work; modeling.md §5.1): a device's expert FFN runs on
the R tokens its experts received, T = expert_ffn_time_s(R/c) (×2 backward); a dispatch-shaped
all-to-all moves, per member, egress = (tokens sent to other ranks)·β and ingress = (tokens received
from other ranks)·β, β = bytes per token slot of the call, a combine-shaped one the reverse; ETP
gathers scale with R / slots. With capacity padding the loads do not change the work (Switch Fig. 3:
padded slots are computed and communicated) - only the drops.

Stragglers: a fraction of the devices, drawn per step, run every kernel `slowdown` times longer
(ByteDance, arXiv 2505.05713). Kernel noise: each compute kernel's duration × exp(σZ − σ²/2),
Z ~ N(0, 1), a lognormal with mean 1.
"""

from __future__ import annotations

import numpy as np

from moesim.des.costs import Costs
from moesim.des.engine import DeviceRun
from moesim.des.schedule import COMPUTE, EXPERT, GATHER, TO_EXPERTS, StageProgram

Loads = dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]  # (moe, mb) → sent, received, received remote


def template(program: StageProgram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(durations, egress, ingress) of a stage's program with expected loads."""
    durations = np.array([op.duration_s for op in program.ops])
    wire = np.array([op.comm.wire_bytes if op.comm is not None else 0.0 for op in program.ops])
    return durations, wire, wire.copy()


def _apply_loads(costs: Costs, program: StageProgram, devices: np.ndarray, loads: Loads,
                 durations: np.ndarray, egress: np.ndarray, ingress: np.ndarray) -> None:
    """Replace load-dependent entries of the (devices, ops) matrices in place."""
    wl = costs.workload
    for op in program.ops:
        if not op.load:
            continue
        slots = costs.classes[wl.layer_class_index[op.layer]].slots
        sent, received, received_remote = (a[devices] for a in loads[(op.moe, op.mb)])
        c = op.chunks
        if op.load == EXPERT:
            durations[:, op.index] = costs.builder.expert_ffn_time_s(received / c, op.backward)
            continue
        if op.load == GATHER:
            egress[:, op.index] = ingress[:, op.index] = op.comm.wire_bytes * received / slots
            continue
        per_token = op.comm.size_bytes * c / slots
        out, back = (sent, received_remote) if op.load == TO_EXPERTS else (received_remote, sent)
        egress[:, op.index] = out * per_token / c
        ingress[:, op.index] = back * per_token / c


def device_runs(costs: Costs, program: StageProgram, devices: np.ndarray, *, loads: Loads | None,
                slowdown: np.ndarray, noise_sigma: float, rng: np.random.Generator, weight: int = 1) -> list[DeviceRun]:
    """DeviceRuns of `devices` (all on `program`'s stage); `slowdown` per device (1 = none)."""
    durations, egress, ingress = template(program)
    n = len(devices)
    if loads is None and noise_sigma == 0 and np.all(slowdown == 1):
        return [DeviceRun(int(d), program, durations, egress, ingress, weight) for d in devices]
    durations = np.repeat(durations[None, :], n, axis=0)
    egress = np.repeat(egress[None, :], n, axis=0)
    ingress = np.repeat(ingress[None, :], n, axis=0)
    if loads is not None:
        _apply_loads(costs, program, devices, loads, durations, egress, ingress)
    compute = np.array([op.kind == COMPUTE for op in program.ops])
    if noise_sigma > 0:
        z = rng.standard_normal((n, int(compute.sum())))
        durations[:, compute] *= np.exp(noise_sigma * z - noise_sigma ** 2 / 2)
    durations[:, compute] *= slowdown[:, None]
    return [DeviceRun(int(d), program, durations[i], egress[i], ingress[i], weight) for i, d in enumerate(devices)]


__all__ = ["Loads", "device_runs", "template"]
