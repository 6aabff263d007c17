"""Price every row of SimuMax's published B200 release table with moesim (validation only, nothing fitted).

Rows: tests/data/b200/simumax_release_v1.2.toml (MooreThreads/SimuMax @ 4dcaae51,
docs/b200/b200_release_v1.2_summary.json). Per row: published step time, moesim's estimate, error (sign),
SimuMax's own error; published peak allocated memory (the worst rank), moesim's peak per device without the
`reserved` line on its fullest stage, error (sign), SimuMax's; the simulator beside the estimate on a few rows
(moesim.models.b200_release.DES_CASES); summaries per model and overall. Prints the block; --write puts it in
docs/operators.md ("Every row of the B200 release table"); --check exits 1 when the committed block is stale.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.models.b200_release import price_all, render_block  # noqa: E402
from scripts.docblock import block_main  # noqa: E402

DOC = ROOT / "docs" / "operators.md"
BEGIN = "<!-- BEGIN b200_release_check: python scripts/b200_release_check.py --write -->"
END = "<!-- END b200_release_check -->"


def render() -> str:
    return render_block(price_all())


def main(argv: list[str] | None = None) -> int:
    return block_main(argv, __doc__.splitlines()[0], DOC, BEGIN, END, render, "b200_release_check")


if __name__ == "__main__":
    sys.exit(main())
