"""Speed and agreement of the discrete-event simulator (moesim.des).

Run: python benchmarks/bench_des.py [--write] [--only CASE ...] [--before TREE] [--no-agreement]
(--write replaces the "## Simulator" section of benchmarks/RESULTS.md, keeping the recorded
"before" rows). Speed: one training step of each SCALE case, each in a fresh child process running
the CLI (`moesim simulate ... --json`), so that its peak memory (ru_maxrss) and CPU time (user +
system, one core: the simulator is single-threaded) are its own; wall time is the child's elapsed
time, events what the engine counted (simpy: events scheduled; fast engine: operations completed +
heap events). `--before TREE` runs the same cases with the moesim found in TREE (a checkout of an
older commit) and stores them as the "before" rows in benchmarks/des_before.json.
Agreement: simulated step (expected uniform loads, no contention) over the analytical estimate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from moesim.des import SimOptions, simulate
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
BEFORE = Path(__file__).with_name("des_before.json")
AFTER = Path(__file__).with_name("des_after.json")
AGREEMENT_ROWS = Path(__file__).with_name("des_agreement.json")
HEADING = "## Simulator"
AFTER_COMMIT = "1feb80f"  # the commit the after rows in des_after.json were measured at
GLAM_1024 = str(ROOT / "tests" / "des" / "data" / "glam-64e-1024-h100.toml")
HISTOGRAM = str(ROOT / "benchmarks" / "data" / "deepseek-v3-zipf1.2-histogram.json")
STRAGGLERS = ["--straggler-fraction", "0.02", "--straggler-slowdown", "1.3"]
SCALE = {  # case: (description, CLI arguments after `moesim simulate`)
    "dsv3-zipf": ("DeepSeek-V3, 2048 H800, zipf:1.2, 2 % stragglers x1.3",
                  [str(ROOT / "scenarios" / "deepseek-v3-h800.toml"), "--routing", "zipf:1.2"] + STRAGGLERS),
    "dsv3-histogram": ("DeepSeek-V3, 2048 H800, histogram file (synthetic Zipf 1.2 counts), 2 % stragglers x1.3",
                       [str(ROOT / "scenarios" / "deepseek-v3-h800.toml"), "--routing", HISTOGRAM] + STRAGGLERS),
    "glam-1024-full": ("64 experts (GLaM), 1024 H100, pp 4 x 8, every device (--mode full)",
                       [GLAM_1024, "--mode", "full"]),
    "glam-1024-auto": ("64 experts (GLaM), 1024 H100, pp 4 x 8, auto mode", [GLAM_1024]),
    "switch-c-full": ("Switch-C, 2048 TPU v3 cores, 2048 experts, every device (--mode full)",
                      ["switch-c-2048-tpu-v3", "--mode", "full"]),
    "switch-c-auto": ("Switch-C, 2048 TPU v3 cores, 2048 experts, auto mode", ["switch-c-2048-tpu-v3"]),
    "switch-c-stragglers": ("Switch-C, 2048 TPU v3 cores, 2 % stragglers x1.3, auto mode",
                            ["switch-c-2048-tpu-v3"] + STRAGGLERS),
}
CHILD = """
import json, resource, sys, time, io, contextlib
from moesim.cli import main
out = io.StringIO()
start = time.perf_counter()
with contextlib.redirect_stdout(out):
    code = main(["simulate"] + sys.argv[1:] + ["--steps", "1", "--seed", "0", "--json"])
wall = time.perf_counter() - start
use = resource.getrusage(resource.RUSAGE_SELF)
data = json.loads(out.getvalue()) if code == 0 else {}
print(json.dumps({"code": code, "wall_s": wall, "cpu_s": use.ru_utime + use.ru_stime,
                  "peak_bytes": use.ru_maxrss * 1024, "result": data}))
