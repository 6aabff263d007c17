"""The expert all-to-all of a Megatron-Bridge row and what Megatron-Core's EP A2A overlap would hide of it.

Validation only, nothing here is fitted to the published figures. The overlap is a scenario key
(training.moe_a2a_overlap, interleaved only, both engines); on the rows whose vp moesim writes as 1F1B (uneven
chunks) the key cannot be set, and `overlap_variant` prices Megatron's own per-layer order beside the operator list
for them (on a row whose scenario already prices the overlap it hides nothing more).

`a2a_rows` gives, per EP all-to-all the estimate charges (dispatch, combine), its group, the nodes the group spans,
bytes, µs per call, NCCL's algorithm / protocol and the per-step time, all read off the estimate. `overlap_variant`
prices Megatron-Core's combined 1F1B schedule (`overlap_moe_expert_parallel_comm` with `delay_wgrad_compute`), whose
per-layer order is Megatron-LM megatron/core/models/common/model_chunk_schedule_plan.py
TransformerLayerSchedulePlan.run (d98e8a64; docstring):

    comm stream: combine_bwd       | dispatch_fwd -> dispatch_bwd    | combine_fwd
    comp stream: pre_dispatch_fwd  | mlp_bwd -> mlp_bwd_dw -> mlp_fwd | pre_dispatch_bwd

so one forward layer paired with another micro-batch's backward layer takes
max(c, A_f) + max(2·d, M_b + M_f) + max(c, A_b) (`layer_pair_s`) instead of A_f + M_f + A_b + M_b + 2·d + 2·c, where
A is the pre-dispatch part (attention, router), M the MoE part (permute, experts, shared experts, unpermute; the
backward's weight gradients with it), d and c one dispatch and one combine all-to-all. Only the interleaved 1F1B's
steady state pairs a forward with a backward: Megatron runs (p − 1)·2 + (v − 1)·p + 1 warm-up chunks on the first
stage with the overlap on (megatron/core/pipeline_parallel/schedules.py get_pp_rank_microbatches, one more than
without), whose forwards and the matching cool-down backwards run unpaired (`paired_fraction`).
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.models.bridge_perf import BridgeRow, Priced, price_row, row_scenario

A2A_ENTRIES = ("ep_all_to_all_dispatch", "ep_all_to_all_combine")  # the estimate's ledger names (comm_ledger)
PRE_DISPATCH_PARTS = ("attention", "router")  # Megatron's pre_dispatch_computation: attention, then the router
MOE_PARTS = ("permute", "expert_ffn", "shared_experts", "unpermute")  # its mlp node (experts, shared experts)
BACKWARD_PASSES = ("bwd", "dgrad", "wgrad")  # moesim.ops pass names of the backward


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


@dataclass(frozen=True)
class OverlapVariant:
    """The combined 1F1B schedule priced beside the estimate (module docstring); seconds."""

    pre_dispatch_fwd_s: float
    moe_fwd_s: float
    pre_dispatch_bwd_s: float
    moe_bwd_s: float
    dispatch_s: float
    combine_s: float
    moe_layers: float  # MoE layers on the slowest stage (dispatch calls per micro-batch / 2)
    micro_batches: int
    paired: float  # the fraction of layer passes that run paired
    step_s: float  # the estimate's step (exposed all-to-all)
    variant_step_s: float

    @property
    def serial_pair_s(self) -> float:
        return (self.pre_dispatch_fwd_s + self.moe_fwd_s + self.pre_dispatch_bwd_s + self.moe_bwd_s
                + 2 * self.dispatch_s + 2 * self.combine_s)

    @property
    def overlapped_pair_s(self) -> float:
        return layer_pair_s(self.pre_dispatch_fwd_s, self.moe_fwd_s, self.pre_dispatch_bwd_s, self.moe_bwd_s,
                            self.dispatch_s, self.combine_s)


def layer_pair_s(pre_f: float, moe_f: float, pre_b: float, moe_b: float, dispatch: float, combine: float) -> float:
    """One forward layer and another micro-batch's backward layer under the combined 1F1B schedule."""
    # Megatron-LM model_chunk_schedule_plan.py TransformerLayerSchedulePlan.run: three phases, two streams each
    return max(combine, pre_f) + max(2 * dispatch, moe_b + moe_f) + max(combine, pre_b)


