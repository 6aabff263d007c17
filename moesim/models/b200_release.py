"""Every row of SimuMax's published B200 release table, priced by moesim (validation only, never fitted).

The rows (what each Megatron-LM run was and what was published) are data:
tests/data/b200/simumax_release_v1.2.toml (MooreThreads/SimuMax @ 4dcaae51,
docs/b200/b200_release_v1.2_summary.json). `row_scenario` applies a row to its base scenario in code (the
API's layout override plus the row's sequence length and micro-batches); `price_row` gives moesim's step
time and peak memory per device; `render_block` is the generated table of docs/operators.md
(scripts/b200_release_check.py writes and checks it). Error = moesim / published − 1 (negative: too fast,
too little memory).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from moesim.errors import SpecError
from moesim.models.row_table import read_rows, row_fields, typed_fields
from moesim.units import format_fraction_pct as _pct

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "b200" / "simumax_release_v1.2.toml"
GPUS = 8  # every row: one 8-GPU B200 node (the case's tp·cp·pp·dp)
MODEL_ORDER = ("llama3-70b-l12-b200-tp8", "llama3-405b-l4-b200-tp8", "deepseek-v2-l4-b200-ep8",
               "deepseek-v3-l4-b200-ep8")
MODEL_LABEL = {"llama3-70b-l12-b200-tp8": "Llama-3-70B 12 layers", "llama3-405b-l4-b200-tp8": "Llama-3-405B 4 layers",
               "deepseek-v2-l4-b200-ep8": "DeepSeek-V2 4 layers", "deepseek-v3-l4-b200-ep8": "DeepSeek-V3 4 layers"}
# The launcher's CP kind: CP_COMM_TYPE defaults to a2a (SimuMax run_pretrain_llama3.sh @ 4dcaae51; the
# repro guide §7: "cp_comm_type=a2a" is the only formal CP scope).
CP_COMM = "a2a"
# Rows the simulator also runs (the agreement columns): each model's base layout at 4 micro-batches and one
# pipeline row (pp 2).
DES_CASES = ("llama3_70b_l12_tp8_pp1_dp1_mbc4_cef", "llama3_70b_l12_tp1_pp2_dp4_mbc4_cef",
             "llama3_405b_l4_tp8_pp1_dp1_mbc4_cef", "deepseekv2_tp1_ep8_pp1_dp8_l4_mbc4_cef",
             "deepseekv3_l4_tp1_ep8_pp1_dp8_mbc4_cef")
# What the rows' launchers pass that moesim has no key for: (label, base scenarios it applies to, text). The table
# names them per row rather than approximating silently.
NOT_EXPRESSED = (
    ("group", ("deepseek-v2-l4-b200-ep8", "deepseek-v3-l4-b200-ep8"),
     "group-limited routing (--moe-router-num-groups = EP, --moe-router-group-topk 3): not modelled, each token's "
     "k experts spread over all EP ranks"),
)


@dataclass(frozen=True)
class ReleaseRow:
    """One row of the release table (fields as tests/data/b200/simumax_release_v1.2.toml documents them)."""

    case: str
    scenario: str
    layers: int
    tp: int
    cp: int
    ep: int
    pp: int
    dp: int
    seq_len: int
    micro_batches: int
    micro_batch_size: int
    cross_entropy_fusion: bool
    real_ms: float
    real_alloc_gib: float
    real_reserved_gib: float
    max_allocated_mib_by_rank: tuple[float, ...]
    memory_source_case: str
    simumax_perf_ms: float
    simumax_rel_err_pct: float
    simumax_alloc_gib: float
    simumax_alloc_err_pct: float
    simumax_peak_alloc_by_stage_gib: tuple[float, ...]

    @property
    def ranks_per_stage(self) -> int:
        return GPUS // self.pp

    def stage_of_rank(self, rank: int) -> int:
        """Megatron's default rank order tp-cp-ep-dp-pp: pipeline stage = rank // (GPUS / pp)."""
        return rank // self.ranks_per_stage

    @property
    def worst_rank(self) -> int:
        return int(np.argmax(self.max_allocated_mib_by_rank))

    @property
    def layout_text(self) -> str:
        text = f"dp={self.dp},tp={self.tp},ep={self.ep},pp={self.pp}"
        return text + (f",cp={self.cp},cp_comm={CP_COMM}" if self.cp > 1 else "")


FIELDS = row_fields(ReleaseRow)  # the data file's fields: the row's, typed as it declares them


