"""CLI smoke tests over every shipped data file, JSON contracts, and bad input → exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from moesim.cli import main
from moesim.paths import builtin_names

ESTIMATE_KEYS = {"step_time_s", "compute_time_s", "communication_time_s", "communication",
                 "memory_bytes_per_device", "fits_in_memory", "mfu", "tokens_per_s", "layout"}
MODEL_KEYS = {"total_params", "active_params", "forward_flops_per_token", "training_flops_per_token"}


def run_json(capsys, *argv):
    code = main(list(argv) + ["--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


@pytest.mark.parametrize("name", builtin_names("scenarios"))
def test_estimate_every_scenario(capsys, name):
    data = run_json(capsys, "estimate", name)
    assert ESTIMATE_KEYS <= set(data)
    assert "total" in data["memory_bytes_per_device"]
    for entry in data["communication"].values():
        assert {"bytes_per_device", "time_s"} <= set(entry)
    assert main(["estimate", name]) == 0  # the human table renders too
    assert "step time" in capsys.readouterr().out


@pytest.mark.parametrize("name", builtin_names("models"))
def test_model_every_model(capsys, name):
    data = run_json(capsys, "model", name)
    assert MODEL_KEYS <= set(data)
    assert data["active_params"] <= data["total_params"]


def test_profiles_lists_every_profile(capsys):
    data = run_json(capsys, "profiles")
    assert {p["name"] for p in data["profiles"]} == set(builtin_names("hardware_profiles"))


def test_overrides(capsys):
    data = run_json(capsys, "estimate", "switch-c-2048-tpu-v3", "--devices", "1024", "--layout", "dp=1024,ep=1024")
    assert data["devices"] == 1024 and data["layout"]["ep"] == 1024


@pytest.mark.parametrize("argv,fragment", [
    (["model", "switch-z"], "unknown model 'switch-z'"),
    (["estimate", "switch-base-128-tpu-v3", "--layout", "dp=16,tp=4,ep=3"], "num_experts = 128 is not divisible"),
    (["estimate", "switch-base-128-tpu-v3", "--layout", "dp=x"], "not an integer"),
    (["estimate", "switch-base-128-tpu-v3", "--hardware", "tpu-v99"], "unknown hardware profile 'tpu-v99'"),
    (["estimate", "nowhere/s.toml"], "no such file"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and err.startswith("moesim: error:")


def test_malformed_scenario_file(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("schema_version = 1\nname = 'x'\nmodel = [1, 2\n")
    assert main(["estimate", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "moesim", "model", "t5-base", "--json"],
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["total_params"] == 222_903_552
