"""One Megatron-Bridge row broken down per layer-micro-batch (session 20, smallmoe; validation only, never fitted).

`row_breakdown(case)` rebuilds the operators the estimate prices for a row (moesim.ops.breakdown, the one list
both engines read) and puts them beside the published step time (moesim.models.bridge_perf): per MoE layer and
micro-batch every operator's shape, efficiency, time and kernels; where each grouped GEMM reads the profile's
grouped-GEMM table (inside its measured range, or the nearest measured shape outside it); the collectives issued;
the factor by which each piece alone would have to grow for moesim to take the published time; and two variants of
the expert GEMMs priced beside the list, not in it (`expert_gemm_variants`). `render_block` is the generated block of
docs/operators.md (scripts/bridge_breakdown.py writes and checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.errors import SpecError
from moesim.ops.base import Op
from moesim.ops.breakdown import OpRow, operator_breakdown, term_builder
from moesim.ops.price import op_time_s
from moesim.ops.tables import select_table
from moesim.units import format_fraction_pct as _pct

# The cases broken down in docs/operators.md: the B200 row at MBS 1 with a recipe at the page's commit.
CASES = ("26.02-b200-qwen3-30b-fp8mx-ep8",)
GROUPED_DIMS = ("groups", "rows", "n", "k")  # moesim's grouped_gemm shape order (docs/operators.md, Efficiency tables)
# Pieces of a layer-micro-batch, by operator part (moesim/ops/layer.py parts) and kind.
PIECES = (("attention core (flash)", lambda r: r.name == "attention_core"),
          ("attention GEMMs (qkv, out)", lambda r: r.part == "attention" and r.kind == "gemm"),
          ("router GEMM and gating", lambda r: r.part == "router" and r.name != "moe_norm"),
          ("permute / unpermute copies", lambda r: r.part in ("permute", "unpermute") and r.name not in (
              "fp8_quantise", "moe_residual")),
          ("expert grouped GEMMs", lambda r: r.name in ("expert_fc1", "expert_fc2")),
          ("FP8 casts", lambda r: r.name == "fp8_quantise"),
          ("norms, activation, residuals", lambda r: r.kind == "memory" and r.name in (
              "attn_norm", "moe_norm", "attn_residual", "moe_residual", "expert_activation")))


@dataclass(frozen=True)
class TablePoint:
    """Where one grouped GEMM reads its efficiency table."""

    name: str
    pass_: str
    shape: tuple  # (groups, m, n, k) in the pass's own order (wgrad: groups, k, n, m)
    efficiency: float  # what moesim prices (of the dtype's peak)
    below: tuple[str, ...]  # coordinates under the table's smallest measured value
    above: tuple[str, ...]  # coordinates over its largest
    nearest_shape: tuple  # the nearest measured shape in log coordinates (moesim.ops.tables' outside-hull rule)
    nearest_efficiency: float  # its efficiency (the mean of a shape measured twice)
    table_source: str


@dataclass(frozen=True)
class Piece:
    name: str
    step_s: float  # seconds a step, every MoE layer and micro-batch of the stage
    factor_to_close: float  # how many times longer this piece alone would have to take to meet the published step


@dataclass(frozen=True)
class LayerPace:
    """One row's step time over its stage's layer-micro-batches, published and moesim's."""

    case: str
    mbs: int
    layer_micro_batches: int  # layers on the first stage × micro-batches
    published_layer_s: float
    moesim_layer_s: float


@dataclass(frozen=True)
class Breakdown:
    """One row's MoE layer-micro-batch as the estimate prices it, beside the published step."""

    case: str
    layers: int  # MoE layers on the (first) stage
    micro_batches: int
    published_step_s: float
    moesim_step_s: float
    parts_s: dict  # the estimate's compute, exposed communication, bubble, optimizer
    moe_ops: tuple[OpRow, ...]  # one MoE layer-micro-batch's operators, forward then backward
    other_step_s: float  # head and embedding operators a step
    table_points: tuple[TablePoint, ...]
    collectives: tuple[tuple[str, str, str, float, float], ...]  # (name, axis, op, bytes, calls) per layer-mb
    pieces: tuple[Piece, ...]
    variants: dict[str, float]  # expert_gemm_variants(): name -> extra seconds per layer-micro-batch

    @property
    def layer_micro_batches(self) -> int:
        return self.layers * self.micro_batches

    @property
    def moe_layer_s(self) -> float:
        """GPU time of one MoE layer-micro-batch's operators, forward and backward (launch charges included)."""
        return sum(r.time_s for r in self.moe_ops)

    @property
    def kernels_per_layer(self) -> float:
        return sum(r.kernels for r in self.moe_ops)

    @property
    def gap_s(self) -> float:
        """Published step minus moesim's (positive: moesim too fast)."""
        return self.published_step_s - self.moesim_step_s

    @property
    def host_bound_layer_s(self) -> float:
        """Host time per layer-micro-batch that would make the published step host-bound: the published step less
        the optimizer and the head / embedding operators, over the stage's layer-micro-batches."""
        rest = self.published_step_s - self.parts_s["optimizer"] - self.other_step_s
        return rest / self.layer_micro_batches


