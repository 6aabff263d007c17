"""Calibration with the bootstrap on the bundled nccl-tests logs: wall time per log and how many fitted figures lie
outside their own 90 % interval (calibrate/uncertainty.py; docs/collectives.md, "Group sizes from busbw/algbw, and
the bootstrap's refits").

Run: python benchmarks/bench_bootstrap.py [NAME ...] [--bootstrap 100] [--json OUT]   (NAME: part of a log's file
name; none = every log of tests/data/nccl/logs.toml priced by the default model). Wall times, one run each, on
whatever load the machine has: compare two trees in one sitting, alternating. No test asserts on them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

from moesim.calibrate import calibrate
from moesim.calibrate.nccl_table import read_manifest
from moesim.specs.system_facts import system_facts

MANIFEST = Path(__file__).resolve().parent.parent / "tests" / "data" / "nccl" / "logs.toml"


def run(names: list[str], bootstrap: int) -> list[dict]:
    out = []
    for entry in read_manifest(MANIFEST):
        if (names and not any(n in entry["file"] for n in names)) or "nccl_algo" in entry or entry.get("collnet"):
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = calibrate([str(MANIFEST.parent / entry["file"])], entry["hardware"], Path(tmp) / "c.toml",
                               bootstrap=bootstrap, holdout_fraction=0.0, nccl_op=entry.get("op"),
                               nccl_ranks=entry.get("ranks"), gpus_per_thread=entry.get("gpus_per_thread", 1),
                               system=system_facts(entry))
        wall_s = time.perf_counter() - start
        fitted = [p for p in result.fit.parameters if p.fitted and p.interval]
        outside = [p.name for p in fitted if not p.interval[0] <= p.value <= p.interval[1]]
        out.append({"file": entry["file"], "wall_s": wall_s, "with_interval": len(fitted), "outside": outside})
        print(f"{entry['file']:50s} {wall_s:6.1f} s  figures with an interval {len(fitted)}  outside {outside}",
              flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = run(args.names, args.bootstrap)
    print(f"{len(rows)} logs, {sum(r['wall_s'] for r in rows):.1f} s; {sum(len(r['outside']) for r in rows)} of "
          f"{sum(r['with_interval'] for r in rows)} fitted figures outside their interval")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
