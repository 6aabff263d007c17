"""Held-out layer error of the CPU harness, before and after calibration, over several splits.

    python scripts/harness_holdout.py [--out-dir results/harness-holdout] [--clock cpu|wall]
        [--seeds 0,1,2,3,4] [--holdout-fraction 0.3] [--reuse] [--sweep SWEEP.toml] [--dtypes float32]

Steps (world size 2, gloo, one torch thread per rank; about 2-3 minutes on an idle 2-core box):
1. the harness sweep tests/calibrate/data/cpu-calibration.toml (17 Switch layer configurations and the
   two collectives they use): `validate.run` on 2 local ranks -> layers.jsonl;
2. `python -m validate.ops --dtypes float32` (operator records) -> ops.jsonl, with the same clock;
3. `moesim calibrate ops.jsonl --hardware cpu-localhost` (holdout 0: operator records are not the layer
   split) -> cpu-ops.toml, the operator path's prior;
4. per seed, the layer records split (30 % held out) and calibrated twice: from the FLOP-keyed prior
   cpu-localhost (the path before operator tables) and from cpu-ops.toml (the operator path). For each:
   held-out layer MAPE with the prior itself ("prior") and with the calibrated profile ("after"), and
   whether the keep-the-prior rule kept it.
Prints one table and writes summary.json. `--reuse` skips steps 1-2 when their files exist.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)
SWEEP = ROOT / "tests" / "calibrate" / "data" / "cpu-calibration.toml"
PRIORS = ("cpu-localhost", "ops")


def measure(out_dir: Path, clock: str, reuse: bool, sweep: Path = SWEEP, dtypes: str = "float32") -> tuple[Path, Path]:
    layers, ops = out_dir / "layers.jsonl", out_dir / "ops.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not (reuse and layers.exists()):
        layers.unlink(missing_ok=True)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-c", _LAUNCH, tmp, "--sweep", str(sweep), "--out", str(layers),
                            "--timeout-s", "120", "--clock", clock], check=True, env=env, cwd=ROOT)
        print(f"harness sweep: {time.perf_counter() - t0:.0f} s -> {layers}", file=sys.stderr)
    if not (reuse and ops.exists()):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "validate.ops", "--out", str(ops), "--dtypes", dtypes,
                        "--clock", clock], check=True, env=env, cwd=ROOT)
        print(f"validate.ops: {time.perf_counter() - t0:.0f} s -> {ops}", file=sys.stderr)
    return layers, ops


_LAUNCH = ("import sys; from validate.run import launch_local; "
           "launch_local(2, sys.argv[2:], sys.argv[1])")


def evaluate(layers: Path, ops: Path, out_dir: Path, seeds: list[int], holdout: float) -> dict:
    from moesim.calibrate import calibrate
    from moesim.calibrate.ops import calibrate_ops
    from moesim.calibrate.report import validation_report
    from moesim.specs.load import load_hardware

    op_profile = out_dir / "cpu-ops.toml"
    op_cal = calibrate_ops([str(ops)], "cpu-localhost", op_profile, holdout_fraction=0.0)
    priors = {"cpu-localhost": "cpu-localhost", "ops": str(op_profile)}
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        for label, prior in priors.items():
            result = calibrate([str(layers)], prior, out_dir / f"{label}-seed{seed}.toml", holdout_fraction=holdout,
                               seed=seed, bootstrap=0)
            before = validation_report(result.measurements, load_hardware(prior), only_keys=set(result.held_out))
            row[label] = {"prior_mape": before.total.mape, "after_mape": result.held_out_report.total.mape,
                          "after_signed": result.held_out_report.total.mean_signed_error,
                          "kept_prior": bool(result.guard and result.guard.kept_prior),
                          "held_out": len(result.held_out)}
        rows.append(row)
    return {"layers": str(layers), "ops": str(ops), "kernel_launch_us": op_cal.launch_s * 1e6,
            "peak_gflops": {k: v / 1e9 for k, v in op_cal.peaks_flops_per_s.items()}, "splits": rows,
            "load_average": os.getloadavg()}


def render(summary: dict) -> str:
    head = (f"{'seed':>4} | {'FLOP-keyed prior':>16} {'after':>7} {'kept':>4} | {'operator prior':>14} {'after':>7} "
            f"{'signed':>7} {'kept':>4}")
    lines = [head, "-" * len(head)]
    for r in summary["splits"]:
        a, b = r["cpu-localhost"], r["ops"]
        kept_a, kept_b = ("yes" if x["kept_prior"] else "no" for x in (a, b))
        lines.append(f"{r['seed']:>4} | {a['prior_mape']:>16.1%} {a['after_mape']:>7.1%} {kept_a:>4}"
                     f" | {b['prior_mape']:>14.1%} {b['after_mape']:>7.1%} {b['after_signed']:>+7.1%} {kept_b:>4}")
    mean = lambda label, key: sum(r[label][key] for r in summary["splits"]) / len(summary["splits"])  # noqa: E731
    lines.append(f"mean | {mean('cpu-localhost', 'prior_mape'):>16.1%} {mean('cpu-localhost', 'after_mape'):>7.1%} "
                 f"{'':>4} | {mean('ops', 'prior_mape'):>14.1%} {mean('ops', 'after_mape'):>7.1%} "
                 f"{mean('ops', 'after_signed'):>+7.1%}")
    load = ", ".join(f"{x:.1f}" for x in summary["load_average"])
    lines.append(f"held-out layer MAPE per split; operator prior = validate.ops tables (kernel call "
                 f"{summary['kernel_launch_us']:.3g} us, float32 peak {summary['peak_gflops'].get('float32', 0):.4g} "
                 f"GFLOP/s); load average {load}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default="results/harness-holdout")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--holdout-fraction", type=float, default=0.3)
    ap.add_argument("--reuse", action="store_true", help="reuse layers.jsonl / ops.jsonl in --out-dir")
    ap.add_argument("--sweep", default=str(SWEEP), help="harness sweep (default: the CI calibration sweep)")
    ap.add_argument("--dtypes", default="float32", help="validate.ops dtypes (bfloat16 when the sweep has it)")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(f"error: --seeds takes comma-separated integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers, ops = measure(out_dir, args.clock, args.reuse, Path(args.sweep), args.dtypes)
    summary = evaluate(layers, ops, out_dir, seeds, args.holdout_fraction)
    summary["clock"] = args.clock
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(render(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
