"""StepEstimate: one candidate's figures with their breakdown, and the bottleneck rule."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moesim.capacity import drop_warning
from moesim.context_note import rope_context_warning
from moesim.estimate.core import Evaluation
from moesim.estimate.evaluation import per_micro_batch
from moesim.estimate.embedding_sync import EMBEDDING_AXIS, EMBEDDING_GROUP_RANKS
from moesim.megatron_rules import megatron_layout_warnings
from moesim.specs.layout import Layout, layout_arg
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec
from moesim.unread_settings import (fp8_gemm_keys_note, row_override_note, sm_share_note, te_op_fuser_note,
                                     zero_bubble_grad_reduce_note)


def bottleneck_part(name: str, axis: str, op: str) -> str | None:
    """The part of the step (bottlenecks) a collective's time counts in: its axis and op for the per-micro-batch
    axes and ZeRO-3's parameter gathers; None for the rest, which counts in the exposed gradient sync."""
    if per_micro_batch(name, axis) or "param_all_gather" in name:
        return f"{axis} {op}" if "param" not in name else f"{axis} ZeRO-3 parameter gathers"
    return None


def bottlenecks(ev: Evaluation) -> np.ndarray:
    """Per candidate, the largest exposed part of the step: compute, a mesh axis's collectives,
    the pipeline bubble, exposed gradient sync, or the optimizer step."""
    parts = {"compute": ev.compute_time_s, "pipeline bubble": ev.bubble_time_s,
             "optimizer step": ev.optimizer_time_s}
    per_axis: dict[str, np.ndarray] = {}
    for name, comm in ev.comms.items():
        label = bottleneck_part(name, comm.axis, comm.op)
        if label is not None:
            per_axis[label] = per_axis.get(label, 0) + comm.time_s
    parts.update(per_axis)
    parts["gradient sync (exposed)"] = ev.step_time_s - (ev.compute_time_s + ev.bubble_time_s + ev.optimizer_time_s
                                                          + sum(per_axis.values(), np.zeros(len(ev.step_time_s))))
    names = list(parts)
    values = np.stack([np.broadcast_to(np.asarray(parts[n], dtype=float), ev.step_time_s.shape) for n in names])
    return np.array(names, dtype=object)[np.argmax(values, axis=0)]


@dataclass(frozen=True)
class StepEstimate:
    """The analytical estimate of one training step of one layout (all per device unless named)."""

    scenario: str
    hardware: str
    devices: int
    layout: Layout
    training: TrainingSpec
    step_time_s: float
    step_time_no_overlap_s: float
    compute_time_s: float
    communication_time_s: float
    exposed_communication_time_s: float
    bubble_time_s: float
    optimizer_time_s: float
    communication: dict[str, dict]
    memory_bytes_per_device: dict[str, float]
    memory_capacity_bytes: float
    fits_in_memory: bool
    mfu: float
    hfu: float
    tokens_per_s: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    bottleneck: str
    moe: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # How FLOPs are counted (moesim/ops/attention.py): MFU on the full score matrix, attention time on the
    # tiles the mask's kernel computes; per layer stack its self-attention mask and computed fraction.
    flop_conventions: dict = field(default_factory=dict)

    def layout_dict(self) -> dict:
        """Degrees, order and execution options (capacity factor None when dropless), as search lists them."""
        tr = self.training
        out = self.layout.as_dict() | {"micro_batches": tr.micro_batches, "zero_stage": tr.zero_stage,
                                       "recompute": tr.recompute}
        if self.moe:
            out["capacity_factor"] = self.moe["capacity_factor"]
        return out | {"pipeline_schedule": tr.pipeline_schedule}

    @property
    def layout_arg(self) -> str:
        """The `--layout` value that reproduces this estimate (`moesim estimate SCENARIO --layout ...`)."""
        return layout_arg(self.layout_dict())

    def to_dict(self) -> dict:
        """The JSON form (same as `moesim estimate --json`)."""
        return self.as_dict()

    def __repr__(self) -> str:
        from moesim.api_repr import estimate_repr

        return estimate_repr(self)

    def _repr_html_(self) -> str:
        from moesim.api_repr import estimate_html

        return estimate_html(self)

    def as_dict(self) -> dict:
        """The stable JSON form (`moesim estimate --json`)."""
        tr = self.training
        layout = self.layout.as_dict() | {"micro_batches": tr.micro_batches, "zero_stage": tr.zero_stage,
                                          "recompute": tr.recompute}
        return {
            "scenario": self.scenario, "hardware": self.hardware, "devices": self.devices, "layout": layout,
            "layout_arg": self.layout_arg,
            "step_time_s": self.step_time_s, "step_time_no_overlap_s": self.step_time_no_overlap_s,
            "compute_time_s": self.compute_time_s, "communication_time_s": self.communication_time_s,
            "exposed_communication_time_s": self.exposed_communication_time_s,
            "bubble_time_s": self.bubble_time_s, "optimizer_time_s": self.optimizer_time_s,
            "communication": self.communication,
            "memory_bytes_per_device": self.memory_bytes_per_device,
            "memory_capacity_bytes": self.memory_capacity_bytes, "fits_in_memory": self.fits_in_memory,
            "mfu": self.mfu, "hfu": self.hfu, "tokens_per_s": self.tokens_per_s,
            "model_flops_per_step": self.model_flops_per_step,
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "bottleneck": self.bottleneck, "moe": self.moe, "warnings": list(self.warnings),
            "flop_conventions": self.flop_conventions,
        }


