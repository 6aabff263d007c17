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

Session 12 (heldout), each defined before it was priced (docs/collectives-history.md "Session 12 (heldout)"):
"lines" splits only the send/recv line P as "machinery" does and writes every latency as "shared" (a hop's latency is
the path's, the same NIC / switch / proxy for every algorithm: src/transport/net.cc sendProxyProgress, NVIDIA/nccl
v2.28.9-1; a line depends on the peers and channels in flight); "identified" writes at the prior's value every fitted
figure whose move is within IDENTIFIED_SE of its own relative standard errors (uncertainty.log_covariance), and the
rest as "shared"; "lines-identified" applies both.

Session 13 (heldout2), defined before pricing (docs/collectives-history.md "Session 13 (heldout2)"): "protocol-hops"
writes a level's hop per protocol (Simple latency_us, ll_latency_us, ll128_latency_us) from a second fit with a figure
per protocol (fit_profile(latency_per_protocol=True)) where that protocol's own rows set it, and what "shared" writes
elsewhere (NCCL prices a hop per link, algorithm and protocol: src/graph/tuning.cc ncclTopoTuneModel hwLat, NVIDIA/nccl
v2.28.9-1); "p2p-ops" (transfer_p2p.py) writes the send/recv latency π at the prior where the fitted log's network
send/recv rows of different op counts disagree on it.

Session 14 (pick), defined before pricing (docs/collectives-history.md "Session 14 (pick)"): "pick-as-nccl" fits and
writes as "shared", but the fit and the written profile rank each call's (algorithm, protocol) on the prior's levels
(HardwareProfile.pick_interconnect, collectives/nccl_pick.py: NCCL's tuner ranks by its own constants and detected
links, src/graph/tuning.cc ncclTopoTuneModel, NVIDIA/nccl v2.28.9-1, never by a measured figure); "pick-protocol-hops"
is "protocol-hops" with the same pick.

Session 15 (calband), defined before pricing (docs/collectives-history.md "Session 15 (calband)"): "band-guard",
"pareto-guard", "band-split" and "hop-split" (transfer_band.py) write at the prior a fitted figure that the calibration
log's own busbw MAPE, per band, asks back ("band-split", "hop-split": a hop's Simple figure only).

Session 18 (heldout3), defined before pricing (docs/collectives-history.md "Session 18 (heldout3)"): "cv-gate"
(transfer_cv.py) writes at the prior a figure whose move does not beat the prior out of fold on the fitted log's own
sizes; "boot-shrink" (transfer_shrink.py) writes each moved figure part of the way, by its bootstrap spread.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from moesim.calibrate.predict import CollectiveTerm
from moesim.calibrate.profile_io import _sig
from moesim.errors import SpecError
from moesim.specs.hardware import MAX_NVLSTREE_NET_FACTOR

TRANSFER_RULES = ("shared", "machinery", "lines", "identified", "lines-identified", "protocol-hops", "p2p-ops",
                  "pick-as-nccl", "pick-protocol-hops", "band-guard", "pareto-guard", "band-split", "hop-split",
                  "cv-gate", "boot-shrink")
TRANSFER_MEANINGS = {"shared": "a fitted figure is written to the one key every mechanism reads",
                     "machinery": "ring / other-algorithm hop and one-peer / all-to-all send/recv line kept apart, "
                                  "each fitted figure written only to the machinery whose rows set it",
                     "lines": "one-peer / all-to-all send/recv line kept apart as by machinery, every latency shared",
                     "identified": "a figure moved within two of its standard errors is written at the prior",
                     "lines-identified": "identified, then the send/recv lines kept apart as by lines",
                     "protocol-hops": "a hop latency per protocol where that protocol's rows set it, shared elsewhere",
                     "p2p-ops": "the send/recv latency kept at the prior where rows of different op counts disagree",
                     "pick-as-nccl": "as shared, each call's algorithm / protocol ranked on the prior's figures as "
                                     "NCCL's tuner ranks (written as pick_interconnect)",
                     "pick-protocol-hops": "protocol-hops, each call's algorithm / protocol ranked as pick-as-nccl",
                     "band-guard": "a figure whose move raises the fitted log's own busbw MAPE >= 1 MiB by more than "
                                   "0.3 pt is written at the prior (transfer_band.py)",
                     "pareto-guard": "a figure whose move raises the fitted log's own busbw MAPE in one band by more "
                                     "than 0.3 pt and lowers the other's by no more is written at the prior",
                     "band-split": "band-guard, but a refused hop latency is written at the prior for Simple only, "
                                   "its LL / LL128 hops as shared writes them",
                     "hop-split": "band-split with the hop latencies its only candidates",
                     "cv-gate": "a figure whose move does not beat the prior on the fitted log's own sizes held out "
                                "of the fit (5 folds by size) is written at the prior (transfer_cv.py)",
                     "boot-shrink": "each figure moved toward the prior by the bootstrap's spread against the prior's "
                                    "sigma (transfer_shrink.py)"}
