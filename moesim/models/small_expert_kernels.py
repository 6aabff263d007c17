"""Published small-expert grouped-GEMM measurements against moesim's tables at the same shape (comparison only).

The figures are data: tests/data/small_experts/published_kernels.toml, each cited (repository, pull request or
commit, the words the figure stands in). `price` builds moesim's grouped_gemm operator of the row's shape, dtype and
pass and times it on the row's profile with moesim.ops.price.op_time_s (the one pricing every engine uses);
`render_block` is the generated table of docs/operators.md (scripts/small_expert_kernels.py writes and checks it).
Error = moesim / measured − 1 (negative: moesim too fast). Nothing here is fitted or enters a profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moesim.errors import SpecError
from moesim.models.row_table import read_rows, row_fields, typed_fields
from moesim.units import format_fraction_pct as _pct

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "small_experts" / "published_kernels.toml"
# A grouped GEMM's passes (moesim/ops/base.py backward); "fwd+bwd": the forward and the dgrad and wgrad base.backward
# gives it, summed, for a figure that times one forward and backward together.
PASSES = ("fwd", "dgrad", "wgrad", "fwd+bwd")
# Qwen3-30B-A3B's expert GEMMs on the B200 MBS 1 rows, moesim's (groups, rows, n, k) forward shapes
# (docs/operators.md "Qwen3-30B-A3B's rows per layer-micro-batch": 16 local experts of 2048 rows, d 2048, d_ff 768).
QWEN3_B200_FC1 = (16, 2048, 1536, 2048)
QWEN3_B200_FC2 = (16, 2048, 2048, 768)


@dataclass(frozen=True)
class KernelRow:
    """One published measurement (fields as the data file's header documents them)."""

    case: str
    source: str
    device: str
    profile: str
    precision: str
    dtype: str
    kernel: str
    timed: str
    pass_: str
    groups: int
    rows: int
    n: int
    k: int
    gpu_us: float
    host_us_low: float
    host_us_high: float


@dataclass(frozen=True)
class Priced:
    """A row and moesim's figures at its shape: seconds with and without the profile's launch charge, efficiency."""

    row: KernelRow
    flops: float
    moesim_s: float
    moesim_launch_s: float
    efficiency: float

    @property
    def measured_s(self) -> float:
        return self.row.gpu_us * 1e-6

    @property
    def error(self) -> float:
        return self.moesim_s / self.measured_s - 1.0


def _row(raw: dict, i: int, path: Path) -> KernelRow:
    fields = row_fields(KernelRow)
    fields["pass"] = fields.pop("pass_")
    values = typed_fields(raw, fields, f"row[{i}]", path)
    values["pass_"] = values.pop("pass")
    if values["pass_"] not in PASSES:
        raise SpecError("unknown pass", file=str(path), field=f"row[{i}].pass", value=values["pass_"], allowed=PASSES)
    for name in ("groups", "rows", "n", "k", "gpu_us"):
        if values[name] <= 0:
            raise SpecError("must be positive", file=str(path), field=f"row[{i}].{name}", value=values[name])
    return KernelRow(**values)


def load_rows(path: Path = DATA) -> tuple[KernelRow, ...]:
    return tuple(_row(r, i, path) for i, r in enumerate(read_rows(path, "the published small-expert kernels")))


def price(row: KernelRow) -> Priced:
    """moesim's grouped GEMM of the row's shape, dtype and pass (with fwd+bwd, its dgrad and wgrad too) on the row's
    profile (moesim.ops.price)."""
    from moesim.ops.base import backward, grouped_gemm
    from moesim.ops.price import op_time_s
    from moesim.specs.hardware_file import load_hardware

    hw = load_hardware(row.profile)
    if row.pass_ == "fwd+bwd":
        fwd = grouped_gemm("expert_ffn", "expert_fc1", row.dtype, row.groups, row.rows, row.n, row.k)
        ops = [fwd, *backward(fwd)]
    else:
        ops = [grouped_gemm("expert_ffn", "expert_fc1", row.dtype, row.groups, row.rows, row.n, row.k,
                            pass_=row.pass_)]
    flops = sum(op.flops for op in ops)
    seconds = sum(float(np.ravel(op_time_s(op, hw))[0]) for op in ops)
    launch_s = sum(op.kernels for op in ops) * (hw.efficiency.kernel_launch_s or 0.0)
    # the efficiency the operators reach together: their FLOPs over the time they take less the launch charge
    return Priced(row, flops, seconds, launch_s, flops / ((seconds - launch_s) * hw.chip.peak_for(row.dtype)))


def flops_per_group(groups_rows_n_k: tuple) -> float:
    """2·rows·n·k: one group's GEMM FLOPs."""
    _, m, n, k = groups_rows_n_k
    return 2.0 * m * n * k


def render_block(priced: tuple[Priced, ...]) -> str:
    head = ("| case | device (profile priced) | precision | kernel; what is timed | pass | groups × rows × n × k "
            "| measured µs (TFLOP/s) | moesim µs (of it launch) | moesim efficiency | error | host µs a call |")
    lines = [head, "|" + "---|" * 5 + "---:|" * 6]
    for p in priced:
        r = p.row
        host = f"{r.host_us_low:g}–{r.host_us_high:g}" if r.host_us_high > 0 else ""
        lines.append(f"| `{r.case}` | {r.device} ({r.profile}) | {r.precision} (`{r.dtype}`) | {r.kernel}; {r.timed} "
                     f"| {r.pass_} | {r.groups} × {r.rows} × {r.n} × {r.k} "
                     f"| {r.gpu_us:.2f} ({p.flops / p.measured_s / 1e12:.0f}) "
                     f"| {p.moesim_s * 1e6:.2f} ({p.moesim_launch_s * 1e6:.2f}) | {p.efficiency:.3f} "
                     f"| {_pct(p.error)} | {host} |")
    sm100 = [p for p in priced if p.row.profile == "b200"]
    if sm100:
        largest = max(flops_per_group((p.row.groups, p.row.rows, p.row.n, p.row.k)) for p in sm100)
        fc1, fc2 = flops_per_group(QWEN3_B200_FC1), flops_per_group(QWEN3_B200_FC2)
        lines += ["", f"Work per group: the SM100 rows do at most {largest / 1e6:.0f} MFLOP per group; the B200 "
                  f"Qwen3-30B-A3B rows' expert GEMMs do {fc1 / 1e6:.0f} (fc1) and {fc2 / 1e6:.0f} (fc2) MFLOP per "
                  f"group, {fc2 / largest:.0f}–{fc1 / largest:.0f} times as much."]
    return "\n".join(lines)
