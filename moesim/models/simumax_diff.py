"""moesim against SimuMax's own model of the B200 release rows, operator by operator (validation only, nothing fitted).

SimuMax (MooreThreads/SimuMax @ 4dcaae51, Apache-2.0) prices the same Megatron-LM + TransformerEngine runs from the
same measured B200 GEMM / attention / memory tables moesim imports (hardware_profiles/b200.toml), yet lands at a mean
−5.6 % on the release table where moesim is at −9.6 %. `scripts/simumax_diff.py --extract` ran SimuMax on the rows
of moesim/models/simumax_diff.toml and recorded its per-module costs (tests/data/b200/simumax_ops_4dcaae51.csv,
simumax_steps_4dcaae51.csv: a record of its output; none of its code is here). `compare(row)` puts them beside
moesim's operator list for the same row (moesim.ops.breakdown, the estimate's communication ledger), per SimuMax
module and summed by kind; `render_block` is the generated block of docs/operators.md.

Units: µs per layer-micro-batch for a decoder module (one call of one layer for one micro-batch, forward + backward),
ms per step for the kind sums. moesim's per-kernel launch charge (profile `efficiency.kernel_launch_us`) and
SimuMax's per-pass `latency_us` (its memory-access time adds it to every memory-bound pass, simumax/core/config.py
`compute_mem_access_time`) are both shown as the kind "host / launch floor" (with moesim's per-layer host overhead,
0 on the B200 profile), taken out of the operator's own kind. Neither engine overlaps a collective on these rows
(the launchers pass no overlap flag: moesim exposes them, SimuMax adds them to the chunk), so there is no overlap
kind.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from moesim.errors import SpecError
from moesim.models.row_table import row_fields

HERE = Path(__file__).resolve()
MAPPING = HERE.with_name("simumax_diff.toml")
DATA_DIR = HERE.parents[2] / "tests" / "data" / "b200"
OPS_RECORD = DATA_DIR / "simumax_ops_4dcaae51.csv"
STEPS_RECORD = DATA_DIR / "simumax_steps_4dcaae51.csv"
OP_FIELDS = ("case", "stage", "module", "cls", "calls", "fwd_us", "dgrad_us", "wgrad_us", "net_fwd_us",
             "net_bwd_us", "floor_us")
STEP_FIELDS = ("case", "step_ms", "dp_and_optim_ms", "optimizer_ms", "dp_ms", "bubble_ms")
FLOOR = "host / launch floor"
KIND_ORDER = ("GEMM", "attention", "memory-bound", FLOOR, "TP collectives", "EP all-to-all",
              "DP collectives", "pipeline p2p", "optimizer", "pipeline bubble")
END_MODULES = ("embedding", "layernorm", "linear_out", "parallel_ce")  # SimuMax's model ends (language_model.py)
# moesim's communication ledger axis -> kind (moesim.estimate: "embd" is the tied-embedding all-reduce)
AXIS_KIND = {"tp": "TP collectives", "ep": "EP all-to-all", "dp": "DP collectives", "edp": "DP collectives",
             "pp": "pipeline p2p", "embd": "DP collectives"}


@dataclass(frozen=True)
class Row:
    """One release row SimuMax is run on (fields as moesim/models/simumax_diff.toml documents them)."""

    case: str
    model: str
    strategy: str
    parallel: str
    moe: bool
    layers: int
    tp: int
    pp: int
    ep: int
    micro_batches: int


ROW_FIELDS = tuple(row_fields(Row))  # the mapping file's row fields: the Row's, in its order


@lru_cache(maxsize=None)
def _mapping() -> dict:
    with open(MAPPING, "rb") as fh:
        data = tomllib.load(fh)
    for i, raw in enumerate(data.get("rows", [])):
        missing = [f for f in ROW_FIELDS if f not in raw]
        if missing:
            raise SpecError(f"row lacks {', '.join(missing)}", file=str(MAPPING), field=f"rows[{i}]")
    return data


ROWS = tuple(Row(**{f: r[f] for f in ROW_FIELDS}) for r in _mapping()["rows"])


def _read_csv(path: Path, fields: tuple[str, ...]) -> list[dict]:
    if not path.exists():
        raise SpecError("SimuMax record missing: run scripts/simumax_diff.py --extract CLONE", file=str(path))
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and tuple(rows[0]) != fields:
        raise SpecError(f"columns {tuple(rows[0])}, expected {fields}", file=str(path), field="header")
    for r in rows:
        for f in fields[4:] if fields is OP_FIELDS else fields[1:]:
            try:
                r[f] = float(r[f])
            except ValueError:
                raise SpecError("not a number", file=str(path), field=f, value=r[f]) from None
    return rows


@lru_cache(maxsize=None)
def simumax_ops(case: str) -> tuple[dict, ...]:
    """SimuMax's modules for `case` on the stages moesim's breakdown reads: the first stage's layers and
    embedding, the last stage's final norm, head and loss (one stage at pp 1)."""
    rows = [r for r in _read_csv(OPS_RECORD, OP_FIELDS) if r["case"] == case]
    if not rows:
        raise SpecError(f"no SimuMax record for {case}", file=str(OPS_RECORD), field="case", value=case)
    first = [r for r in rows if r["stage"] == "first_stage_chunk"]
    last = [r for r in rows if r["stage"] == "last_stage_chunk" and r["module"] in END_MODULES[1:]]
    return tuple(first + last)


