"""Session 16: the held-out pairs of named clusters only, under calibrate's `--row-weight` rules, as the held-out
matrix prices them (nccl_table.calibration_matrix with `clusters`: calibrate on one log at the automatic prior weight,
price each other healthy log of the cluster with the prior and the calibrated profile), counted by
scripts/heldout_rule.py's counts and cluster_means. A quick check of a few clusters where the whole matrix takes tens
of minutes.

Run: python scripts/heldout_cluster_means.py [--cluster NAME ...] [--row-weight RULE ...]
Prints per cluster and rule: pairs, the mean change of the held-out busbw MAPE >= 1 MiB (pt), the pairs worse | better
by more than the matrix's 0.3 pt noise, and the summed change below 1 MiB against the prior (pt).
"""

from __future__ import annotations

import argparse

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_table import calibration_matrix, matrix_clusters  # noqa: E402
from moesim.calibrate.row_weight import ROW_WEIGHTS  # noqa: E402
from scripts.heldout_rule import _band, cluster_means, counts  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DEFAULT_CLUSTERS = ("b200-together", "h100-qoofyk", "b200-engaging-ubuntu")  # positive means at session 15's end


def cluster_line(cluster: str, rule: str) -> str:
    pairs = calibration_matrix(MANIFEST, fixed_weight=False, row_weight=rule, clusters=(cluster,))
    worse, better, _, _ = counts(pairs, 0)
    _, _, small_after, n_small = counts(pairs, 1)
    small_before = sum(_band(p, 1)[0] for p in pairs if _band(p, 1)[0] is not None)
    mean_pt = 100 * cluster_means(pairs)[cluster]
    return (f"{cluster:22s} {rule:10s} pairs {len(pairs):3d}  mean >= 1 MiB {mean_pt:+6.2f} pt  worse | better "
            f"{worse} | {better}  < 1 MiB summed change {100 * (small_after - small_before):+7.2f} pt over {n_small} "
            "pairs")


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
            print(cluster_line(cluster, rule), flush=True)


if __name__ == "__main__":
    main()
