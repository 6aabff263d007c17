"""`moesim simulate`: text, JSON contract, trace file, bad input → exit 2; the report's timeline hook."""

from __future__ import annotations

import json

from moesim.cli import main

JSON_KEYS = {"step_time_s", "analytical_step_time_s", "dropped_token_fraction", "events", "wall_time_s",
             "busiest_links", "idle_time_s", "mode", "mode_reason", "engine", "simulated_devices_per_step"}


def test_simulate_json_and_trace(capsys, tmp_path):
    trace = tmp_path / "step.json"
    code = main(["simulate", "switch-base-128-tpu-v3", "--steps", "3", "--seed", "1", "--json",
                 "--trace", str(trace)])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert JSON_KEYS <= set(data)
    assert {"p50", "p99", "mean", "min", "max", "steps"} <= set(data["step_time_s"])
    assert len(data["step_time_s"]["steps"]) == 3
    events = json.loads(trace.read_text())["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert complete and all({"ts", "dur", "pid", "tid", "name"} <= set(e) for e in complete)
    names = {e["name"] for e in complete}
    assert {"router", "permute", "dispatch all-to-all", "expert FFN", "combine all-to-all", "unpermute"} <= names
    threads = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert threads == {"compute", "comm", "p2p", "grad"}
    assert data["trace"]["events"] == len(events)


def test_simulate_text(capsys):
    assert main(["simulate", "mixtral-8x7b-h100", "--steps", "1", "--expected-loads", "--layout",
                 "dp=16,ep=8,pp=4"]) == 0
    out = capsys.readouterr().out
    for text in ("step time p50 / p99", "analytical estimate", "dropped tokens", "busiest links", "events"):
        assert text in out


def test_simulate_bad_input_exits_2(capsys, tmp_path):
    assert main(["simulate", "switch-base-128-tpu-v3", "--routing", "zipf:zero"]) == 2
    assert "field '--routing'" in capsys.readouterr().err
    bad = tmp_path / "hist.csv"
    bad.write_text("1,2,3\n")
    assert main(["simulate", "switch-base-128-tpu-v3", "--routing", str(bad)]) == 2
    assert "row 1 has 3 entries but the model has 128 experts" in capsys.readouterr().err
    assert main(["simulate", "switch-base-128-tpu-v3", "--steps", "0"]) == 2


def test_report_timeline_reads_the_simulator():
    from moesim.report.simulation import simulate_timeline
    from moesim.specs.load import load_scenario

    scenario = load_scenario("switch-base-128-tpu-v3")
    events, note = simulate_timeline(scenario, scenario.resolve())
    assert events and "events of one step" in note


def test_simulate_says_which_mode_ran_and_why(capsys):
    assert main(["simulate", "switch-base-128-tpu-v3", "--steps", "2", "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "aggregated" and data["engine"] == "fast"
    assert data["simulated_devices_per_step"] == [data["simulated_devices"]] * 2
    assert data["simulated_devices"] < data["devices"] and "exact" in data["mode_reason"]
    assert main(["simulate", "switch-base-128-tpu-v3", "--steps", "1", "--mode", "full", "--quiet"]) == 0
    assert "every device, as asked (--mode full)" in capsys.readouterr().out


def test_simulate_sampler_flag(capsys):
    """`--sampler` reaches the options and the reason; moments on a capacity-bound model says it does not apply."""
    code = main(["simulate", "switch-base-128-tpu-v3", "--steps", "1", "--sampler", "moments", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["options"]["sampler"] == "moments"
    assert "moments applies to dropless loads only" in data["mode_reason"]
    assert main(["simulate", "switch-base-128-tpu-v3", "--sampler", "exact"]) == 2
    assert "invalid choice: 'exact'" in capsys.readouterr().err
