"""Session 16: the held-out pairs of named clusters only, under calibrate's `--row-weight` rules, as the held-out
matrix prices them (nccl_table.calibration_matrix: calibrate on one log at the automatic prior weight, price each
other healthy log of the cluster with the prior and the calibrated profile). A quick check of a few clusters where the
whole matrix (scripts/heldout_rule.py) takes tens of minutes.

Run: python scripts/heldout_cluster_means.py [--cluster NAME ...] [--row-weight RULE ...]
Prints per cluster and rule: pairs, the mean change of the held-out busbw MAPE >= 1 MiB (pt), the pairs worse | better
by more than 0.3 pt, and the summed change below 1 MiB against the prior (pt).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate import calibrate  # noqa: E402
from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import matrix_clusters, matrix_fit_args  # noqa: E402
from moesim.calibrate.row_weight import ROW_WEIGHTS  # noqa: E402
from moesim.specs.load import load_hardware  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
NOISE_PT = 0.3  # the matrix's "worse / better by more than 0.3 pt" (tests/calibrate/test_calibration_matrix.py)
DEFAULT_CLUSTERS = ("b200-together", "h100-qoofyk", "b200-engaging-ubuntu")  # positive means at session 15's end


def cluster_line(cluster: str, logs: list[dict], rule: str) -> str:
    folder, hardware = MANIFEST.parent, logs[0]["hardware"]
    prior = load_hardware(hardware)
    large, small, worse, better = [], [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for fit_on in logs:
            fitted = calibrate([str(folder / fit_on["file"])], hardware, Path(tmp) / "cal.toml",
                               **dict(matrix_fit_args(fit_on), row_weight=rule))
            for held in logs:
                if held is fit_on:
                    continue
                log = priced_log(folder, held, prior)
                before, after = log.error(), log.on(fitted.profile).error()
                change_pt = (after.mape_large - before.mape_large) * 100
                large.append(change_pt)
                worse, better = worse + (change_pt > NOISE_PT), better + (change_pt < -NOISE_PT)
                if before.mape_small is not None and before.mape_small == before.mape_small:  # NaN: no such rows
                    small.append((after.mape_small - before.mape_small) * 100)
    return (f"{cluster:22s} {rule:10s} pairs {len(large):3d}  mean >= 1 MiB {sum(large) / len(large):+6.2f} pt  "
            f"worse | better {worse} | {better}  < 1 MiB summed change {sum(small):+7.2f} pt over {len(small)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", nargs="+", default=list(DEFAULT_CLUSTERS), help="matrix clusters (default: "
                        + ", ".join(DEFAULT_CLUSTERS) + ")")
    parser.add_argument("--row-weight", nargs="+", default=["row", "band-loss"], choices=ROW_WEIGHTS,
                        help="calibrate's --row-weight rules (default: row band-loss)")
    args = parser.parse_args()
    clusters = matrix_clusters(MANIFEST)
    unknown = [c for c in args.cluster if c not in clusters]
    if unknown:
        parser.error(f"--cluster: unknown {', '.join(unknown)} (allowed: {', '.join(sorted(clusters))})")
    for cluster in args.cluster:
        for rule in args.row_weight:
            print(cluster_line(cluster, clusters[cluster], rule), flush=True)


if __name__ == "__main__":
    main()
