"""What a second newcomer's walk through the commands outside the collectives found (session 18, lane newuser2): each
test failed on main at 1e7af6d. Bad input ends with exit 2 and one line naming the file, the field and the allowed
values (tests/_cli.py run_bad); the table is in docs/collectives-history.md, "Session 18 (newuser2)"."""

from __future__ import annotations

import functools

import pytest

import _cli
from moesim.cli import main
from moesim.paths import builtin_dir

run_bad = functools.partial(_cli.run_bad, timeout_s=30.0)
SCENARIO = builtin_dir("scenarios") / "switch-base-128-tpu-v3.toml"
LAYERS = "tests/calibrate/data/harness-cpu-clock-layers.jsonl"


def scenario_with(tmp_path, old: str, new: str, name: str = "s.toml"):
    text = SCENARIO.read_text()
    assert old in text, old
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


# A scenario's unknown hardware name was reported at field 'hardware_profile', a key no file or flag has.
def test_unknown_hardware_in_a_scenario_names_its_key(tmp_path, capsys):
    path = scenario_with(tmp_path, 'hardware = "tpu-v3"', 'hardware = "tpu-v9"')
    line = run_bad(capsys, ["estimate", path], str(path), "field 'hardware'", "'tpu-v9'", "(allowed: ")
    assert "hardware_profile" not in line, line


# A scenario naming a model or hardware file that is not there: the line named only that path ("myhw.toml: no such
# file"), not the scenario that names it, its key, or where a relative path is looked for.
@pytest.mark.parametrize("old,new,key", [
    ('hardware = "tpu-v3"', 'hardware = "myhw.toml"', "hardware"),
    ('model = "switch-base-128"', 'model = "models/mine.toml"', "model"),
])
def test_missing_file_a_scenario_names_says_which_scenario_and_key(tmp_path, capsys, old, new, key):
    path = scenario_with(tmp_path, old, new)
    typed = new.split('"')[1]
    run_bad(capsys, ["estimate", path], str(path), f"field '{key}'", f"no such file '{typed}'",
            str(tmp_path / typed))


def test_missing_hardware_flag_file_keeps_the_flag(tmp_path, capsys):
    run_bad(capsys, ["estimate", SCENARIO, "--hardware", tmp_path / "nope.toml"], "field '--hardware'", "no such file")


# --devices the profile cannot hold (an odd count of TPU v3 cores) was blamed on the scenario file's 'devices'.
def test_devices_flag_the_profile_cannot_hold_is_the_flags_error(capsys):
    line = run_bad(capsys, ["estimate", "switch-base-128-tpu-v3", "--devices", "31"], "field '--devices'",
                   "2 devices per chip")
    assert ".toml" not in line, line


# A degree out of range typed in --layout was reported at 'layout.dp' (a file key), where every other --layout error
# names the flag and the KEY=VALUE typed; tp=0 was "cannot infer dp: ... tp·cp·pp = 0·1·1".
@pytest.mark.parametrize("layout,typed", [("dp=-32", "dp=-32"), ("tp=0", "tp=0"), ("dp=32,ep=32,etp=0", "etp=0"),
                                          ("pp=-1", "pp=-1")])
def test_layout_flag_degree_out_of_range_names_the_flag(capsys, layout, typed):
    line = run_bad(capsys, ["estimate", "switch-base-128-tpu-v3", "--layout", layout], "field '--layout'",
                   f"'{typed}'", "is out of range", "(allowed: an integer >= 1")
    assert "layout." not in line and "cannot infer" not in line, line


# The same degree out of range in the scenario's [layout] table named no file.
def test_layout_table_degree_out_of_range_names_the_file(tmp_path, capsys):
    path = scenario_with(tmp_path, "ep = 32", "ep = -32")
    run_bad(capsys, ["estimate", path], str(path), "field 'layout.ep'", "-32 is out of range")


# A results file whose every line is skipped (a harness killed mid-write, a pretty-printed file) said "every line
# blank or with a status other than 'ok'" and dropped the skip's reason with the warnings of a failed run.
@pytest.mark.parametrize("command", ["calibrate", "validate-report"])
def test_results_file_of_skipped_lines_says_why(tmp_path, capsys, command):
    bad = tmp_path / "cut.jsonl"
    bad.write_text('{"schema_version": 1, "kind": ')
    argv = [command, bad, "--hardware", "cpu-localhost"] + (["-o", tmp_path / "c.toml"] if command == "calibrate"
                                                            else [])
    line = run_bad(capsys, argv, str(bad), "no usable records", "line 1: skipped a line cut short", "1 skipped")
    assert "status other than" not in line, line
    assert not (tmp_path / "c.toml").exists()


# A JSON array of records (json.dump of a list) was read as an nccl-tests log: "no nccl-tests result rows found".
def test_json_array_of_records_is_named_as_such(tmp_path, capsys):
    bad = tmp_path / "records.json"
    bad.write_text('[\n  {"schema_version": 1}\n]\n')
    line = run_bad(capsys, ["calibrate", bad, "--hardware", "cpu-localhost", "-o", tmp_path / "c.toml"], str(bad),
                   "field 'measurements'", "a JSON array", "one JSON object per line")
    assert "nccl-tests result rows" not in line, line


# An integer bound was printed through %g: --seed -1 said "allowed: ... <= 9.22337e+18".
def test_seed_bound_is_printed_whole(capsys):
    run_bad(capsys, ["simulate", "switch-base-128-tpu-v3", "--seed", "-1"], "field '--seed'",
            f"<= {2**63 - 1})")