def _routing_figures(moe, capacity, tokens) -> dict:
    """One MoE layer class's tokens per device, routing group (capacity.py's notation: at most group_size_tokens of
    them) and expert capacity, as the moe.* keys give them."""
    tokens = float(tokens)
    return {"tokens_per_device_per_layer": tokens, "routing_group_tokens": min(moe.group_size_tokens or tokens, tokens),
            "expert_capacity": int(capacity)}


def step_estimate(scenario: Scenario, ev: Evaluation, i: int = 0) -> StepEstimate:
    """Candidate `i` of `ev` as a StepEstimate."""
    cands = ev.candidates
    layout, training = cands.layout(i), cands.training(i, scenario.training)
    communication = {}
    for name, comm in ev.comms.items():
        if comm.calls_per_step[i] <= 0:
            continue
        cost = comm.costs[i]
        group = {"tp": layout.tp, "dp": layout.dp * layout.cp, "pp": layout.pp, "ep": layout.ep, "etp": layout.etp,
                 "edp": layout.edp, "cp": layout.cp, EMBEDDING_AXIS: EMBEDDING_GROUP_RANKS}[comm.axis]  # dp: dp·cp
        communication[name] = {
            "axis": comm.axis, "op": comm.op, "group_size": group,
            "size_bytes": float(comm.size_bytes[i]), "calls_per_step": float(comm.calls_per_step[i]),
            "bytes_per_device": float(comm.bytes_per_device[i]), "time_s": float(comm.time_s[i]),
            "overlapped_with_backward": comm.overlappable,
            "algorithm": cost.algorithm, "bottleneck": cost.bottleneck,
        }
    memory = {k: float(v[i]) for k, v in ev.memory.items()}
    memory["total"] = float(ev.memory_total_bytes[i])
    warnings: list[str] = megatron_layout_warnings(scenario, layout)
    warnings += [text] if (text := rope_context_warning(scenario)) else []
    warnings += [text] if (text := te_op_fuser_note(scenario)) else []
    warnings += [text] if (text := fp8_gemm_keys_note(scenario)) else []
    warnings += [text] if (text := sm_share_note(scenario, layout)) else []
    warnings += [text] if (text := zero_bubble_grad_reduce_note(training)) else []  # the row's schedule / ZeRO
    warnings += [text] if (text := row_override_note(scenario.training, training)) else []  # a search row's
    if not ev.fits[i]:
        gib = 2.0 ** 30
        largest = sorted(((v, k) for k, v in memory.items() if k != "total"), reverse=True)[:3]
        warnings.append(f"does not fit: {memory['total'] / gib:.2f} GiB per device, "
                        f"{(memory['total'] - ev.memory_capacity_bytes) / gib:.2f} GiB over the "
                        f"{ev.memory_capacity_bytes / gib:.2f} GiB usable (largest: "
                        + ", ".join(f"{k} {v / gib:.2f} GiB" for v, k in largest)
                        + "); `moesim search` ranks the layouts that fit, or says what would make one fit")
    moe_info = {}
    model = scenario.model
    if model.moe is not None and ev.expert_capacity is not None:
        cf = training.capacity_factor if training.capacity_factor is not None else model.moe.capacity_factor_train
        moe_info = {
            "capacity_factor": cf, "capacity_rule": model.moe.capacity_rule,
            **_routing_figures(model.moe, ev.expert_capacity[i], ev.tokens_per_device[i]),
            # over every MoE layer, weighted by its assignments (an encoder-decoder's decoder layers route smaller
            # groups than the encoder's, whose figures the keys above give)
            "expected_drop_fraction_uniform": None if cf is None else float(ev.drop_fraction[i]),
        }
        if len(ev.moe_by_stack) > 1:  # an encoder-decoder: whose figures the keys above are, and each stack's
            moe_info["stack"] = next(iter(ev.moe_by_stack))
            moe_info["by_stack"] = {stack: _routing_figures(model.moe, c[i], t[i])
                                    for stack, (c, t) in ev.moe_by_stack.items()}
        text = drop_warning(model.moe, moe_info["expected_drop_fraction_uniform"], cf)
        if text:
            warnings.append(text)
    return StepEstimate(
        scenario=scenario.name, hardware=scenario.hardware.name, devices=scenario.devices, layout=layout,
        training=training, step_time_s=float(ev.step_time_s[i]),
        step_time_no_overlap_s=float(ev.step_time_no_overlap_s[i]), compute_time_s=float(ev.compute_time_s[i]),
        communication_time_s=float(ev.communication_time_s[i]),
        exposed_communication_time_s=float(ev.exposed_communication_time_s[i]),
        bubble_time_s=float(ev.bubble_time_s[i]), optimizer_time_s=float(ev.optimizer_time_s[i]),
        communication=communication, memory_bytes_per_device=memory,
        memory_capacity_bytes=float(ev.memory_capacity_bytes), fits_in_memory=bool(ev.fits[i]),
        mfu=float(ev.mfu[i]), hfu=float(ev.hfu[i]), tokens_per_s=float(ev.tokens_per_s[i]),
        model_flops_per_step=float(ev.model_flops_per_step[i]),
        hardware_flops_per_step=float(ev.hardware_flops_per_step[i]), bottleneck=str(bottlenecks(ev)[i]),
        moe=moe_info, warnings=tuple(warnings), flop_conventions=flop_conventions(scenario),
    )


