"""Where a fitted figure is written (session 10, calpairs): `moesim calibrate --transfer {shared,machinery}`.

"shared" (the default) writes each fitted figure to the one profile key every mechanism reads, as before.
"machinery" keeps two figures apart where NCCL runs separate machinery, and writes a fitted figure only to the
machinery whose rows set it (the rows whose largest term is that figure: linearise.binding_terms); the machinery the
calibration log's binding rows did not run keeps the prior:
  - a level's hop latency α: `latency_us` for ring, `nonring_latency_us` for every other algorithm (tree, NVLS,
    NVLSTree, CollNet, PAT). NCCL prices a hop per link, algorithm and protocol (src/graph/tuning.cc
    ncclTopoTuneModel, hwLat[hw][algorithm][protocol]; NVIDIA/nccl 2.30.7) and runs broadcast on ring only
    (the same function skips every other algorithm for ncclFuncBroadcast / ncclFuncReduce);
  - a level's send/recv line P: `p2p_factor` for one peer per rank (sendrecv_perf, pipeline sends),
    `alltoall_p2p_factor` for an all-to-all (every peer at once: NCCL's per-peer p2p channels in batches, one proxy
    thread launching every network peer's steps; enqueue.cc scheduleP2pTasksToPlan, proxy.cc progressOps, NVIDIA/nccl
    v2.28.9-1).
A figure set by rows of both kinds is written to both (one figure, as "shared"): the rule does not split a fit.
docs/collectives-history.md "Session 10 (calpairs)" has the rule, its sources and its held-out matrix.
"""

from __future__ import annotations

import numpy as np

from moesim.calibrate.predict import CollectiveTerm
from moesim.calibrate.profile_io import _sig
from moesim.errors import SpecError
from moesim.specs.hardware import MAX_NVLSTREE_NET_FACTOR

TRANSFER_RULES = ("shared", "machinery")
TRANSFER_MEANINGS = {"shared": "a fitted figure is written to the one key every mechanism reads",
                     "machinery": "ring / other-algorithm hop and one-peer / all-to-all send/recv line kept apart, "
                                  "each fitted figure written only to the machinery whose rows set it"}
US_PER_S = 1e6


def check_transfer(rule: str) -> str:
    """`rule` if it is one of TRANSFER_RULES, else a SpecError naming them."""
    if rule not in TRANSFER_RULES:
        raise SpecError(f"unknown transfer rule {rule!r}", field="transfer_rule", value=rule, allowed=TRANSFER_RULES)
    return rule


def _kinds(rows: np.ndarray, labels: list[str]) -> set[str]:
    return {labels[i] for i in np.flatnonzero(rows)}


def setting_machinery(fit) -> tuple[list[set[str]], list[set[str]]]:
    """Per level, the machinery of the rows that set its α ({"ring", "other"}) and its send/recv line P
    ({"one_peer", "all_to_all"}), from the point fit's last probe (fit.point)."""
    design, theta = fit.point[0], fit.point[1]
    n_lev = len(design.levels)
    alpha_rows = getattr(design, "alpha_rows", None)
    if alpha_rows is None:  # no collective rows were probed
        return [set() for _ in range(n_lev)], [set() for _ in range(n_lev)]
    model = design._model_at(design.level_values(theta), design.memory_bw(theta), design.nvls_values(theta),
                             design.extra_values(theta), design.p2p_latencies(theta),
                             design.protocol_latencies(theta) if design.per_protocol else None)
    algorithm, op = [], []
    for obs in design.observations:
        terms = [t for t in obs.terms if isinstance(t, CollectiveTerm)]
        names = {model.cost(t.op, t.size_bytes, t.group).algorithm.split("/")[0] for t in terms}
        algorithm.append("ring" if names == {"ring"} else "other")
        op.append("all_to_all" if all(t.op == "all_to_all" for t in terms) else "one_peer")
    alpha = [_kinds(alpha_rows[:, j], algorithm) for j in range(n_lev)]
    first = 2 * len(design.nvls_levels)
    line = [set() for _ in range(n_lev)]
    for k, (m, key, _) in enumerate(design.extra_figures):
        if key == "p2p_factor" and design.extra_used[k]:
            line[m] = _kinds(design.line_rows[:, first + k], op)
    return alpha, line


def apply_machinery(table: dict, fit) -> list[str]:
    """Rewrite the calibrated profile table (profile_io.calibrated_table) by the "machinery" rule; returns one note
    per figure kept off a machinery (also added to the level's `source`)."""
    alpha_kinds, line_kinds = setting_machinery(fit)
    notes = []
    for j, (raw, level, (_, alpha, bw, alpha_fitted, bw_fitted)) in enumerate(
            zip(table["interconnect"], fit.prior.interconnect, fit.levels)):
        said = []
        if alpha_fitted and len(alpha_kinds[j]) == 1:
            prior_other = level.latency_s if level.nonring_latency_s is None else level.nonring_latency_s
            if alpha_kinds[j] == {"ring"}:  # ring rows set α: the other algorithms keep the prior's hop
                raw["nonring_latency_us"] = _sig(prior_other * US_PER_S)
                said.append(f"hop latency {alpha * US_PER_S:.4g} us set by ring rows: ring only")
            else:  # tree / NVLS / NVLSTree rows set it: ring (and broadcast) keep the prior's hop
                raw["nonring_latency_us"] = _sig(alpha * US_PER_S)
                raw["latency_us"] = _sig(level.latency_s * US_PER_S)
                said.append(f"hop latency {alpha * US_PER_S:.4g} us set by non-ring rows: non-ring only")
        if len(line_kinds[j]) == 1:
            usable0 = level.link_bw_bytes_per_s * max(p[1] for p in level.bw_efficiency.points)
            usable = bw if bw_fitted else usable0
            fitted = fit.extra_bandwidths[(level.name, "p2p_factor")]
            one_peer0 = usable0 * (level.p2p_factor or 1.0)
            many0 = usable0 * (level.alltoall_p2p_factor or level.p2p_factor or 1.0)
            if line_kinds[j] == {"all_to_all"}:  # all-to-all rows set P: send/recv (one peer) keeps the prior's line
                raw["alltoall_p2p_factor"] = _factor(fitted / usable)
                raw["p2p_factor"] = _factor(one_peer0 / usable)
                said.append(f"send/recv line {fitted / 1e9:.4g} GB/s set by all-to-all rows: all-to-all only")
            else:  # send/recv rows set it: the all-to-all keeps the prior's line
                raw["p2p_factor"] = _factor(fitted / usable)
                raw["alltoall_p2p_factor"] = _factor(many0 / usable)
                said.append(f"send/recv line {fitted / 1e9:.4g} GB/s set by one-peer rows: send/recv only")
        if said:
            note = f"{level.name}: " + "; ".join(said)
            notes.append(note)
            raw["source"] = f"--transfer machinery: {note}; " + raw.get("source", "")
    return notes


def _factor(x: float) -> float:
    """A send/recv line factor as the profile writer rounds it, within the profile's bound."""
    return min(_sig(x), MAX_NVLSTREE_NET_FACTOR)
