"""Session 18 (heldout3): the worse held-out pairs at >= 1 MiB of the clusters whose mean change at >= 1 MiB is
positive under calibrate's default (`--transfer shared`), in one table: fitted on, held out, the figures the fit moved
(with the machinery of the rows that set them), the held-out rows that lose and what the model runs there
(scripts/heldout_pairs.py's diagnosis_cells, the matrix's own fits).

Run: python scripts/heldout3_diag.py [--write] [--cache DIR]   (--write replaces the marked block of
docs/collectives-history.md; --cache DIR reuses scripts/heldout_rule.py's priced shared matrix).
"""

from __future__ import annotations

from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_table import calibration_matrix  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.heldout_pairs import diagnosis_cells, worse_pairs  # noqa: E402
from scripts.heldout_rule import cluster_means, priced  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN heldout3_diag: python scripts/heldout3_diag.py --write -->"
END = "<!-- END heldout3_diag -->"


def render(cache: Path | None) -> str:
    # without a cache, the matrix exactly as the calibration tests price it (lru-cached there: one pricing per process)
    pairs = priced("shared", cache) if cache is not None else list(calibration_matrix(MANIFEST))
    means = cluster_means(pairs)
    positive = sorted(c for c, m in means.items() if m > 0)
    worse = [(p, band) for p, band in worse_pairs(pairs) if band == 0 and p.cluster in positive]
    lines = ["| cluster (mean >= 1 MiB) | fitted on -> held out | MAPE >= 1 MiB prior -> shared | figures the fit "
             "moves (machinery of the rows that set them) | held-out rows that lose > 0.5 pt (machinery prior [-> "
             "calibrated]; signed error) | machinery |", "|---|---|---|---|---|---|"]
    for (p, _), cells in zip(worse, diagnosis_cells(worse)):
        lines.append(f"| {p.cluster} ({100 * means[p.cluster]:+.2f} pt) | {cells[0]} | {cells[2]} | {cells[3]} | "
                     f"{cells[4]} | {cells[5]} |")
    lines += ["", f"{len(pairs)} pairs; clusters with a positive mean at >= 1 MiB: {', '.join(positive)}; their "
              f"pairs worse by more than 0.3 pt at >= 1 MiB: {len(worse)} of "
              f"{sum(p.cluster in positive for p in pairs)}."]
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END, cache=True)
