"""Session 16 (dsv3speed): whether two trees rank every bundled scenario alike, byte for byte.

For each scenarios/*.toml of this checkout, `moesim search FILE --json` runs once under each tree (a subprocess with
the tree first on PYTHONPATH and as its working directory, so the tree's own moesim and data are the ones read) and the
two outputs are compared as bytes. A speed-up of the layout search must leave every one of them the same.

Run: python scripts/search_json_same.py OTHER_TREE [--out DIR]   (OTHER_TREE: e.g. a `git worktree` or `git archive`
of main; --out keeps both outputs per scenario as DIR/{this,other}/NAME.json). Exit status 1 when any differs or fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)


def search_json(tree: Path, scenario: Path) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of `moesim search SCENARIO --json` run with `tree`'s moesim."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    done = subprocess.run([sys.executable, "-m", "moesim", "search", str(scenario), "--json"], cwd=tree, env=env,
                          capture_output=True, check=False)
    return done.returncode, done.stdout, done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the tree to compare this checkout with (e.g. main)")
    parser.add_argument("--out", type=Path, default=None, help="keep both outputs under this folder")
    args = parser.parse_args(argv)
    other = args.other.resolve()
    if not (other / "moesim").is_dir():
        parser.error(f"OTHER_TREE {other}: no moesim/ package there (a checkout of the project is needed)")
    differ = 0
    for scenario in sorted((ROOT / "scenarios").glob("*.toml")):
        runs = {}
        for label, tree in (("this", ROOT), ("other", other)):
            runs[label] = search_json(tree, tree / "scenarios" / scenario.name)
            if args.out is not None:
                (args.out / label).mkdir(parents=True, exist_ok=True)
                (args.out / label / f"{scenario.stem}.json").write_bytes(runs[label][1])
        same = runs["this"][0] == 0 and runs["other"][0] == 0 and runs["this"][1] == runs["other"][1]
        differ += not same
        print(f"{scenario.stem}: {'same' if same else 'DIFFERS'} ({len(runs['this'][1]):,} bytes; exit "
              f"{runs['this'][0]} / {runs['other'][0]})", flush=True)
    print(f"{differ} of {len(list((ROOT / 'scenarios').glob('*.toml')))} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
