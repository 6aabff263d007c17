"""Session 16 (dsv3speed): whether two trees rank every bundled scenario alike, byte for byte.

For each scenarios/*.toml of this checkout, `moesim search FILE --json` runs once under each tree (a subprocess with
the tree first on PYTHONPATH and as its working directory, so the tree's own moesim and data are the ones read) and the
two outputs are compared as bytes. A speed-up of the layout search must leave every one of them the same.

Run: python scripts/search_json_same.py OTHER_TREE [--out DIR] [--added KEY ...]   (OTHER_TREE: e.g. a `git worktree`
or `git archive` of main; --out keeps both outputs per scenario as DIR/{this,other}/NAME.json). Exit status 1 when any
differs or fails. `--added KEY` (a dotted path, `[]` for each element of a list: `results[].why`, the key session 20's
whyrank added): a key one tree prints and the other does not; it is taken out of both outputs, which are then compared
as parsed JSON, key order and every value (floats exactly) included, so every other field is still compared whole.
"""

from __future__ import annotations

import argparse
import json
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


def without(value, path: list[str]):
    """`value` (parsed JSON) with the key at `path` removed (`name[]`: in every element of the list `name`)."""
    if not path or not isinstance(value, dict):
        return value
    head, rest = path[0], path[1:]
    name, each = (head[:-2], True) if head.endswith("[]") else (head, False)
    out = dict(value)
    if name not in out:
        return out
    if not rest and not each:
        del out[name]
    elif each:
        out[name] = [without(v, rest) for v in out[name]] if rest else out[name]
    else:
        out[name] = without(out[name], rest)
    return out


def same_output(this: bytes, other: bytes, added: list[str]) -> bool:
    """Byte for byte, or, with `added` keys, the parsed outputs without them (key order and values exactly)."""
    if not added:
        return this == other
    try:
        a, b = json.loads(this), json.loads(other)
    except ValueError:
        return False
    for key in added:
        a, b = without(a, key.split(".")), without(b, key.split("."))
    return json.dumps(a) == json.dumps(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the tree to compare this checkout with (e.g. main)")
    parser.add_argument("--out", type=Path, default=None, help="keep both outputs under this folder")
    parser.add_argument("--added", action="append", default=[], metavar="KEY",
                        help="a key only one tree prints (dotted, [] per list element), left out of the comparison")
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
        same = runs["this"][0] == 0 and runs["other"][0] == 0 and same_output(runs["this"][1], runs["other"][1],
                                                                             args.added)
        differ += not same
        print(f"{scenario.stem}: {'same' if same else 'DIFFERS'} ({len(runs['this'][1]):,} bytes; exit "
              f"{runs['this'][0]} / {runs['other'][0]})", flush=True)
    print(f"{differ} of {len(list((ROOT / 'scenarios').glob('*.toml')))} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
