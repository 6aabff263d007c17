"""A measured cluster's unstated system facts (host_cpu, gpu_nic_path) inferred from its own nccl-tests rows.

NCCL reads two facts of the system beyond the GPUs and links (moesim/collectives/nccl_facts.py): the hosts' CPU
(network post overhead, the multi-node LL cap's row) and the GPU-NIC PCIe path (LL128 across nodes, GPUDirect
RDMA). Where neither the user (--host-cpu / --gpu-nic-path, a logs.toml entry) nor the prior profile states one,
the profile prices NCCL's defaults (Intel, PXB). Calibration may let the log speak for its own cluster; the rule,
fixed before any log was run through it (docs/collectives.md, "Inferring system facts from a log"):

1. Classes. A fact's values fall into the classes NCCL's rules tell apart on the profile's architecture: the path
   by (LL128 across nodes, GPUDirect RDMA) (on Hopper / Blackwell {PIX, PXB, P2C, PXN} and {PHB, NODE, SYS}), the
   CPU by (network overhead, LL row) ({intel, arm}, {amd}, {mixed}). The candidates are the cross product of the
   unstated facts' classes, the default's class first; two candidates pricing every fitted row alike at the prior
   are one (the first kept). One-node logs (no row spans the first level's domain) and logs no candidate prices
   differently are left alone.
2. Each candidate is fitted as calibrate fits (fit.fit_profile, no bootstrap), on its own facts, under the shared
   hop-latency rule (one hop figure per level) whatever rule calibrate is asked for: the discrete facts first, then
   calibrate fits the requested rule with the chosen class fixed (calorder's ordering, session 9: with per-protocol
   hops free a fit absorbs the latency signature of the path that tells the classes apart).
3. Evidence. L_c = Σ ρ(ln t̂/t) over the rows every fit shares, ρ the fit's own robust loss (solve.robust_loss);
   the rows count as n_eff independent ones, the smallest effective_rows (prior_weight.py) of the candidates'
   residuals (the fewest, the most cautious). With residuals of one unknown scale, the profile likelihood of a fit
   is ∝ L_c^(−n_eff / 2), so the evidence ratio of c over the default d is K_c = (L_d / L_c)^(n_eff / 2), times
   n_eff^(−Δk / 2) where the fits move Δk more figures (Source: Schwarz 1978, "Estimating the dimension of a
   model", Ann. Statist. 6(2), eq. for the BIC; Δk = 0 in the usual case, equal parameter counts).
4. The candidate with the largest K is chosen if K > EVIDENCE_THRESHOLD, else the default is kept.

Only the chosen non-default facts are written (as stated facts are), marked inferred in the profile's
`calibrated_from`; stated facts are never candidates.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from moesim.calibrate.fit import FitResult, fit_profile, observations_for
from moesim.calibrate.linearise import priced_once
from moesim.calibrate.nccl_error import LARGE_BYTES, pct
from moesim.calibrate.predict import CollectiveTerm, terms_time_s
from moesim.calibrate.prior_weight import effective_rows, size_order, weighted_share
from moesim.calibrate.records import Measurements
from moesim.calibrate.solve import robust_loss
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_facts import gdr, ll128_across_nodes, ll_multi_node_row, net_overhead_us
from moesim.specs.hardware import GPU_NIC_PATHS, HOST_CPUS, NETWORK_TOPOLOGIES, HardwareProfile
from moesim.specs.system_facts import SYSTEM_FACT_KEYS, with_system_facts

# Jeffreys' "strong" evidence (Theory of Probability, 3rd ed. 1961, Appendix B: K > 10^1). A wrong fact changes
# NCCL's protocol or GPUDirect choice on every size the profile is later used for, beyond the rows that chose it,
# so "substantial" (10^0.5) is too little; the bar was set before any log was run through the rule.
EVIDENCE_THRESHOLD = 10.0
_LN_CAP = 700.0  # ln K beyond this is written as exp(700) (a float; exact synthetic data give ratios past it)


@dataclass(frozen=True)
class Candidate:
    """One class of the unstated facts, fitted: its values (the first member of each fact's class, "" = NCCL's
    default), the class members, the fit's loss and figures moved, and the evidence ratio over the default."""

    facts: dict[str, str]
    members: dict[str, tuple[str, ...]]
    loss: float
    n_parameters: int
    effective_rows: float
    mape_ge_1mib: float | None
    mape_lt_1mib: float | None
    evidence_ratio: float = 1.0


