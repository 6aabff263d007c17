"""validate.ops on this CPU, then `moesim calibrate` of the operator tables: held-out-by-shape error per kind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from moesim.calibrate.ops import calibrate_ops, read_op_records  # noqa: E402
from moesim.specs.load import load_hardware  # noqa: E402


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("ops") / "ops.jsonl"
    subprocess.run([sys.executable, "-m", "validate.ops", "--out", str(out), "--quick", "--repeats", "7"],
                   check=True, capture_output=True)
    return out


def test_records_cover_every_kind_and_pass(records):
    recs = read_op_records([str(records)])
    assert {(r.kind, r.pass_) for r in recs} >= {("gemm", "fwd"), ("gemm", "dgrad"), ("gemm", "wgrad"),
                                                   ("grouped_gemm", "wgrad"), ("attention", "fwd"),
                                                   ("attention", "bwd"), ("memory", "fwd")}
    assert {r.dtype for r in recs} == {"float32", "bfloat16"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibration_beats_the_prior_held_out_by_shape(records, tmp_path, seed):
    result = calibrate_ops([str(records)], "cpu-localhost", tmp_path / "cpu.toml", seed=seed)
    prof = load_hardware(tmp_path / "cpu.toml")
    assert set(result.peaks_flops_per_s) == {"float32", "bfloat16"}  # each dtype its own measured peak
    assert prof.chip.peak_for("bfloat16") == pytest.approx(result.peaks_flops_per_s["bfloat16"], rel=1e-5)
    assert {t.kind for t in prof.efficiency.op_tables} >= {"gemm", "grouped_gemm", "attention", "memory"}
    for kind in ("gemm", "grouped_gemm", "attention"):
        err = result.held_out.get(kind)
        if err is None:
            continue
        assert err.mape < err.prior_mape, (kind, err)  # calibration never worsens the prior
        assert err.mape < 0.6, (kind, err)


def test_bad_record_is_a_one_line_error(tmp_path):
    from moesim.errors import SpecError

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"schema_version": 1, "record": "op", "kind": "conv", "pass": "fwd", "dtype": "float32",
                               "shape": [1], "time_s": 1.0}) + "\n")
    with pytest.raises(SpecError, match="bad.jsonl:1"):
        read_op_records([str(bad)])
