"""Layout-search speed: Switch-C on 2048 TPU v3 cores, a 64-expert decoder on 1024 H100 GPUs, Mixtral 8x7B on
64 H100 GPUs, DeepSeek-V3 on 2048 H800 GPUs; Switch-C and Mixtral also over the larger space of pipeline schedules /
virtual stages ("+schedules") and context parallelism ("+cp").

Run `python benchmarks/bench_search.py [--write]` for the table recorded in benchmarks/RESULTS.md
(## Search), or `pytest benchmarks/bench_search.py --benchmark-enable` for pytest-benchmark statistics.
Timings: wall clock of `moesim.search.search` (enumeration, evaluation, ranking, Pareto front);
"cold" is the first search in a fresh process (workload and stage caches empty), "warm" the
median of the following runs.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import dataclasses

import numpy as np

from moesim.collectives.select import default_model
from moesim.search import search
from moesim.search.enumerate import enumerate_layouts
from moesim.specs.load import load_scenario

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "switch-c-2048-tpu-v3": str(ROOT / "scenarios" / "switch-c-2048-tpu-v3.toml"),
    "moe-64e-1024-h100": str(ROOT / "tests" / "search" / "data" / "moe-64e-1024-h100.toml"),
    "mixtral-8x7b-h100": str(ROOT / "scenarios" / "mixtral-8x7b-h100.toml"),
    "deepseek-v3-h800": str(ROOT / "scenarios" / "deepseek-v3-h800.toml"),  # 2048 H800, 9.3 M layouts (session 16)
}
# The larger spaces: [search] keys of specs.scenario.SearchSpace.
SPACES = {
    "": {},
    " +schedules": dict(pipeline_schedules=("1f1b", "interleaved", "zb-h1", "dualpipe"), virtual_stages=(2, 4, 8)),
    " +cp": dict(context_parallel=(1, 2, 4), cp_comms=("p2p",)),
}
WIDE = ("switch-c-2048-tpu-v3", "mixtral-8x7b-h100")
WARM_RUNS = 5


def load_case(case: str):
    """The scenario of a case name: a CASES key plus an optional SPACES suffix."""
    name, space = next((n, s) for n in CASES for s in SPACES if case == n + s)
    scenario = load_scenario(CASES[name])
    return dataclasses.replace(scenario, search=dataclasses.replace(scenario.search, **SPACES[space]))


def measure(name: str, threads: int | None, warm_runs: int = WARM_RUNS) -> dict:
    scenario = load_case(name)
    start = time.perf_counter()
    result = search(scenario, threads=threads)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(warm_runs):
        start = time.perf_counter()
        search(scenario, threads=threads)
        warm.append(time.perf_counter() - start)
    start = time.perf_counter()
    found = enumerate_layouts(scenario)
    enumeration = time.perf_counter() - start
    best = result.layout_dict(0)
    return {"case": name, "threads": threads or "default", "considered": result.considered,
            "evaluated": len(found.candidates), "ranked": result.ranked, "cold_s": cold,
            "warm_median_s": statistics.median(warm), "warm_min_s": min(warm), "enumerate_s": enumeration,
            "model": type(default_model(scenario.hardware)).__name__, "pareto": len(result.pareto),
            "best": f"dp={best['dp']} tp={best['tp']} ep={best['ep']} pp={best['pp']} etp={best['etp']} "
                    f"{'-'.join(best['order'])} mb={best['micro_batches']} zero={best['zero_stage']} "
                    f"{best['recompute']} {best['pipeline_schedule']}"
                    + "".join(f" {k}={best[k]}" for k in ("vp", "cp") if k in best),
            "best_step_s": float(result.step_time_s[0])}


def markdown(rows: list[dict]) -> str:
    head = ("| case | threads | considered | evaluated | ranked | enumerate | search cold | search warm (median/min) "
            "| collective model | best layout (step) |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['case']} | {r['threads']} | {r['considered']:,} | {r['evaluated']:,} | {r['ranked']:,} "
                     f"| {r['enumerate_s']:.3f} s | {r['cold_s']:.3f} s | {r['warm_median_s']:.3f} / "
                     f"{r['warm_min_s']:.3f} s | {r['model']} | {r['best']} ({r['best_step_s'] * 1e3:.1f} ms) |")
    return "\n".join(lines)


def test_search_switch_c(benchmark):
    scenario = load_scenario(CASES["switch-c-2048-tpu-v3"])
    result = benchmark(search, scenario)
    assert result.ranked > 0


def test_search_64_experts_1024_gpus(benchmark):
    scenario = load_scenario(CASES["moe-64e-1024-h100"])
    result = benchmark(search, scenario)
    assert result.ranked > 0


NOTES = """\
Considered = every degree combination that tiles the devices × distinct mesh placements ×
micro-batch counts × ZeRO stages × recomputation modes (× capacity factors); evaluated = the valid
ones (one vectorised `evaluate` batch per pipeline degree, `breakdown=False`, on up to 4 threads by
default); ranked = those that fit. "+schedules" adds 1f1b / interleaved (vp 2, 4, 8) / zb-h1 /
dualpipe, "+cp" context parallelism 1, 2, 4 (ring), each to the scenario's own space (2 warm runs).
Rows over the memory capacity stop before the collectives (memory needs no mesh order); collectives
are priced per run of neighbouring candidates with equal sizes and groups (group columns once per
axis and batch); the enumeration's order-free key replaces hashing 13 columns; RESULTS.md
("Session 3") lists these and the other bit-identical speed-ups with a same-window before/after.
Earlier speed-ups made in moesim/estimate for
the search, all with bit-identical results (7,500 sampled and 9,000 order-grouped candidates
compared with the evaluate of before, alpha-beta and topology-aware models): an O(N²) cost pick and
a max() over arrays in `evaluate` fixed; the pricer's row dedupe by a 64-bit hash with run folding
instead of np.unique(axis=0); one representative per kind of pipeline stage instead of all pp stages
(estimate/stages.py); the order-free part of `evaluate` (compute, parameters, optimizer, memory)
once per distinct row instead of once per mesh order; `evaluate(..., breakdown=False)`. Before them
one evaluation of the Switch-C candidates took 276 s (the O(N²) pick) and of the 64-expert
candidates 19 s."""


def write_section(text: str, path: Path = ROOT / "benchmarks" / "RESULTS.md") -> None:
    """Replace (or add) the "## Search" section of RESULTS.md, leaving the other sections as they are."""
    content = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    lines = content.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Search"), None)
    if start is None:
        lines = lines + ([""] if lines and lines[-1].strip() else []) + text.splitlines()
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[:start] + text.splitlines() + ([""] if end < len(lines) else []) + lines[end:]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def min_of(case: str, threads: int | None, runs: int = 3) -> dict:
    """Wall and CPU seconds of `runs` warm searches (after one cold one), the smallest of each, with the
    1-minute load average before and after: for before/after comparisons on a shared, busy machine."""
    scenario = load_case(case)
    load_before = os.getloadavg()[0]
    result = search(scenario, threads=threads)
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        search(scenario, threads=threads)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"case": case, "threads": threads or "default", "runs": runs, "wall_min_s": min(wall),
            "cpu_min_s": min(cpu), "load": (load_before, os.getloadavg()[0]), "ranked": result.ranked,
            "best_step_s": float(result.step_time_s[0]), "best": result.layout_arg(0)}


COMPARE_CASES = (("switch-c-2048-tpu-v3", None), ("moe-64e-1024-h100", 1), ("moe-64e-1024-h100", None),
                 ("mixtral-8x7b-h100", None), ("switch-c-2048-tpu-v3 +schedules", None), ("switch-c-2048-tpu-v3 +cp", None),
                 ("mixtral-8x7b-h100 +schedules", None), ("mixtral-8x7b-h100 +cp", None),
                 ("deepseek-v3-h800", 1), ("deepseek-v3-h800", None))


if __name__ == "__main__" and "--cold-warm" in sys.argv[1:]:
    # python benchmarks/bench_search.py --cold-warm SCENARIO: in a fresh process, the first search (cold: the imports
    # and caches it pays, as `moesim search` does) and a second (warm), wall and CPU seconds (session 16, newcomer2).
    path = sys.argv[sys.argv.index("--cold-warm") + 1]
    scenario = load_scenario(path)
    times = []
    for _ in range(2):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = search(scenario)
        times.append((time.perf_counter() - start, time.process_time() - start_cpu))
    (cold, cold_cpu), (warm, warm_cpu) = times
    print(f"{Path(path).stem}: cold {cold:.3f} s wall {cold_cpu:.3f} s CPU; warm {warm:.3f} s wall {warm_cpu:.3f} s "
          f"CPU; load {os.getloadavg()[0]:.1f}; considered {result.considered:,}, ranked {result.ranked:,}, best "
          f"{result.step_time_s[0] * 1e3:.3f} ms")
    sys.exit(0)


if __name__ == "__main__" and "--min-of" in sys.argv[1:]:
    # python benchmarks/bench_search.py --min-of 3 [--case NAME]: one line per case (run it with PYTHONPATH on
    # the tree to time; the scenarios are read from this script's tree).
    runs = int(sys.argv[sys.argv.index("--min-of") + 1])
    only = sys.argv[sys.argv.index("--case") + 1] if "--case" in sys.argv else None  # one case name
    for case, threads in COMPARE_CASES:
        if only is not None and case != only:
            continue
        r = min_of(case, threads, runs)
        print(f"| {r['case']} | {r['threads']} | {r['wall_min_s']:.3f} s | {r['cpu_min_s']:.3f} s "
              f"| {r['load'][0]:.1f} → {r['load'][1]:.1f} | {r['ranked']:,} | {r['best_step_s'] * 1e3:.3f} ms |",
              flush=True)
    sys.exit(0)


if __name__ == "__main__":
    rows = [measure(name, threads) for name in CASES for threads in (1, None)]
    rows += [measure(name + space, None, 2) for name in WIDE for space in list(SPACES)[1:]]
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"numpy {np.__version__}")
    section = "\n".join(["## Search", "", f"`python benchmarks/bench_search.py --write` on {machine}; "
                          f"cold = first search in the process, warm = median / min of {WARM_RUNS} more.", "",
                          markdown(rows), "", NOTES])
    print(section)
    if "--write" in sys.argv[1:]:
        write_section(section)
