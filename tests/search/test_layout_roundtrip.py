"""search → estimate round-trip (issue #14 item 1): every field search prints is a --layout key, and
search's `layout_arg` pasted into `estimate --layout` gives the same figures."""

from __future__ import annotations

import pytest

from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.paths import builtin_names
from moesim.search.report import search_report
from moesim.specs.layout import layout_arg, parse_layout_text
from moesim.specs.load import load_scenario

SCENARIOS = builtin_names("scenarios")


@pytest.mark.parametrize("name", SCENARIOS)
def test_top_results_round_trip_to_identical_figures(name):
    report = search_report(load_scenario(name), top=3)
    assert report["results"], name
    for res in report["results"]:
        scenario = load_scenario(name, layout=res["layout_arg"])
        est = estimate(scenario, scenario.resolve(source="--layout"))
        assert est.step_time_s == res["step_time_s"] == res["estimate"]["step_time_s"]
        assert est.memory_bytes_per_device["total"] == res["memory_bytes_per_device"]
        assert est.mfu == res["mfu"] and est.tokens_per_s == res["tokens_per_s"]
        assert est.layout_arg == res["layout_arg"]


def test_the_printed_line_with_spaces_is_accepted_as_it_stands():
    line = "dp=1024 tp=2 ep=2048 pp=1 etp=1 edp=1 order=tp-ep-dp-pp mb=1 zero=2 recompute=none cf=1"
    scenario = load_scenario("switch-c-2048-tpu-v3", layout=line)
    assert (scenario.training.zero_stage, scenario.training.micro_batches, scenario.training.recompute,
            scenario.training.capacity_factor) == (2, 1, "none", 1.0)
    assert scenario.resolve().describe() == "dp=1024,tp=2,ep=2048,pp=1"


def test_layout_arg_parses_back_to_the_same_keys():
    lay = {"dp": 8, "tp": 2, "ep": 4, "pp": 2, "etp": 1, "edp": 4, "order": ["tp", "dp", "ep", "pp"],
           "first_stage_layers": 3, "micro_batches": 4, "zero_stage": 1, "recompute": "selective",
           "capacity_factor": 1.25}
    back = parse_layout_text(layout_arg(lay))
    assert back == {"dp": 8, "tp": 2, "ep": 4, "pp": 2, "etp": 1, "edp": 4, "order": ("tp", "dp", "ep", "pp"),
                    "first_stage_layers": 3, "micro_batches": 4, "zero_stage": 1, "recompute": "selective",
                    "capacity_factor": 1.25}
    assert parse_layout_text("dp=8 dropless")["capacity_factor"] is None
    assert parse_layout_text("dp=8,cf=dropless")["capacity_factor"] is None


def test_wrong_edp_and_bad_options_are_one_line_errors():
    with pytest.raises(SpecError, match="edp = 2 but tp·dp/"):
        load_scenario("switch-c-2048-tpu-v3", layout="dp=2048,ep=2048,edp=2").resolve()
    with pytest.raises(SpecError, match=r"field '--layout': 'zero=5': 5 is out of range \(allowed: an integer >= 0 and <= 3\)$"):
        load_scenario("switch-c-2048-tpu-v3", layout="dp=2048,zero=5")
    with pytest.raises(SpecError, match="needs a dropless model"):
        load_scenario("switch-c-2048-tpu-v3", layout="dp=2048 dropless")
    with pytest.raises(SpecError, match="not a number or 'dropless'"):
        parse_layout_text("cf=lots")


def test_scenario_layout_table_takes_search_keys(tmp_path):
    text = (tmp_path / "s.toml")
    base = open(load_scenario("switch-base-128-tpu-v3").file, encoding="utf-8").read()
    base = "\n".join(line for line in base.splitlines() if not line.startswith(("micro_batches", "zero_stage", "recompute")))
    text.write_text(base.split("[layout]")[0] + "[layout]\ndp = 32\nep = 32\nedp = 1\nmb = 2\nzero = 2\n"
                    "recompute = \"selective\"\ncf = 1.25\n", encoding="utf-8")
    scenario = load_scenario(str(text))
    assert (scenario.training.micro_batches, scenario.training.zero_stage, scenario.training.recompute,
            scenario.training.capacity_factor) == (2, 2, "selective", 1.25)
    text.write_text(base.split("[layout]")[0].replace("[training]", "[training]\nzero_stage = 1") +
                    "[layout]\ndp = 32\nzero = 2\n", encoding="utf-8")
    with pytest.raises(SpecError, match="contradicts training.zero_stage = 1"):
        load_scenario(str(text))
