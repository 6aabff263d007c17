"""validate-report: the record-selection rule, error statistics, JSON contract, CLI."""

import json

import pytest

from moesim.calibrate import calibrate, validate_report
from moesim.calibrate.report import REPORT_PHASES, validation_report
from moesim.calibrate.records import read_measurements
from moesim.cli import build_parser, main
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

REPORT_KEYS = {"hardware", "selection", "n_records", "mape", "max_abs_pct_error", "mean_signed_error", "bias",
               "phases", "records", "not_modelled", "excluded_fitted_keys"}
PHASE_KEYS = {"n", "mape", "max_abs_pct_error", "mean_signed_error", "bias", "noise"}


def test_true_profile_has_no_error_except_unmodelled_phases(synthetic_jsonl, true_hw):
    report = validation_report(read_measurements([synthetic_jsonl]), true_hw)
    assert report.total.n == 14 and report.total.max_abs_pct_error < 1e-9
    for phase, stats in report.phases.items():
        assert stats.max_abs_pct_error < 1e-9, phase
    d = report.as_dict()
    assert {(n["phase"]) for n in d["not_modelled"]} == {"dispatch_a2a", "combine_a2a"}  # the ep = 1 record
    assert d["phases"]["dispatch_a2a"]["n"] == 13


def test_statistics_and_bias_sign(synthetic_jsonl):
    prior = load_hardware("cpu-localhost")
    report = validation_report(read_measurements([synthetic_jsonl]), prior)
    d = report.as_dict()
    assert REPORT_KEYS <= d.keys() and set(d["phases"]) == set(REPORT_PHASES)
    errors = [r["error"]["layer"] for r in d["records"]]
    assert d["mape"] == pytest.approx(sum(abs(e) for e in errors) / len(errors))
    assert d["max_abs_pct_error"] == pytest.approx(max(abs(e) for e in errors))
    assert d["mean_signed_error"] == pytest.approx(sum(errors) / len(errors))
    assert d["bias"] == ("over-predicts" if d["mean_signed_error"] > 0 else "under-predicts")
    for rec in d["records"]:
        assert rec["error"]["layer"] == pytest.approx(rec["predicted"]["layer"] / rec["measured"]["layer"] - 1)
        assert {"name", "tokens_per_rank", "d_model", "dtype", "ep_size"} <= rec["config"].keys()
        assert rec["in_sample"] is False
    for stats in d["phases"].values():
        assert PHASE_KEYS <= stats.keys() and 0 <= stats["mape"] <= stats["max_abs_pct_error"] * (1 + 1e-12)
    assert "all 14 records (the profile was not fitted by moesim calibrate)" == d["selection"]


def test_calibrated_profile_excludes_its_fit_records(tmp_path, synthetic_jsonl):
    out = tmp_path / "cal.toml"
    result = calibrate([str(synthetic_jsonl)], "cpu-localhost", out, holdout_fraction=0.3, seed=2, bootstrap=0)
    report = validate_report([str(synthetic_jsonl)], str(out))
    assert {c.record.key for c in report.comparisons} == set(result.held_out)
    assert set(report.excluded_fitted) == set(result.fit.fitted_keys)
    assert report.total.mape == pytest.approx(result.held_out_report.total.mape)
    everything = validate_report([str(synthetic_jsonl)], str(out), include_fitted=True)
    assert len(everything.comparisons) == 14
    assert sum(c.in_sample for c in everything.comparisons) == 14 - len(result.held_out)


def test_nothing_held_out_is_an_error(tmp_path, synthetic_jsonl):
    out = tmp_path / "all.toml"
    calibrate([str(synthetic_jsonl)], "cpu-localhost", out, holdout_fraction=0.0, bootstrap=0)
    with pytest.raises(SpecError, match="nothing is held out"):
        validate_report([str(synthetic_jsonl)], str(out))


def test_cli_registers_both_subcommands():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices
    assert {"calibrate", "validate-report"} <= set(choices)


