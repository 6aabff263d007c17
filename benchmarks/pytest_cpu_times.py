"""Where the test suite's time goes: a pytest plugin that records each test's CPU time, and a summary of the records.

On a shared box wall times are noise; a test's CPU time (its process's user + system over setup, call and teardown,
plus the children it waited for: the torch.distributed harness runs) is its own work. Session 17 (citime).

Record: PYTHONPATH=.:benchmarks PYTEST_CPU_TIMES=/tmp/t.json python -m pytest -q tests/DIR -p pytest_cpu_times
(under pytest-xdist each worker writes /tmp/t.json.gwN).
Summary: python benchmarks/pytest_cpu_times.py /tmp/t.json* [--top 30]: per test directory the number of tests and the
sums of wall and CPU seconds, then the tests of largest CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pytest

_ROWS: dict[str, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    t0, c0 = time.perf_counter(), os.times()
    yield
    c1 = os.times()
    _ROWS[item.nodeid] = {"wall_s": time.perf_counter() - t0,
                          "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
                          "child_cpu_s": (c1.children_user - c0.children_user) +
                                         (c1.children_system - c0.children_system)}


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("PYTEST_CPU_TIMES")
    if out and _ROWS:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        Path(out + (f".{worker}" if worker else "")).write_text(json.dumps(_ROWS, indent=0), encoding="utf-8")


def read_records(paths: list[str]) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for p in paths:
        try:
            rows.update(json.loads(Path(p).read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise SystemExit(f"{p}: not a record file of this plugin ({e})")
    return rows


def summary(rows: dict[str, dict], top: int) -> str:
    def cpu(r):
        return r["cpu_s"] + r["child_cpu_s"]

    dirs: dict[str, list[dict]] = {}
    for node, r in rows.items():
        dirs.setdefault(node.split("::")[0].rsplit("/", 1)[0], []).append(r)
    lines = ["| directory | tests | wall s | CPU s |", "|---|---:|---:|---:|"]
    for d, rs in sorted(dirs.items()):
        lines.append(f"| {d} | {len(rs)} | {sum(r['wall_s'] for r in rs):.1f} | {sum(map(cpu, rs)):.1f} |")
    lines.append(f"| all | {len(rows)} | {sum(r['wall_s'] for r in rows.values()):.1f} | "
                 f"{sum(map(cpu, rows.values())):.1f} |")
    lines += ["", "| CPU s | wall s | test |", "|---:|---:|---|"]
    for node, r in sorted(rows.items(), key=lambda kv: -cpu(kv[1]))[:top]:
        lines.append(f"| {cpu(r):.1f} | {r['wall_s']:.1f} | {node} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", help="files the plugin wrote (PYTEST_CPU_TIMES, .gwN under xdist)")
    ap.add_argument("--top", type=int, default=30, help="how many of the costliest tests to list (default 30)")
    args = ap.parse_args()
    sys.stdout.write(summary(read_records(args.records), args.top) + "\n")
