"""The expert all-to-all of a Megatron-Bridge row, as the estimate charges it.

Validation only, nothing here is fitted to the published figures. `a2a_rows` gives, per EP all-to-all the estimate
charges (dispatch, combine), its group, the nodes the group spans, bytes, µs per call, NCCL's algorithm / protocol
and the per-step time, all read off the estimate. Megatron-Core's EP A2A overlap (training.moe_a2a_overlap) is priced
in the operator list, in Megatron's per-layer order, by both engines (moesim.estimate.a2a_order; session 21,
a2aorder: the side pricing this module held went, one path).
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.models.bridge_perf import BridgeRow, Priced, price_row, row_scenario

A2A_ENTRIES = ("ep_all_to_all_dispatch", "ep_all_to_all_combine")  # the estimate's ledger names (comm_ledger)


@dataclass(frozen=True)
class A2ARow:
    """One EP all-to-all as the estimate charges it on the slowest stage."""

    name: str
    group_size: int
    nodes: int  # innermost interconnect domains (nodes; an NVL72 rack) the EP group spans, ranks ordered tp, ep, dp, pp
    size_bytes: float  # what one rank sends and receives per call (its whole buffer)
    per_call_s: float
    calls_per_step: float
    step_s: float
    algorithm: str
    bottleneck: str


def _estimate(p: Priced):
    from moesim.collectives.select import model_for
    from moesim.estimate import evaluate, step_estimate
    from moesim.estimate.candidates import single

    sc = row_scenario(p.row, p.recompute_mode, p.recompute_modules)
    layout = sc.resolve()
    est = step_estimate(sc, evaluate(sc, single(sc, layout), model_for(sc)), 0)
    return sc, layout, est


def a2a_rows(p: Priced) -> list[A2ARow]:
    sc, layout, est = _estimate(p)
    per_domain = sc.hardware.interconnect[0].domain_devices  # the innermost (NVLink) domain: a node, an NVL72 rack
    out = []
    for name in A2A_ENTRIES:
        e = est.communication.get(name)
        if e is None:
            continue
        stride = layout.tp  # ranks ordered tp, ep, dp, pp (moesim.specs.layout): ep neighbours tp apart
        nodes = max(1, -(-e["group_size"] * stride // per_domain))
        out.append(A2ARow(name, e["group_size"], nodes, e["size_bytes"], e["time_s"] / e["calls_per_step"],
                          e["calls_per_step"], e["time_s"], e["algorithm"], e["bottleneck"]))
    return out


def render(rows: tuple[BridgeRow, ...]) -> str:
    """The breakdown for `rows` (scripts/bridge_a2a.py prints it)."""
    out = ["| case | all-to-all | group (nodes) | MiB per call | µs per call | algorithm | bottleneck | "
           "per step s |", "|---|---|---:|---:|---:|---|---|---:|"]
    for r in rows:
        p = price_row(r)
        for a in a2a_rows(p):
            out.append(f"| `{r.case}` | {a.name} | {a.group_size} ({a.nodes}) | {a.size_bytes / 2**20:.1f} | "
                       f"{a.per_call_s * 1e6:.0f} | {a.algorithm} | {a.bottleneck} | {a.step_s:.3f} |")
    return "\n".join(out)
