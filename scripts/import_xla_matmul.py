"""Convert OpenXLA's measured GEMM performance table into moesim `[[efficiency.op_table]]` TOML.

    python scripts/import_xla_matmul.py default_matmul_perf_table.txtpb --arch sm_90 \
        --key "bf16xbf16->bf16" --dtype bfloat16 --peak-tflops 989 --source "..." --measured-on "..."

OpenXLA (Apache-2.0) ships `xla/service/gpu/model/default_matmul_perf_table.txtpb` (an xla.GemmPerfTable
textproto; before July 2026 the same data sat in matmul_interpolator_data.h): per GPU architecture
("sm_90", "sm_100_B200", ...) and per shape (b, m, n, k) the FLOP/s of an XLA dot of that shape per
operand/result type, written by xla/tools/matmul_perf_table_gen (each dot run under the kernel tracer
several times, FLOP over the traced kernel time). This converts the measured figures (data, not code):
- b = 1: a GEMM [m, k]·[k, n] -> moesim gemm point (m, n, k); XLA's dots have one layout, so the table
  serves every pass (pass = "any"; a pass-specific table of the profile is preferred where it has one).
- b > 1: b independent GEMMs of one shape in one batched kernel -> grouped_gemm point (b, m, n, k), status
  "derived" (a batched GEMM of equal groups stands in for a grouped one).
- efficiency = FLOP/s / (the moesim profile's dense peak of the dtype).
The grid is 256..4096 per dimension, b in {1, 2, 4}: shapes beyond it read the nearest measured one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ENTRY = re.compile(r"entries\s*\{\s*b:\s*(\d+)\s*m:\s*(\d+)\s*n:\s*(\d+)\s*k:\s*(\d+)\s*((?:flops\s*\{[^}]*\}\s*)+)\}")
FLOPS = re.compile(r'key:\s*"([^"]+)"\s*value:\s*(\d+)')


def arch_block(text: str, arch: str) -> str:
    """The text of one architecture's table (from its key to the next architecture's)."""
    keys = list(re.finditer(r'\n  key:\s*"([^"]+)"', text))
    for i, m in enumerate(keys):
        if m.group(1) == arch:
            end = keys[i + 1].start() if i + 1 < len(keys) else len(text)
            return text[m.end():end]
    raise KeyError(f"architecture {arch!r} not in the table (has: {', '.join(k.group(1) for k in keys)})")


def convert(text: str, arch: str, key: str, peak_tflops: float) -> dict[str, list[tuple]]:
    """{"gemm": [(m, n, k, eff)], "grouped_gemm": [(b, m, n, k, eff)]} for one architecture and type key."""
    out: dict[str, list[tuple]] = {"gemm": [], "grouped_gemm": []}
    for b, m, n, k, flops in ENTRY.findall(arch_block(text, arch)):
        values = dict(FLOPS.findall(flops))
        if key not in values:
            continue
        eff = int(values[key]) / (peak_tflops * 1e12)
        b, m, n, k = int(b), int(m), int(n), int(k)
        if b == 1:
            out["gemm"].append((m, n, k, eff))
        else:
            out["grouped_gemm"].append((b, m, n, k, eff))
    if not out["gemm"]:
        raise KeyError(f"no {key!r} entries for {arch!r}")
    return out


def render(tables: dict[str, list[tuple]], dtype: str, source: str, measured_on: str, status: str) -> str:
    lines = []
    for kind, points in tables.items():
        if not points:
            continue
        lines += ["", "[[efficiency.op_table]]", f'kind = "{kind}"', f'dtype = "{dtype}"', 'pass = "any"',
                  f'status = "{status if kind == "gemm" else "derived"}"',
                  f"measured_on = {json.dumps(measured_on)}", f"source = {json.dumps(source)}", "points = ["]
        lines += ["  [" + ", ".join(str(x) for x in p[:-1]) + f", {p[-1]:.4f}]," for p in sorted(points)]
        lines.append("]")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--arch", required=True, help='architecture key, e.g. "sm_90", "sm_100_B200"')
    ap.add_argument("--key", required=True, help='operand/result types, e.g. "bf16xbf16->bf16"')
    ap.add_argument("--dtype", required=True, help="moesim dtype of the tables (bfloat16, float8, ...)")
    ap.add_argument("--peak-tflops", type=float, required=True, help="the moesim profile's dense peak of --dtype")
    ap.add_argument("--source", required=True)
    ap.add_argument("--measured-on", required=True)
    ap.add_argument("--status", choices=("measured", "derived"), default="measured")
    args = ap.parse_args(argv)
    try:
        tables = convert(Path(args.table).read_text(encoding="utf-8"), args.arch, args.key, args.peak_tflops)
    except (OSError, KeyError) as err:
        print(f"error: {args.table}: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render(tables, args.dtype, args.source, args.measured_on, args.status))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