def _mean_at(points: np.ndarray, shape: np.ndarray) -> float:
    same = np.all(np.isclose(points[:, :-1], shape), axis=1)
    return float(points[same, -1].mean())


def table_point(row: OpRow, hw) -> TablePoint:
    """Where `row` (a grouped GEMM) reads the profile's table: the table moesim.ops.price selects (an FP8 operator
    without an FP8 table reads the BF16 one), each coordinate against the measured range, and the nearest
    measured shape in log coordinates (what moesim.ops.tables returns outside the table's hull)."""
    if row.kind != "grouped_gemm":
        raise SpecError("table_point: not a grouped GEMM", field="kind", value=row.kind, allowed=["grouped_gemm"])
    tables = hw.efficiency.op_tables
    table = select_table(tables, row.kind, row.dtype, row.pass_, (row.name,))
    if table is None and row.dtype == "float8":
        table = select_table(tables, row.kind, "bfloat16", row.pass_, (row.name,))
    if table is None:
        raise SpecError("no grouped GEMM table in the profile", field="efficiency.op_table", value=row.pass_)
    pts = np.asarray(table.points, dtype=float)
    shape = np.asarray(row.shape, dtype=float)
    lo, hi = pts[:, :-1].min(axis=0), pts[:, :-1].max(axis=0)
    nearest = pts[np.argmin(np.linalg.norm(np.log(pts[:, :-1]) - np.log(shape), axis=1)), :-1]
    return TablePoint(row.name, row.pass_, tuple(row.shape), row.efficiency,
                      tuple(d for d, v, m in zip(GROUPED_DIMS, shape, lo) if v < m),
                      tuple(d for d, v, m in zip(GROUPED_DIMS, shape, hi) if v > m),
                      tuple(float(x) for x in nearest), _mean_at(pts, nearest), table.source)


def per_expert_gemms_s(row: OpRow, hw) -> float:
    """One grouped GEMM priced as TransformerEngine v2.11 runs it off Hopper: one cuBLAS GEMM per group
    (pytorch/csrc/extensions/gemm.cpp l.562 -> common/gemm/cublaslt_gemm.cu nvte_multi_tensor_gemm l.1038-1051 ->
    multi_stream_cublas_gemm l.948-1001, a loop of nvte_cublas_gemm_v2 calls over NVTE's compute streams), each at
    its own shape from the profile's GEMM table and charged its launch; the streams' overlap is not credited."""
    groups, m, n, k = (float(x) for x in row.shape)
    op = Op(row.part, row.name, "gemm", row.pass_, row.dtype, flops=2 * m * n * k, shape=(m, n, k), kernels=1.0)
    return groups * float(np.ravel(op_time_s(op, hw))[0])


def expert_gemm_variants(moe_ops: tuple[OpRow, ...], hw) -> dict[str, float]:
    """Extra seconds per MoE layer-micro-batch over moesim's grouped GEMMs, for two ways of pricing TE's
    one-GEMM-per-expert loop: the grouped table's efficiency with one launch per expert instead of one per call,
    and every expert GEMM at its own shape from the GEMM table, launched (per_expert_gemms_s)."""
    grouped = [r for r in moe_ops if r.kind == "grouped_gemm"]
    launch_s = hw.efficiency.kernel_launch_s or 0.0
    return {"one launch per expert": sum((r.shape[0] - r.kernels) * launch_s for r in grouped),
            "per-expert GEMMs at their own shapes": sum(per_expert_gemms_s(r, hw) - r.time_s for r in grouped)}