def _row(raw: dict, index: int, path: Path) -> ReleaseRow:
    where = f"row[{index}]"
    row = ReleaseRow(**typed_fields(raw, FIELDS, where, path))
    if row.tp * row.cp * row.pp * row.dp != GPUS or len(row.max_allocated_mib_by_rank) != GPUS:
        raise SpecError(f"{row.case}: tp·cp·pp·dp and the per-rank memory must cover {GPUS} GPUs",
                        file=str(path), field=where)
    if row.scenario not in MODEL_ORDER:
        raise SpecError(f"{row.case}: unknown base scenario", file=str(path), field=f"{where}.scenario",
                        value=row.scenario, allowed=MODEL_ORDER)
    return row


@lru_cache(maxsize=None)
def load_rows(path: Path = DATA) -> tuple[ReleaseRow, ...]:
    return tuple(_row(r, i, path) for i, r in enumerate(read_rows(path, "the B200 release table")))


def row_scenario(row: ReleaseRow):
    """(scenario, layout text) of one row: its base scenario with the row's sequence, micro-batches
    (global batch = micro_batches · micro_batch_size · dp), cross-entropy fusion and SP (Megatron-LM keeps
    --sequence-parallel only at tp > 1), and the row's layout as the API's override."""
    from moesim.specs.load import load_scenario

    sc = load_scenario(row.scenario)
    if sc.model.num_layers != row.layers or sc.devices != GPUS:
        raise SpecError(f"{row.case}: base scenario has {sc.model.num_layers} layers on {sc.devices} devices, "
                        f"the row {row.layers} on {GPUS}", field="scenario", value=row.scenario)
    model = sc.model
    if row.seq_len > model.max_position_embeddings:  # the launcher sets MAX_POSITION_EMBEDDINGS = SEQ_LEN (rope)
        model = dataclasses.replace(model, max_position_embeddings=row.seq_len)
    training = dataclasses.replace(
        sc.training, seq_len=row.seq_len, micro_batches=row.micro_batches,
        global_batch_sequences=row.micro_batches * row.micro_batch_size * row.dp,
        fused_cross_entropy=row.cross_entropy_fusion, sequence_parallel=row.tp > 1)
    return dataclasses.replace(sc, model=model, training=training), row.layout_text


@dataclass(frozen=True)
class Priced:
    """moesim's figures for one row."""

    row: ReleaseRow
    step_s: float
    memory_bytes: dict[str, float]  # by part, on moesim's fullest stage (reserved included, as estimate gives it)
    memory_stage: int  # moesim's fullest pipeline stage
    des_step_s: float | None = None

    @property
    def peak_bytes(self) -> float:
        """Peak memory per device without the `reserved` line (the allocator's slack is not in
        max_memory_allocated)."""
        return self.memory_bytes["total"] - self.memory_bytes["reserved"]

    @property
    def step_error(self) -> float:
        return self.step_s * 1e3 / self.row.real_ms - 1

    @property
    def memory_error(self) -> float:
        return self.peak_bytes / 2**30 / self.row.real_alloc_gib - 1


def price_row(row: ReleaseRow, *, simulate: bool = False) -> Priced:
    from moesim.api import with_layout
    from moesim.collectives.select import model_for
    from moesim.estimate import evaluate, step_estimate
    from moesim.estimate.candidates import single

    base, layout_text = row_scenario(row)
    sc, layout = with_layout(base, layout_text)
    sc.check(layout, micro_batches=sc.training.micro_batches)
    ev = evaluate(sc, single(sc, layout), model_for(sc))
    est = step_estimate(sc, ev, 0)
    des = None
    if simulate:
        from moesim.des import SimOptions
        from moesim.des import simulate as run

        des = float(run(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False)).step_times_s[0])
    return Priced(row, est.step_time_s, dict(est.memory_bytes_per_device), int(ev.memory_stage[0]), des)


def price_all(rows: tuple[ReleaseRow, ...] | None = None) -> list[Priced]:
    rows = load_rows() if rows is None else rows
    return [price_row(r, simulate=r.case in DES_CASES) for r in rows]


def _stage_text(row: ReleaseRow) -> str:
    if row.pp == 1:
        return f"rank {row.worst_rank}"
    return f"rank {row.worst_rank}, stage {row.stage_of_rank(row.worst_rank)}"


