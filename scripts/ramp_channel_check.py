"""The ramp from NCCL's channel count against every healthy nccl-tests log (docs/collectives-history.md, "The ramp from
NCCL's channel count"): busbw MAPE per log and error per size, three ways.

- before: every ring / tree runs all nChannels channels at every size (nccl_channels.share_at taken as 1), the shape-read
  fill on the bottleneck (nccl.fill_factor): the model before the ramp round;
- shipped: NCCL's per-size channel and thread count (nccl_channels.ring_tree_channels_at, enqueue.cc topoGetAlgoInfo) on the
  wire, the fill kept;
- replaced (not shipped): the channel count in place of the fill on ring and tree (NVLS, NVLSTree, PAT and CollNet
  keep theirs: the channel count does not apply to them).

Run: python scripts/ramp_channel_check.py [--write]   (--write replaces the marked block of docs/collectives-history.md)
"""

from __future__ import annotations

from contextlib import contextmanager

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_error import LARGE_BYTES  # noqa: E402
from moesim.collectives import nccl_plan  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import at_size, band_cells, size_label, total_rows, variant_errors  # noqa: E402

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ramp_channel_check: python scripts/ramp_channel_check.py --write -->"
END = "<!-- END ramp_channel_check -->"
VARIANTS = ("before", "shipped", "replaced")
SMALL_SIZES = (2**10, 2**12, 2**14, 2**16, 2**18, 2**19)  # below 1 MiB, where the channel count moves
RAMP_SIZES = (2**20, 2**22, 2**24, 2**26, 2**28)  # 1 - 256 MiB, the ramp the fill carries


@contextmanager
def variant(name: str):
    """nccl_plan priced as `name` (VARIANTS) for the duration; the shipped functions restored after."""
    saved = nccl_plan.share_at, nccl_plan.fill_factor
    if name == "before":
        nccl_plan.share_at = lambda rule, size: 1.0
    elif name == "replaced":
        nccl_plan.fill_factor = lambda size, fill: 1.0
    try:
        yield
    finally:
        nccl_plan.share_at, nccl_plan.fill_factor = saved


def errors() -> dict[str, dict[str, object]]:
    """{log file: {variant: LogError}} over the healthy logs of the manifest."""
    return variant_errors(VARIANTS, variant)


def _cells(errs, sizes, a: str, b: str) -> list[str]:
    cells = []
    for size in sizes:
        x, y = at_size(errs[a], size), at_size(errs[b], size)
        cells.append("" if x is None else f"{x.busbw_error:+.0%} → {y.busbw_error:+.0%}")
    return cells


def render(found=None) -> str:
    found = found or errors()
    name = lambda f: f.removesuffix(".log")  # noqa: E731
    lines = ["Per log, busbw MAPE ≥ 1 MiB | < 1 MiB:", "",
             "| log | before | shipped: channel count + fill | replaced: channel count, no ring/tree fill |",
             "|---|---:|---:|---:|"]
    lines += [f"| {name(f)} | " + band_cells(errs, VARIANTS) + " |" for f, errs in found.items()]
    lines += total_rows(found, VARIANTS, "sum over the logs")
    lines += ["", "Error per size below 1 MiB, before → shipped (the logs it moves; + = measured slower than priced):",
              "", "| log | " + " | ".join(size_label(s) for s in SMALL_SIZES) + " |",
              "|---|" + "---:|" * len(SMALL_SIZES)]
    for f, errs in found.items():
        if errs["before"].mape_small is None or errs["before"].mape_small == errs["shipped"].mape_small:
            continue
        lines.append(f"| {name(f)} | " + " | ".join(_cells(errs, SMALL_SIZES, "before", "shipped")) + " |")
    lines += ["", "Error per size in the ramp (1 - 256 MiB), shipped → replaced (what the fill carries there; the "
              "shipped column equals before at every size ≥ 1 MiB):", "",
              "| log | " + " | ".join(size_label(s) for s in RAMP_SIZES) + " |", "|---|" + "---:|" * len(RAMP_SIZES)]
    for f, errs in found.items():
        big = [e for e in errs["shipped"].sizes if LARGE_BYTES <= e.size_bytes <= 2**28]
        if not big or errs["shipped"].mape_large == errs["replaced"].mape_large:
            continue
        lines.append(f"| {name(f)} | " + " | ".join(_cells(errs, RAMP_SIZES, "shipped", "replaced")) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
