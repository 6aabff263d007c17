"""Session 18 (ncclleft): what the enumeration a sweep worker keeps costs (docs/collectives-history.md "Session 18
(ncclleft)", benchmarks/RESULTS.md).

`python benchmarks/sweep_worker_memory.py memory [--workers N]` runs DeepSeek-V3 points (deepseek-v3-h800, global
batch 15360 / 7680, twice each) through moesim.search.workers.map_items, the path of `moesim sweep --workers N`; each
point reports from inside its worker: its pid, the worker's peak RSS so far (getrusage ru_maxrss), its RSS after the
search (the enumeration kept), after glibc's malloc_trim(0) with it still kept (where libc has malloc_trim), after
moesim.search.release_kept() and a gc, and after malloc_trim(0) again. /usr/bin/time -v on this command sees the
parent's peak only: the workers are the forkserver's children. Each point releases after it, so a worker's second
point starts from the released state.

`python benchmarks/sweep_worker_memory.py reuse` prices, in one process with imports and caches warm, the CPU time of
a point of the same enumeration key as the search before it (the hourly price changed: the enumeration is reused),
kept and after release_kept(), and checks that both give the same best layout.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import resource
import time

from moesim.search import release_kept
from moesim.search.overrides import apply_point, parse_value
from moesim.search.sweep import best_layout
from moesim.search.workers import map_items
from moesim.specs.scenario_file import load_scenario

SCENARIO = "deepseek-v3-h800"
BATCHES = ("15360", "7680", "15360", "7680")


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _trim() -> bool:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def point(scenario, objective: str) -> dict:
    """One sweep point in a worker: best_layout, then the worker's memory figures (MiB)."""
    row = best_layout(scenario, objective)
    searched = _rss_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kept_trimmed = _rss_mib() if _trim() else float("nan")
    release_kept()
    gc.collect()
    released = _rss_mib()
    trimmed = _rss_mib() if _trim() else float("nan")
    return {"pid": os.getpid(), "peak": peak, "searched": searched, "kept_trimmed": kept_trimmed,
            "released": released, "trimmed": trimmed, "step_time_s": row.get("step_time_s")}


def memory(workers: int) -> None:
    base = load_scenario(SCENARIO)
    points = [apply_point(base, {"batch": parse_value("batch", b)}) for b in BATCHES]
    rows = map_items(point, [(p, "step_time") for p in points], workers=workers)
    print("| batch | worker pid | peak RSS MiB | after the search | kept, malloc_trim | after release_kept | "
          "released, malloc_trim |")
    print("|---|---|---|---|---|---|---|")
    for batch, r in zip(BATCHES, rows):
        print(f"| {batch} | {r['pid']} | {r['peak']:.0f} | {r['searched']:.0f} | {r['kept_trimmed']:.0f} | "
              f"{r['released']:.0f} | {r['trimmed']:.0f} |")
    print(f"parent (this process): peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def reuse() -> None:
    base = load_scenario(SCENARIO)
    best_layout(apply_point(base, {"batch": parse_value("batch", "7680")}), "step_time")  # warm; another key kept
    same_key = apply_point(base, {"hardware.price_per_device_hour_usd": 3.0})  # hardware is not in the key

    def cpu(scenario) -> tuple[float, object]:
        start = time.process_time()
        row = best_layout(scenario, "step_time")
        return time.process_time() - start, row["layout"]

    first, _ = cpu(base)
    kept, layout_kept = cpu(same_key)
    release_kept()
    released, layout_released = cpu(same_key)
    print(f"first point {first:.2f} s CPU; the next point, same key: kept {kept:.2f} s, after release_kept "
          f"{released:.2f} s; same best layout: {layout_kept == layout_released}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("memory", "reuse"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.what == "memory":
        memory(args.workers)
    else:
        reuse()