"""
AGREEMENT = [  # (case, scenario, training changes, layout, asserted in tests/des/test_agreement.py)
    ("switch-base-128 (shipped)", "switch-base-128-tpu-v3", {}, None, True),
    ("switch-base-128 dp32 ep16", "switch-base-128-tpu-v3", {}, Layout(dp=32, ep=16), True),
    ("switch-base-128 tp2 dp16 ep16", "switch-base-128-tpu-v3", {}, Layout(dp=16, tp=2, ep=16), True),
    ("switch-base-128 ZeRO-1, index dispatch", "switch-base-128-tpu-v3", {"zero_stage": 1, "dispatch_impl": "index"},
     None, True),
    ("switch-c-2048 (shipped)", "switch-c-2048-tpu-v3", {}, None, True),
    ("mixtral-8x7b pp4 m16 1F1B (shipped)", "mixtral-8x7b-h100", {}, None, True),
    ("mixtral-8x7b pp4 m16 GPipe", "mixtral-8x7b-h100", {"pipeline_schedule": "gpipe"}, None, True),
    ("mixtral-8x7b full recompute", "mixtral-8x7b-h100", {"recompute": "full"}, None, True),
    ("mixtral-8x7b tp2 ep4 pp4", "mixtral-8x7b-h100", {"global_batch_sequences": 128},
     Layout(dp=8, tp=2, ep=4, pp=4), True),
    ("mixtral-8x7b etp2 pp4", "mixtral-8x7b-h100", {"global_batch_sequences": 128},
     Layout(dp=8, tp=2, ep=4, etp=2, pp=4), True),
    ("st-moe-32b (shipped)", "st-moe-32b-tpu-v3", {}, None, True),
    ("glam tpu-v4 ZeRO-3 + full recompute (shipped)", "glam-64b-64e-tpu-v4", {}, None, True),
    ("gshard-600b (shipped)", "gshard-600b-tpu-v3", {}, None, True),
    ("glam 1024 H100 pp4 m8", GLAM_1024, {}, None, True),
    ("mixtral-8x22b (shipped)", "mixtral-8x22b-h100", {}, None, False),
    ("deepseek-v3 h800 pp16 (shipped)", "deepseek-v3-h800", {}, None, False),
    ("mixtral-8x7b pp8 m16", "mixtral-8x7b-h100", {}, Layout(dp=8, ep=8, pp=8), False),
    ("switch-c-2048 tp2 dp1024 ep1024", "switch-c-2048-tpu-v3", {}, Layout(dp=1024, tp=2, ep=1024), False),
]


PROXY = Path(__file__).with_name("des_proxy.json")
PROXY_CHILD = """
import dataclasses, json, resource, sys, time
from moesim.des import SimOptions, simulate
from moesim.specs.load import load_scenario
sc = load_scenario(sys.argv[1])
mb = int(sys.argv[2])
sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, micro_batches=mb,
                                                          global_batch_sequences=128 * mb))
cpu, wall = time.process_time(), time.perf_counter()
r = simulate(sc, None, SimOptions(steps=1, routing="zipf:1.2", straggler_fraction=0.02, straggler_slowdown=1.3,
                                  trace=False))
print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall, "events": r.events,
                  "engine_wall_s": r.engine_time_s,
                  "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "step_s": r.step_times_s[0]}))