@lru_cache(maxsize=None)
def simumax_step(case: str) -> dict:
    rows = [r for r in _read_csv(STEPS_RECORD, STEP_FIELDS) if r["case"] == case]
    if len(rows) != 1:
        raise SpecError(f"{len(rows)} step records for {case}, expected 1", file=str(STEPS_RECORD), field="case")
    return rows[0]


@dataclass(frozen=True)
class Line:
    """One SimuMax module (or a moesim operator SimuMax has no module for) of one row."""

    label: str  # SimuMax module, or "moesim only: NAME"
    moesim_ops: tuple[str, ...]
    per_call: bool  # a decoder module: figures per layer-micro-batch; else per step
    moesim_us: float  # compute + launch, forward + backward
    simumax_us: float  # compute + latency floor, forward + dgrad + wgrad
    moesim_floor_us: float
    simumax_floor_us: float
    simumax_net_us: float  # SimuMax's communication on the module (moesim's is in the ledger, by kind)

    @property
    def diff_us(self) -> float:
        return self.moesim_us - self.simumax_us


@dataclass(frozen=True)
class Comparison:
    row: Row
    lines: tuple[Line, ...]
    moesim_kinds_ms: dict[str, float]  # per step
    simumax_kinds_ms: dict[str, float]
    moesim_step_ms: float
    simumax_step_ms: float
    published_ms: float


def _moesim(row: Row):
    from moesim.api import with_layout
    from moesim.collectives.select import model_for
    from moesim.estimate import evaluate, step_estimate
    from moesim.estimate.candidates import single
    from moesim.models.b200_release import load_rows, row_scenario
    from moesim.ops.breakdown import operator_breakdown

    release = {r.case: r for r in load_rows()}
    if row.case not in release:
        raise SpecError("not a release-table case", file=str(MAPPING), field="rows.case", value=row.case)
    base, layout_text = row_scenario(release[row.case])
    sc, layout = with_layout(base, layout_text)
    est = step_estimate(sc, evaluate(sc, single(sc, layout), model_for(sc)), 0)
    return operator_breakdown(sc, layout), est, sc.hardware.efficiency.kernel_launch_s or 0.0, release[row.case]


def compare(row: Row) -> Comparison:
    ops, est, launch_s, release = _moesim(row)
    mapping, kinds, sm_kinds = _mapping()["modules"], _mapping()["kinds"], _mapping()["simumax_kinds"]
    m = row.micro_batches
    mk: dict[str, float] = dict.fromkeys(KIND_ORDER, 0.0)
    sk: dict[str, float] = dict.fromkeys(KIND_ORDER, 0.0)
    by_name: dict[str, list] = {}
    for op in ops:
        by_name.setdefault(op.name, []).append(op)
        launch = 0.0 if op.kind == "host" else op.kernels * launch_s * op.calls_per_step
        mk[kinds[op.kind]] += (op.step_time_s - launch) * 1e3
        mk[FLOOR] += launch * 1e3
    lines, used = [], set()
    for r in simumax_ops(row.case):
        names = tuple(n for n in mapping.get(r["module"], ()) if n in by_name)
        used.update(names)
        mine = [op for n in names for op in by_name[n]]
        per_call = r["module"] not in END_MODULES
        scale = r["calls"] * m if per_call else m  # SimuMax figures are per call: per layer and micro-batch
        calls = r["calls"] * m
        sm_total = (r["fwd_us"] + r["dgrad_us"] + r["wgrad_us"]) * calls
        kind = kinds[mine[0].kind] if mine else sm_kinds.get(r["cls"], "memory-bound")
        sk[kind] += (sm_total - r["floor_us"] * calls) / 1e3
        sk[FLOOR] += r["floor_us"] * calls / 1e3
        net = (r["net_fwd_us"] + r["net_bwd_us"]) * calls
        sk["EP all-to-all" if "permutation" in r["module"] else "TP collectives"] += net / 1e3
        mo_total = sum(op.step_time_s for op in mine) * 1e6
        mo_floor = sum(op.kernels * launch_s * op.calls_per_step for op in mine if op.kind != "host") * 1e6
        lines.append(Line(r["module"], names, per_call, mo_total / scale, sm_total / scale, mo_floor / scale,
                          r["floor_us"] * calls / scale, net / scale))
    for name, group in by_name.items():
        if name in used or all(op.step_time_s == 0 for op in group):
            continue
        per_call = group[0].layer_class.startswith(("decoder", "encoder"))
        scale = sum({op.layer_class: op.calls_per_step for op in group}.values()) if per_call else m
        total = sum(op.step_time_s for op in group) * 1e6
        floor = sum(op.kernels * launch_s * op.calls_per_step for op in group if op.kind != "host") * 1e6
        lines.append(Line(f"moesim only: {name}", (name,), per_call, total / scale, 0.0, floor / scale, 0.0, 0.0))
    for entry in est.communication.values():
        mk[AXIS_KIND[entry["axis"]]] += entry["time_s"] * 1e3
    mk["optimizer"] += est.optimizer_time_s * 1e3
    mk["pipeline bubble"] += est.bubble_time_s * 1e3
    st = simumax_step(row.case)
    sk["DP collectives"] += st["dp_ms"]
    sk["optimizer"] += st["optimizer_ms"]
    sk["pipeline bubble"] += st["bubble_ms"]
    return Comparison(row, tuple(lines), mk, sk, est.step_time_s * 1e3, st["step_ms"], release.real_ms)


