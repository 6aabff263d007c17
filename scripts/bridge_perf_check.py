"""Price Megatron-Bridge's published MoE pre-training rows with moesim (validation only, nothing fitted).

Rows: tests/data/bridge_perf/megatron_bridge_moe.toml (NVIDIA-NeMo/Megatron-Bridge @ df0289c1,
docs/performance-summary.md: DeepSeek-V3 and Qwen3-30B-A3B on DGX-H100 / DGX-B200 / DGX-GB200, NeMo 25.09, 25.11,
26.02). Per row: published tokens / s / GPU and the step time it gives, moesim's estimate, error (sign), the
simulator beside the estimate on a few rows (moesim.models.bridge_perf.DES_CASES), the recompute priced and what
the row ran that moesim does not write down; summaries per GPU and model; the estimate's parts. Prints the block;
--write puts it in docs/operators.md ("Megatron-Bridge's published MoE runs"); --check exits 1 when it is stale.
The same for the newer releases' rows (tests/data/bridge_perf/megatron_bridge_moe_2602_2608.toml, 26.02.01 to
26.08 @ 067f987d, GB300 / B300 included) into a second block, "Megatron-Bridge's newer published MoE runs", with
per-release means and the release-to-release spread of one run's published throughput.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.models.bridge_perf import (  # noqa: E402
    load_newer_rows, load_rows, price_all, render_block, render_newer_block)
from scripts.docblock import block_main  # noqa: E402

DOC = ROOT / "docs" / "operators.md"
BEGIN = "<!-- BEGIN bridge_perf_check: python scripts/bridge_perf_check.py --write -->"
END = "<!-- END bridge_perf_check -->"
BEGIN_NEWER = "<!-- BEGIN bridge_perf_check newer: python scripts/bridge_perf_check.py --write -->"
END_NEWER = "<!-- END bridge_perf_check newer -->"


def render() -> str:
    return render_block(price_all())


def render_newer() -> str:
    return render_newer_block(price_all(load_newer_rows()), load_rows())


def main(argv: list[str] | None = None) -> int:
    first = block_main(argv, __doc__.splitlines()[0], DOC, BEGIN, END, render, "bridge_perf_check")
    return block_main(argv, __doc__.splitlines()[0], DOC, BEGIN_NEWER, END_NEWER, render_newer,
                      "bridge_perf_check") or first


if __name__ == "__main__":
    sys.exit(main())