"""
# DeepSeek-V3 with 32 instead of 120 micro-batches (128 x 32 sequences), about a quarter of the work: DualPipe
# needs at least 2 * pp = 32 micro-batches (8, the proxy's count before the scenario moved to DualPipe, is refused)
PROXY_MICRO_BATCHES = 32


def proxy(before: Path, rounds: int = 2) -> list[dict]:
    """Before and after, alternately, on a 32-micro-batch DeepSeek-V3 step: a ratio that the machine's load
    affects alike (both run under the same load, one after the other)."""
    rows = []
    for n in range(rounds):
        for label, tree in (("before", before), ("after", ROOT)):
            proc = subprocess.run([sys.executable, "-c", PROXY_CHILD, str(ROOT / "scenarios" / "deepseek-v3-h800.toml"),
                                   str(PROXY_MICRO_BATCHES)], capture_output=True, text=True, check=True,
                                  env=dict(os.environ, PYTHONPATH=str(tree)), cwd=str(tree))
            rows.append({"round": n, "tree": label, **json.loads(proc.stdout.strip().splitlines()[-1]),
                         "load_average": os.getloadavg()[0]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def speed(case: str, tree: Path = ROOT, timeout_s: float = 3600.0) -> dict:
    """One SCALE case in a fresh child process with the moesim of `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", CHILD, *SCALE[case][1]], capture_output=True, text=True, env=env,
                          timeout=timeout_s, cwd=str(tree))
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed: {proc.stderr[-2000:]}")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    r = m["result"]
    return {"case": case, "description": SCALE[case][0], "mode": r["mode"], "simulated": r["simulated_devices"],
            "events": r["events"], "wall_s": m["wall_s"], "cpu_s": m["cpu_s"], "peak_bytes": m["peak_bytes"],
            "step_s": r["step_time_s"]["mean"], "analytical_s": r["analytical_step_time_s"],
            "dropped": r["dropped_token_fraction"], "load_average": os.getloadavg()[0],
            "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def agreement(case, ref, changes, layout, asserted) -> dict:
    sc = load_scenario(ref)
    if changes:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes))
    result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False))
    contended = simulate(sc, layout, SimOptions(contention=True, expected_loads=True, trace=False))
    sim, ana = result.step_times_s[0], result.analytical_step_time_s
    return {"case": case, "analytical_s": ana, "sim_s": sim, "diff": sim / ana - 1,
            "contention_diff": contended.step_times_s[0] / ana - 1, "asserted": asserted}


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def render(before: dict, after: dict, agree_rows: list[dict], proxy_rows: list[dict] = ()) -> str:
    lines = [HEADING, "",
             f"`python benchmarks/bench_des.py [--before TREE] --write` on {platform.machine()}, Python "
             f"{platform.python_version()}, numpy {np.__version__}: one training step, seed 0, contention on, each "
             "case in a fresh process (CPU = user + system time of that process, single-threaded: one core; peak "
             "= its maximum resident set). The machine is a shared 2-core box with other engineers' jobs running: "
             "wall times include waiting for a core (load average beside each row), CPU times are the fairer "
             "figure. Before = the simpy engine of commit d716948 (every device, or one device per stage when "
             "nothing differs); after = the fast engine with exact folding (moesim/des/kernel.py, fold.py), "
             f"measured at commit {AFTER_COMMIT} (later commits: refactoring, a faster set-up, and main's "
             "NCCL-tuner collective model and operator pricing merged in, which move step times; the agreement "
             "table below is re-run after those merges, the speed rows are not).", "",
             "| case | | mode (devices simulated) | events | wall | CPU | peak memory | load avg | simulated step | "
             "analytical |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case in SCALE:
        for label, rows in (("before", before), ("after", after)):
            r = rows.get(case)
            if r is None:
                continue
            lines.append(f"| {r['description'] if label == 'before' or case not in before else ''} | {label} | "
                         f"{r['mode']} ({r['simulated']:,}) | {r['events']:,} | {r['wall_s']:.1f} s | "
                         f"{r['cpu_s']:.1f} s | {_gb(r['peak_bytes'])} | {r['load_average']:.1f} | "
                         f"{r['step_s'] * 1e3:,.1f} ms | {r['analytical_s'] * 1e3:,.1f} ms |")
    notes = [f"{label} {SCALE[c][0]}: {rows[c]['note']} (load average {rows[c]['load_average']:.1f} at its start)."
             for label, rows in (("Before,", before), ("After,", after)) for c in SCALE if "note" in rows.get(c, {})]
    lines += [""] + notes if notes else []
    missing = [SCALE[c][0] for c in SCALE if c in after and c not in before]
    if missing:
        lines += ["", "No before row (not re-measured: the old engine needs several CPU minutes per case, more than "
                  "this busy machine gave in the time): " + "; ".join(missing) + "."]
    if "dsv3-zipf" in before and "dsv3-zipf" in after and proxy_rows:
        ratio = (np.mean([r["cpu_s"] for r in proxy_rows if r["tree"] == "after"])
                 / np.mean([r["cpu_s"] for r in proxy_rows if r["tree"] == "before"]))
        lines += ["", f"DeepSeek-V3 with Zipf routing and stragglers, the issue's target (< 60 s on one core): "
                  f"{after['dsv3-zipf']['cpu_s']:.0f} s of CPU as measured after, at load average "
                  f"{after['dsv3-zipf']['load_average']:.1f}, against {before['dsv3-zipf']['cpu_s']:.0f} s before at "
                  f"{before['dsv3-zipf']['load_average']:.1f}: not comparable as they stand. At equal load (below) "
                  f"the after run takes {ratio:.2f} of the before's CPU; {ratio:.2f} x "
                  f"{before['dsv3-zipf']['cpu_s']:.0f} s = {ratio * before['dsv3-zipf']['cpu_s']:.0f} s is an "
                  "extrapolation to the quieter machine, not a measurement."]
    if proxy_rows:
        lines += ["", f"Same load for both: DeepSeek-V3 as above but {PROXY_MICRO_BATCHES} micro-batches ("
                  "about a quarter of the step), before and after run alternately (`--before TREE --proxy`):", "",
                  "| round | | CPU | wall | peak memory | events | simulated step | load avg |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in proxy_rows:
            lines.append(f"| {r['round'] + 1} | {r['tree']} | {r['cpu_s']:.1f} s | {r['wall_s']:.1f} s | "
                         f"{_gb(r['peak_bytes'])} | {r['events']:,} | {r['step_s'] * 1e3:,.1f} ms | "
                         f"{r['load_average']:.1f} |")
        cpu = {t: np.mean([r["cpu_s"] for r in proxy_rows if r["tree"] == t]) for t in ("before", "after")}
        lines += ["", f"CPU time after / before: {cpu['after'] / cpu['before']:.2f} (mean of the rounds)."]
    lines += ["", "Events are not comparable across engines: simpy counts every event it schedules (timeouts, "
              "process resumptions, flow ends); the fast engine counts operations completed plus its heap events "
              "(collective launches, flow ends, pipeline transfers) - compute needs no event. The simulated step "
              "is the same before and after where the random numbers are (every case but the dropless DeepSeek-V3 "
              "ones, whose routing is now drawn per destination rank: same law, other draws).", "",
              "Agreement with the analytical model (`moesim.estimate`): expected uniform loads, no stragglers, no "
              "noise; \"no contention\" is the analytical model's own assumption, \"contention\" adds max-min "
              "sharing of ports.", "",
              "| case | analytical | simulated (no contention) | difference | with contention | asserted < 2 % |",
              "|---|---:|---:|---:|---:|---|"]
    for r in agree_rows:
        lines.append(f"| {r['case']} | {r['analytical_s'] * 1e3:.2f} ms | {r['sim_s'] * 1e3:.2f} ms | "
                     f"{r['diff']:+.2%} | {r['contention_diff']:+.2%} | {'yes' if r['asserted'] else 'no'} |")
    lines += ["", "Where the two differ by more, the simulator's schedule is the finer one: a real 1F1B/GPipe "
              "pipeline instead of (m + pp − 1) × the slowest stage (unequal stages: deepseek-v3 with its dense "
              "first layers, pp8), and gradient buckets whose timing differs from the estimate's single overlap "
              "window (the last micro-batch's backward compute and backward collectives). Small toy steps (tens "
              "of ms) also show the last gradient bucket, which nothing can hide, and per-bucket latency.", ""]
    return "\n".join(lines)


def write(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def _load(path: Path) -> dict | list:
    return json.loads(path.read_text()) if path.exists() else {}


def _store(path: Path, rows) -> None:
    path.write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the ## Simulator section of RESULTS.md")
    parser.add_argument("--only", nargs="+", choices=list(SCALE), help="run these cases only (default: all)")
    parser.add_argument("--before", metavar="TREE", help="run the cases with the moesim of TREE: the before rows")
    parser.add_argument("--no-speed", action="store_true", help="run no speed case (re-render, agreement)")
    parser.add_argument("--agreement", action="store_true", help="also run the agreement cases")
    parser.add_argument("--proxy", action="store_true", help="with --before: the before/after proxy (DeepSeek-V3, 32 micro-batches)")
    parser.add_argument("--store", metavar="FILE", help="keep the speed rows in FILE (JSON) instead of "
                        "des_before.json / des_after.json (e.g. the cluster-scale rows of issue 13)")
    args = parser.parse_args()
    if args.proxy and args.before:
        _store(PROXY, proxy(Path(args.before)))
    target = Path(args.store) if args.store else BEFORE if args.before else AFTER
    rows = _load(target)
    for case in ([] if args.no_speed else (args.only or list(SCALE))):
        rows[case] = speed(case, Path(args.before) if args.before else ROOT)
        print(json.dumps(rows[case]), flush=True)
        _store(target, rows)
    agree = _load(AGREEMENT_ROWS) or []
    if args.agreement:
        agree = [agreement(*case) for case in AGREEMENT]
        _store(AGREEMENT_ROWS, agree)
    section = render(_load(BEFORE), _load(AFTER), agree, _load(PROXY) or [])
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
