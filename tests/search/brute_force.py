"""A brute-force layout enumerator for the tests: plain loops, `Scenario.problems` and `estimate` per layout.

Independent of moesim.search: placements are compared through the device-id strides of
`topology.mapping` (attention strides computed here), one layout per distinct placement.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.estimate.candidates import effective_capacity_factor
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.topology.mapping import mesh_strides

AXES = ("tp", "ep", "dp", "pp")
# First words of each Scenario.problems message, in the order of moesim.search.REASONS.
PROBLEM_PREFIX = {
    "num_experts = ": "experts_not_divisible_by_ep", "num_heads = ": "heads_not_divisible_by_tp",
    "num_kv_heads = ": "kv_heads_incompatible_with_tp", "d_ff = ": "d_ff_not_divisible_by_tp",
    "expert_d_ff = ": "expert_d_ff_not_divisible_by_etp", "layers = ": "more_stages_than_layers",
    "order ": "pipeline_stage_mismatch", "global batch = ": "batch_not_divisible_by_dp_micro_batches",
    "moe_a2a_overlap needs ep > 1": "megatron_a2a_overlap_needs_ep_above_1",
    "moe_a2a_overlap at pp = ": "a2a_overlap_needs_interleaved_at_pp_above_1",
}


# The degree rules moesim.search checks before Megatron's own refusals (REASONS' order).
BEFORE_MEGATRON = ("experts_not_divisible_by_ep", "heads_not_divisible_by_tp", "kv_heads_incompatible_with_tp",
                   "d_ff_not_divisible_by_tp", "expert_d_ff_not_divisible_by_etp", "more_stages_than_layers",
                   "sequence_not_divisible_by_2cp")


def megatron_reason(scenario: Scenario, layout: Layout) -> str | None:
    """The Megatron-LM 23e00ed0 refusal `layout` meets (plain conditions), where the scenario runs Megatron + TE on
    GPUs: num_kv_heads not a multiple of tp (transformer_config.py l.696), an MoE layer at tp > 1 without sequence
    parallelism (moe_layer.py l.258), the flex / DeepEP dispatcher at etp·ep = 1 (token_dispatcher.py l.1163)."""
    tr = scenario.training
    if tr.framework != "megatron-te" or scenario.hardware.device_kind != "gpu":
        return overlap_reason(scenario, layout)
    if scenario.model.attention.num_kv_heads % layout.tp:
        return "megatron_query_groups_not_divisible_by_tp"
    if not scenario.model.moe:
        return None
    if layout.tp > 1 and not tr.sequence_parallel:
        return "megatron_moe_tp_needs_sequence_parallel"
    if layout.etp * layout.ep == 1 and tr.dispatch_backend in ("deepep", "deepep_ll"):
        return "megatron_flex_dispatcher_needs_etp_ep_above_1"
    return overlap_reason(scenario, layout)


def overlap_reason(scenario: Scenario, layout: Layout) -> str | None:
    """Megatron-LM d98e8a64 transformer_config.py l.3013-3015: the EP A2A overlap at ep 1, whatever the framework."""
    if scenario.model.moe and scenario.training.moe_a2a_overlap and layout.ep == 1:
        return "megatron_a2a_overlap_needs_ep_above_1"
    return None


def first_reason(reason: str | None, scenario: Scenario, layout: Layout) -> str | None:
    """The first rule broken, `reason` being the first of Scenario.problems: Megatron's after the degree rules."""
    if reason in BEFORE_MEGATRON:
        return reason
    return megatron_reason(scenario, layout) or reason


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def reason_of(problem: str) -> str:
    for prefix, reason in PROBLEM_PREFIX.items():
        if problem.startswith(prefix):
            return reason
    raise AssertionError(f"unexpected problem: {problem}")