def row_breakdown(case: str) -> Breakdown:
    """The breakdown of one row of tests/data/bridge_perf/megatron_bridge_moe.toml (its priced recompute)."""
    from moesim.models.bridge_perf import load_rows, price_row, row_scenario

    rows = {r.case: r for r in load_rows()}
    if case not in rows:
        raise SpecError("unknown Megatron-Bridge case", field="case", value=case, allowed=sorted(rows))
    row = rows[case]
    priced = price_row(row)
    sc = row_scenario(row, priced.recompute_mode, priced.recompute_modules)
    layout = sc.resolve()
    hw = sc.hardware
    ops = operator_breakdown(sc, layout)
    moe = [r for r in ops if r.layer_class.endswith(" moe")]
    if not moe:
        raise SpecError("the case has no MoE layer on its first stage", field="case", value=case)
    cls_label = moe[0].layer_class
    moe = [r for r in moe if r.layer_class == cls_label]
    layers = round(moe[0].calls_per_step / sc.training.micro_batches)
    other = sum(r.step_time_s for r in ops if r.layer_class in ("head", "embedding"))
    builder, wl, _ = term_builder(sc, layout)
    terms = builder.build(next(c for c in wl.classes if c.is_moe))
    comms = tuple((c.name, c.axis, c.op, float(np.ravel(c.size_bytes)[0]), float(np.ravel(c.calls)[0]))
                  for c in terms.comms if getattr(layout, c.axis, 1) > 1)  # a group of one moves nothing
    gap = row.published_step_s - priced.step_s
    pieces = []
    for name, pick in PIECES:
        step = sum(r.step_time_s for r in moe if pick(r))
        pieces.append(Piece(name, step, (step + gap) / step if step else float("inf")))
    exposed = priced.parts_s["exposed communication"]
    pieces.append(Piece("exposed communication", exposed, (exposed + gap) / exposed if exposed else float("inf")))
    return Breakdown(case, layers, sc.training.micro_batches, row.published_step_s, priced.step_s,
                     dict(priced.parts_s), tuple(moe), other,
                     tuple(table_point(r, hw) for r in moe if r.kind == "grouped_gemm"), comms, tuple(pieces),
                     expert_gemm_variants(tuple(moe), hw))


def layer_paces(model: str = "qwen3-30b-a3b") -> tuple[LayerPace, ...]:
    """Every Megatron-Bridge row of `model`: published and moesim step time per layer-micro-batch of the first
    stage (a fixed cost per layer-micro-batch shows as a gap that does not shrink with the micro-batch)."""
    from moesim.models.bridge_perf import load_rows, price_row, row_scenario
    from moesim.workload import build_workload, stage_class_counts

    out = []
    for row in load_rows():
        if row.model != model:
            continue
        priced = price_row(row)
        sc = row_scenario(row, priced.recompute.partition(" (")[0], row.recompute_modules)
        layout = sc.resolve()
        seq, dec = sc.seq_lens
        wl = build_workload(sc.model, seq, dec)
        layers = int(sum(stage_class_counts(wl, layout.pp, layout.first_stage_layers,
                                            layout.last_stage_layers)[0]))
        n = layers * sc.training.micro_batches
        out.append(LayerPace(row.case, row.mbs, n, row.published_step_s / n, priced.step_s / n))
    return tuple(out)


def _shape(shape: tuple) -> str:
    return " × ".join(f"{x:g}" for x in shape)