def paired_fraction(m: int, pp: int, vp: int) -> float:
    """Share of the first stage's m·v chunk passes that run as forward-backward pairs (module docstring)."""
    if pp == 1:  # Megatron's combined_1f1b_schedule_for_no_pipelining pairs every micro-batch but the first
        return (m - 1) / m
    # schedules.py get_pp_rank_microbatches: (p − 1)·2 + (v − 1)·group + 1 warm-up chunks (group = p by default)
    warmup = min(m * vp, (pp - 1) * 2 + (vp - 1) * pp + 1)
    return (m * vp - warmup) / (m * vp)


def _scenario(p: Priced):
    name, _, mods = p.recompute.partition(" ")
    modules = tuple(x for x in mods.strip("()").split(", ") if x)
    return row_scenario(p.row, name, modules)


def _estimate(p: Priced):
    from moesim.collectives.select import model_for
    from moesim.estimate import evaluate, step_estimate
    from moesim.estimate.candidates import single

    sc = _scenario(p)
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


def overlap_variant(p: Priced) -> OverlapVariant:
    from moesim.ops.breakdown import operator_breakdown

    sc, layout, est = _estimate(p)
    ops = [o for o in operator_breakdown(sc, layout) if o.layer_class == "decoder moe"]

    def part_s(parts, passes):
        return sum(o.time_s for o in ops if o.part in parts and o.pass_ in passes)

    m = sc.training.micro_batches
    d = est.communication[A2A_ENTRIES[0]]
    c = est.communication[A2A_ENTRIES[1]]
    v = OverlapVariant(part_s(PRE_DISPATCH_PARTS, ("fwd",)), part_s(MOE_PARTS, ("fwd",)),
                       part_s(PRE_DISPATCH_PARTS, BACKWARD_PASSES), part_s(MOE_PARTS, BACKWARD_PASSES),
                       d["time_s"] / d["calls_per_step"], c["time_s"] / c["calls_per_step"],
                       d["calls_per_step"] / m / 2, m, paired_fraction(m, p.row.pp, p.row.vp), est.step_time_s, 0.0)
    hidden_s = (v.serial_pair_s - v.overlapped_pair_s) * v.moe_layers * m * v.paired
    saved = 0.0 if sc.training.moe_a2a_overlap else hidden_s  # the scenario prices it already: nothing more
    return OverlapVariant(**{**v.__dict__, "variant_step_s": est.step_time_s - saved})


def render(rows: tuple[BridgeRow, ...]) -> str:
    """The breakdown and the variant for `rows` (scripts/bridge_a2a.py prints it)."""
    out = ["| case | all-to-all | group (nodes) | MiB per call | µs per call | algorithm | bottleneck | "
           "per step s |", "|---|---|---:|---:|---:|---|---|---:|"]
    variants = []
    for r in rows:
        p = price_row(r)
        for a in a2a_rows(p):
            out.append(f"| `{r.case}` | {a.name} | {a.group_size} ({a.nodes}) | {a.size_bytes / 2**20:.1f} | "
                       f"{a.per_call_s * 1e6:.0f} | {a.algorithm} | {a.bottleneck} | {a.step_s:.3f} |")
        variants.append((p, overlap_variant(p)))
    out += ["", "| case | recipe's moe_a2a_overlap | A_f, M_f, A_b, M_b ms | d, c ms | layer pair serial -> "
            "overlapped ms | paired | moesim step s (error) | with the overlap s (error) |",
            "|---|---|---|---|---|---:|---|---|"]
    for p, v in variants:
        pub = p.row.published_step_s
        on = p.row.moe_a2a_overlap or "not read"
        on += " (priced in the list)" if v.variant_step_s == v.step_s else ""
        out.append(f"| `{p.row.case}` | {on} | "
                   f"{v.pre_dispatch_fwd_s * 1e3:.2f}, {v.moe_fwd_s * 1e3:.2f}, {v.pre_dispatch_bwd_s * 1e3:.2f}, "
                   f"{v.moe_bwd_s * 1e3:.2f} | {v.dispatch_s * 1e3:.2f}, {v.combine_s * 1e3:.2f} | "
                   f"{v.serial_pair_s * 1e3:.2f} -> {v.overlapped_pair_s * 1e3:.2f} | {v.paired:.3f} | "
                   f"{v.step_s:.3f} ({(v.step_s / pub - 1) * 100:+.1f} %) | "
                   f"{v.variant_step_s:.3f} ({(v.variant_step_s / pub - 1) * 100:+.1f} %) |")
    return "\n".join(out)
