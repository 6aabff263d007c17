"""Each refusal names the flag the user typed (session 15, newuser): '--prior-weight' (was the keyword
'prior_weight'), '--nccl-op' where it contradicts the log (was no field), '--group-stride' / '--concurrent' where
they, not --devices, carry the groups past the profile (was "field 'devices'")."""

from __future__ import annotations

import pytest

from moesim.cli import main

LOG = "tests/data/nccl/h100-xxrjun-2node_alltoall_perf.log"


def one_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moesim: error: ") and "\n" not in err
    return err


@pytest.mark.parametrize("weight", ["0", "x", "-1", "inf"])
def test_prior_weight(capsys, tmp_path, weight):
    err = one_error(capsys, ["calibrate", LOG, "--hardware", "h100-sxm", "-o", str(tmp_path / "o.toml"),
                             "--prior-weight", weight])
    assert "field '--prior-weight'" in err and "(allowed: auto, > 0)" in err


def test_nccl_op_contradicting_the_log(capsys, tmp_path):
    err = one_error(capsys, ["calibrate", LOG, "--hardware", "h100-sxm", "-o", str(tmp_path / "o.toml"),
                             "--nccl-op", "all_reduce"])
    assert f"{LOG}:2: field '--nccl-op': the log measured all_to_all but all_reduce was given" in err
    assert "(allowed: all_to_all)" in err


@pytest.mark.parametrize("extra, flag", [(["--group-stride", "100"], "--group-stride"),
                                         (["--concurrent", "100"], "--concurrent")])
def test_groups_past_the_profile_name_the_flag_that_carries_them(capsys, extra, flag):
    err = one_error(capsys, ["collective", "all_reduce", "--hardware", "h100-sxm", "--devices", "16", "--bytes", "1MiB",
                             *extra])
    assert f"field '{flag}'" in err and "h100-sxm has at most 1024" in err


def test_the_same_group_inside_the_profile_still_prices(capsys):
    assert main(["collective", "all_reduce", "--hardware", "h100-sxm", "--devices", "16", "--bytes", "1MiB",
                 "--group-stride", "64"]) == 0


# Session 16 (jsonkeys): `--layout zero=5` said "field '--layout.zero_stage'" (the TrainingSpec field, not the key
# typed); a bad --routing histogram said "field 'routing'" (not the flag).
@pytest.mark.parametrize("typed, allowed", [("zero=5", "an integer >= 0 and <= 3"),
                                            ("mb=0", "an integer >= 1"),
                                            ("cf=0", "a finite number > 0"),
                                            ("schedule=x", "schedule=1f1b")])
def test_layout_option_errors_name_the_key_typed(capsys, typed, allowed):
    err = one_error(capsys, ["estimate", "scenarios/mixtral-8x7b-h100.toml", "--layout", typed])
    assert f"field '--layout': '{typed}'" in err and f"(allowed: {allowed}" in err
    assert "zero_stage" not in err and "micro_batches" not in err and "pipeline_schedule" not in err


def test_routing_file_errors_name_the_flag(capsys, tmp_path):
    bad = tmp_path / "BAD.json"
    bad.write_text('{"bad": 1}', encoding="utf-8")
    err = one_error(capsys, ["simulate", "mixtral-8x7b-h100", "--routing", str(bad), "--steps", "1", "-q"])
    assert f"{bad}: field '--routing': a histogram object needs exactly one of" in err
    err = one_error(capsys, ["simulate", "mixtral-8x7b-h100", "--routing", str(tmp_path / "none.csv"), "-q"])
    assert "field '--routing': no such file" in err
