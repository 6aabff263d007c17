"""The B200 release rows split per decoder layer: what a host-bound step would need (validation only, never priced).

Session 19 (hostcost): the B200 release table's step-time error grows with tensor parallelism (docs/operators.md,
"Every row of the B200 release table"). A step runs at the host's pace where the host takes longer to issue a
layer's kernels than the GPU takes to run them; Megatron-LM's dense step has no host synchronisation between
micro-batches, so the host runs ahead through the long GEMMs and the step is bound by the longer of the two
per layer. `split_row` takes one Llama row (pp 1, no CP: every layer-micro-batch alike) apart as moesim prices
it: decoder layers × micro-batches, each with its operators (kernels, GPU time, the profile's launch charge)
and its TP collectives, and the rest of the step (head, embedding, optimizer, data-parallel reduction).
`host_needed_s` is the host time per layer-micro-batch at which a host-bound step would take the published
time; `host_bound_step_s` prices a step for a given host time per layer. No host figure is shipped: the
sources searched hold none measured on the runs' host (docs/collectives-history.md, Session 19 (hostcost)).
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.errors import SpecError
from moesim.models.b200_release import ReleaseRow, load_rows, row_scenario
from moesim.units import format_fraction_pct as _pct

# The TP collectives of a decoder layer (moesim/estimate/comm_ledger.py's names): SP's all-gather before the
# column-parallel GEMMs, its reduce-scatter after the row-parallel ones, and the backward's all-gather for wgrad.
LAYER_TP_COLLECTIVES = ("tp_all_gather", "tp_reduce_scatter", "tp_all_gather_wgrad", "tp_all_gather_mla_latents",
                        "tp_reduce_scatter_mla_latents", "tp_all_gather_wgrad_mla_latents",  # MLA: mla_tp_comms.py
                        "tp_amax_all_reduce",  # FP8 current scaling under SP: estimate/amax_comms.py
                        "tp_all_gather_shared_experts", "tp_reduce_scatter_shared_experts",  # shared_tp_comms.py
                        "tp_all_gather_wgrad_shared_experts", "tp_all_reduce_shared_experts")
# The row whose excess stands out (−20.7 % at mb 4 against −10.1 % at tp 4): the probe's host time is its.
PROBE_SCENARIO = "llama3-70b-l12-b200-tp8"


@dataclass(frozen=True)
class LayerSplit:
    """One release row split per decoder layer-micro-batch (seconds; kernels as moesim counts them)."""

    row: ReleaseRow
    layer_micro_batches: int  # decoder layers on the stage × micro-batches
    kernels: float  # moesim's kernels of one layer-micro-batch's operators (forward and backward)
    collective_calls: float  # TP collective calls of one layer-micro-batch
    ops_gpu_s: float  # the operators' GPU time, launches left out
    launch_s: float  # the profile's kernel_launch_us charged to those kernels
    tp_comm_s: float  # the TP collectives' time
    step_s: float  # moesim's step time (estimate)

    @property
    def layer_gpu_s(self) -> float:
        """GPU time of one layer-micro-batch: operators and TP collectives, without the launch charge."""
        return self.ops_gpu_s + self.tp_comm_s

    @property
    def layer_priced_s(self) -> float:
        return self.layer_gpu_s + self.launch_s

    @property
    def outside_s(self) -> float:
        """The step less its decoder layers: head, embedding, optimizer, data-parallel reduction."""
        return self.step_s - self.layer_micro_batches * self.layer_priced_s

    @property
    def gpu_per_kernel_s(self) -> float:
        """Mean GPU time per kernel of a layer-micro-batch (operators' kernels and collective calls)."""
        return self.layer_gpu_s / (self.kernels + self.collective_calls)

    @property
    def host_needed_s(self) -> float:
        """Host time per layer-micro-batch at which a host-bound step takes the published time (the rest of the
        step priced as moesim prices it)."""
        return (self.row.real_ms / 1e3 - self.outside_s) / self.layer_micro_batches


def host_bound_step_s(split: LayerSplit, host_per_layer_s: float) -> float:
    """Step time when each layer-micro-batch takes the longer of its GPU time and the host's time to issue it
    (the host running ahead through long kernels; no synchronisation inside the dense step), the rest as priced."""
    # max(GPU, host) per layer: a queue the host fills ahead of the GPU (docs/operators.md, Session 19 (hostcost))
    return split.outside_s + split.layer_micro_batches * max(split.layer_gpu_s, host_per_layer_s)


def split_row(row: ReleaseRow) -> LayerSplit:
    """`row` per layer-micro-batch; Llama rows at pp 1 without CP only (every layer-micro-batch the same)."""
    from moesim.api import with_layout
    from moesim.estimate import estimate
    from moesim.ops.breakdown import operator_breakdown

    if row.pp != 1 or row.cp != 1 or not row.scenario.startswith("llama3"):
        raise SpecError(f"{row.case}: split_row takes Llama rows at pp 1 without CP (every layer-micro-batch "
                        "alike)", field="case", value=row.case)
    base, layout_text = row_scenario(row)
    sc, layout = with_layout(base, layout_text)
    launch = sc.hardware.efficiency.kernel_launch_s
    ops = [o for o in operator_breakdown(sc, layout) if o.layer_class.startswith("decoder") and o.kind != "host"]
    lm = row.layers * row.micro_batches
    if any(o.calls_per_step != lm for o in ops):
        raise SpecError(f"{row.case}: decoder operators not called once per layer-micro-batch", field="case",
                        value=row.case)
    kernels = sum(o.kernels for o in ops)
    result = estimate(sc, layout)
    comm = result.as_dict()["communication"]
    tp = [comm[k] for k in LAYER_TP_COLLECTIVES if k in comm]
    return LayerSplit(row=row, layer_micro_batches=lm, kernels=kernels,
                      collective_calls=sum(c["calls_per_step"] for c in tp) / lm,
                      ops_gpu_s=sum(o.time_s for o in ops) - kernels * launch, launch_s=kernels * launch,
                      tp_comm_s=sum(c["time_s"] for c in tp) / lm, step_s=result.step_time_s)


def split_rows() -> list[LayerSplit]:
    """Every Llama row of the release table at pp 1 without CP."""
    return [split_row(r) for r in load_rows() if r.pp == 1 and r.cp == 1 and r.scenario.startswith("llama3")]


def render_block(splits: list[LayerSplit]) -> str:
    """The generated block of docs/operators.md (Session 19, hostcost), without its marker lines."""
    out = ["| case | tp | layer·mb | kernels + TP calls per layer·mb | GPU µs per kernel | GPU ms per layer·mb "
           "(of it TP comm) | launch charge ms | rest of step ms | moesim error | host ms per layer·mb for the "
           "published time |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in splits:
        r = s.row
        out.append(f"| `{r.case}` | {r.tp} | {s.layer_micro_batches} | {s.kernels:g} + {s.collective_calls:g} | "
                   f"{s.gpu_per_kernel_s * 1e6:.1f} | {s.layer_gpu_s * 1e3:.3f} ({s.tp_comm_s * 1e3:.3f}) | "
                   f"{s.launch_s * 1e3:.3f} | {s.outside_s * 1e3:.1f} | {_pct(s.step_s * 1e3 / r.real_ms - 1)} | "
                   f"{s.host_needed_s * 1e3:.3f} |")
    out += ["", "One host time per layer·mb for every row at a micro-batch count (a layer issues the same TE "
            "modules at every tp and, at tp > 1, the same ten TP collectives; its host time hardly depends on the "
            "GEMMs' sizes): the one Llama-3-70B's tp 8 row would need, applied to every row. A consistency probe "
            "read off a release row, never a price:", "",
            "| case | GPU ms per layer·mb | host ms per layer·mb (70B tp 8's) | error → host-bound |",
            "|---|---:|---:|---:|"]
    probe = {s.row.micro_batches: s.host_needed_s for s in splits
             if s.row.tp == 8 and s.row.scenario == PROBE_SCENARIO}
    for s in splits:
        h = probe.get(s.row.micro_batches)
        if h is None:
            continue
        out.append(f"| `{s.row.case}` | {s.layer_gpu_s * 1e3:.3f} | {h * 1e3:.3f} | "
                   f"{_pct(s.step_s * 1e3 / s.row.real_ms - 1)} → "
                   f"{_pct(host_bound_step_s(s, h) * 1e3 / s.row.real_ms - 1)} |")
    return "\n".join(out)


__all__ = ["LAYER_TP_COLLECTIVES", "LayerSplit", "PROBE_SCENARIO", "host_bound_step_s", "render_block", "split_row", "split_rows"]
