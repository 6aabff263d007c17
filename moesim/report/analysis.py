"""Numbers behind the report's figures, from step estimates; no plotting here.

  breakdown      one step split into parts that add up to the step time:
                 compute + per-micro-batch communication (tp, ep, etp, pp, ZeRO-3 gathers; no more than the
                 exposed communication, where a schedule such as DualPipe overlaps it with compute)
                 + pipeline bubble + exposed gradient sync (the shared embedding's all-reduce
                 and SP's tp all-reduce of replicated gradients included) + optimizer step
  memory         per device, by kind, against the device's memory (estimate's worst stage)
  per-axis comm  time and bytes sent per device per step, summed over the collectives of each axis
  pareto         layouts not beaten on both step time and memory per device
  sensitivity    step time when the capacity factor or the expert count changes (specs replaced
                 with dataclasses.replace and re-estimated on the same layout)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from moesim.capacity import stack_floor_notes
from moesim.errors import SpecError
from moesim.estimate import StepEstimate, estimate
from moesim.estimate.embedding_sync import EMBEDDING_AXIS
from moesim.estimate.evaluation import PER_STEP_NAMES
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario

BREAKDOWN_PARTS = ("compute", "communication (per micro-batch)", "pipeline bubble", "gradient sync (exposed)",
                   "optimizer step")
MEMORY_KINDS = ("weights", "gradients", "optimizer_states", "activations", "moe_buffers", "framework_buffers",
                "peak_transients", "reserved")
# cp: context parallelism (estimate.context_parallel); embd: the first and last stage's embedding group
# (estimate.embedding_sync)
AXES = ("tp", "ep", "etp", "pp", "dp", "edp", "cp", EMBEDDING_AXIS)
CAPACITY_FACTORS = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
EXPERT_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)


def breakdown_s(est: StepEstimate) -> dict[str, float]:
    """The step's parts in seconds (module docstring); they sum to `step_time_s`."""
    # embd and the tp all-reduce of replicated gradients: once per step, after the sync (estimate.evaluation)
    per_mb = sum(c["time_s"] for name, c in est.communication.items()
                 if not c["overlapped_with_backward"] and c["axis"] != EMBEDDING_AXIS and name not in PER_STEP_NAMES)
    # a schedule that overlaps them with compute (DualPipe) exposes only part: no more than the exposed communication
    per_mb = min(per_mb, est.exposed_communication_time_s)
    grad_sync = max(0.0, est.exposed_communication_time_s - per_mb)
    return dict(zip(BREAKDOWN_PARTS, (est.compute_time_s, per_mb, est.bubble_time_s, grad_sync,
                                      est.optimizer_time_s)))


def memory_bytes(est: StepEstimate) -> dict[str, float]:
    """Bytes per device by kind (the estimate's worst pipeline stage)."""
    return {k: est.memory_bytes_per_device.get(k, 0.0) for k in MEMORY_KINDS}


def comm_per_axis(est: StepEstimate) -> dict[str, dict[str, float]]:
    """{axis: {"time_s", "bytes_per_device"}} per step, summed over that axis's collectives."""
    out = {axis: {"time_s": 0.0, "bytes_per_device": 0.0} for axis in AXES}
    for c in est.communication.values():
        out[c["axis"]]["time_s"] += c["time_s"]
        out[c["axis"]]["bytes_per_device"] += c["bytes_per_device"]
    return out


def pareto_front(estimates: list[StepEstimate]) -> list[int]:
    """Indices of the layouts that fit in memory and that no other fitting layout beats on both step
    time and memory per device, sorted by step time."""
    fit = [i for i, e in enumerate(estimates) if e.fits_in_memory]
    mem = lambda i: estimates[i].memory_bytes_per_device["total"]  # noqa: E731
    front = [i for i in fit if not any(
        estimates[j].step_time_s <= estimates[i].step_time_s and mem(j) <= mem(i)
        and (estimates[j].step_time_s < estimates[i].step_time_s or mem(j) < mem(i)) for j in fit)]
    return sorted(front, key=lambda i: estimates[i].step_time_s)


