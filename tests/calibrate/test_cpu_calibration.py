"""End to end on this machine: run the validate/ harness (gloo, 2 ranks, `--clock cpu`), calibrate
cpu-localhost on part of the records, check the error on the held-out rest.

The harness times compute phases, backward and the layer by each rank's CPU time (validate/timing.py):
with wall-clock phases this test failed under load (the box is shared by several jobs, load average
5-12: a phase's wall time held whatever else ran on its core); the CPU clock counts only the rank's own
work, so the bounds below hold under load. On one loaded run (load 7) with the CPU clock: held-out
layer MAPE 3.3-6.6 % per seed 0-4 (mean 4.6 %); the same sweep wall-clock at the same load: 18-36 %.
Figures below this line are from the wall-clock runs that set the bounds (still met, with room).

Bounds, from 13 runs of this sweep on a shared 2-vCPU VM (its two vCPUs share one core's floating-point
throughput: one rank alone runs fp32 matmuls at ~110 GFLOP/s, two at once at ~35-60 each, and
background load, other jobs included, flips records between the regimes); docs/calibration.md has
the table. The fit holds a per-layer overhead (efficiency.layer_overhead_us: 0.8-1.7 ms per layer pass
on a quiet box, up to 5 ms under load: the router's softmax/top-k/cumsum kernels, autograd, gloo calls),
so the "unmodelled layer time" diagnostic is left with ~0 ms. Measured:
- seed 0 (the split the calibration reports; 3 of its 5 held-out records are the tiny configurations,
  whose overhead is below the in-sample records'): held-out layer MAPE 6-42 %, max 13-76 % (two loaded
  runs: 132 % and 156 %: in-sample records slowed by load raise the fitted overhead, which then
  over-predicts the tiny held-out layers);
- over seeds 0-4 (splits of 5 held-out records): mean MAPE 6-26 % per run, mean signed error -9 … +18 %.
  Before the overhead term: mean MAPE 21-41 %, mean signed error -21 … -41 % (always under-predicting).
The test asserts seed 0's MAPE and max, the mean MAPE and mean signed error over SEEDS, the fitted
overhead's range and the diagnostic's residual, and by trend that the calibrated profile orders the
configurations as the measurements do. The aim on real accelerators is <= 5 %.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from moesim.calibrate import calibrate, validate_report
from moesim.calibrate.records import read_measurements

from calibrate_synth import DATA

pytest.importorskip("torch")

HELD_OUT_MAPE_BOUND = 0.50
HELD_OUT_MAX_BOUND = 1.0  # no held-out layer predicted at twice its measured time or more
SEEDS = range(5)
SEEDS_MEAN_MAPE_BOUND = 0.30
SEEDS_MEAN_BIAS_BOUND = 0.25
RESIDUAL_OVERHEAD_BOUND_S = 2e-4
LAYER_OVERHEAD_RANGE_S = (1e-4, 1e-2)
RANK_CORRELATION_MIN = 0.9


@pytest.mark.slow
def test_calibrate_cpu_localhost_on_measured_records(tmp_path):
    from validate.run import launch_local

    results = tmp_path / "cpu.jsonl"
    launch_local(2, ["--sweep", str(DATA / "cpu-calibration.toml"), "--out", str(results), "--timeout-s", "120",
                     "--clock", "cpu"], str(tmp_path))
    m = read_measurements([results])
    assert len(m.layers) == 17 and len(m.collectives) == 2 * 13 and not m.skipped
    assert all({"router_matmul", "router_gating"} <= r.measured_s.keys() for r in m.layers)
    assert all(r.clock == "cpu" for r in m.layers)
    out = tmp_path / "cpu-calibrated.toml"
    result = calibrate([str(results)], "cpu-localhost", out, holdout_fraction=0.3, seed=0, bootstrap=20)
    held = result.held_out_report
    assert len(held.comparisons) == 5
    total = held.total
    print(f"\nheld-out layer: MAPE {total.mape:.1%}, max {total.max_abs_pct_error:.1%}, "
          f"mean signed {total.mean_signed_error:+.1%}; layer overhead {result.fit.layer_overhead_s * 1e6:.0f} us")
    for phase, stats in held.phases.items():
        print(f"  {phase:18s} MAPE {stats.mape:6.1%} max {stats.max_abs_pct_error:6.1%} "
              f"bias {stats.mean_signed_error:+6.1%}")
    gap = result.gap
    print(f"  unmodelled: measured = {gap.overhead_s * 1e3:.2f} ms + {gap.scale:.3f} x predicted -> held-out MAPE "
          f"{gap.held_out_mape:.1%}, max {gap.held_out_max_abs_pct_error:.1%}")
    assert total.mape <= HELD_OUT_MAPE_BOUND
    assert total.max_abs_pct_error <= HELD_OUT_MAX_BOUND
    assert LAYER_OVERHEAD_RANGE_S[0] < result.fit.layer_overhead_s < LAYER_OVERHEAD_RANGE_S[1]
    assert result.profile.efficiency.layer_overhead_s == pytest.approx(result.fit.layer_overhead_s, rel=1e-5)
    assert abs(gap.overhead_s) <= RESIDUAL_OVERHEAD_BOUND_S
    everything = validate_report([str(results)], str(out), include_fitted=True)
    measured = [c.record.measured_s["layer"] for c in everything.comparisons]
    predicted = [c.predicted["layer"] for c in everything.comparisons]
    assert spearmanr(measured, predicted).statistic >= RANK_CORRELATION_MIN
    assert np.all(np.isfinite(predicted))
    splits = [calibrate([str(results)], "cpu-localhost", tmp_path / f"seed{seed}.toml", holdout_fraction=0.3,
                        seed=seed, bootstrap=0).held_out_report.total for seed in SEEDS]
    mean_mape, mean_bias = np.mean([s.mape for s in splits]), np.mean([s.mean_signed_error for s in splits])
    print(f"  seeds {list(SEEDS)}: mean MAPE {mean_mape:.1%}, mean signed {mean_bias:+.1%}, "
          f"max {max(s.max_abs_pct_error for s in splits):.1%}")
    assert mean_mape <= SEEDS_MEAN_MAPE_BOUND
    assert abs(mean_bias) <= SEEDS_MEAN_BIAS_BOUND
