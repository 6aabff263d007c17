"""Session 17 (dsv3speed3): instructions per warm layout search, counted by valgrind's cachegrind.

`python benchmarks/ir_search.py CASE N` runs N one-thread searches of a benchmarks/bench_search.py case in this
process (the measured body: cachegrind runs it). `python benchmarks/ir_search.py CASE --count [--tree DIR]` runs that
body twice under `valgrind --tool=cachegrind --cache-sim=no` (PYTHONHASHSEED=0, one BLAS / OpenMP thread), once with
1 search and once with 2, and prints Ir of each process and the warm figure: Ir(2 searches) - Ir(1 search), the
instructions of one search after a first one (start-up, imports and the cold search cancel). --tree DIR measures
another checkout (e.g. `git archive BASE` extracted to /tmp/base): its moesim is the one imported, this script and
benchmarks/bench_search.py's case files (this checkout's) are the ones run. Method: benchmarks/RESULTS.md,
"Session 16 (dsv3speed)". `--count --cold` instead counts one cold command, `python -m moesim search FILE --json`
(FILE: the case's scenario file in the measured tree; a case without a SPACES suffix), start-up and imports included
(session 18, coldsearch). IR_CASES are counted here only (bench_search.py does not time them): case
mixtral-8x7b-h100-vp8-a2a is scenarios/mixtral-8x7b-h100-vp8.toml with training.moe_a2a_overlap on
(benchmarks/data/, this checkout's file for any --tree), the search that walks the interleaved order's slots
(session 23, walkspeed). Python compiles a module whose bytecode is not cached: run it once first, or with
PYTHONDONTWRITEBYTECODE set (this box sets it) count the compilation too, as benchmarks/RESULTS.md says.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Cases counted here only, each a scenario file of this checkout (session 23, walkspeed: the slot walk's search)
# Session 25 (zbvspeed): GLaM's search with ZB-V among its schedules (search.pipeline_schedules = ["1f1b", "zb-v"])
IR_CASES = {"mixtral-8x7b-h100-vp8-a2a": ROOT / "benchmarks" / "data" / "mixtral-8x7b-h100-vp8-a2a.toml",
            "glam-64b-64e-tpu-v4-zbv": ROOT / "benchmarks" / "data" / "glam-64b-64e-tpu-v4-zbv.toml"}


def scenario_file(case: str, tree: Path) -> Path | None:
    """The scenario file a cold count runs for CASE: an IR_CASES file of this checkout, a bench_search.py CASES
    file of TREE; None for a case with a SPACES suffix."""
    from bench_search import CASES  # this script's folder is on sys.path

    if case in IR_CASES:
        return IR_CASES[case]
    return tree / Path(CASES[case]).relative_to(ROOT) if case in CASES else None


def run_searches(case: str, n: int) -> None:
    """N one-thread searches of CASE, nothing printed (the body cachegrind counts)."""
    from bench_search import load_case  # benchmarks/bench_search.py: CASES and SPACES
    from moesim.search import search
    from moesim.specs.load import load_scenario

    scenario = load_scenario(str(IR_CASES[case])) if case in IR_CASES else load_case(case)
    for _ in range(n):
        search(scenario, threads=1)


def instructions(case: str, n: int, tree: Path, cold: bool = False) -> int:
    """Ir of a whole process running N one-thread searches of CASE with TREE's moesim (cachegrind, no cache sim);
    `cold`: of one `python -m moesim search FILE --json` process instead (N unused)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT / "benchmarks")]), PYTHONHASHSEED="0",
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if cold:
        body = ["-m", "moesim", "search", str(scenario_file(case, tree)), "--json"]
    else:
        body = [str(Path(__file__).resolve()), case, str(n)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
                               sys.executable, *body], cwd=tree, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"ir_search: valgrind on {case} {'cold CLI' if cold else f'x{n}'} (tree {tree}) exited "
                             f"{done.returncode}:\n{done.stderr[-2000:]}")
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise SystemExit(f"ir_search: no 'summary:' line in cachegrind's output {out}")
        return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", help="a benchmarks/bench_search.py case, e.g. deepseek-v3-h800")
    parser.add_argument("n", nargs="?", type=int, default=None, help="run N searches here (cachegrind's body)")
    parser.add_argument("--count", action="store_true", help="count Ir of 1 and of 2 searches under cachegrind")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose moesim is measured")
    parser.add_argument("--cold", action="store_true",
                        help="with --count: Ir of one cold `python -m moesim search FILE --json` process")
    args = parser.parse_args(argv)
    if args.count == (args.n is not None):
        parser.error("give either N (searches to run here) or --count (measure under cachegrind)")
    if args.cold and not args.count:
        parser.error("--cold goes with --count")
    from bench_search import CASES, SPACES  # this script's folder is on sys.path

    known = [*(n + s for n in CASES for s in SPACES), *IR_CASES]
    if args.case not in known:
        parser.error(f"unknown case {args.case!r}: one of {', '.join(known)}")
    if args.n is not None:
        if args.n < 1:
            parser.error(f"N must be at least 1, got {args.n}")
        run_searches(args.case, args.n)
        return 0
    tree = args.tree.resolve()
    if not (tree / "moesim").is_dir():
        parser.error(f"--tree {tree}: no moesim/ package there")
    if args.cold:
        from bench_search import CASES  # this script's folder is on sys.path

        if scenario_file(args.case, tree) is None:
            parser.error(f"--cold takes a case without a SPACES suffix (a scenario file): one of "
                         f"{', '.join([*CASES, *IR_CASES])}")
        print(f"{args.case} tree={tree}: Ir of a cold `moesim search --json` process "
              f"{instructions(args.case, 1, tree, cold=True) / 1e6:,.1f} M")
        return 0
    one = instructions(args.case, 1, tree)
    two = instructions(args.case, 2, tree)
    print(f"{args.case} tree={tree}: Ir 1 search {one / 1e6:,.1f} M, 2 searches {two / 1e6:,.1f} M, "
          f"warm {(two - one) / 1e6:,.0f} M")
    return 0


if __name__ == "__main__":
    sys.exit(main())
