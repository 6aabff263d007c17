"""NCCL's NVLS / NVLSTree chunk per size against every healthy nccl-tests log (docs/collectives-history.md, "NVLS chunks
(nvlschunk round, session 7)"): busbw MAPE per log and error per size, four ways.

- before: NVLS / NVLSTree priced with the shape-read fill only (nccl_plan.nvls_steps_s taken as 0): the model before
  this round;
- shipped: plus NCCL's loops (nccl_nvls.nvls_loops over its own chunk, nvls_chunk_bytes) x one Simple NVLink step, on
  the wire only (NCCL's pick unchanged);
- chunk fill (not shipped): the shipped steps, and the shape-read S_fill replaced by NCCL_STEPS x nChannels x nHeads x
  NCCL's chunk at that size (nvls_chunk_fill_bytes below);
- tree correction (not shipped): the shipped model, and NVLSTree's bandwidth x treeCorrectionFactor[Simple] on
  Blackwell with x86 hosts (NCCL v2.29.2-1 and later, tuning.cc ncclTopoGetAlgoTime), where a log's network level
  names an x86 host CPU (host_cpu intel / amd).

Run: python scripts/nvls_chunk_check.py [--write]   (--write replaces the marked block of docs/collectives-history.md)
"""

from __future__ import annotations

from contextlib import contextmanager

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.collectives import nccl_plan  # noqa: E402
from moesim.collectives.formulas import Terms  # noqa: E402
from moesim.collectives.nccl import tree_correction, tuning  # noqa: E402
from moesim.collectives.nccl_nvls import nvls_chunk_bytes, nvls_step_rule  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import at_size, band_cells, size_label, total_rows, variant_errors  # noqa: E402

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN nvls_chunk_check: python scripts/nvls_chunk_check.py --write -->"
END = "<!-- END nvls_chunk_check -->"
VARIANTS = ("before", "shipped", "chunk fill", "tree correction")
SIZES = tuple(2**k for k in (20, 21, 22, 23, 24, 25, 26, 27, 28, 30, 33))  # 1 MiB - 8 GiB
X86 = ("intel", "amd")


def nvls_chunk_fill_bytes(rule: tuple, size_bytes: float) -> float:
    """Evaluated, not shipped (scripts/nvls_chunk_check.py "chunk fill"): an S_fill from NCCL's own chunk at this
    size, NCCL_STEPS x nChannels x nHeads x chunk (the NCCL_STEPS slots of every head's chunk in flight on every
    channel), in place of the shape-read n x channels x 128 KiB (nccl.nvls_fill_bytes)."""
    algorithm, channels, heads, nodes, _ = rule
    return tuning()["nvls_chunk"]["steps"] * channels * heads * nvls_chunk_bytes(algorithm, size_bytes, channels,
                                                                                heads, nodes)


def _chunk_fill_nvls(original):
    def priced(op, size_bytes, n, counts, tiers, port_bw, nvls_eff, nodes, fixed):
        rule = nvls_step_rule(fixed[0], n, counts, tiers, nodes)
        if rule is None:
            return original(op, size_bytes, n, counts, tiers, port_bw, nvls_eff, nodes, fixed)
        return original(op, size_bytes, n, counts, tiers, port_bw, nvls_eff, nodes,
                        (fixed[0], fixed[1], nvls_chunk_fill_bytes(rule, size_bytes)))
    return priced


def _tree_corrected_nvls(original):
    def priced(op, size_bytes, n, counts, tiers, port_bw, nvls_eff, nodes, fixed):
        row = original(op, size_bytes, n, counts, tiers, port_bw, nvls_eff, nodes, fixed)
        if (row[0] != "nvlstree" or getattr(tiers[0], "nccl_arch", "") != "blackwell"
                or getattr(tiers[1], "host_cpu", "") not in X86):
            return row
        k = 1.0 / tree_correction("Simple", size_bytes, "nvlstree")  # NVLSTree: logSize < 24
        algo, proto, terms, base, offset = row
        terms = Terms(terms.latency_s, tuple(x * k for x in terms.transfer_s), terms.overlapped)
        return algo, proto, terms, base, offset
    return priced


@contextmanager
def variant(name: str):
    """nccl_plan priced as `name` (VARIANTS) for the duration; the shipped functions restored after."""
    saved = nccl_plan.nvls_steps_s, nccl_plan._nvls
    if name == "before":
        nccl_plan.nvls_steps_s = lambda rule, size: 0.0
    elif name == "chunk fill":
        nccl_plan._nvls = _chunk_fill_nvls(saved[1])
    elif name == "tree correction":
        nccl_plan._nvls = _tree_corrected_nvls(saved[1])
    try:
        yield
    finally:
        nccl_plan.nvls_steps_s, nccl_plan._nvls = saved


def errors() -> dict[str, dict[str, object]]:
    """{log file: {variant: LogError}} over the healthy logs of the manifest."""
    return variant_errors(VARIANTS, variant)


def render(found=None) -> str:
    found = found or errors()
    name = lambda f: f.removesuffix("_perf.log")  # noqa: E731
    moved = {f: e for f, e in found.items() if any(e[v].sizes != e["before"].sizes for v in VARIANTS[1:])}
    lines = ["Per log (the logs any variant moves; the others are unchanged), busbw MAPE ≥ 1 MiB | < 1 MiB:", "",
             "| log | before | shipped: NCCL's loops x a Simple NVLink step | chunk fill (not shipped) | "
             "tree correction (not shipped) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name(f)} | " + band_cells(errs, VARIANTS) + " |" for f, errs in moved.items()]
    lines += total_rows(found, VARIANTS, f"sum over all {len(found)} healthy logs")
    lines += ["", "Error per size, before → shipped (+ = measured slower than priced; the picked algorithm after the "
              "arrow's figure: v NVLS, t NVLSTree, - other):", "",
              "| log | " + " | ".join(size_label(s) for s in SIZES) + " |", "|---|" + "---:|" * len(SIZES)]
    def tag(e) -> str:
        return "v" if e.algorithm.startswith("nvls/") else "t" if e.algorithm.startswith("nvlstree") else "-"
    for f, errs in moved.items():
        cells = []
        for size in SIZES:
            x, y = at_size(errs["before"], size), at_size(errs["shipped"], size)
            cells.append("" if x is None else f"{x.busbw_error:+.0%} → {y.busbw_error:+.0%} {tag(y)}")
        lines.append(f"| {name(f)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
