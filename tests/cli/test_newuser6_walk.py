"""What a sixth newcomer's walk through the brief's first use, choosing a layout before training, found (session 23,
lane newuser6): each test failed on main at abcb3d6. The log is in docs/collectives-history.md, "Session 23
(newuser6)"."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from moesim.cli import main
from moesim.search.overrides import parse_value
from moesim.search.rank import search
from moesim.search.sweep import parse_vary, run_sweep
from moesim.specs.load import load_scenario
from tests.cli.test_newuser5_walk import error_of  # one line, exit 2, no traceback

ROOT = Path(__file__).resolve().parent.parent.parent


def scenario_file(tmp_path: Path, base: str, search_lines: str, name: str = "s.toml") -> str:
    """A bundled scenario (one without a [search] table) with a [search] table of `search_lines` appended."""
    text = (ROOT / "scenarios" / f"{base}.toml").read_text()
    assert "[search]" not in text
    path = tmp_path / name
    path.write_text(f"{text}\n[search]\n{search_lines}\n")
    return str(path)


# --- A fixed tp (a customer's checkpoint format, a pipeline the framework runs): main's [search] had no degree
# lists, `--vary layout.tp` was refused, so the only answer was one `estimate --layout` per guess.

def test_search_ranks_only_the_fixed_degrees_and_their_best_is_the_full_searchs():
    full = search(load_scenario("switch-base-128-tpu-v3"))
    found = search(with_search(full.scenario, tensor_parallel=(2,), pipeline_parallel=(1, 2)))
    assert found.ranked and set(found.candidates.tp.tolist()) == {2}
    assert set(found.candidates.pp.tolist()) <= {1, 2}
    # the same layouts, the same figures: the fixed search's best is the full search's best among them
    mask = (full.candidates.tp == 2) & np.isin(full.candidates.pp, (1, 2))
    first = int(np.flatnonzero(mask)[0])
    assert found.step_time_s[0] == full.step_time_s[first]
    assert found.ranked == int(mask.sum())
    assert found.considered < full.considered


def with_search(scenario, **search_fields):
    """`scenario` with its SearchSpace fields replaced."""
    return dataclasses.replace(scenario, search=dataclasses.replace(scenario.search, **search_fields))


def test_a_fixed_expert_parallel_degree(tmp_path):
    found = search(load_scenario(scenario_file(tmp_path, "switch-base-128-tpu-v3", "expert_parallel = [32]")))
    assert found.ranked and set(found.candidates.ep.tolist()) == {32}


def test_a_degree_that_does_not_tile_the_devices_names_the_ones_that_do(tmp_path, capsys):
    path = scenario_file(tmp_path, "switch-base-128-tpu-v3", "tensor_parallel = [3]")
    err = error_of(capsys, ["search", path])
    assert "s.toml: field 'search.tensor_parallel': no layout of 32 devices has tp in [3]" in err
    assert "tp: 1, 2, 4, 8, 16, 32" in err


def test_a_fixed_degree_is_checked_against_its_range(tmp_path, capsys):
    err = error_of(capsys, ["search", scenario_file(tmp_path, "switch-base-128-tpu-v3", "pipeline_parallel = [0]")])
    assert "field 'search.pipeline_parallel[0]': 0 is out of range" in err


def test_expert_parallel_on_a_dense_model_is_refused(tmp_path, capsys):
    path = tmp_path / "dense.toml"
    path.write_text('schema_version = 1\nname = "dense"\nmodel = "llama-2-7b"\nhardware = "h100-sxm"\ndevices = 8\n'
                    '[training]\nglobal_batch_sequences = 8\n[search]\nexpert_parallel = [2]\n')
    err = error_of(capsys, ["search", path])
    assert "dense.toml: field 'search.expert_parallel': model 'llama-2-7b' has no experts" in err


def test_sweep_varies_the_fixed_tensor_parallel_degree():
    assert parse_value("search.tensor_parallel", "1+8") == (1, 8)
    swept = run_sweep(load_scenario("switch-base-128-tpu-v3"), [parse_vary("search.tensor_parallel=1,2")], workers=1)
    assert [p["layout"]["tp"] for p in swept["points"]] == [1, 2]


# --- A budget in devices and time: main gave USD per trillion tokens only where the profile has a price (four
# profiles of thirteen) and nothing in device-hours, the unit DeepSeek-V3 §1 states its run in (180K H800 GPU hours
# per trillion tokens); its cost note did not say how to give a price.

def test_search_gives_device_hours_per_trillion_tokens_with_or_without_a_price(capsys):
    scenario = load_scenario("switch-base-128-tpu-v3")
    assert scenario.hardware.price_per_device_hour_usd is None
    found = search(scenario)
    best = found.summary(0)
    tokens = scenario.training.global_batch_sequences * sum(scenario.seq_lens)
    expected = found.step_time_s[0] * scenario.devices / 3600 / tokens * 1e12
    assert best["device_hours_per_trillion_tokens"] == pytest.approx(expected, rel=1e-12)
    assert best["usd_per_trillion_tokens"] is None
    assert main(["search", "switch-base-128-tpu-v3", "--top", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"cost                          {expected:,.0f} device-hours per trillion tokens\n" in out


def test_a_priced_profile_gives_both_and_the_priceless_note_says_how_to_give_a_price(capsys):
    scenario = load_scenario("switch-base-128-tpu-v3", hardware="tpu-v4")
    best = search(scenario).summary(0)
    price = scenario.hardware.price_per_device_hour_usd
    assert best["usd_per_trillion_tokens"] == pytest.approx(best["device_hours_per_trillion_tokens"] * price)
    assert main(["search", "switch-base-128-tpu-v3", "--objective", "cost", "--top", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "--vary hardware.price_per_device_hour_usd=USD --objective cost" in out


# --- The estimate's expected dropped share on an encoder-decoder model: main gave the encoder's (its first MoE layer
# class) and warned "drops 10.4%" on a Switch-C layout the simulator reported 8.603 % expected (and 8.599 % sampled)
# for; both now weigh every MoE layer by its assignments.

@pytest.mark.parametrize("name, line", [("switch-c-2048-tpu-v3", "dp=2048,ep=2048,mb=1,zero=2,recompute=none,cf=1"),
                                        ("st-moe-32b-tpu-v3", None)])
def test_expected_drops_weigh_the_encoder_and_decoder_layers_as_the_simulator_does(name, line):
    from moesim.collectives.select import default_model
    from moesim.des.costs import build_costs
    from moesim.des.run import _expected_drops
    from moesim.estimate import estimate

    scenario = load_scenario(name, layout=line) if line else load_scenario(name)
    layout = scenario.resolve()
    costs = build_costs(scenario, layout, scenario.training, default_model(scenario.hardware), 0.0)
    est = estimate(scenario, layout)
    assert est.moe["expected_drop_fraction_uniform"] == pytest.approx(_expected_drops(costs), rel=1e-12)


def test_the_drop_warning_on_switch_c_zb_v_gives_the_simulators_share():
    from moesim.estimate import estimate

    scenario = load_scenario("switch-c-2048-tpu-v3", hardware="tpu-v4", devices=1024,
                             layout="dp=256 tp=1 ep=256 pp=4 etp=1 order=tp-ep-dp-pp mb=2 zero=2 recompute=none cf=1 "
                                    "pipeline_schedule=zb-v")
    est = estimate(scenario, scenario.resolve())
    assert any("drops 8.6% of token-expert assignments" in w for w in est.warnings)


# --- Interleaved on DeepSeek-V3 (61 layers): main's sweep said "no valid layout" and its search "num_layers % (pp·vp)
# != 0" without a word that Megatron runs uneven chunks (--pipeline-model-parallel-layout) and that `estimate` prices
# them from a layout's pipeline_layout (dsv3 on 256 GB200, pp 8 vp 2, 'Et*3|(t*4|)*14t*2mL': 5.318 s).

def test_the_interleaved_layer_rule_points_at_pipeline_layout():
    from moesim.search.enumerate import REASONS
    from moesim.search.sweep import failed_status

    assert "pipeline_layout" in REASONS["interleaved_layers_not_divisible_by_pp_vp"]
    status = failed_status({"heads_not_divisible_by_tp": 3, "interleaved_layers_not_divisible_by_pp_vp": 9})
    assert "most often interleaved_layers_not_divisible_by_pp_vp" in status
    assert "`moesim estimate --layout` prices uneven chunks from pipeline_layout" in status
    assert "pipeline_layout" not in failed_status({"heads_not_divisible_by_tp": 3, "interleaved_needs_pp_2": 9})


# --- A memory limit in GiB ("keep under 60 GiB a GPU"): main took only memory_headroom_fraction, a share of HBM the
# user had to work out (60 GiB on an H100: 0.195).

def test_a_memory_limit_in_gib_caps_the_usable_memory(tmp_path):
    from moesim.estimate import estimate

    text = (ROOT / "scenarios" / "mixtral-8x7b-h100.toml").read_text().replace("[training]\n",
                                                                               "[training]\nmemory_limit_gib = 40\n")
    path = tmp_path / "limit.toml"
    path.write_text(text)
    limited, free = load_scenario(str(path)), load_scenario("mixtral-8x7b-h100")
    found = search(limited)
    assert found.memory_capacity_bytes == 40 * 2**30 < search(free).memory_capacity_bytes
    assert found.ranked and np.all(found.memory_bytes_per_device <= 40 * 2**30)
    est = estimate(free, free.resolve())
    assert est.fits_in_memory and est.memory_bytes_per_device["total"] > 40 * 2**30
    assert not estimate(limited, limited.resolve()).fits_in_memory
    # a limit above the headroom's usable memory changes nothing
    roomy = dataclasses.replace(free, training=dataclasses.replace(free.training, memory_limit_gib=1000.0))
    assert search(roomy).memory_capacity_bytes == search(free).memory_capacity_bytes


def test_a_memory_limit_is_checked_and_varied(tmp_path, capsys):
    text = (ROOT / "scenarios" / "mixtral-8x7b-h100.toml").read_text().replace("[training]\n",
                                                                               "[training]\nmemory_limit_gib = 0\n")
    path = tmp_path / "zero.toml"
    path.write_text(text)
    err = error_of(capsys, ["estimate", path])
    assert "field 'training.memory_limit_gib': 0.0 is out of range" in err
    assert parse_value("training.memory_limit_gib", "none") is None
    assert parse_value("training.memory_limit_gib", "60") == 60.0