def _summary(label: str, errors: list[float], simumax: list[float]) -> str:
    a, s = np.array(errors), np.array(simumax)
    worst = a[np.argmax(np.abs(a))]
    s_worst = s[np.argmax(np.abs(s))]
    return (f"| {label} | {len(a)} | {_pct(a.mean())} | {_pct(np.abs(a).mean(), False)} | {_pct(worst)} | "
            f"{_pct(s.mean())} | {_pct(np.abs(s).mean(), False)} | {_pct(s_worst)} |")


def render_block(priced: list[Priced]) -> str:
    """The generated block of docs/operators.md (without its BEGIN / END marker lines)."""
    gib = 2**30
    out = ["| case | published ms | moesim ms | error | SimuMax error | simulator ms (vs estimate) | "
           "published GiB (worst rank) | moesim GiB (stage) | error | SimuMax error | not in moesim |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in priced:
        r = p.row
        des = "" if p.des_step_s is None else f"{p.des_step_s * 1e3:.1f} ({_pct(p.des_step_s / p.step_s - 1)})"
        out.append(f"| `{r.case}` | {r.real_ms:.1f} | {p.step_s * 1e3:.1f} | {_pct(p.step_error)} | "
                   f"{_pct(r.simumax_rel_err_pct / 100)} | {des} | {r.real_alloc_gib:.2f} ({_stage_text(r)}) | "
                   f"{p.peak_bytes / gib:.2f} (stage {p.memory_stage}) | {_pct(p.memory_error)} | "
                   f"{_pct(r.simumax_alloc_err_pct / 100)} | "
                   + ", ".join(label for label, models, _ in NOT_EXPRESSED if r.scenario in models) + " |")
    out += ["", "Not in moesim (the rows' flags it has no key for; the rows are priced without them):", ""]
    out += [f"- {label}: {text}." for label, _, text in NOT_EXPRESSED]
    out += ["- Written down: `_cef` as `fused_cross_entropy = true` (the base scenarios state it too, so the six "
            "golden step times of tests/ops/test_b200_validation.py are these rows' mb 4 / 8 / 32 figures), tp 1 "
            "rows without SP (Megatron-LM "
            "drops --sequence-parallel at tp 1), CP rows with `cp_comm = a2a` and max_position_embeddings = seq, "
            "`--moe-expert-capacity-factor 1 --moe-pad-expert-input-to-capacity` as the dropless mean (every "
            "expert k·t/E rows at uniform routing)."]
    out += ["", "Summary (error = moesim / published − 1; SimuMax's own errors beside):", "",
            "| step time | rows | mean | mean abs | worst | SimuMax mean | SimuMax mean abs | SimuMax worst |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups = [(MODEL_LABEL[m], [p for p in priced if p.row.scenario == m]) for m in MODEL_ORDER]
    groups = [g for g in groups if g[1]] + [("all rows", priced)]
    for label, ps in groups:
        out.append(_summary(label, [p.step_error for p in ps], [p.row.simumax_rel_err_pct / 100 for p in ps]))
    out += ["", "| peak memory (one per measured run) | runs | mean | mean abs | worst | SimuMax mean | "
            "SimuMax mean abs | SimuMax worst |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    runs = [p for p in priced if p.row.memory_source_case == p.row.case]
    for label, _ in groups:
        ps = runs if label == "all rows" else [p for p in runs if MODEL_LABEL[p.row.scenario] == label]
        out.append(_summary(label, [p.memory_error for p in ps], [p.row.simumax_alloc_err_pct / 100 for p in ps]))
    out += ["", "moesim's memory by part on its fullest stage, per measured run (GiB; `reserved` left out; "
            "\"published − states\" is the published peak less moesim's weights, gradients and optimizer "
            "states: what the run held beyond them, activations and transients):", "",
            "| run | weights | gradients | optimizer | activations | MoE buffers | framework buffers | "
            "peak transients | moesim total | published | published − states |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in runs:
        m = {k: v / gib for k, v in p.memory_bytes.items()}
        states = m["weights"] + m["gradients"] + m["optimizer_states"]
        out.append(f"| `{p.row.case}` | {m['weights']:.2f} | {m['gradients']:.2f} | {m['optimizer_states']:.2f} | "
                   f"{m['activations']:.2f} | {m['moe_buffers']:.2f} | {m['framework_buffers']:.2f} | "
                   f"{m['peak_transients']:.2f} | {p.peak_bytes / gib:.2f} | "
                   f"{p.row.real_alloc_gib:.2f} | {p.row.real_alloc_gib - states:.2f} |")
    return "\n".join(out)