def placement(layout: Layout) -> tuple:
    """Strides of every axis with a group (size > 1) in both meshes: equal tuples, equal groups."""
    sizes = {"tp": layout.tp, "dp": layout.dp, "pp": layout.pp, "etp": layout.etp, "ep": layout.ep,
             "edp": layout.edp}
    stride, attention = 1, {}
    for axis in layout.order:
        if axis != "ep":
            attention[axis] = stride
            stride *= sizes[axis]
    expert = mesh_strides(layout)
    return tuple(sorted([(f"a.{a}", s) for a, s in attention.items() if sizes[a] > 1]
                        + [(f"e.{a}", expert[a]) for a in ("etp", "ep", "edp", "pp") if sizes[a] > 1]))


def layouts(scenario: Scenario):
    """Every (layout, micro_batches) of the search space, all 24 orders."""
    devices, moe = scenario.devices, scenario.model.moe
    batch = scenario.training.global_batch_sequences
    for pp in divisors(devices):
        for tp in divisors(devices // pp):
            dp = devices // (pp * tp)
            for ep in divisors(tp * dp) if moe else [1]:
                for etp in divisors(tp * dp // ep) if moe else [1]:
                    mbs = [m for m in divisors(batch // dp) if m <= scenario.search.max_micro_batches] \
                        if batch % dp == 0 else [1]
                    for order in itertools.permutations(AXES):
                        layout = Layout(dp=dp, tp=tp, ep=ep, pp=pp, etp=etp, order=order)
                        for m in mbs:
                            yield layout, m


def classify(scenario: Scenario) -> dict[tuple, tuple[Layout, str | None]]:
    """One entry per distinct (degrees, placement, micro-batches): a representative layout and the
    first rule it breaks (None when valid); an order cutting mismatched stages yields to a valid one."""
    out: dict[tuple, tuple[Layout, str | None]] = {}
    for layout, m in layouts(scenario):
        problems = scenario.problems(layout, m)
        reason = first_reason(reason_of(problems[0]) if problems else None, scenario, layout)
        key = (layout.dp, layout.tp, layout.pp, layout.ep, layout.etp, placement(layout), m)
        if key not in out or (out[key][1] == "pipeline_stage_mismatch" and reason != "pipeline_stage_mismatch"):
            out[key] = (layout, reason)
    return out


def options(scenario: Scenario) -> list[tuple[int, str, float]]:
    """(ZeRO stage, recompute, capacity factor) of the search space, the recompute modes the scenario's training
    options refuse left out (a TrainingSpec with them cannot be built: Megatron-LM's refusals, session 22)."""
    space = scenario.search
    cfs = space.capacity_factors or (effective_capacity_factor(scenario, scenario.training),)
    return list(itertools.product(space.zero_stages, [r for r in space.recompute_modes if _builds(scenario, r)], cfs))


def _builds(scenario: Scenario, recompute: str) -> bool:
    try:
        dataclasses.replace(scenario.training, recompute=recompute)
    except SpecError:
        return False
    return True


def fitting_step_times(scenario: Scenario) -> dict[tuple, float]:
    """{(degrees, placement, m, zero, recompute, cf): step time} of every valid layout that fits."""
    out = {}
    for (dp, tp, pp, ep, etp, place, m), (layout, reason) in classify(scenario).items():
        if reason is not None:
            continue
        for zero, recompute, cf in options(scenario):
            training = dataclasses.replace(scenario.training, micro_batches=m, zero_stage=zero, recompute=recompute,
                                           capacity_factor=None if math.isnan(cf) else cf)
            est = estimate(scenario, layout, training)
            if est.fits_in_memory:
                out[(dp, tp, pp, ep, etp, place, m, zero, recompute, _cf_key(cf))] = est.step_time_s
    return out


def _cf_key(cf: float | None) -> float | None:
    return None if cf is None or math.isnan(cf) else float(cf)


def result_key(result, i: int) -> tuple:
    """The brute-force key of the i-th ranked layout of a SearchResult."""
    lay = result.layout_dict(i)
    layout = result.layout(i)
    return (lay["dp"], lay["tp"], lay["pp"], lay["ep"], lay["etp"], placement(layout), lay["micro_batches"],
            lay["zero_stage"], lay["recompute"], _cf_key(lay["capacity_factor"]))