# report --results-hardware with an unknown name was reported at field 'hardware_profile'.
def test_results_hardware_unknown_name_names_the_flag(tmp_path, capsys):
    line = run_bad(capsys, ["report", "switch-base-128-tpu-v3", "--results", LAYERS, "--results-hardware", "tpu-v9",
                            "-o", tmp_path / "r.html"], "field '--results-hardware'", "'tpu-v9'")
    assert "hardware_profile" not in line, line
    assert not (tmp_path / "r.html").exists()


# estimate --ops on a pipelined layout lists the first stage's layers only (DeepSeek-V3: its three dense layers, no
# MoE operator); the help said so, the printed table did not.
def test_ops_table_says_which_stage_it_lists(capsys):
    assert main(["estimate", "deepseek-v3-h800", "--ops"]) == 0
    out = capsys.readouterr().out
    head = out.split("\noperators (")[1].splitlines()[0]
    assert "first pipeline stage's layers" in head and "last stage's head" in head, head


# `moesim model Mixtral-8x7B-v0.1`, a downloaded HuggingFace folder typed without a slash, was looked up as a built-in
# name ("unknown model"); the folder's hint (give its config.json) was reached only with a slash. A built-in name still
# wins over a folder of the same name.
def test_model_folder_without_a_slash_gets_the_folder_hint(tmp_path, capsys, monkeypatch):
    (tmp_path / "Mixtral-8x7B-v0.1").mkdir()
    (tmp_path / "Mixtral-8x7B-v0.1" / "config.json").write_text('{"model_type": "mixtral"}')
    (tmp_path / "mixtral-8x7b").mkdir()
    monkeypatch.chdir(tmp_path)
    run_bad(capsys, ["model", "Mixtral-8x7B-v0.1"], "Mixtral-8x7B-v0.1", "field 'model'", "is a directory",
            "give its config.json")
    assert main(["model", "mixtral-8x7b"]) == 0
    assert "model mixtral-8x7b" in capsys.readouterr().out


# An nccl-tests log may start with a launcher's tag ('[cetus-g88-094] running nccl test ...'): still a log.
def test_log_starting_with_a_bracket_tag_is_still_a_log():
    from moesim.calibrate.records import read_measurements

    read = read_measurements(["tests/data/nccl/h200-cetus-2node-cut_all_reduce_perf.log"])
    assert read.collectives and not read.layers


# `moesim sweep ... -o results.json` wrote CSV into the .json file (the README offers "a table, CSV or JSON"; -o is the
# CSV, --json the JSON); refused before the sweep runs, nothing written.
def test_sweep_output_named_json_is_refused_before_the_sweep(tmp_path, capsys):
    out = tmp_path / "results.json"
    run_bad(capsys, ["sweep", "switch-base-128-tpu-v3", "--vary", "experts=64", "-o", out], str(out),
            "field '--output'", "-o writes CSV", "--json")
    assert not out.exists()


# `simulate s.toml --trace s.toml` wrote the trace over the scenario, `sweep s.toml -o s.toml` the CSV; `report
# --results r.jsonl -o r.jsonl` is refused the same way (before its .html check). The input file is left as it was.
@pytest.mark.parametrize("argv", [
    ["simulate", "{s}", "--steps", "1", "--trace", "{s}"],
    ["sweep", "{s}", "--vary", "experts=64", "-o", "{s}"],
    ["report", "{s}", "--results", "{r}", "-o", "{r}"],
])
def test_output_over_an_input_file_is_refused(tmp_path, capsys, argv):
    scenario = scenario_with(tmp_path, "devices = 32", "devices = 32")
    results = tmp_path / "r.jsonl"
    results.write_bytes(open(LAYERS, "rb").read())
    before = scenario.read_bytes(), results.read_bytes()
    argv = [a.format(s=scenario, r=results) for a in argv]
    run_bad(capsys, argv, "writing there would overwrite it", "(allowed: a path that is not one of the command's input")
    assert (scenario.read_bytes(), results.read_bytes()) == before


# The --layout wrapper above prints what was typed: an order as tp-ep-pp, not Python's tuple.
def test_layout_flag_bad_order_is_shown_as_typed(capsys):
    line = run_bad(capsys, ["estimate", "mixtral-8x7b-h100", "--layout", "dp=16,ep=8,pp=4,order=tp-ep-pp"],
                   "field '--layout'", "'order=tp-ep-pp'", "order must list each of tp, ep, dp, pp once")
    assert "('tp'" not in line, line


# estimate's head named no pipeline schedule: DeepSeek-V3's DualPipe was in no line of its text output (simulate's head
# says "micro-batches 16 (interleaved)").
def test_estimate_head_names_the_pipeline_schedule(capsys):
    assert main(["estimate", "deepseek-v3-h800"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert "micro-batches 120 (dualpipe)" in head, head


# `--devices 12` re-derives the layout from the file's; the batch it cannot split was blamed on the file's 'layout'
# (a table the user did not touch), in estimate, simulate and report alike.
@pytest.mark.parametrize("command", [["estimate"], ["simulate", "--steps", "1"], ["report", "-o", "{tmp}/r.html"]])
def test_layout_rederived_for_devices_flag_names_the_flag(tmp_path, capsys, command):
    argv = [command[0], "mixtral-8x7b-h100", "--devices", "12"] + [a.format(tmp=tmp_path) for a in command[1:]]
    line = run_bad(capsys, argv, "field '--devices'", "impossible layout", "dp·micro_batches = 3·16")
    assert "field 'layout'" not in line, line
