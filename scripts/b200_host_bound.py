"""The B200 release table's Llama rows (pp 1, no CP) per decoder layer: what a host-bound step would need.

Validation only, nothing priced or fitted (moesim.models.b200_host_bound). Per row: moesim's kernels and TP
collective calls per layer-micro-batch, GPU time per kernel and per layer-micro-batch, the profile's launch
charge, the rest of the step, moesim's error, and the host time per layer-micro-batch at which a host-bound step
would take the published time; then a probe: Llama-3-70B tp 8's host time applied to every row. Prints the block;
--write puts it in docs/operators.md (Session 19, hostcost); --check exits 1 when the committed block is stale.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.models.b200_host_bound import render_block, split_rows  # noqa: E402
from scripts.docblock import block_main  # noqa: E402

DOC = ROOT / "docs" / "operators.md"
BEGIN = "<!-- BEGIN b200_host_bound: python scripts/b200_host_bound.py --write -->"
END = "<!-- END b200_host_bound -->"


def render() -> str:
    return render_block(split_rows())


def main(argv: list[str] | None = None) -> int:
    return block_main(argv, __doc__.splitlines()[0], DOC, BEGIN, END, render, "b200_host_bound")


if __name__ == "__main__":
    sys.exit(main())
