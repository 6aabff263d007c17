"""Price every row of SimuMax's published B200 release table with moesim (validation only, nothing fitted).

Rows: tests/data/b200/simumax_release_v1.2.toml (MooreThreads/SimuMax @ 4dcaae51,
docs/b200/b200_release_v1.2_summary.json). Per row: published step time, moesim's estimate, error (sign),
SimuMax's own error; published peak allocated memory (the worst rank), moesim's peak per device without the
`reserved` line on its fullest stage, error (sign), SimuMax's; the simulator beside the estimate on a few rows
(moesim.models.b200_release.DES_CASES); summaries per model and overall. Prints the block; --write puts it in
docs/operators.md ("Every row of the B200 release table"); --check exits 1 when the committed block is stale.
"""

from __future__ import annotations

import argparse
import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.models.b200_release import price_all, render_block  # noqa: E402
from scripts.docblock import replace_block  # noqa: E402

DOC = ROOT / "docs" / "operators.md"
BEGIN = "<!-- BEGIN b200_release_check: python scripts/b200_release_check.py --write -->"
END = "<!-- END b200_release_check -->"


def render() -> str:
    return render_block(price_all())


def committed_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"{DOC}: no '{BEGIN}' ... '{END}' block")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"replace the marked block of {DOC.name}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when the block of {DOC.name} is stale")
    args = parser.parse_args(argv)
    block = render()
    if args.check:
        if committed_block() != block.strip():
            print(f"{DOC.name}: the B200 release block is stale; run: python scripts/b200_release_check.py --write",
                  file=sys.stderr)
            return 1
        print(f"{DOC.name}: the B200 release block is current")
        return 0
    if args.write:
        replace_block(DOC, BEGIN, END, block)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