# rules that need calibrate's second fit with a hop figure per protocol
PER_PROTOCOL_RULES = ("protocol-hops", "pick-protocol-hops")
PICK_RULES = ("pick-as-nccl", "pick-protocol-hops")  # rules that rank on the prior's levels (ranked_on_prior)
SPLIT_RULES = {"machinery": True, "lines": False, "lines-identified": False}  # rule: does it split the hop α too
AT_PRIOR_RULES = ("identified", "lines-identified")  # rules that write unidentified figures at the prior
US_PER_S = 1e6
# "identified": a fitted figure is carried only when |ln(θ/θ0)| > IDENTIFIED_SE × its relative standard error (the
# usual two-sided 95 % of a normal estimate; fixed before pricing, docs/collectives-history.md "Session 12 (heldout)")
IDENTIFIED_SE = 2.0
NOT_INTERCONNECT = ("efficiency@", "peak_scale", "memory_bw", "layer_overhead")
_LINE_KEYS = {"p2p_bandwidth": "p2p_factor", "nvlstree_bandwidth": "nvlstree_net_factor"}


def ranked_on_prior(prior):
    """(pick) `prior` ranking every call on its own levels (pick_interconnect; a prior that has them keeps them: NCCL's
    own figures are the first prior's), so that a fit on it sees NCCL's pick at every θ (collectives/nccl_pick.py)."""
    return dataclasses.replace(prior, pick_interconnect=prior.pick_interconnect or prior.interconnect)


def pick_levels(table: dict, prior_raw: dict) -> dict:
    """(pick) the calibrated profile `table` with `pick_interconnect`: the prior file's own (a profile calibrated under
    a pick rule), else the prior's interconnect tables, copied."""
    table["pick_interconnect"] = copy.deepcopy(prior_raw.get("pick_interconnect") or prior_raw["interconnect"])
    return table


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
    model = design.model_at_theta(theta)
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


def apply_machinery(table: dict, fit, rule: str = "machinery") -> list[str]:
    """Rewrite the calibrated profile table (profile_io.calibrated_table) by the "machinery" rule (or "lines":
    the send/recv lines only, SPLIT_RULES); returns one note per figure kept off a machinery (also added to the
    level's `source`)."""
    alpha_kinds, line_kinds = setting_machinery(fit)
    if not SPLIT_RULES[rule]:
        alpha_kinds = [set() for _ in alpha_kinds]
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
            raw["source"] = f"--transfer {rule}: {note}; " + raw.get("source", "")
    return notes


def _factor(x: float) -> float:
    """A send/recv line factor as the profile writer rounds it, within the profile's bound."""
    return min(_sig(x), MAX_NVLSTREE_NET_FACTOR)


def unidentified(fit) -> list:
    """The interconnect figures the fit moved by no more than IDENTIFIED_SE of their own relative standard errors
    (uncertainty.ParameterFit.rel_std; none: not identified), as ParameterFits."""
    return [p for p in fit.parameters if p.fitted and not p.name.startswith(NOT_INTERCONNECT) and p.prior > 0
            and (p.rel_std is None or abs(np.log(p.value / p.prior)) <= IDENTIFIED_SE * p.rel_std)]


def at_prior_where_unidentified(fit):
    """(`fit` with every unidentified() figure set back to its prior value, one note per figure): what the
    "identified" rule writes. A hop latency or W is written as not fitted; π, α^LL / α^LL128 and a line (P, U) at the
    prior's value; V with the fitted V'/V kept; V'/V at the prior's ratio."""
    written, kept = at_prior(fit, unidentified(fit))
    notes = []
    for p in kept:
        moved = "no standard error" if p.rel_std is None else \
            f"{abs(np.log(p.value / p.prior)) / p.rel_std:.2g} standard errors"
        notes.append(f"{p.name} {p.value:.4g} {p.unit} within {moved} of the prior {p.prior:.4g}: prior kept")
    return written, notes


