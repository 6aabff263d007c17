"""Speed of the topology-aware collective model: graph building, first costing, memoised costing.

Run: python benchmarks/bench_collectives.py [--write]   (--write replaces the "## Collectives" section
of benchmarks/RESULTS.md). Timings use time.perf_counter, best of REPEATS; no test asserts on them.
`--sweeps` prints only the two distinct-collective sweeps, wall and process CPU time per call: run it with
PYTHONPATH on each tree, alternating, to compare two trees on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware
from moesim.topology.system import build_system

REPEATS = 5
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Collectives"


def best_of(fn, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def note(cost) -> str:
    return f"64 MiB per rank: {cost.algorithm}, {cost.time_s * 1e3:.2f} ms predicted"


def search_like(hw, devices):
    """Every (op, size, group) of a layout search's shape once, on a fresh model: distinct collectives."""
    model = TopologyModel(hw)
    calls = 0
    for n in (2, 4, 8, 16, 32, 64, 128, 256):
        for stride in (1, 2, 4, 8):
            if n * stride > devices:
                continue
            for size in (2**k for k in range(10, 34, 2)):
                for op in ("all_reduce", "all_to_all", "all_gather"):
                    model.cost(op, size, Group(size=n, stride=stride, concurrent=devices // n, devices=devices))
                    calls += 1
    return calls


SWEEPS = (("tpu-v4", 4096, "TPU v4 4096"), ("h100-sxm", 1024, "H100 1024"))


def sweep_times(hw, devices: int, repeats: int = REPEATS) -> tuple[float, float, int]:
    """(best wall s, best process CPU s, calls) of `repeats` search_like sweeps."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        calls = search_like(hw, devices)
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return wall, cpu, calls


def sweeps() -> None:
    """One line per sweep: best of REPEATS wall and process CPU time per call."""
    for name, devices, label in SWEEPS:
        wall, cpu, calls = sweep_times(load_hardware(name), devices)
        print(f"{label}: {calls} distinct collectives, {wall / calls * 1e6:.1f} us wall, "
              f"{cpu / calls * 1e6:.1f} us CPU per call", flush=True)


def cases():
    v4, h100 = load_hardware("tpu-v4"), load_hardware("h100-sxm")
    rows = []

    t, g = best_of(lambda: build_system(v4, 4096).graph())
    rows.append(("build 4096-chip TPU v4 torus graph (16x16x16, networkx)", t,
                 f"{g.number_of_nodes()} nodes, {g.number_of_edges()} directed links"))
    t, cost = best_of(lambda: TopologyModel(v4).cost("all_to_all", 2**26, Group(size=4096)))
    rows.append(("first all-to-all on it (place 4096 members, price)", t, note(cost)))
    t, g = best_of(lambda: build_system(h100, 1024).graph())
    rows.append(("build 1024-GPU H100 SuperPod graph (NVSwitch + rail Clos)", t,
                 f"{g.number_of_nodes()} nodes, {g.number_of_edges()} directed links"))
    t, cost = best_of(lambda: TopologyModel(h100).cost("all_to_all", 2**26, Group(size=1024)))
    rows.append(("first all-to-all on it (place 1024 members, price)", t, note(cost)))

    for hw, devices, label in ((v4, 4096, "TPU v4 4096"), (h100, 1024, "H100 1024")):
        t, cpu, calls = sweep_times(hw, devices, repeats=3)
        rows.append((f"{calls} distinct collectives, fresh model ({label})", t,
                     f"{t / calls * 1e6:.0f} us per call (process CPU time {cpu / calls * 1e6:.0f} us)"))
    return rows


def render(rows) -> str:
    lines = [HEADING, "",
             f"`python benchmarks/bench_collectives.py --write` on {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}; best of {REPEATS} (3 for the sweeps), time.perf_counter; "
             f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end.", "",
             "| case | time | note |", "|---|---:|---|"]
    for name, seconds, note in rows:
        lines.append(f"| {name} | {seconds * 1e3:.1f} ms | {note} |")
    return "\n".join(lines) + "\n"


def write(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update the {HEADING} section of {RESULTS.name}")
    parser.add_argument("--sweeps", action="store_true", help="only the distinct-collective sweeps, wall and CPU")
    args = parser.parse_args()
    if args.sweeps:
        sweeps()
        return
    section = render(cases())
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
