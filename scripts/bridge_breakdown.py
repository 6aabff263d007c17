"""Break one Megatron-Bridge row down per MoE layer-micro-batch against its published step (validation only).

The row (moesim.models.bridge_breakdown.CASES: Qwen3-30B-A3B on 8 B200 at MBS 1) priced by the estimate's own
operator list: every operator's shape, efficiency, time and kernels per layer-micro-batch, the collectives, where
each grouped GEMM reads the profile's grouped-GEMM table, how far each piece alone would have to move to meet the
published step, TransformerEngine's one-GEMM-per-expert loop priced beside the list, the host time per
layer-micro-batch a host-bound step would need, and every row of the model per layer-micro-batch. Prints the
block; --write puts it in docs/operators.md; --check exits 1 when it is stale.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.models.bridge_breakdown import CASES, layer_paces, render_block, row_breakdown  # noqa: E402
from scripts.docblock import block_main  # noqa: E402

DOC = ROOT / "docs" / "operators.md"
BEGIN = "<!-- BEGIN bridge_breakdown: python scripts/bridge_breakdown.py --write -->"
END = "<!-- END bridge_breakdown -->"


def render() -> str:
    return "\n\n".join(render_block(row_breakdown(case), layer_paces()) for case in CASES)


def main(argv: list[str] | None = None) -> int:
    return block_main(argv, __doc__.splitlines()[0], DOC, BEGIN, END, render, "bridge_breakdown")


if __name__ == "__main__":
    sys.exit(main())