def at_prior(fit, figures) -> tuple:
    """(`fit` with each of `figures` (ParameterFits) written at its prior value, the figures so written): a hop
    latency or W as not fitted; π, α^LL / α^LL128 and a line (P, U) at the prior's value; V with the fitted V'/V kept;
    V'/V at the prior's ratio. A figure of another kind (the efficiency table, peaks) is left as fitted and not returned."""
    return at_values(fit, [(p, None) for p in figures])


def at_values(fit, figures) -> tuple:
    """(`fit` with each (ParameterFit, value) of `figures` written at that value, the figures so written), as at_prior
    writes one (value None: at the prior, a hop latency or W then written as not fitted); a value for V keeps the
    fitted V'/V. A figure of another kind (the efficiency table, peaks) is left as fitted and not returned."""
    levels = [list(lv) for lv in fit.levels]
    index = {lv[0]: j for j, lv in enumerate(levels)}
    p2p, protocol = dict(fit.p2p_latencies), {k: list(v) for k, v in fit.protocol_latencies.items()}
    nvls, lines, done = {k: list(v) for k, v in fit.nvls_bandwidths.items()}, dict(fit.extra_bandwidths), []
    for p, value in sorted(figures, key=lambda q: q[0].name.endswith(".nvls_bandwidth")):  # V'/V before V
        level, figure = p.name.split(".", 1)
        target = p.prior if value is None else value
        if figure in ("latency", "bandwidth"):
            slot = 1 if figure == "latency" else 2
            if value is None:
                levels[index[level]][slot + 2] = False
            else:
                levels[index[level]][slot] = value
        elif figure == "p2p_latency":
            p2p[level] = target
        elif figure in ("ll_latency", "ll128_latency"):
            protocol[level][0 if figure == "ll_latency" else 1] = target
        elif figure == "nvlstree_ratio":
            nvls[level][1] = nvls[level][0] * target
        elif figure == "nvls_bandwidth":
            nvls[level] = [v * target / nvls[level][0] for v in nvls[level]]
        elif figure in _LINE_KEYS:
            lines[(level, _LINE_KEYS[figure])] = target
        else:
            continue
        done.append(p)
    written = dataclasses.replace(fit, levels=tuple(tuple(lv) for lv in levels), p2p_latencies=p2p,
                                  protocol_latencies={k: tuple(v) for k, v in protocol.items()},
                                  nvls_bandwidths={k: tuple(v) for k, v in nvls.items()}, extra_bandwidths=lines)
    return written, done


def protocol_hops(shared, per_protocol) -> tuple:
    """("protocol-hops") the shared fit with each level's hop per protocol taken from the per-protocol fit where rows
    of that protocol set it (its design frees α for Simple rows, α^LL / α^LL128 for LL / LL128 rows:
    linearise.probe), else what "shared" writes for that protocol (the prior's own α^p where the prior states one,
    else the shared α); (the fit to write, one note per level whose hops differ from shared)."""
    design = per_protocol.point[0]
    own_hops = dict(per_protocol.protocol_latencies)
    levels, hops, notes = [], {}, []
    for j, (lv, lv_p, level) in enumerate(zip(shared.levels, per_protocol.levels, shared.prior.interconnect)):
        name, alpha, bw, alpha_fitted, bw_fitted = lv
        shared_alpha = alpha if alpha_fitted else level.latency_s
        simple_set = bool(design.level_used[j, 0])
        simple = lv_p[1] if simple_set else shared_alpha
        said = [f"Simple {simple * US_PER_S:.4g} us" + (" (own rows)" if simple_set else "")]
        pair = []
        for q, (label, own) in enumerate((("LL", level.ll_latency_s), ("LL128", level.ll128_latency_s))):
            if bool(design.protocol_latency_used[j, q]):
                pair.append(own_hops[name][q])
                said.append(f"{label} {pair[-1] * US_PER_S:.4g} us (own rows)")
            else:
                pair.append(own if own is not None else shared_alpha)
        levels.append((name, simple, bw, alpha_fitted or simple_set, bw_fitted))
        hops[name] = tuple(pair)
        if simple_set or design.protocol_latency_used[j].any():
            notes.append(f"{name}: hop per protocol " + ", ".join(said))
    written = dataclasses.replace(shared, levels=tuple(levels), protocol_latencies=hops)
    return written, notes
