"""What inferring the unstated system facts (moesim/calibrate/facts_fit.py) does: per healthy log, the class the rule
picks and the log's calibrated (in-sample) busbw MAPE with and without it; the held-out calibration matrix with and
without it. Prints the block of docs/collectives.md, "Inferring system facts from a log"; --write puts it there.
--every-row-independent evaluates the variant the docs report as not shipped (n_eff = n: the rows' correlation
ignored); it prints only.

    python scripts/facts_check.py [--write | --every-row-independent]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts.docblock import run_check  # noqa: E402

from moesim.calibrate import calibrate  # noqa: E402
from moesim.calibrate.nccl_error import log_error, pct  # noqa: E402
from moesim.calibrate.nccl_table import (  # noqa: E402
    _points, calibration_matrix, entry_hardware, entry_model, read_manifest,
)
from moesim.cli.output import table  # noqa: E402
from moesim.specs.system_facts import system_facts  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives.md"
BEGIN, END = "<!-- facts_check begin -->", "<!-- facts_check end -->"
NOISE = 0.003  # tests/calibrate/test_calibration_matrix.py: a held-out change within 0.3 pt is noise


def _short(inf) -> str:
    if inf is None or not inf.candidates:
        return "left alone: " + ("-" if inf is None else inf.note.split(":")[0])
    best = max(inf.candidates[1:], key=lambda c: c.evidence_ratio)
    label = "; ".join(f"{k} {'/'.join(x or 'default' for x in v)}" for k, v in best.members.items())
    picked = "picked" if inf.chosen else "kept default; best"
    return f"{picked} {label} (K {best.evidence_ratio:.3g}, {len(inf.candidates)} classes, n_eff {inf.effective_rows:.1f})"


def per_log_rows() -> tuple[list[tuple], float, float]:
    folder = MANIFEST.parent
    rows, spent = [], {False: 0.0, True: 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for e in read_manifest(MANIFEST):
            if not e["healthy"]:
                continue
            pts, g = _points(folder, e), e.get("gpus_per_thread", 1)
            how = dict(bootstrap=0, holdout_fraction=0.0, nccl_op=e.get("op"), nccl_ranks=e.get("ranks"),
                       gpus_per_thread=g, system=system_facts(e))
            err, inf = {}, None
            for infer in (False, True):
                start = time.perf_counter()
                result = calibrate([str(folder / e["file"])], e["hardware"], Path(tmp) / "c.toml", infer_facts=infer,
                                   **how)
                spent[infer] += time.perf_counter() - start
                hw = entry_hardware(e, result.profile)
                err[infer] = log_error(pts, hw, entry_model(e, hw), g)
                inf = result.facts if infer else inf
            rows.append((e["file"].removesuffix("_perf.log"), _short(inf),
                         f"{pct(err[False].mape_large)} -> {pct(err[True].mape_large)}",
                         f"{pct(err[False].mape_small)} -> {pct(err[True].mape_small)}"))
    return rows, spent[False], spent[True]


def matrix_counts(pairs) -> tuple[int, int, int, int, int]:
    big = [p.calibrated_mape - p.prior_mape for p in pairs]
    small = [p.calibrated_mape_small - p.prior_mape_small for p in pairs if p.prior_mape_small is not None]
    return (sum(d > NOISE for d in big), sum(d < -NOISE for d in big), sum(d > NOISE for d in small),
            sum(d < -NOISE for d in small), len(small))


def render() -> str:
    rows, off_s, on_s = per_log_rows()
    per_log = table(rows, ["log", "inference", "calibrated MAPE >= 1 MiB (off -> on)", "< 1 MiB (off -> on)"],
                    align="llll")
    start = time.perf_counter()
    off = calibration_matrix(MANIFEST, infer_facts=False)
    mid = time.perf_counter()
    on = calibration_matrix(MANIFEST, infer_facts=True)
    end = time.perf_counter()
    counts = []
    for name, pairs in (("off", off), ("on", on)):
        w, b, ws, bs, n = matrix_counts(pairs)
        counts.append((name, len(pairs), f"{w} | {b}", f"{ws} | {bs} of {n}",
                       f"{100 * sum(p.change for p in pairs) / len(pairs):+.2f}"))
    summary = table(counts, ["inference", "pairs", "worse | better >= 1 MiB", "worse | better < 1 MiB",
                             "mean change >= 1 MiB (pt)"], align="lrrrr")
    moved = [(p.fitted_on.removesuffix("_perf.log"), p.held_out.removesuffix("_perf.log"), pct(p.prior_mape),
              pct(p.calibrated_mape), pct(q.calibrated_mape), pct(p.prior_mape_small), pct(p.calibrated_mape_small),
              pct(q.calibrated_mape_small)) for p, q in zip(off, on)
             if (p.calibrated_mape, p.calibrated_mape_small) != (q.calibrated_mape, q.calibrated_mape_small)]
    moved_table = table(moved, ["fitted on", "held out", "prior >= 1 MiB", "off", "on", "prior < 1 MiB", "off", "on"],
                        align="llrrrrrr") if moved else "(no held-out pair moves)"
    return "\n".join([
        "Generated by `python scripts/facts_check.py --write` (calibrate with no bootstrap, nothing held out; the",
        "per-log MAPE is the fitted log's own, in-sample, as the per-log table measures it).",
        "", "```", per_log, "```", "",
        f"Calibrate's run time over these {len(rows)} logs: {off_s:.1f} s without inference, {on_s:.1f} s with it "
        f"(the matrix: {mid - start:.1f} s, {end - mid:.1f} s; a shared 2-core machine, indicative only).",
        "", "Held-out matrix (pairs worse | better than the prior by more than 0.3 pt):", "",
        "```", summary, "```", "",
        "Pairs whose held-out MAPE moves with inference:", "",
        "```", moved_table, "```",
    ])


if __name__ == "__main__":
    if "--every-row-independent" in sys.argv:  # evaluated, not shipped (docs): every row counted independent
        import moesim.calibrate.facts_fit as facts_fit

        facts_fit.effective_rows = lambda residuals: float(len(residuals))
        print(render())
        sys.exit(0)
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