def test_cli_calibrate_and_report_json(tmp_path, synthetic_jsonl, capsys):
    out = tmp_path / "cal.toml"
    assert main(["calibrate", str(synthetic_jsonl), "--hardware", "cpu-localhost", "-o", str(out),
                 "--bootstrap", "5", "--seed", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["records"]["held_out"] == 4 and data["held_out"]["n_records"] == 4
    assert {"parameters", "residuals", "collective_diagnostics", "fit"} <= data.keys()
    assert data["fit"]["layer_overhead_s"] > 0 and "layer" in data["residuals"]
    assert "router_matmul" not in data["residuals"]
    assert main(["validate-report", str(synthetic_jsonl), "--hardware", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert REPORT_KEYS <= report.keys() and report["n_records"] == 4
    assert main(["validate-report", str(synthetic_jsonl), "--hardware", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MAPE" in text and "layer total" in text
    # the text output with intervals: the default (100 resamples, asserted on the parser) cost ~56 s of CPU here for the
    # same text path 5 resamples take (session 17, citime)
    args = ["calibrate", str(synthetic_jsonl), "--hardware", "cpu-localhost", "-o", str(out)]
    assert build_parser().parse_args(args).bootstrap == 100
    assert main(args + ["--bootstrap", "5"]) == 0
    assert "90% bootstrap" in capsys.readouterr().out
    assert main(["calibrate", str(synthetic_jsonl), "--hardware", "cpu-localhost", "-o", str(out), "--bootstrap", "0",
                 "--fit-router-matmul", "--json"]) == 0
    assert "router_matmul" in json.loads(capsys.readouterr().out)["residuals"]
    assert "Fitted phases: dispatch_permute" in out.read_text() and ", router_matmul, and the layer" in out.read_text()


def test_cli_bad_input_exits_2_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema_version": 1, "kind": "switch_layer", "status": "ok"}\n')
    assert main(["calibrate", str(bad), "--hardware", "cpu-localhost", "-o", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1" in err and "required field is missing" in err
    assert main(["validate-report", str(bad), "--hardware", "no-such-profile"]) == 2
    assert main(["calibrate", str(bad), "--hardware", "cpu-localhost", "-o", str(tmp_path / "x.toml"),
                 "--holdout-fraction", "1.5"]) == 2


def test_layer_overhead_is_fitted_written_and_leaves_no_gap(tmp_path, true_hw):
    from calibrate_synth import TRUE_LAYER_OVERHEAD_S, synthetic_records, write_jsonl
    from moesim.specs.load import load_hardware

    recs = synthetic_records(true_hw)
    for rec in recs:  # 2 ms more per layer: 1 ms more per pass (forward, backward)
        if rec["kind"] == "switch_layer":
            rec["phases"]["layer_unsynced"]["median_s"] += 2e-3
    path = write_jsonl(tmp_path / "overhead.jsonl", recs)
    result = calibrate([str(path)], "cpu-localhost", tmp_path / "o.toml", bootstrap=0)
    per_pass = TRUE_LAYER_OVERHEAD_S + 1e-3
    assert result.fit.layer_overhead_s == pytest.approx(per_pass, rel=0.02)  # the auto knots price within ~1 %
    assert abs(result.gap.overhead_s) < 2e-5 and result.gap.scale == pytest.approx(1.0, rel=0.02)
    assert result.held_out_report.total.mape < 0.02
    text = (tmp_path / "o.toml").read_text()
    assert "layer_overhead_us = " in text and "layer overhead" in text
    assert load_hardware(tmp_path / "o.toml").efficiency.layer_overhead_s == pytest.approx(per_pass, rel=0.02)
    assert "Unmodelled layer time: over the fitted records, measured layer = " in text


def test_router_parts_are_reported_when_measured(tmp_path, synthetic_jsonl, true_hw):
    """Records from before the harness split the router phase lack router_matmul / router_gating: they are
    left out of those phases' statistics, and the layer total still counts."""
    from calibrate_synth import priced_layer_record, write_jsonl

    new, old = priced_layer_record(true_hw, name="new"), priced_layer_record(true_hw, name="old", tokens=512)
    for part in ("router_matmul", "router_gating"):
        del old["phases"][part]
    m = read_measurements([write_jsonl(tmp_path / "mixed.jsonl", [new, old])])
    report = validation_report(m, true_hw)
    assert report.phases["router_matmul"].n == report.phases["router_gating"].n == 1
    assert report.phases["router"].n == report.total.n == 2
    assert report.total.max_abs_pct_error < 1e-12
    old_dict = next(r for r in report.as_dict()["records"] if r["config"]["name"] == "old")
    assert old_dict["measured"]["router_matmul"] is None and old_dict["error"]["router_gating"] is None
