"""`moesim validate-report` on nccl-tests logs (session 15, newuser): the walk-through says to check a calibration
on the cluster's other logs, but validate-report refused logs ("no switch_layer records to compare"). It now prints
the profile's busbw error on each log, the per-log table's figures (nccl_error.log_error), the log the profile was
fitted on marked in-sample; JSON keys in docs/key_meanings.toml [output_validate_report_logs]."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from moesim.calibrate.nccl_error import log_error
from moesim.calibrate.nccl_tests import read_nccl_tests
from moesim.cli import main
from moesim.specs.load import load_hardware

ROOT = Path(__file__).resolve().parent.parent.parent
A = "tests/data/nccl/h100-xxrjun-2node_alltoall_perf.log"
B = "tests/data/nccl/h100-xxrjun-2node-b_alltoall_perf.log"


def report(capsys, argv) -> dict:
    assert main(["validate-report", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_logs_are_priced_as_the_per_log_table_prices_them(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = report(capsys, [A, B, "--hardware", "h100-sxm"])
    assert out["hardware"] == "h100-sxm" and [r["file"] for r in out["logs"]] == [A, B]
    for row in out["logs"]:
        expected = log_error(read_nccl_tests(row["file"]).collectives, load_hardware("h100-sxm"))
        assert row["busbw_mape_ge_1mib"] == expected.mape_large and row["busbw_mape_lt_1mib"] is None
        assert row["op"] == "all_to_all" and row["ranks"] == 16 and not row["in_sample"]
    documented = set(tomllib.loads((ROOT / "docs" / "key_meanings.toml").read_text())["output_validate_report_logs"])
    printed = {k for k in out if k != "logs"} | {f"logs[].{k}" for k in out["logs"][0]}
    assert printed == documented


def test_a_calibration_checked_on_the_clusters_other_log(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    profile = tmp_path / "xxrjun.toml"
    assert main(["calibrate", A, "--hardware", "h100-sxm", "-o", str(profile), "-q", "--bootstrap", "0"]) == 0
    capsys.readouterr()
    shipped = {r["file"]: r for r in report(capsys, [A, B, "--hardware", "h100-sxm"])["logs"]}
    fitted = {r["file"]: r for r in report(capsys, [A, B, "--hardware", profile])["logs"]}
    assert fitted[A]["in_sample"] and not fitted[B]["in_sample"]
    assert fitted[A]["busbw_mape_ge_1mib"] < shipped[A]["busbw_mape_ge_1mib"]  # in-sample: the fit's own log
    assert main(["validate-report", A, B, "--hardware", str(profile)]) == 0
    text = capsys.readouterr().out
    assert "in-sample" in text.split(A, 1)[1].split("\n", 1)[0] and "in-sample" not in text.split(B, 1)[1].split("\n")[0]


@pytest.mark.parametrize("argv, fragment", [
    (["tests/data/nccl/b200-vultr-2node_all_gather_perf.log", "--hardware", "b200"], "pass --ranks N"),
    ([A, "--hardware", "tpu-v4"], "field '--hardware': nccl-tests logs measure NCCL on GPUs"),
    ([A, "--hardware", "h100-sxm", "--ranks", "0"], "field '--ranks'"),
])
def test_bad_input_is_one_line(capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(ROOT)
    assert main(["validate-report", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err


def test_ranks_reads_a_log_without_rank_lines(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = report(capsys, ["tests/data/nccl/b200-vultr-2node_all_gather_perf.log", "--hardware", "b200", "--ranks", 16])
    assert out["logs"][0]["ranks"] == 16 and out["logs"][0]["busbw_mape_ge_1mib"] > 0


def test_a_log_run_with_several_gpus_per_thread_warns_when_not_told(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    log = "tests/data/nccl/b200-engaging-2node_all_reduce_perf.log"  # -g 8: nGpus 8 in its header
    assert main(["validate-report", log, "--hardware", "b200"]) == 0
    err = capsys.readouterr().err
    assert "moesim: warning: " in err and "pass --gpus-per-thread 8" in err
    assert main(["validate-report", log, "--hardware", "b200", "--gpus-per-thread", "8", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and json.loads(out)["logs"][0]["busbw_mape_ge_1mib"] is not None


def test_a_calibrated_profile_shows_its_prior_beside_it(capsys, monkeypatch, tmp_path):
    """Session 16 (polish): a calibrated --hardware prices each log with its prior too (calibrated_from's prior:),
    the figures the shipped profile gives, and the change in pt; a profile that is not calibrated gives nulls."""
    monkeypatch.chdir(ROOT)
    profile = tmp_path / "xxrjun.toml"
    assert main(["calibrate", A, "--hardware", "h100-sxm", "-o", str(profile), "-q", "--bootstrap", "0"]) == 0
    capsys.readouterr()
    shipped = report(capsys, [A, B, "--hardware", "h100-sxm"])
    assert shipped["prior"] is None
    assert all(r["busbw_mape_ge_1mib_prior"] is None and r["change_ge_1mib_pt"] is None for r in shipped["logs"])
    fitted = report(capsys, [A, B, "--hardware", profile])
    assert fitted["prior"] == "h100-sxm"
    for got, base in zip(fitted["logs"], shipped["logs"]):
        assert got["busbw_mape_ge_1mib_prior"] == base["busbw_mape_ge_1mib"]
        assert got["busbw_mape_lt_1mib_prior"] == base["busbw_mape_lt_1mib"] is None
        assert got["change_ge_1mib_pt"] == pytest.approx(100 * (got["busbw_mape_ge_1mib"] - base["busbw_mape_ge_1mib"]))
        assert got["change_lt_1mib_pt"] is None
    assert fitted["logs"][0]["change_ge_1mib_pt"] < 0  # in-sample: the fit's own log improves
    assert main(["validate-report", A, B, "--hardware", str(profile)]) == 0
    text = capsys.readouterr().out
    assert "prior >= 1 MiB" in text and "prior: h100-sxm" in text
    assert f"{fitted['logs'][1]['change_ge_1mib_pt']:+.1f} pt" in text.split(B, 1)[1].split("\n", 1)[0]
    assert main(["validate-report", A, "--hardware", "h100-sxm"]) == 0
    assert "prior" not in capsys.readouterr().out


def test_a_prior_that_is_gone_is_left_out_with_a_warning(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    prior = tmp_path / "mine.toml"
    prior.write_text((ROOT / "hardware_profiles" / "h100-sxm.toml").read_text())
    profile = tmp_path / "cal.toml"
    assert main(["calibrate", A, "--hardware", str(prior), "-o", str(profile), "-q", "--bootstrap", "0"]) == 0
    capsys.readouterr()
    assert report(capsys, [A, "--hardware", profile])["prior"] == "h100-sxm"
    prior.unlink()
    assert main(["validate-report", A, "--hardware", str(profile), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["prior"] is None and json.loads(out)["logs"][0]["busbw_mape_ge_1mib_prior"] is None
    assert "is not a file here" in err and "\n" not in err.strip()
