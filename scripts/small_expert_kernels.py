"""Published small-expert grouped-GEMM measurements against moesim's tables at the same shape (comparison only).

Each row of tests/data/small_experts/published_kernels.toml (cited there) priced as moesim's grouped GEMM of its
shape, dtype and pass on its profile (moesim.models.small_expert_kernels). Prints the block; --write puts it in
docs/operators.md; --check exits 1 when it is stale.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.models.small_expert_kernels import load_rows, price, render_block  # noqa: E402
from scripts.docblock import block_main  # noqa: E402

DOC = ROOT / "docs" / "operators.md"
BEGIN = "<!-- BEGIN small_expert_kernels: python scripts/small_expert_kernels.py --write -->"
END = "<!-- END small_expert_kernels -->"


def render() -> str:
    return render_block(tuple(price(r) for r in load_rows()))


def main(argv: list[str] | None = None) -> int:
    return block_main(argv, __doc__.splitlines()[0], DOC, BEGIN, END, render, "small_expert_kernels")


if __name__ == "__main__":
    sys.exit(main())
