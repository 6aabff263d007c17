"""Session 24 (newlogs14): the held-out pairs of the three clusters whose mean change at >= 1 MiB is positive under
calibrate's default (b200-together, h100-qoofyk, b200-engaging-ubuntu), read by what the two logs of a pair share:
the collective, the node count, the sizes, and the figures the fit on the first log moves (> 0.5 % from the prior,
heldout_pairs.fit_figures, with the machinery of the rows that set them).

Run: python scripts/heldout_positive.py [--cluster NAME ...]
Prints one line per pair: fitted log -> held-out log, same op / same nodes / same sizes (yes | no), the change of
the held-out busbw MAPE in each band (pt), and the moved figures.
"""

from __future__ import annotations

import argparse

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import calibration_matrix, matrix_clusters, matrix_fit  # noqa: E402
from moesim.specs.load import load_hardware  # noqa: E402
from scripts.heldout_pairs import fit_figures  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
POSITIVE = ("b200-together", "h100-qoofyk", "b200-engaging-ubuntu")  # positive means on main at cd72fd9


def shape(entry: dict, prior) -> tuple[str, int, tuple[int, ...]]:
    """(collective, ranks, message sizes in bytes) of a manifest log as the matrix reads it."""
    err = priced_log(MANIFEST.parent, entry, prior).error()
    return err.op, err.ranks, tuple(int(e.size_bytes) for e in err.sizes)


def pair_lines(cluster: str) -> list[str]:
    """One line per held-out pair of `cluster` (calibration_matrix at the automatic prior weight, calibrate's
    defaults)."""
    logs = {e["file"]: e for e in matrix_clusters(MANIFEST)[cluster]}
    prior = load_hardware(next(iter(logs.values()))["hardware"])
    shapes = {f: shape(e, prior) for f, e in logs.items()}
    out = []
    for p in calibration_matrix(MANIFEST, fixed_weight=False, clusters=(cluster,)):
        (op_a, n_a, s_a), (op_b, n_b, s_b) = shapes[p.fitted_on], shapes[p.held_out]
        figs = "; ".join(f"{name} {100 * move:+.1f} % ({', '.join(sorted(kinds)) or 'fill'})"
                         for name, move, kinds in fit_figures(matrix_fit(MANIFEST, p.fitted_on))) or "none > 0.5 %"
        small = ("-" if p.prior_mape_small is None
                 else f"{100 * (p.calibrated_mape_small - p.prior_mape_small):+.2f}")
        out.append(f"{p.fitted_on.removesuffix('_perf.log'):42s} -> {p.held_out.removesuffix('_perf.log'):42s} "
                   f"op {'same' if op_a == op_b else op_a + '/' + op_b:24s} ranks {n_a}/{n_b} "
                   f"sizes {'same' if s_a == s_b else 'differ'}  change >= 1 MiB "
                   f"{100 * (p.calibrated_mape - p.prior_mape):+6.2f} | < 1 MiB {small:>7s} pt  moved: {figs}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", nargs="+", default=list(POSITIVE), help="matrix clusters (default: "
                        + ", ".join(POSITIVE) + ")")
    for cluster in parser.parse_args().cluster:
        print(f"{cluster}:")
        print("\n".join("  " + line for line in pair_lines(cluster)))


if __name__ == "__main__":
    main()