def flop_conventions(scenario: Scenario) -> dict:
    """The two attention FLOP conventions of an estimate, and each stack's mask (moesim/ops/attention.py)."""
    from moesim.ops.attention import work_fraction
    from moesim.ops.layer import mask_params, self_attention_mask
    from moesim.workload import build_workload

    wl = build_workload(scenario.model, *scenario.seq_lens)
    masks, by_mask = {}, {}
    for c, cls in enumerate(wl.classes):
        mask = self_attention_mask(scenario.model, cls)
        frac = work_fraction(mask, cls.tokens, cls.tokens, **mask_params(scenario.model))
        masks[cls.stack] = {"mask": mask, "tokens": cls.tokens, "computed_fraction": frac}
        if cls.mask and not cls.mtp:  # a layer_pattern: each mask's layers, and the stack as their mean
            entry = by_mask.setdefault(cls.stack, {}).setdefault(mask, {"layers": 0, "computed_fraction": frac})
            entry["layers"] += wl.layer_class_index.count(c)
    for stack, entries in by_mask.items():
        layers = sum(e["layers"] for e in entries.values())
        masks[stack] |= {"mask": "+".join(entries), "by_mask": entries,
                         "computed_fraction": sum(e["layers"] * e["computed_fraction"] for e in entries.values())
                         / layers}
    return {"mfu_attention_flops": "full score matrix, 4·s²·d per head forward (PaLM, arXiv 2204.02311 App. B)",
            "attention_time_flops": "tiles the mask's flash kernel computes (128 x 128), backward 2.5 x forward",
            "self_attention": masks}