@dataclass(frozen=True)
class Sweep:
    """Step time (and memory) of one layout as one model or training value changes."""

    name: str
    unit: str
    values: tuple[float, ...]
    step_time_s: tuple[float, ...]
    memory_bytes: tuple[float, ...]
    baseline: float
    note: str = ""


def capacity_factor_sweep(scenario: Scenario, layout: Layout, training=None) -> Sweep:
    """Step time against the training capacity factor (dropless models have none to vary)."""
    training = training or scenario.training
    moe = scenario.model.moe
    if moe is None or moe.dropless:
        kind = "dense" if moe is None else "dropless"
        return Sweep("capacity factor", "", (), (), (), math.nan,
                     note=f"{kind} model: no capacity factor to vary")
    base = training.capacity_factor if training.capacity_factor is not None else moe.capacity_factor_train
    values = tuple(sorted(set(CAPACITY_FACTORS) | {base}))
    ests = [estimate(scenario, layout, dataclasses.replace(training, capacity_factor=cf)) for cf in values]
    return Sweep("capacity factor", "", values, tuple(e.step_time_s for e in ests),
                 tuple(e.memory_bytes_per_device["total"] for e in ests), base,
                 note=_floor_note([stack_floor_notes(moe, e.moe) for e in ests], values,
                                  len(ests[0].moe.get("by_stack") or {"": None})))


def _factors(values) -> str:
    return f"capacity factor{'s' if len(values) > 1 else ''} {', '.join(f'{cf:g}' for cf in values)}"


def _floor_note(per_factor: list[dict[str, str]], values, stacks_priced: int) -> str:
    """Where the expert capacity floor overrides the panel's factors (whyrank, session 20: a flat panel says why);
    an encoder-decoder's stacks each (their routing groups differ), flat only where it overrides all
    `stacks_priced` stacks."""
    stacks: dict[str, list] = {}
    for cf, notes in zip(values, per_factor):
        for stack, said in notes.items():
            stacks.setdefault(stack, []).append((cf, said))
    if not stacks:
        return ""
    if list(stacks) == [""]:  # a decoder-only model: one routing group
        floored = stacks[""]
        return (f"the expert capacity floor overrides {_factors([cf for cf, _ in floored])} (flat there): "
                f"{floored[-1][1]}")
    flat = [cf for cf, notes in zip(values, per_factor) if len(notes) == stacks_priced]
    where = (f"flat at {', '.join(f'{cf:g}' for cf in flat)}, where it overrides every stack" if flat
             else "not flat: another stack's capacity still follows the factor")
    return ("the expert capacity floor overrides " + " and ".join(
        f"{_factors([cf for cf, _ in floored])} in the {stack}" for stack, floored in stacks.items())
        + f" ({where}): " + "; ".join(f"{stack}: {floored[-1][1]}" for stack, floored in stacks.items()))


def expert_count_sweep(scenario: Scenario, layout: Layout, training=None) -> Sweep:
    """Step time against routed experts per MoE layer, on the same layout (counts the layout's ep divides)."""
    training = training or scenario.training
    moe = scenario.model.moe
    if moe is None:
        return Sweep("routed experts per MoE layer", "", (), (), (), math.nan, note="dense model: no experts")
    counts = sorted({int(moe.num_experts * f) for f in EXPERT_MULTIPLES})
    values, times, memory = [], [], []
    for n in counts:
        if n < moe.top_k or n % layout.ep:
            continue
        model = dataclasses.replace(scenario.model, moe=dataclasses.replace(moe, num_experts=n))
        try:
            est = estimate(dataclasses.replace(scenario, model=model), layout, training)
        except SpecError:
            continue
        values.append(float(n))
        times.append(est.step_time_s)
        memory.append(est.memory_bytes_per_device["total"])
    return Sweep("routed experts per MoE layer", "", tuple(values), tuple(times), tuple(memory),
                 float(moe.num_experts), note=f"expert counts divisible by ep = {layout.ep}")