@dataclass(frozen=True)
class FactsInference:
    """What facts_fit decided for one calibration: the stated facts, the inferred ones written (empty: the default
    kept), the network levels they are set on, the candidates and why."""

    stated: dict[str, str]
    inferred: dict[str, str]
    levels: tuple[str, ...]
    candidates: tuple[Candidate, ...] = ()
    effective_rows: float | None = None
    note: str = ""
    chosen: int | None = None  # index of the chosen candidate (0: the default's class kept)
    fit: FitResult | None = field(default=None, repr=False, compare=False)  # the chosen candidate's fit

    def as_dict(self) -> dict:
        facts = []
        for key in SYSTEM_FACT_KEYS:
            value = self.stated.get(key) or self.inferred.get(key, "")
            how = "stated" if key in self.stated else "inferred" if key in self.inferred else "default"
            facts.append({"fact": key, "levels": list(self.levels), "value": value, "source": how})
        return {"facts": facts, "effective_rows": self.effective_rows, "evidence_threshold": EVIDENCE_THRESHOLD,
                "note": self.note,
                "candidates": [{"class": {k: list(c.members.get(k, (self.stated.get(k, ""),)))
                                          for k in SYSTEM_FACT_KEYS},
                                "loss": c.loss, "parameters_fitted": c.n_parameters,
                                "effective_rows": c.effective_rows, "mape_ge_1mib": c.mape_ge_1mib,
                                "mape_lt_1mib": c.mape_lt_1mib, "evidence_ratio": c.evidence_ratio,
                                "chosen": i == self.chosen} for i, c in enumerate(self.candidates)]}


def fact_classes(prior: HardwareProfile, key: str) -> list[tuple[str, ...]]:
    """The values of fact `key` grouped by what NCCL's rules do with them on `prior`'s architecture (module
    docstring, 1.), in GPU_NIC_PATHS / HOST_CPUS order; the default "" sits in the first class."""
    t = tuning()
    arch = prior.interconnect[0].nccl_arch if prior.interconnect else ""
    if key == "gpu_nic_path":
        values, rule = GPU_NIC_PATHS, lambda p: (ll128_across_nodes(t, arch, p), gdr(t, p))
    else:
        values, rule = HOST_CPUS, lambda c: (net_overhead_us(t, c), ll_multi_node_row(t, c))
    classes: dict[tuple, list[str]] = {}
    for value in values:
        classes.setdefault(rule(value), []).append(value)
    return [tuple(v) for v in classes.values()]


@priced_once()  # one scope over the candidates' fits (linearise.py; calspeed, session 9)
def infer_system_facts(measurements: Measurements, prior: HardwareProfile, stated: dict[str, str], *,
                       seed: int = 0, loss: str = "soft_l1", level_prior_weight: float | None = None,
                       gpus_per_thread: int = 1, row_weight: str = "row") -> FactsInference:
    """The module docstring's rule on `measurements` (nccl-tests rows) over `prior` (stated facts already set)."""
    levels = tuple(lv.name for lv in prior.interconnect if lv.topology in NETWORK_TOPOLOGIES)
    stated = {k: v for k, v in stated.items() if v}
    stated |= {k: getattr(lv, k) for lv in prior.interconnect for k in SYSTEM_FACT_KEYS
               if lv.topology in NETWORK_TOPOLOGIES and getattr(lv, k) and k not in stated}
    open_keys = [k for k in SYSTEM_FACT_KEYS if k not in stated]

    def left(note: str) -> FactsInference:
        return FactsInference(stated, {}, levels, note=note)

    if prior.device_kind != "gpu" or not levels:
        return left("the profile has no network level of GPUs: NCCL reads these facts across nodes only")
    if not open_keys:
        return left("every fact is stated: nothing to infer")
    if measurements.layers or not measurements.collectives:
        return left("inferred from nccl-tests rows alone (layer records are fitted otherwise)")
    domain = prior.interconnect[0].domain_devices
    if all(p.group_size <= domain for p in measurements.collectives):
        return left(f"no row spans more than one {prior.interconnect[0].name} domain ({domain} GPUs): NCCL reads "
                    "these facts across nodes only")
    obs = observations_for(measurements, set(), prior, False, gpus_per_thread)
    candidates, seen = [], []
    for combo in itertools.product(*(fact_classes(prior, k) for k in open_keys)):
        members = dict(zip(open_keys, combo))
        facts = {k: v[0] for k, v in members.items()}
        priced = with_system_facts(prior, {k: v for k, v in facts.items() if v})
        prices = tuple(terms_time_s(o.terms, priced) for o in obs)
        if prices in seen:
            continue
        seen.append(prices)
        candidates.append((facts, members, priced))
    if len(candidates) < 2:
        return left("every class of the unstated facts prices every row alike: nothing tells them apart")
    fits = [fit_profile(measurements, priced, fit_keys=set(), bootstrap=0, seed=seed, loss=loss,  # the shared rule
                        level_prior_weight=level_prior_weight, gpus_per_thread=gpus_per_thread,
                        latency_per_protocol=False, row_weight=row_weight)
            for _, _, priced in candidates]
    shared = set.intersection(*({o.unit for o in f.observations} for f in fits))
    residuals = [_residuals(f, shared) for f in fits]
    # rows weighted by --row-weight (row_weight.py): √w r in the loss, Kish's share of the rows in n_eff (prior_weight.py)
    weights = [np.array([o.weight for o in f.observations if o.unit in shared]) for f in fits]
    shares = [weighted_share(w) for w in weights]
    losses = [max(robust_loss(r[order] if np.all(w == 1.0) else (np.sqrt(w) * r)[order], loss), 1e-300)
              for (r, order), w in zip(residuals, weights)]
    rows = [effective_rows(r[order]) * share for (r, order), share in zip(residuals, shares)]
    n_eff = min(rows)
    out = []
    for (facts, members, _), fit, value, n_c, (r, order) in zip(candidates, fits, losses, rows, residuals):
        ln_k = 0.5 * n_eff * math.log(losses[0] / value) - 0.5 * (fit.n_parameters - fits[0].n_parameters) * \
            math.log(max(n_eff, 1.0))
        big, small = _mapes(fit, shared)
        out.append(Candidate(facts, members, value, fit.n_parameters, n_c, big, small, math.exp(min(ln_k, _LN_CAP))))
    best = max(range(1, len(out)), key=lambda i: out[i].evidence_ratio)
    chosen = best if out[best].evidence_ratio > EVIDENCE_THRESHOLD else 0
    if chosen:
        inferred = {k: v for k, v in out[best].facts.items() if v}
        note = f"chosen: {_label(out[best])}, evidence ratio {out[best].evidence_ratio:.3g} > {EVIDENCE_THRESHOLD:g}"
    else:
        inferred = {}
        note = (f"kept NCCL's default ({_label(out[0])}): no class's evidence ratio exceeds {EVIDENCE_THRESHOLD:g} "
                f"(best {_label(out[best])}, {out[best].evidence_ratio:.3g})")
    return FactsInference(stated, inferred, levels, tuple(out), n_eff, note, chosen, fits[chosen])


