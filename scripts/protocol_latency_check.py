"""The held-out calibration matrix under the three rules for the hop latency per protocol (docs/collectives.md,
"Session 8 (calscope)" and "Session 8 (calhier)"). Fits each log of every matrix cluster as `moesim calibrate` does
(no bootstrap, nothing held out of it) with fit_profile(latency_per_protocol=...): False, one hop latency per level
that the LL / LL128 hops follow (the rule before session 8); True, the LL and LL128 hops figures of their own, each
moved only by latency-bound rows of its own protocol (calscope: evaluated, not shipped); "hierarchical", each the
level hop times a departure with its own prior (calhier: evaluated, opt-in), each at the chosen weighting and at the
fixed weight 10, and prints the busbw MAPE of every other log of the cluster under the prior and under each
calibrated profile (`--pairs`: every pair under every rule).

Run: python scripts/protocol_latency_check.py [--pairs]   (about 5-8 minutes on two busy cores)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moesim.calibrate.fit import LEVEL_PRIOR_WEIGHT, fit_profile  # noqa: E402
from moesim.calibrate.nccl_error import log_error  # noqa: E402
from moesim.calibrate.nccl_table import _points, entry_hardware, matrix_clusters  # noqa: E402
from moesim.calibrate.profile_io import Provenance, calibrated_table, profile_from_table  # noqa: E402
from moesim.calibrate.records import read_measurements  # noqa: E402
from moesim.specs.load import load_hardware, resolve_ref  # noqa: E402
from moesim.specs.system_facts import set_system_facts, system_facts, with_system_facts  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
NOISE = 0.003  # 0.3 pt: the matrix's "worse | better" threshold (tests/calibrate/test_calibration_matrix.py)
WAYS = (("one figure", False, None), ("one figure, weight 10", False, LEVEL_PRIOR_WEIGHT),
        ("per protocol", True, None), ("per protocol, weight 10", True, LEVEL_PRIOR_WEIGHT),
        # session 8 (calhier, evaluated, opt-in): each protocol's hop a departure from the level hop, with its own prior
        ("hierarchical", "hierarchical", None), ("hierarchical, weight 10", "hierarchical", LEVEL_PRIOR_WEIGHT))


def calibrated(entry: dict, per_protocol: bool | str, weight: float | None):
    """The profile `moesim calibrate` would write from one log (api.calibrate's steps, under `per_protocol`)."""
    path = str(MANIFEST.parent / entry["file"])
    prior_path = resolve_ref(entry["hardware"], "hardware_profiles")
    facts = system_facts(entry)
    prior = with_system_facts(load_hardware(prior_path), facts)
    measured = read_measurements([path], nccl_op=entry.get("op"), nccl_ranks=entry.get("ranks"))
    fit = fit_profile(measured, prior, fit_keys=set(), bootstrap=0, level_prior_weight=weight,
                      gpus_per_thread=entry.get("gpus_per_thread", 1), latency_per_protocol=per_protocol)
    provenance = Provenance(prior=str(prior_path), sources=(path,), holdout_fraction=0.0, seed=0, fitted_on=(),
                            held_out=())
    return profile_from_table(set_system_facts(calibrated_table(prior_path, fit, provenance), facts))


def pairs() -> list[tuple]:
    """(fitted on, held out, prior MAPE >= 1 MiB, then < 1 MiB, then (>= 1 MiB, < 1 MiB) under each of WAYS)."""
    out = []
    for _, logs in matrix_clusters(MANIFEST).items():
        prior = load_hardware(logs[0]["hardware"])
        for fit_on in logs:
            profiles = [calibrated(fit_on, per_protocol, weight) for _, per_protocol, weight in WAYS]
            for held in logs:
                if held is fit_on:
                    continue
                pts, g = _points(MANIFEST.parent, held), held.get("gpus_per_thread", 1)
                before = log_error(pts, entry_hardware(held, prior), None, g)
                after = [log_error(pts, entry_hardware(held, p), None, g) for p in profiles]
                out.append((fit_on["file"], held["file"], before.mape_large, before.mape_small,
                            [(a.mape_large, a.mape_small) for a in after]))
    return out


def main() -> None:
    rows = pairs()
    print(f"{len(rows)} pairs; worse | better than the prior by more than {100 * NOISE:.1f} pt (mean change)")
    for k, (name, _, _) in enumerate(WAYS):
        large = [r[4][k][0] - r[2] for r in rows]
        small = [r[4][k][1] - r[3] for r in rows if r[3] is not None and r[4][k][1] is not None]
        print(f"  {name:26s} >= 1 MiB {sum(c > NOISE for c in large)} | {sum(c < -NOISE for c in large)} "
              f"({100 * sum(large) / len(large):+.2f} pt);  < 1 MiB {sum(c > NOISE for c in small)} | "
              f"{sum(c < -NOISE for c in small)} of {len(small)} ({100 * sum(small) / len(small):+.2f} pt)")
    for way in (2, 4):
        print(f"pairs whose >= 1 MiB MAPE (chosen weighting) moves by more than 0.05 pt, one figure -> {WAYS[way][0]}:")
        for fitted, held, prior, prior_small, after in rows:
            (old, old_small), (new, new_small) = after[0], after[way]
            if abs(new - old) > 0.0005 or abs(after[1][0] - after[way + 1][0]) > 0.0005 or (
                    prior_small is not None and abs(new_small - old_small) > 0.0005):
                small = "" if prior_small is None else (f"; < 1 MiB {100 * prior_small:.1f}: {100 * old_small:.1f} "
                                                        f"-> {100 * new_small:.1f}")
                print(f"  {fitted.removesuffix('_perf.log')} -> {held.removesuffix('_perf.log')}: prior "
                      f"{100 * prior:.1f}, {100 * old:.1f} -> {100 * new:.1f} % (weight 10: {100 * after[1][0]:.1f} "
                      f"-> {100 * after[way + 1][0]:.1f}){small}")
    if "--pairs" in sys.argv:  # every pair under every way, for the docs' tables
        for fitted, held, prior, prior_small, after in rows:
            print(f"  {fitted.removesuffix('_perf.log')} -> {held.removesuffix('_perf.log')} | {100 * prior:.2f} "
                  + " | ".join(f"{100 * a[0]:.2f}" for a in after) + f" || small {prior_small} "
                  + " ".join("-" if a[1] is None else f"{100 * a[1]:.2f}" for a in after))


if __name__ == "__main__":
    main()