def compare_all() -> list[Comparison]:
    return [compare(r) for r in ROWS]


def _f(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def _signed(x: float, nd: int = 1) -> str:
    return f"{'+' if x >= 0 else '−'}{abs(x):,.{nd}f}"


def render_row(c: Comparison) -> str:
    r = c.row
    out = [f"**{r.case}** (tp {r.tp}, pp {r.pp}, ep {r.ep}, {r.layers} layers, {r.micro_batches} micro-batches): "
           f"published {_f(c.published_ms)} ms, moesim {_f(c.moesim_step_ms)} ms "
           f"({_signed((c.moesim_step_ms / c.published_ms - 1) * 100)} %), SimuMax {_f(c.simumax_step_ms)} ms "
           f"({_signed((c.simumax_step_ms / c.published_ms - 1) * 100)} %).", "",
           "| module (SimuMax) | moesim operators | moesim µs | SimuMax µs | moesim − SimuMax | of which floor "
           "(moesim / SimuMax) | SimuMax comm µs |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for ln in c.lines:
        unit = "" if ln.per_call else " (per micro-batch)"
        out.append(f"| {ln.label}{unit} | {', '.join(ln.moesim_ops) or '—'} | {_f(ln.moesim_us)} | "
                   f"{_f(ln.simumax_us)} | {_signed(ln.diff_us)} | {_f(ln.moesim_floor_us)} / "
                   f"{_f(ln.simumax_floor_us)} | {_f(ln.simumax_net_us)} |")
    return "\n".join(out)


def render_kinds(comps: list[Comparison]) -> str:
    head = "| kind (ms per step, moesim − SimuMax) | " + " | ".join(c.row.parallel for c in comps) + " |"
    out = [head, "|---|" + "---:|" * len(comps)]
    for kind in KIND_ORDER:
        out.append(f"| {kind} | " + " | ".join(
            f"{_signed(c.moesim_kinds_ms[kind] - c.simumax_kinds_ms[kind])} "
            f"({_f(c.moesim_kinds_ms[kind])} / {_f(c.simumax_kinds_ms[kind])})" for c in comps) + " |")
    out.append("| step | " + " | ".join(f"{_signed(c.moesim_step_ms - c.simumax_step_ms)} "
                                       f"({_f(c.moesim_step_ms)} / {_f(c.simumax_step_ms)})" for c in comps) + " |")
    return "\n".join(out)


def render_block(comps: list[Comparison] | None = None) -> str:
    comps = compare_all() if comps is None else comps
    parts = ["Generated by `python scripts/simumax_diff.py --write` from SimuMax's recorded output "
             "(tests/data/b200/simumax_ops_4dcaae51.csv, simumax_steps_4dcaae51.csv; SimuMax @ 4dcaae51 run by "
             "`--extract`) and moesim's operator list (moesim.ops.breakdown) and communication ledger. Validation "
             "only: nothing here is fitted. Kinds per step (moesim / SimuMax in brackets); at pp > 1 the operator "
             "kinds are the first stage's layers, embedding and the last stage's head (what `estimate --ops` "
             "lists), so they do not add up to the step there.", "", render_kinds(comps)]
    for c in comps:
        parts += ["", render_row(c)]
    return "\n".join(parts)


__all__ = ["Comparison", "Line", "ROWS", "Row", "compare", "compare_all", "render_block", "simumax_ops",
           "simumax_step"]
