"""Price Megatron-Bridge's published MoE pre-training rows with moesim (validation only, nothing fitted).

Rows: tests/data/bridge_perf/megatron_bridge_moe.toml (NVIDIA-NeMo/Megatron-Bridge @ df0289c1,
docs/performance-summary.md: DeepSeek-V3 and Qwen3-30B-A3B on DGX-H100 / DGX-B200 / DGX-GB200, NeMo 25.09, 25.11,
26.02). Per row: published tokens / s / GPU and the step time it gives, moesim's estimate, error (sign), the
simulator beside the estimate on a few rows (moesim.models.bridge_perf.DES_CASES), the recompute priced and what
the row ran that moesim does not write down; summaries per GPU and model; the estimate's parts. Prints the block;
--write puts it in docs/operators.md ("Megatron-Bridge's published MoE runs"); --check exits 1 when it is stale.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.models.bridge_perf import price_all, render_block  # noqa: E402
from scripts.docblock import block_main  # noqa: E402

DOC = ROOT / "docs" / "operators.md"
BEGIN = "<!-- BEGIN bridge_perf_check: python scripts/bridge_perf_check.py --write -->"
END = "<!-- END bridge_perf_check -->"


def render() -> str:
    return render_block(price_all())


def main(argv: list[str] | None = None) -> int:
    return block_main(argv, __doc__.splitlines()[0], DOC, BEGIN, END, render, "bridge_perf_check")


if __name__ == "__main__":
    sys.exit(main())