def _residuals(fit: FitResult, shared: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """ln(predicted / measured) of the fit's rows in `shared`, and their order along the sizes (size_order)."""
    keep = [i for i, o in enumerate(fit.observations) if o.unit in shared]
    obs = [fit.observations[i] for i in keep]
    r = np.log(np.array([fit.predicted_s[i] for i in keep]) / np.array([o.measured_s for o in obs]))
    return r, size_order(SimpleNamespace(observations=obs))


def _mapes(fit: FitResult, shared: set[str]) -> tuple[float | None, float | None]:
    """In-sample busbw MAPE (measured / predicted time − 1, as nccl_error.py) of the fit's rows at >= 1 MiB and below."""
    big, small = [], []
    for o, predicted in zip(fit.observations, fit.predicted_s):
        if o.unit not in shared:
            continue
        term = next((t for t in o.terms if isinstance(t, CollectiveTerm)), None)
        (big if term is not None and term.size_bytes >= LARGE_BYTES else small).append(abs(o.measured_s / predicted - 1))
    return (float(np.mean(big)) if big else None), (float(np.mean(small)) if small else None)


def _label(c: Candidate) -> str:
    return ", ".join(f"{k} {{{', '.join(v or 'default' for v in c.members[k])}}}" for k in c.members)


def render_inference(inf: FactsInference) -> list[str]:
    """Text lines for the calibrate report: the rule's candidates and what it chose."""
    from moesim.cli.output import table

    lines = ["system facts (moesim/calibrate/facts_fit.py): " + inf.note]
    for key in SYSTEM_FACT_KEYS:
        if key in inf.stated:
            lines.append(f"  {key} {inf.stated[key]}: stated")
        elif key in inf.inferred:
            lines.append(f"  {key} {inf.inferred[key]}: inferred, written into the profile")
    if inf.candidates:
        rows = [(_label(c), f"{c.loss:.4g}", c.n_parameters, pct(c.mape_ge_1mib), pct(c.mape_lt_1mib),
                 f"{c.evidence_ratio:.3g}") for c in inf.candidates]
        lines.append(table(rows, ["class", "loss", "figures", "MAPE >= 1 MiB", "MAPE < 1 MiB", "evidence ratio"],
                           align="lrrrrr"))
        lines.append(f"  (in-sample; {inf.effective_rows:.1f} effective rows; the default's class is the first)")
    return lines


def provenance_line(inf: FactsInference) -> str:
    """The `calibrated_from` line naming each fact written and whether it was stated or inferred."""
    parts = [f"{k}={v} (stated)" for k, v in inf.stated.items()] + \
        [f"{k}={v} (inferred: facts_fit.py, {inf.note})" for k, v in inf.inferred.items()]
    return "system_facts: " + ("; ".join(parts) if parts else f"none written ({inf.note})")


