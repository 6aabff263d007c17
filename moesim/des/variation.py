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

from dataclasses import dataclass

import numpy as np

from moesim.des.costs import Costs
from moesim.des.schedule import COMPUTE, EXPERT, GATHER, TO_EXPERTS, StageProgram

Loads = dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]  # (moe, mb) → sent, received, received remote
# Arrays of a Loads entry are indexed by device id, or, when `Loads` holds a stage's devices only
# (step_routing.py keeps them so), by position in `stage_devices` - see `stage_work`.


def template(program: StageProgram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(durations, egress, ingress) of a stage's program with expected loads."""
    durations = np.array([op.duration_s for op in program.ops])
    wire = np.array([op.comm.wire_bytes if op.comm is not None else 0.0 for op in program.ops])
    return durations, wire, wire.copy()


def _apply_loads(costs: Costs, program: StageProgram, devices: np.ndarray | None, loads: Loads,
                 durations: np.ndarray, egress: np.ndarray, ingress: np.ndarray, ops=None) -> None:
    """Replace load-dependent entries of the (devices, ops) matrices in place; with `ops` (operations that
    loads set), column k of the matrices belongs to ops[k] instead of operation k. `devices` None: the loads'
    arrays are the matrices' rows already (read, not copied)."""
    wl = costs.workload
    experts: dict[tuple[bool, float], list] = {}  # expert FFN columns, priced in one call per (direction, SM share)
    for k, op in (enumerate(ops) if ops is not None else ((op.index, op) for op in program.ops)):
        if not op.load:
            continue
        slots = costs.classes[wl.layer_class_index[op.layer]].slots
        sent, received, received_remote = (loads[(op.moe, op.mb)] if devices is None
                                           else (a[devices] for a in loads[(op.moe, op.mb)]))
        c = op.chunks
        if op.load == EXPERT:
            experts.setdefault((bool(op.backward), op.share), []).append((k, received / c))
            continue
        if op.load == GATHER:
            egress[:, k] = ingress[:, k] = op.comm.wire_bytes * received / slots
            continue
        per_token = op.comm.size_bytes * c / slots
        if op.comm.dedup_factor != 1.0:  # DeepEP: its records per (token, node) pair, not one copy per expert
            per_token *= op.comm.dedup_factor
        out, back = (sent, received_remote) if op.load == TO_EXPERTS else (received_remote, sent)
        egress[:, k] = out * per_token / c
        ingress[:, k] = back * per_token / c
    for (backward, share), columns in experts.items():
        if columns:  # every device and column at once: the operator pricing is elementwise in the slots,
            # so each distinct slot count is priced once (whole token counts: a few thousand of ~10^5 entries)
            slots = np.stack([x for _, x in columns], axis=1)
            distinct, inverse = np.unique(slots.reshape(-1), return_inverse=True)
            times = np.asarray(costs.builder.expert_ffn_time_s(distinct, backward, share), dtype=float)
            times = np.broadcast_to(times, distinct.shape)[inverse.reshape(-1)]
            durations[:, [k for k, _ in columns]] = times.reshape(slots.shape)


@dataclass
class StageWork:
    """One step's work of a stage's devices, compactly: the program's template, the columns that
    routing loads set (durations of expert FFNs, bytes of all-to-alls and ETP gathers), per-device
    slowdown and kernel noise. `row(j)` gives device j's operation arrays (durations, egress, ingress)."""

    program: StageProgram
    devices: np.ndarray
    durations: np.ndarray  # template, per operation
    wire: np.ndarray  # template bytes, per operation
    cols: np.ndarray  # operations loads set
    dur_cols: np.ndarray | None  # (devices, cols)
    egress_cols: np.ndarray | None
    ingress_cols: np.ndarray | None
    noise: np.ndarray | None  # (devices, compute operations): lognormal multipliers
    slowdown: np.ndarray  # (devices,)
    compute: np.ndarray  # bool per operation

    def signature(self) -> np.ndarray:
        """Rows that are equal exactly when two devices' work is (one row per device)."""
        n = len(self.devices)
        parts = [np.full((n, 1), float(self.program.stage)), self.slowdown[:, None]]
        for m in (self.dur_cols, self.egress_cols, self.ingress_cols, self.noise):
            if m is not None:
                parts.append(m)
        return np.hstack(parts)

    def row(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(durations, egress, ingress) of the stage's j-th device: the template with its loads, noise, slowdown."""
        durations, egress, ingress = self.durations.copy(), self.wire.copy(), self.wire.copy()
        if self.dur_cols is not None:
            durations[self.cols] = self.dur_cols[j]
            egress[self.cols] = self.egress_cols[j]
            ingress[self.cols] = self.ingress_cols[j]
        if self.noise is not None:
            durations[self.compute] *= self.noise[j]
        durations[self.compute] *= self.slowdown[j]
        return durations, egress, ingress


def stage_work(costs: Costs, program: StageProgram, devices: np.ndarray, *, loads: Loads | None,
               slowdown: np.ndarray, noise_sigma: float, rng: np.random.Generator) -> StageWork:
    """The work of `devices` (the stage's devices, in order; `loads` arrays indexed by position in `devices`):
    the template, the columns loads set, the slowdown per device and the kernel noise (drawn from `rng`)."""
    durations, egress, ingress = template(program)
    n = len(devices)
    compute = np.array([op.kind == COMPUTE for op in program.ops])
    cols = np.array([op.index for op in program.ops if op.load], dtype=int)
    dur_cols = egress_cols = ingress_cols = noise = None
    if loads is not None and len(cols):
        dur_cols = np.repeat(durations[cols][None, :], n, axis=0)
        egress_cols = np.repeat(egress[cols][None, :], n, axis=0)
        ingress_cols = np.repeat(ingress[cols][None, :], n, axis=0)
        _apply_loads(costs, program, None, loads, dur_cols, egress_cols, ingress_cols,
                     ops=[program.ops[i] for i in cols])
    if noise_sigma > 0:
        z = rng.standard_normal((n, int(compute.sum())))
        noise = np.exp(noise_sigma * z - noise_sigma ** 2 / 2)
    return StageWork(program, np.asarray(devices), durations, egress, cols, dur_cols, egress_cols, ingress_cols,
                     noise, np.asarray(slowdown, dtype=float), compute)


__all__ = ["Loads", "StageWork", "stage_work", "template"]
