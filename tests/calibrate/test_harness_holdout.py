"""Held-out layer error on measured CPU-harness records (committed data, so the figures are fixed), and the rule
that calibration never writes a profile worse than its prior.

Data: tests/calibrate/data/harness-cpu-clock-{layers,ops}.jsonl, written by `python scripts/harness_holdout.py
--clock cpu` (world size 2, gloo, the 17-configuration sweep tests/calibrate/data/cpu-calibration.toml, and
`python -m validate.ops --dtypes float32 --clock cpu`) on the shared 2-core box, load average 6-8.
The operator path: validate.ops' records calibrate cpu-localhost's operator tables (cpu-ops prior); each split
then calibrates that prior on 70 % of the layer records and predicts the other 30 %.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from calibrate_synth import DATA, layer_record_dict, write_jsonl

from moesim.calibrate import calibrate
from moesim.calibrate.api import PriorGuard
from moesim.calibrate.ops import calibrate_ops
from moesim.calibrate.predict import predict_layer
from moesim.calibrate.records import layer_record, read_measurements
from moesim.calibrate.report import validation_report
from moesim.specs.load import load_hardware

LAYERS = DATA / "harness-cpu-clock-layers.jsonl"
OPS = DATA / "harness-cpu-clock-ops.jsonl"
SEEDS = range(5)
# The closing note of issue 10 gave 12-49 % per split (44-50 % mean) before operator pricing and the CPU
# clock; on these records the operator path gives 6.3-14.1 % per seed 0-4, mean 8.3 % (docs/operators.md).
# The bounds leave some room for a re-measured data file, none for going back to 12-49 %.
MEAN_MAPE_BOUND = 0.10
SPLIT_MAPE_BOUND = 0.15


@pytest.fixture(scope="module")
def op_prior(tmp_path_factory):
    path = tmp_path_factory.mktemp("ops") / "cpu-ops.toml"
    calibrate_ops([str(OPS)], "cpu-localhost", path, holdout_fraction=0.0)
    return path


@pytest.fixture(scope="module")
def splits(op_prior, tmp_path_factory):
    out = tmp_path_factory.mktemp("splits")
    rows = []
    for prior in ("cpu-localhost", str(op_prior)):
        for seed in SEEDS:
            result = calibrate([str(LAYERS)], prior, out / f"{seed}-{len(rows)}.toml", holdout_fraction=0.3, seed=seed,
                               bootstrap=0)
            before = validation_report(result.measurements, load_hardware(prior), only_keys=set(result.held_out))
            rows.append((prior, seed, before.total.mape, result.held_out_report.total.mape, result))
    return rows


@pytest.mark.slow
def test_operator_path_held_out_layer_error_is_low_on_every_split(splits, op_prior):
    ops = [r for r in splits if r[0] == str(op_prior)]
    after = np.array([r[3] for r in ops])
    print("\noperator path, held-out layer MAPE per seed: " + ", ".join(f"{x:.1%}" for x in after)
          + f"; mean {after.mean():.1%}")
    assert after.mean() < MEAN_MAPE_BOUND
    assert after.max() < SPLIT_MAPE_BOUND
    # the kernel call cost is validate.ops' measurement (operator level), kept through the layer fit
    written, prior = ops[0][4].profile, load_hardware(op_prior)
    assert 1e-6 < prior.efficiency.kernel_launch_s < 1e-4
    assert written.efficiency.kernel_launch_s == pytest.approx(prior.efficiency.kernel_launch_s, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["flop-keyed", "operator"])
def test_calibration_never_worsens_the_prior_on_any_split(splits, op_prior, path):
    prior = "cpu-localhost" if path == "flop-keyed" else str(op_prior)
    rows = [r for r in splits if r[0] == prior]
    assert len(rows) == len(SEEDS) >= 3
    for _, seed, before, after, result in rows:
        assert after <= before, (path, seed, before, after)
        assert result.guard is not None and result.guard.fit_mape <= result.guard.prior_mape


def test_the_prior_is_kept_when_the_fit_does_not_beat_it_on_held_in_records(tmp_path):
    """Records generated exactly by the prior: no fit can be below its held-in error (0), so the prior is
    written, with the provenance of the calibration."""
    prior = load_hardware("cpu-localhost")
    records = []
    for tokens in (256, 512, 1024, 2048, 4096):
        rec = layer_record(layer_record_dict(tokens=tokens, name=f"t{tokens}"), "synthetic:1")
        phases = {p: (v if v is not None else 1e-4) for p, v in predict_layer(rec, prior).items() if p != "layer"}
        phases["layer_unsynced"] = predict_layer(rec, prior)["layer"]
        records.append(layer_record_dict(tokens=tokens, name=f"t{tokens}", phase_s=phases))
    data = write_jsonl(tmp_path / "exact.jsonl", records)
    result = calibrate([str(data)], "cpu-localhost", tmp_path / "out.toml", holdout_fraction=0.4, bootstrap=0)
    assert result.guard.kept_prior and result.guard.prior_mape < 1e-9
    written = load_hardware(tmp_path / "out.toml")
    assert written.efficiency.matmul == prior.efficiency.matmul
    assert written.chip == dataclasses.replace(prior.chip)
    assert "kept the prior" in written.calibrated_from and result.as_dict()["kept_prior"] is True
    assert result.held_out_report.total.mape < 1e-6  # held-out predicted by the prior itself
    assert PriorGuard(0.10, 0.20).kept_prior is False and PriorGuard(0.20, 0.20).kept_prior is True


def test_committed_records_are_cpu_clock_with_launch_records():
    m = read_measurements([str(LAYERS)])
    assert len(m.layers) == 17 and all(r.clock == "cpu" for r in m.layers)
    import json

    ops = [json.loads(line) for line in OPS.read_text().splitlines() if line.strip()]
    assert {r["timer"] for r in ops} == {"thread_time"}
    assert any(r["op"] == "launch" for r in ops)
