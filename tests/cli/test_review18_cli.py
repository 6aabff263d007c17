"""What session 18's review found in the CLI (lane review18): each test failed on main at
the review's branch point. The list is in docs/collectives-history.md, "Session 18 (review)"."""

from __future__ import annotations

import functools
import os
import shutil

import pytest

import _cli
from moesim.cli import main
from moesim.paths import builtin_dir

run_bad = functools.partial(_cli.run_bad, timeout_s=30.0)
SCENARIO = builtin_dir("scenarios") / "switch-base-128-tpu-v3.toml"
PROFILE = builtin_dir("hardware_profiles") / "tpu-v3.toml"


# `simulate s --hardware hw.toml --trace hw.toml` wrote the trace over the hardware profile it read, and `sweep s
# --hardware hw.toml -o hw.toml` the CSV: the generic check compared the output with the scenario, --routing and
# --results only. Also through a symbolic link and a relative path. The profile is left as it was.
@pytest.mark.parametrize("argv", [
    ["simulate", "{s}", "--hardware", "{h}", "--steps", "1", "--trace", "{h}"],
    ["simulate", "{s}", "--hardware", "{h}", "--steps", "1", "--trace", "{link}"],
    ["simulate", "{s}", "--hardware", "{h}", "--steps", "1", "--trace", "hw.toml"],
    ["sweep", "{s}", "--hardware", "{h}", "--vary", "experts=64", "-o", "{h}"],
])
def test_output_over_the_hardware_file_is_refused(tmp_path, capsys, monkeypatch, argv):
    profile = tmp_path / "hw.toml"
    shutil.copyfile(PROFILE, profile)
    os.symlink(profile, tmp_path / "link.toml")
    before = profile.read_bytes()
    monkeypatch.chdir(tmp_path)
    argv = [a.format(s=SCENARIO, h=profile, link=tmp_path / "link.toml") for a in argv]
    run_bad(capsys, argv, "is the hardware file given", "writing there would overwrite it")
    assert profile.read_bytes() == before


# `estimate --ops` has listed the first stage's input embedding since b200val (rows "embedding"), while its title and
# the flag's help, written by newuser2 beside it, named only the first stage's layers and the last stage's head.
def test_estimate_ops_title_and_help_name_the_embedding_rows(capsys):
    assert main(["estimate", "llama3-70b-l12-b200-tp8", "--ops"]) == 0
    out = capsys.readouterr().out.split("operators (per device")[1]
    assert any(line.startswith("embedding ") for line in out.splitlines())
    assert out.splitlines()[0].startswith("; the first pipeline stage's layers and input embedding and the last "
                                          "stage's head;"), out.splitlines()[0]
    with pytest.raises(SystemExit):
        main(["estimate", "--help"])
    assert "(first stage's layers and embedding, last stage's head;" in " ".join(capsys.readouterr().out.split())


# A scenario file naming its own profile or model file (`hardware = "hw.toml"`, `model = "m.toml"`, beside it):
# `simulate s.toml --trace hw.toml` wrote the trace over the profile the scenario reads. The check reads the scenario's
# two keys as its load resolves them (beside the scenario, then the current folder); --hardware given, the scenario's
# profile is not read and not guarded.
@pytest.mark.parametrize("key, argv", [
    ("hardware", ["simulate", "{s}", "--steps", "1", "--trace", "hw.toml"]),
    ("model", ["sweep", "{s}", "--vary", "experts=64", "-o", "{d}/m.toml"]),
])
def test_output_over_a_file_the_scenario_names_is_refused(tmp_path, capsys, monkeypatch, key, argv):
    shutil.copyfile(PROFILE, tmp_path / "hw.toml")
    shutil.copyfile(builtin_dir("models") / "switch-base-128.toml", tmp_path / "m.toml")
    text = SCENARIO.read_text().replace('hardware = "tpu-v3"', 'hardware = "hw.toml"', 1)
    scenario = tmp_path / "s.toml"
    scenario.write_text(text.replace('model = "switch-base-128"', 'model = "m.toml"', 1))
    before = {p: p.read_bytes() for p in (tmp_path / "hw.toml", tmp_path / "m.toml")}
    monkeypatch.chdir(tmp_path)
    run_bad(capsys, [a.format(s=scenario, d=tmp_path) for a in argv], f"is the scenario's {key} file",
            "writing there would overwrite it")
    assert {p: p.read_bytes() for p in before} == before
    # the profile the scenario names is not read under --hardware: writing over it is the user's to choose
    assert main(["simulate", str(scenario), "--hardware", "tpu-v3", "--steps", "1", "--trace", "hw.toml"]) == 0
