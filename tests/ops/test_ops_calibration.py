"""validate.ops on this CPU, then `moesim calibrate` of the operator tables: held-out-by-shape error per kind."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from moesim.calibrate.ops import calibrate_ops, predict_s, read_op_records, split_by_table  # noqa: E402
from moesim.specs.load import load_hardware  # noqa: E402


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Timed by the calling thread's CPU time (`--clock cpu`, docs/operators.md "Clock"), the minimum of 7 calls: what
    a call costs on an idle core. Under the wall clock a call longer than a scheduler slice is preempted on every
    repeat when other jobs hold the 2 cores, so min-of-N does not recover it (seen: grouped GEMMs 1.1-3.6x their idle
    time, and seed 2's held-out grouped-GEMM error 42-43 % against the prior's 17-32 %); under the CPU clock, loaded
    alike (two busy loops beside it), that error stayed 3-4 % against the prior's 13-14 %."""
    out = tmp_path_factory.mktemp("ops") / "ops.jsonl"
    subprocess.run([sys.executable, "-m", "validate.ops", "--out", str(out), "--quick", "--repeats", "7",
                    "--clock", "cpu"], check=True, capture_output=True)
    return out


def test_records_cover_every_kind_and_pass(records):
    recs = read_op_records([str(records)])
    assert {(r.kind, r.pass_) for r in recs} >= {("gemm", "fwd"), ("gemm", "dgrad"), ("gemm", "wgrad"),
                                                   ("grouped_gemm", "wgrad"), ("attention", "fwd"),
                                                   ("attention", "bwd"), ("memory", "fwd")}
    assert {r.dtype for r in recs} == {"float32", "bfloat16"}
    assert {json.loads(line)["timer"] for line in records.read_text().splitlines()} == {"thread_time"}
    # the harness's own memory-bound operators, and one ATen call's cost (forward + backward, after a wait)
    assert {r.op for r in recs if r.kind == "memory"} >= {"gather", "index_put", "scatter_add", "fill", "add", "copy",
                                                          "relu", "index", "launch"}
    launch = [r.time_s for r in recs if r.op == "launch"]
    assert all(1e-8 < t < 1e-3 for t in launch)
    from moesim.calibrate.ops import fit_launch_and_memory
    assert fit_launch_and_memory(recs) == pytest.approx(float(np.median(launch)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibration_beats_the_prior_held_out_by_shape(records, tmp_path, seed):
    result = calibrate_ops([str(records)], "cpu-localhost", tmp_path / "cpu.toml", seed=seed)
    prof = load_hardware(tmp_path / "cpu.toml")
    assert set(result.peaks_flops_per_s) == {"float32", "bfloat16"}  # each dtype its own measured peak
    assert prof.chip.peak_for("bfloat16") == pytest.approx(result.peaks_flops_per_s["bfloat16"], rel=1e-5)
    assert {t.kind for t in prof.efficiency.op_tables} >= {"gemm", "grouped_gemm", "attention", "memory"}
    # Memory-bound records are reported, not asserted: the quick sweep has 3 sizes per op straddling cache and
    # DRAM, and under heavy load its held-out error was seen above the prior's (docs/operators.md).
    # Attention asserted again since session 17 (xfail at 51773b9): the split is made per table, so every
    # held-out record is priced by a table of its own kind, dtype and pass (docs/operators.md "Attention's
    # held-out miss"; tests/ops/test_ops_calibration_split.py pins it without timings).
    for kind in ("gemm", "grouped_gemm", "attention"):
        err = result.held_out.get(kind)
        if err is None:
            continue
        assert err.mape < err.prior_mape, (kind, err)  # calibration never worsens the prior
        assert err.mape < 0.6, (kind, err)
    # In sample, each fitted attention record is its table's own point: priced back to its time (6 digits kept).
    recs = read_op_records([str(records)])
    fitted = split_by_table(recs, 0.3, seed)
    for r in recs:
        if r.kind == "attention" and r.key in fitted:
            assert predict_s(r, result.profile) == pytest.approx(r.time_s, rel=1e-4), r.key


def test_bad_record_is_a_one_line_error(tmp_path):
    from moesim.errors import SpecError

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"schema_version": 1, "record": "op", "kind": "conv", "pass": "fwd", "dtype": "float32",
                               "shape": [1], "time_s": 1.0}) + "\n")
    with pytest.raises(SpecError, match="bad.jsonl:1"):
        read_op_records([str(bad)])


