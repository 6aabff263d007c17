"""The held-out calibration matrix under the three rules for the hop latency per protocol (docs/collectives.md,
"Session 8 (calscope)" and "Session 8 (calhier)"; docs/collectives-history.md, "Session 9 (calorder)"). Each rule is
nccl_table.calibration_matrix, the fits `moesim calibrate --hop-latency RULE` makes (no bootstrap, nothing held out,
system facts inferred first under the shared rule, then the rule fitted with them fixed): shared, one hop latency
per level that the LL / LL128 hops follow (the default); per-protocol, the LL and LL128 hops figures of their own
(calscope: evaluated, not shipped); hierarchical, each the level hop times a departure with its own prior (calhier:
opt-in). Prints, per rule, worse | better than the prior at the chosen weighting and at the fixed weight 10 at
>= 1 MiB and at the chosen weighting below 1 MiB, then every pair that moved against the shared rule (`--pairs`:
every pair under every rule).

Run: python scripts/protocol_latency_check.py [--pairs]   (about 10-20 minutes on two busy cores)
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.fit import HOP_LATENCY_RULES  # noqa: E402
from moesim.calibrate.nccl_table import calibration_matrix  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
NOISE = 0.003  # 0.3 pt: the matrix's "worse | better" threshold (tests/calibrate/test_calibration_matrix.py)


def counts(changes: list[float]) -> str:
    """'worse | better (mean change in pt)' over a list of MAPE changes (fractions)."""
    return (f"{sum(c > NOISE for c in changes)} | {sum(c < -NOISE for c in changes)} "
            f"({100 * sum(changes) / len(changes):+.2f} pt)")


def summary(name: str, pairs) -> str:
    """One rule's line: >= 1 MiB at the chosen weighting and at weight 10, < 1 MiB at the chosen weighting."""
    small = [p.calibrated_mape_small - p.prior_mape_small for p in pairs
             if p.prior_mape_small is not None and p.calibrated_mape_small is not None]
    return (f"  {name:14s} >= 1 MiB {counts([p.change for p in pairs])};  weight 10 "
            f"{counts([p.fixed_weight_mape - p.prior_mape for p in pairs])};  < 1 MiB {counts(small)} of {len(small)}")


def _name(file: str) -> str:
    return file.removesuffix("_perf.log")


def main() -> None:
    matrices = {name: calibration_matrix(MANIFEST, None, mode) for name, mode in HOP_LATENCY_RULES.items()}
    shared = matrices["shared"]
    print(f"{len(shared)} pairs; worse | better than the prior by more than {100 * NOISE:.1f} pt (mean change)")
    for name, pairs in matrices.items():
        print(summary(name, pairs))
    for name in list(matrices)[1:]:
        print(f"pairs whose MAPE (chosen weighting or weight 10; >= 1 MiB, or < 1 MiB) moves by more than 0.05 pt, "
              f"shared -> {name}:")
        for old, new in zip(shared, matrices[name]):
            small_moved = old.prior_mape_small is not None and abs(new.calibrated_mape_small -
                                                                   old.calibrated_mape_small) > 0.0005
            if abs(new.calibrated_mape - old.calibrated_mape) > 0.0005 or small_moved or \
                    abs(new.fixed_weight_mape - old.fixed_weight_mape) > 0.0005:
                small = "" if old.prior_mape_small is None else (
                    f"; < 1 MiB {100 * old.prior_mape_small:.1f}: {100 * old.calibrated_mape_small:.1f} -> "
                    f"{100 * new.calibrated_mape_small:.1f}")
                print(f"  {_name(old.fitted_on)} -> {_name(old.held_out)}: prior {100 * old.prior_mape:.1f}, "
                      f"{100 * old.calibrated_mape:.1f} -> {100 * new.calibrated_mape:.1f} % (weight 10: "
                      f"{100 * old.fixed_weight_mape:.1f} -> {100 * new.fixed_weight_mape:.1f}){small}")
    if "--pairs" in sys.argv:  # every pair under every rule, for the docs' tables
        print("fitted -> held out | prior | " + " | ".join(f"{n}, {n} w10" for n in matrices) + " || < 1 MiB")
        for rows in zip(*matrices.values()):
            p = rows[0]
            print(f"  {_name(p.fitted_on)} -> {_name(p.held_out)} | {100 * p.prior_mape:.2f} | "
                  + " | ".join(f"{100 * r.calibrated_mape:.2f} {100 * r.fixed_weight_mape:.2f}" for r in rows)
                  + " || " + ("-" if p.prior_mape_small is None else f"{100 * p.prior_mape_small:.2f} " +
                              " ".join(f"{100 * r.calibrated_mape_small:.2f}" for r in rows)))


if __name__ == "__main__":
    main()
