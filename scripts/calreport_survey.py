"""Session 16 (calreport): what calibrate's new report says on every healthy bundled log, calibrated on itself as the
held-out matrix calibrates a log (nccl_table.matrix_fit_args: no bootstrap, the manifest's collective, ranks, -g and
stated facts): the logs whose own >= 1 MiB busbw MAPE the fit makes worse than the prior by more than 0.3 pt (the
note, with what --row-weight band-loss gives), and the logs that get the -g N multi-node warning. Nothing is priced
that calibrate does not already print; nothing reads another log's rows.

Run: python scripts/calreport_survey.py   (about 85 fits; minutes on two busy cores)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate import calibrate  # noqa: E402
from moesim.calibrate.nccl_table import matrix_fit_args, read_manifest  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def main() -> None:
    entries = [e for e in read_manifest(MANIFEST) if e["healthy"]]
    worse, g_warned, n = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for e in entries:
            result = calibrate([str(MANIFEST.parent / e["file"])], e["hardware"], Path(tmp) / "cal.toml",
                               **matrix_fit_args(e))
            n += 1
            for r in result.in_sample:
                if r.worse_large:
                    b = r.band_loss or (None, None)
                    worse.append(f"| {e['file'].removesuffix('_perf.log')} | {_pct(r.prior[0])} \\| {_pct(r.prior[1])} "
                                 f"| {_pct(r.fitted[0])} \\| {_pct(r.fitted[1])} | {_pct(b[0])} \\| {_pct(b[1])} |")
            if any("one process drove" in w for w in result.warnings):
                g_warned.append(e["file"].removesuffix("_perf.log"))
    print(f"{n} healthy logs calibrated on themselves; {len(worse)} get the note (fit worse at >= 1 MiB by > 0.3 pt):")
    print("| log | prior >= 1 MiB \\| below (%) | fitted | --row-weight band-loss |")
    print("|---|---|---|---|")
    print("\n".join(worse))
    print(f"\n{len(g_warned)} get the -g N multi-node warning: {', '.join(g_warned)}")


if __name__ == "__main__":
    main()
