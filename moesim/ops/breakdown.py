"""Per-operator breakdown of one layout: every operator the estimate prices, with its shape, efficiency and time.

`operator_breakdown(scenario, layout)` rebuilds the operator lists that `moesim.estimate` prices (the same
TermBuilder, moesim.estimate.terms) for the first pipeline stage's layer classes and input embedding and the
last stage's output head, and returns one row per (layer class, operator, pass) with its time per call and per step
(× layers of the class on the stage × micro-batches). `moesim estimate SCENARIO --ops` prints it; the
validation sections of docs/operators.md compare it with SimuMax's per-module costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.estimate.candidates import effective_capacity_factor
from moesim.estimate.context_parallel import tokens_divisor
from moesim.memory import RECOMPUTE_CODES
from moesim.ops.base import Op
from moesim.ops.graphs import FULL_ITERATION, graphed
from moesim.ops.layer import logits_ops
from moesim.ops.vocab import embedding_ops, embedding_tokens
from moesim.ops.price import op_efficiency, op_time_s
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.workload import build_workload, stage_class_counts


@dataclass(frozen=True)
class OpRow:
    """One operator of the breakdown (times in seconds)."""

    layer_class: str  # "decoder dense", "decoder moe", ..., "head" for the output layer, "embedding" the input
    part: str
    name: str
    kind: str
    pass_: str
    dtype: str
    shape: tuple
    efficiency: float  # of the dtype's peak (compute) or of HBM bandwidth (memory); NaN for host ops
    time_s: float  # one call: per layer, per micro-batch
    calls_per_step: float  # layers of the class on the stage × micro-batches
    kernels: float

    @property
    def step_time_s(self) -> float:
        return self.time_s * self.calls_per_step


def _scalar(x) -> float:
    return float(np.asarray(x, dtype=float).reshape(-1)[0])


def _row(label: str, op: Op, hw, calls: float) -> OpRow:
    eff = float("nan") if op.kind == "host" else _scalar(op_efficiency(op, hw))
    shape = tuple(round(_scalar(c), 3) for c in op.shape)
    return OpRow(label, op.part, op.name, op.kind, op.pass_, op.dtype, shape, eff, _scalar(op_time_s(op, hw)),
                 calls, _scalar(op.kernels))


def term_builder(scenario: Scenario, layout: Layout):
    """(the estimate's TermBuilder for `layout`, one row; the workload; sequences per micro-batch): what
    operator_breakdown prices with (scripts/dsv3_trace.py also reads a class's recomputation time from it)."""
    from moesim.estimate.terms import TermBuilder

    model, hw, tr = scenario.model, scenario.hardware, scenario.training
    seq, dec = scenario.seq_lens
    b = tr.global_batch_sequences / (layout.dp * tr.micro_batches) / tokens_divisor(np.array([layout.cp]))
    arr = lambda v: np.array([float(v)])  # noqa: E731
    builder = TermBuilder(model, hw, tr, b, arr(layout.tp), arr(layout.ep), arr(layout.etp),
                          arr(RECOMPUTE_CODES[tr.recompute]), arr(effective_capacity_factor(scenario, tr)),
                          arr(layout.cp), None)
    return builder, build_workload(model, seq, dec), b


def operator_breakdown(scenario: Scenario, layout: Layout) -> list[OpRow]:
    """The priced operators of the first stage's layer classes (and the last stage's head, the first's embedding)
    for `layout`."""
    model, hw, tr = scenario.model, scenario.hardware, scenario.training
    seq, dec = scenario.seq_lens
    builder, wl, b = term_builder(scenario, layout)
    m = tr.micro_batches
    arr = lambda v: np.array([float(v)])  # noqa: E731
    counts = stage_class_counts(wl, layout.pp, layout.first_stage_layers, layout.last_stage_layers)[0]
    rows: list[OpRow] = []
    for cls, layers in zip(wl.classes, counts):
        if not layers:
            continue
        terms = builder.build(cls)
        label = f"{cls.stack} {'moe' if cls.is_moe else 'dense'}{' mtp' if cls.mtp else ''}" \
            + (f" {cls.mask}" if cls.mask else "")
        rows += [_row(label, op, hw, layers * m) for op in terms.ops_fwd + terms.ops_bwd]
    # the head and embedding replay in a whole-iteration graph too (moesim.ops.graphs.FULL_ITERATION)
    whole = (lambda ops: graphed(ops, tr.cuda_graph_scope, False)) if FULL_ITERATION in tr.cuda_graph_scope else list
    fwd, bwd = logits_ops(model, tr, b, arr(layout.tp), wl.output_tokens, hw.device_kind)
    rows += [_row("head", op, hw, wl.logit_heads * m) for op in whole(fwd + bwd)]
    fwd, bwd = embedding_ops(model, tr, b, arr(layout.tp), embedding_tokens(model, seq, dec), hw.device_kind)
    rows += [_row("embedding", op, hw, m) for op in whole(fwd + bwd) if np.any(np.asarray(op.kernels) > 0)]
    return rows


def summarize(rows: list[OpRow]) -> dict[str, float]:
    """Seconds per step by operator kind and pass (e.g. "gemm wgrad"), and "total"."""
    out: dict[str, float] = {}
    for r in rows:
        key = f"{r.kind} {r.pass_}"
        out[key] = out.get(key, 0.0) + r.step_time_s
    out["total"] = sum(r.step_time_s for r in rows)
    return out


__all__ = ["OpRow", "operator_breakdown", "summarize", "term_builder"]
