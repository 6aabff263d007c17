"""End to end on this machine: run the validate/ harness (gloo, 2 ranks), calibrate cpu-localhost on
part of the records, check the error on the held-out rest.

Bound, from measuring this sweep on a shared 2-vCPU VM (its two vCPUs share one core's floating-point
throughput: one rank alone runs fp32 matmuls at ~110 GFLOP/s, two at once at ~35-60 each, and
background load flips records between the two regimes): the held-out layer-total MAPE was 33-37 %,
max 44-50 %, always under-predicting, over repeated runs. Most of it is per-layer framework overhead
(~2 ms: the router's softmax/top-k/cumsum kernels, autograd, gloo calls) that the estimate has no
term for: the "unmodelled layer time" diagnostic (measured ≈ overhead + scale × predicted) brings it
to 10-18 %. The test asserts MAPE <= HELD_OUT_MAPE_BOUND and max <= HELD_OUT_MAX_BOUND, and by trend
that the calibrated profile orders the configurations as the measurements do. The aim on real
accelerators is <= 5 % (docs/calibration.md).
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
HELD_OUT_MAX_BOUND = 0.75
RANK_CORRELATION_MIN = 0.9


@pytest.mark.slow
def test_calibrate_cpu_localhost_on_measured_records(tmp_path):
    from validate.run import launch_local

    results = tmp_path / "cpu.jsonl"
    launch_local(2, ["--sweep", str(DATA / "cpu-calibration.toml"), "--out", str(results), "--timeout-s", "120"],
                 str(tmp_path))
    m = read_measurements([results])
    assert len(m.layers) == 17 and len(m.collectives) == 2 * 13 and not m.skipped
    out = tmp_path / "cpu-calibrated.toml"
    result = calibrate([str(results)], "cpu-localhost", out, holdout_fraction=0.3, seed=0, bootstrap=20)
    held = result.held_out_report
    assert len(held.comparisons) == 5
    total = held.total
    print(f"\nheld-out layer: MAPE {total.mape:.1%}, max {total.max_abs_pct_error:.1%}, "
          f"mean signed {total.mean_signed_error:+.1%}")
    for phase, stats in held.phases.items():
        print(f"  {phase:18s} MAPE {stats.mape:6.1%} max {stats.max_abs_pct_error:6.1%} "
              f"bias {stats.mean_signed_error:+6.1%}")
    gap = result.gap
    print(f"  unmodelled: measured = {gap.overhead_s * 1e3:.2f} ms + {gap.scale:.3f} x predicted -> held-out MAPE "
          f"{gap.held_out_mape:.1%}, max {gap.held_out_max_abs_pct_error:.1%}")
    assert total.mape <= HELD_OUT_MAPE_BOUND
    assert total.max_abs_pct_error <= HELD_OUT_MAX_BOUND
    everything = validate_report([str(results)], str(out), include_fitted=True)
    measured = [c.record.measured_s["layer"] for c in everything.comparisons]
    predicted = [c.predicted["layer"] for c in everything.comparisons]
    assert spearmanr(measured, predicted).statistic >= RANK_CORRELATION_MIN
    assert np.all(np.isfinite(predicted))
