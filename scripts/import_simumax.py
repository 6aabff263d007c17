"""Convert SimuMax's measured per-operator efficiency tables into moesim `[[efficiency.op_table]]` TOML.

    python scripts/import_simumax.py SYSTEM.json --peak-tflops 2250 --hbm-gb-per-s 8000 \
        --source "MooreThreads/SimuMax configs/system/b200_bf16_ceperm.json@4dcaae51" --measured-on "..."

SimuMax (Apache-2.0) publishes, per system, `accelerator.op.<op>.accurate_efficient_factor`: a map from
a shape key to the measured fraction of its `tflops` peak. This converts the measured figures (data,
not code) to moesim's conventions (moesim/ops/base.py):
- matmul: key "b, m, k, n, layout": TN = forward (M tokens, K in, N out), NN = dgrad (M tokens, K out,
  N in), NT = wgrad (M out, K tokens, N in) (SimuMax simumax/core/base_struct.py get_gemm_mnk). moesim's
  point is (m, n, k) of its own pass convention: fwd (M, N, K); dgrad (M, N, K) as well (m tokens,
  n in, k out); wgrad (N, M, K) (m in, n out, k tokens). A wgrad key also names its output dtype: SimuMax
  measured the accumulating weight-gradient GEMM writing fp32 (its `grad_reduce_in_bf16` off, base_struct.py
  `get_gemm_bmnk`) and, for some shapes, bf16. Only `--wgrad-out-dtype`'s (default fp32) are imported: with
  Megatron's gradient-accumulation fusion the wgrad GEMM writes straight into the main gradient, whose dtype is
  fp32 unless --grad-reduce-in-bf16 (Transformer Engine v2.11 pytorch/module/linear.py, wgrad_gemm_kwargs
  `out_dtype = main_grad.dtype`, `out = main_grad`), moesim's `training.grad_dtype` default. Both kinds of point
  on one shape would otherwise be averaged (moesim/ops/tables.py takes the mean of duplicate shapes).
- group_matmul: key "ng, M (tokens per expert), N out, K in, stage": moesim (groups, m, n, k) per pass:
  fwd (ng, M, N, K), dgrad (ng, M, K, N), wgrad (ng, K, N, M).
- sdp_fwd / sdp_bwd: key "batch, seq_len, head_num, kv_head_num, qk_head_dim": SimuMax counts the full
  score matrix (4·b·a·s²·d forward, 2.5× backward) while the kernels measured are causal
  (simu_tools/efficency_test/test_fa_efficiency.py, attn_mask_type='causal'), so the efficiency on the
  work a causal kernel does is the figure × moesim.ops.attention.work_fraction("causal", s).
  Point (seq_len, batch·heads, qk_head_dim).
- bandwidth (memory-bound ops): time = bytes / (gbps·2^30·η) + latency in SimuMax (core/config.py), so
  η_moesim = η·gbps·2^30 / (HBM bytes/s of the moesim profile); permute_fwd/permute_bwd → "permute" and
  "unpermute" tables of their pass, ce → "cross_entropy" (unfused; moesim prices the same passes SimuMax
  counts, moesim/ops/layer.py), ce_fusion → "cross_entropy_fused", default → every other memory op. The
  default factor (0.666 on B200) is SimuMax's assumed fallback, which none of its measurement tools writes
  (tools/b200/build_current_machine_system_config.py sets ce, ce_fusion, permute_fwd, permute_bwd), so its
  table is marked "assumed". The fixed `latency_us` SimuMax adds per memory op is left out (one figure for
  all, not a measurement).
Efficiencies are rescaled from SimuMax's peak to the moesim profile's: η·peak_simumax / peak_moesim.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from _repo_root import ROOT  # noqa: F401  (first: this checkout's root on sys.path; scripts/_repo_root.py)

from moesim.ops.attention import work_fraction  # noqa: E402

GIB = 2 ** 30
ASSUMED_TABLES = {("memory", "any")}  # SimuMax's default bandwidth factor: not a measurement (module docstring)
DTYPES = {"bf16": "bfloat16", "fp8": "float8", "fp16": "float16", "fp32": "float32"}


def _fields(key: str) -> dict[str, str]:
    return dict(part.strip().split("=", 1) for part in key.split(",") if "=" in part)


def convert(system: dict, peak_tflops: float, hbm_gb_per_s: float, memory: bool = True,
            wgrad_out_dtype: str = "fp32") -> dict[tuple, list]:
    """{(kind, dtype, pass, op): [points]} in moesim's conventions (module docstring); dense wgrad keys only
    where their out_dtype is `wgrad_out_dtype` (a key without one is kept)."""
    out: dict[tuple, list] = defaultdict(list)
    acc = system["accelerator"]
    for name, entry in acc["op"].items():
        scale = entry["tflops"] / peak_tflops
        for key, eff in (entry.get("accurate_efficient_factor") or {}).items():
            f = _fields(key)
            if name in ("matmul", "fp8_matmul"):
                b, M, K, N = (int(f[x]) for x in ("b", "m", "k", "n"))
                M *= b
                dtype = "float8" if name.startswith("fp8") else "bfloat16"
                layout = f["layout"]
                if layout == "NT" and f.get("out_dtype", wgrad_out_dtype) != wgrad_out_dtype:
                    continue
                pass_, point = {"TN": ("fwd", (M, N, K)), "NN": ("dgrad", (M, N, K)),
                                "NT": ("wgrad", (N, M, K))}[layout]
                out[("gemm", dtype, pass_, "any")].append((*point, eff * scale))
            elif name in ("group_matmul", "fp8_group_matmul"):
                g, M, N, K = (int(f[x]) for x in ("ng", "M", "N", "K"))
                dtype = DTYPES[f.get("dtype", "bf16")]
                stage = f["stage"]
                pass_, point = {"fwd": ("fwd", (g, M, N, K)), "bwd_grad_act": ("dgrad", (g, M, K, N)),
                                "bwd_grad_w": ("wgrad", (g, K, N, M))}[stage]
                out[("grouped_gemm", dtype, pass_, "any")].append((*point, eff * scale))
            elif name in ("sdp_fwd", "sdp_bwd"):
                b, s, a, d = (int(f[x]) for x in ("batch", "seq_len", "head_num", "qk_head_dim"))
                pass_ = "fwd" if name == "sdp_fwd" else "bwd"
                out[("attention", "bfloat16", pass_, "any")].append((s, b * a, d, eff * scale * work_fraction("causal", s, s)))
    hbm = hbm_gb_per_s * 1e9
    names = {"permute_fwd": [("permute", "fwd"), ("unpermute", "fwd")],
             "permute_bwd": [("permute", "bwd"), ("unpermute", "bwd")],
             "ce": [("cross_entropy", "any")], "ce_fusion": [("cross_entropy_fused", "any")],
             "default": [("any", "any")]}
    for name, entry in (acc.get("bandwidth", {}) if memory else {}).items():
        eff = entry["efficient_factor"] * entry["gbps"] * GIB / hbm
        for op, pass_ in names.get(name, []):
            out[("memory", "bfloat16", pass_, op)].append((1e9, eff))
    return out


def render(tables: dict[tuple, list], source: str, measured_on: str, status: str = "measured") -> str:
    lines = []
    for (kind, dtype, pass_, op), points in sorted(tables.items()):
        points = sorted(set(points))
        lines += ["", "[[efficiency.op_table]]", f'kind = "{kind}"', f'dtype = "{dtype}"', f'pass = "{pass_}"']
        if op != "any":
            lines.append(f'op = "{op}"')
        table_status = "assumed" if (kind, op) in ASSUMED_TABLES else status
        lines += [f'status = "{table_status}"', f"measured_on = {json.dumps(measured_on)}",
                  f"source = {json.dumps(source)}", "points = ["]
        lines += ["  [" + ", ".join(_num(x) for x in p[:-1]) + f", {p[-1]:.4f}]," for p in points]
        lines.append("]")
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system_json")
    ap.add_argument("--peak-tflops", type=float, required=True, help="the moesim profile's dense peak (bf16)")
    ap.add_argument("--hbm-gb-per-s", type=float, required=True, help="the moesim profile's HBM bandwidth")
    ap.add_argument("--source", required=True)
    ap.add_argument("--measured-on", required=True)
    ap.add_argument("--status", choices=("measured", "derived"), default="measured",
                    help="derived: measured on another SKU than the profile's")
    ap.add_argument("--no-memory", action="store_true", help="leave out the memory-bound fractions")
    ap.add_argument("--wgrad-out-dtype", choices=("fp32", "bf16"), default="fp32",
                    help="which of SimuMax's weight-gradient GEMM measurements to import (module docstring)")
    args = ap.parse_args(argv)
    try:
        system = json.loads(Path(args.system_json).read_text(encoding="utf-8"))
        tables = convert(system, args.peak_tflops, args.hbm_gb_per_s, memory=not args.no_memory,
                         wgrad_out_dtype=args.wgrad_out_dtype)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {args.system_json}: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render(tables, args.source, args.measured_on, args.status))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