def render_block(bd: Breakdown, paces: tuple[LayerPace, ...] = ()) -> str:
    """The generated block of docs/operators.md (without its BEGIN / END marker lines)."""
    n = bd.layer_micro_batches
    out = [f"`{bd.case}`: {bd.layers} MoE layers × {bd.micro_batches} micro-batches = {n} layer-micro-batches a "
           f"step; published step {bd.published_step_s:.3f} s, moesim {bd.moesim_step_s:.3f} s "
           f"({_pct(bd.moesim_step_s / bd.published_step_s - 1)}), gap {bd.gap_s:.3f} s = "
           f"{bd.gap_s / n * 1e3:.2f} ms a layer-micro-batch.", "",
           "| operator | pass | dtype | shape | efficiency | µs a layer-micro-batch | kernels |",
           "|---|---|---|---|---:|---:|---:|"]
    for r in bd.moe_ops:
        if r.kind == "host" and not r.time_s:
            continue
        eff = "" if np.isnan(r.efficiency) else f"{r.efficiency:.3f}"
        out.append(f"| {r.part} / {r.name} | {r.pass_} | {r.dtype} | {_shape(r.shape)} | {eff} | "
                   f"{r.time_s * 1e6:.1f} | {r.kernels:g} |")
    out.append(f"| **one MoE layer-micro-batch** | fwd + bwd | | | | **{bd.moe_layer_s * 1e6:.1f}** | "
               f"**{bd.kernels_per_layer:g}** |")
    out += ["", "Collectives issued per MoE layer-micro-batch (the estimate's; priced by the collective model, "
            "not here):", "", "| collective | axis | op | bytes | calls |", "|---|---|---|---:|---:|"]
    out += [f"| {c[0]} | {c[1]} | {c[2]} | {c[3]:.0f} | {c[4]:g} |" for c in bd.collectives]
    out += ["", "Where each grouped GEMM reads the profile's grouped-GEMM table (coordinates in the pass's own "
            "order, docs/operators.md \"Efficiency tables\"; FP8 reads the BF16 table's fraction of the FP8 peak):",
            "",
            "| operator | pass | shape | under the table's smallest | over its largest | nearest measured shape "
            "| its efficiency | priced |", "|---|---|---|---|---|---|---:|---:|"]
    out += [f"| {t.name} | {t.pass_} | {_shape(t.shape)} | {', '.join(t.below) or '—'} | "
            f"{', '.join(t.above) or '—'} | {_shape(t.nearest_shape)} | {t.nearest_efficiency:.3f} | "
            f"{t.efficiency:.3f} |" for t in bd.table_points]
    out += ["", "How far each piece alone would have to move for moesim's step to take the published time "
            "(× its own time; the step's exposed communication as one piece):", "",
            "| piece | moesim s a step | × to close the gap |", "|---|---:|---:|"]
    out += [f"| {p.name} | {p.step_s:.3f} | {p.factor_to_close:.1f} |" for p in bd.pieces]
    out += [f"| head and embedding operators | {bd.other_step_s:.3f} | |",
            f"| optimizer | {bd.parts_s['optimizer']:.3f} | |"]
    out += ["", "The expert GEMMs as TransformerEngine v2.11 launches them (one cuBLAS GEMM per local expert), "
            "priced beside the operator list, not in it:", "",
            "| variant | extra µs a layer-micro-batch | extra s a step | moesim step s | error |",
            "|---|---:|---:|---:|---:|"]
    for name, extra in bd.variants.items():
        step = bd.moesim_step_s + extra * n  # pp 1: every layer-micro-batch on the critical path
        out.append(f"| {name} | {extra * 1e6:+.1f} | {extra * n:+.3f} | {step:.3f} | "
                   f"{_pct(step / bd.published_step_s - 1)} |")
    out += ["", f"A host-bound step at the published time needs {bd.host_bound_layer_s * 1e3:.2f} ms of host time "
            f"per MoE layer-micro-batch (the published step less the optimizer and the head / embedding "
            f"operators, over {n}), against moesim's {bd.moe_layer_s * 1e3:.2f} ms of GPU time there: "
            f"{bd.host_bound_layer_s / bd.kernels_per_layer * 1e6:.0f} µs per moesim kernel "
            f"({bd.kernels_per_layer:g} a layer-micro-batch)."]
    if paces:
        out += ["", "Every row of the model, step time per layer-micro-batch of its first stage (the step over "
                "its layers × micro-batches; bubble and head included):", "",
                "| case | MBS | layer-micro-batches | published ms | moesim ms | gap ms |",
                "|---|---:|---:|---:|---:|---:|"]
        out += [f"| `{p.case}` | {p.mbs} | {p.layer_micro_batches} | {p.published_layer_s * 1e3:.2f} | "
                f"{p.moesim_layer_s * 1e3:.2f} | {(p.published_layer_s - p.moesim_layer_s) * 1e3:.2f} |"
                for p in paces]
    return "\n".join(out)


__all__ = ["Breakdown", "CASES", "LayerPace", "Piece", "TablePoint", "expert_gemm_variants", "layer_paces",
           "per_expert_gemms_s", "render_block", "row_breakdown", "table_point"]