def test_layer_records_are_priced_by_operator_when_the_profile_has_tables(tmp_path):
    """With a profile whose GEMM tables cover the record's dtype, the harness's phases are operator sums
    (moesim.calibrate.predict._op_terms); the layer fit keeps the tables' shape dependence and fits the
    dtype's peak, the collectives and the overhead."""
    import dataclasses
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "calibrate"))
    from calibrate_synth import layer_record_dict, write_jsonl

    from moesim.calibrate import calibrate
    from moesim.calibrate.predict import OpTerm, layer_terms, predict_layer, uses_ops
    from moesim.calibrate.records import layer_record
    from moesim.ops.price import op_time_s
    from moesim.specs.hardware import OpTable

    prior = load_hardware("cpu-localhost")
    tables = (OpTable(kind="gemm", dtype="float32", points=((64.0, 64.0, 64.0, 0.2), (1024.0, 1024.0, 1024.0, 0.8)),
                      measured_on="test", source="test"),)
    hw = dataclasses.replace(prior, efficiency=dataclasses.replace(prior.efficiency, op_tables=tables))
    rec = layer_record(layer_record_dict(tokens=512, d_model=128, d_ff=512), "synthetic:1")
    assert uses_ops(hw, "float32") and not uses_ops(prior, "float32")
    terms = layer_terms(rec, hw)
    experts = terms["expert_compute"]
    assert all(isinstance(t, OpTerm) for t in experts)
    names = [t.op.name for t in experts]
    assert names[:3] == ["expert_fc1", "relu", "expert_fc2"]
    # more than one local expert: the harness regroups rows by expert, concatenates, restores the order
    assert names[3:] == (["index", "gather", "copy", "gather"] if rec.experts_per_rank > 1 else [])
    gemm_passes = {t.op.pass_ for t in terms["backward"] if isinstance(t, OpTerm) and t.op.kind == "gemm"}
    assert gemm_passes == {"dgrad", "wgrad"}
    predicted = predict_layer(rec, hw)
    seconds = sum(float(np.asarray(op_time_s(t.op, hw)).reshape(-1)[0]) for t in experts)
    assert predicted["expert_compute"] == pytest.approx(seconds)
    # The layer fit: records generated from a profile with these tables at half the float32 peak (+0.5 ms
    # overhead per pass) are reproduced, the peak scale and the overhead recovered.
    slow_chip = dataclasses.replace(hw.chip, peak_flops_per_s={**hw.chip.peak_flops_per_s,
                                                               "float32": hw.chip.peak_for("float32") / 2})
    truth = dataclasses.replace(hw, chip=slow_chip)
    profile = tmp_path / "ops-prior.toml"
    from moesim.calibrate.profile_io import render_profile
    from moesim.specs.load import read_data_file, resolve_ref

    raw = read_data_file(resolve_ref("cpu-localhost", "hardware_profiles"))
    raw["efficiency"]["op_table"] = [{"kind": "gemm", "dtype": "float32", "status": "measured", "measured_on": "test",
                                      "source": "test", "points": [list(p) for p in tables[0].points]}]
    profile.write_text(render_profile(raw, ["test prior"]), encoding="utf-8")
    records = []
    for tokens in (256, 512, 1024, 2048):
        r = layer_record(layer_record_dict(tokens=tokens, d_model=128, d_ff=512, name=f"t{tokens}"), "synthetic:1")
        phases = {p: (v if v is not None else 1e-4) for p, v in predict_layer(r, truth).items() if p != "layer"}
        phases["layer_unsynced"] = predict_layer(r, truth)["layer"] + 2 * 5e-4
        records.append(layer_record_dict(tokens=tokens, d_model=128, d_ff=512, name=f"t{tokens}", phase_s=phases))
    data = write_jsonl(tmp_path / "layers.jsonl", records)
    result = calibrate([str(data)], str(profile), tmp_path / "out.toml", holdout_fraction=0.25, bootstrap=0)
    assert result.fit.layer_overhead_s == pytest.approx(5e-4, rel=0.05)
    assert result.fit.peak_scales["float32"] == pytest.approx(0.5, rel=0.02)
    assert result.held_out_report.total.mape < 0.02


def test_cli_calibrates_operator_records_and_rejects_bad_ones(records, tmp_path):
    out = tmp_path / "cpu.toml"
    run = subprocess.run([sys.executable, "-m", "moesim", "calibrate", str(records), "--hardware", "cpu-localhost",
                          "-o", str(out), "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert set(data["peak_tflops"]) == {"float32", "bfloat16"} and "gemm" in data["held_out"]
    assert load_hardware(out).efficiency.op_tables
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema_version": 1, "record": "op", "kind": "gemm"}\n')
    run = subprocess.run([sys.executable, "-m", "moesim", "calibrate", str(bad), "--hardware", "cpu-localhost",
                          "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "bad.jsonl:1" in run.stderr
