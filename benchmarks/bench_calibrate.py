"""`moesim calibrate` on the bundled nccl-tests logs: wall time per log and a hash of everything it writes.

Each log of tests/data/nccl/logs.toml (38 at session 9's start) is calibrated through the CLI (`moesim.cli.main`, in
this process) with its manifest options (--nccl-op, --ranks, --gpus-per-thread, --host-cpu, --gpu-nic-path), --json, at
--bootstrap 0 and/or --bootstrap N. For each run the sha256 of the calibrated profile TOML, of the JSON on stdout
and of stderr (warnings, or the one-line error) is written, with the run's time stamps (created_utc and the figures'
sources) written as "<utc>", the tree's root as "<root>" and the temporary folder as "<tmp>" in all three, so two
trees' outputs compare byte for byte (speed work must leave them identical: `--check OTHER.json` lists every hash
that differs). The calibrate JSON holds no timing field; the wall and CPU (process) times are this script's own: on
a busy machine compare the CPU times.

Run (from the tree's root, so the logs' paths in the provenance are the same relative paths in every tree):
  python benchmarks/bench_calibrate.py [NAME ...] [--set all|quick] [--bootstrap 0 100] [--out OUT.json]
                                       [--check OLD.json]
NAME: part of a log's file name (only those logs). `quick`: four representative logs (a 1-node all-reduce, a 2-node
multi-protocol all-reduce with fact inference, a 2-node all-gather, a 2-node all-to-all). Times are one run each, on
whatever load the machine has: compare two trees in one sitting, alternating. No test asserts on them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moesim.calibrate.nccl_table import read_manifest  # noqa: E402
from moesim.cli import main as cli_main  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
QUICK = ("b200-vultr-1node_all_reduce_perf.log", "h100-hgx-2node-qoofyk_all_reduce_perf.log",
         "h200-gke-a3ultra-2node_all_gather_perf.log", "b200-vultr-2node_alltoall_perf.log")
OPTIONS = (("op", "--nccl-op"), ("ranks", "--ranks"), ("gpus_per_thread", "--gpus-per-thread"),
           ("host_cpu", "--host-cpu"), ("gpu_nic_path", "--gpu-nic-path"))


def argv_for(entry: dict, out: Path, bootstrap: int) -> list[str]:
    """The `moesim calibrate` command line of a manifest entry (the log's path relative to the tree's root)."""
    log = (MANIFEST.parent / entry["file"]).relative_to(ROOT)
    argv = ["calibrate", str(log), "--hardware", entry["hardware"], "-o", str(out), "--json", "-q",
            "--bootstrap", str(bootstrap)]
    for key, flag in OPTIONS:
        if key in entry:
            argv += [flag, str(entry[key])]
    return argv


_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")  # the run's own time (now_utc)


def _digest(text: str, tmp: str) -> str:
    text = _UTC.sub("<utc>", text.replace(tmp, "<tmp>").replace(str(ROOT), "<root>"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_one(entry: dict, bootstrap: int) -> dict:
    """Wall time and output hashes of one calibrate run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "calibrated.toml"
        stdout, stderr = io.StringIO(), io.StringIO()
        start, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli_main(argv_for(entry, out, bootstrap))
        wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        toml = out.read_text(encoding="utf-8") if out.exists() else ""
        return {"file": entry["file"], "bootstrap": bootstrap, "exit": code, "wall_s": wall_s, "cpu_s": cpu_s,
                "toml_sha256": _digest(toml, tmp), "json_sha256": _digest(stdout.getvalue(), tmp),
                "stderr_sha256": _digest(stderr.getvalue(), tmp)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="parts of log file names: only those logs")
    parser.add_argument("--set", choices=("all", "quick"), default="all")
    parser.add_argument("--bootstrap", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--out", help="write the rows (wall time and hashes) as JSON")
    parser.add_argument("--check", help="a JSON this script wrote before: list the hashes that differ")
    args = parser.parse_args()
    os.chdir(ROOT)
    entries = [e for e in read_manifest(MANIFEST) if (args.set == "all" or e["file"] in QUICK)
               and (not args.names or any(n in e["file"] for n in args.names))]
    rows = []
    for bootstrap in args.bootstrap:
        for entry in entries:
            row = run_one(entry, bootstrap)
            rows.append(row)
            print(f"{row['file']:50s} bootstrap {bootstrap:4d}  {row['wall_s']:7.2f} s (CPU {row['cpu_s']:7.2f} s)  "
                  f"exit {row['exit']}  "
                  f"{row['toml_sha256'][:8]} {row['json_sha256'][:8]} {row['stderr_sha256'][:8]}", flush=True)
    for bootstrap in args.bootstrap:
        print(f"bootstrap {bootstrap}: {sum(1 for r in rows if r['bootstrap'] == bootstrap)} logs, "
              f"{sum(r['wall_s'] for r in rows if r['bootstrap'] == bootstrap):.1f} s wall, "
              f"{sum(r['cpu_s'] for r in rows if r['bootstrap'] == bootstrap):.1f} s CPU")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    if args.check:
        old = {(r["file"], r["bootstrap"]): r for r in json.loads(Path(args.check).read_text(encoding="utf-8"))}
        keys = ("exit", "toml_sha256", "json_sha256", "stderr_sha256")
        differ = [(r["file"], r["bootstrap"], k) for r in rows for k in keys
                  if (r["file"], r["bootstrap"]) in old and old[(r["file"], r["bootstrap"])][k] != r[k]]
        for file, bootstrap, key in differ:
            print(f"DIFFERS: {file} bootstrap {bootstrap} {key}")
        compared = sum((r["file"], r["bootstrap"]) in old for r in rows)
        print(f"{compared} runs compared with {args.check}: {len(differ)} hashes differ")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
