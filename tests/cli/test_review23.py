"""Session 23 (review23): what a second reading of session 23's merges found wrong; each test failed on main at
b6808fd but the one marked as guarding the fix's other branch. The log is in docs/collectives-history.md,
"Session 23 (review23)"."""

from __future__ import annotations

import pytest

from moesim.errors import SpecError
from moesim.search import sweep as sweep_module
from moesim.search.sweep import parse_vary, run_sweep
from moesim.specs.load import load_scenario
from tests.cli.test_newuser5_walk import error_of  # one line, exit 2, no traceback
from tests.cli.test_newuser6_walk import scenario_file


def test_the_error_names_the_degree_list_no_tiling_has(tmp_path, capsys):
    # tp 2 tiles 32 devices; ep 3 does not: main named search.tensor_parallel (the first list), the one that is fine
    path = scenario_file(tmp_path, "switch-base-128-tpu-v3", "tensor_parallel = [2]\nexpert_parallel = [3]")
    err = error_of(capsys, ["search", path])
    assert "field 'search.expert_parallel': no layout of 32 devices has tp in [2], ep in [3]" in err


def test_lists_that_each_tile_but_not_together_name_the_first(tmp_path, capsys):
    # (guards the fix's other branch; passed on main too) tp 16 and pp 4 each tile 32 devices, not together (64)
    path = scenario_file(tmp_path, "switch-base-128-tpu-v3", "tensor_parallel = [16]\npipeline_parallel = [4]")
    err = error_of(capsys, ["search", path])
    assert "field 'search.tensor_parallel': no layout of 32 devices has tp in [16], pp in [4]" in err


def test_a_sweep_point_whose_fixed_degree_tiles_nothing_fails_before_any_point_is_priced(monkeypatch):
    # main priced the tp 1 point, then ended the whole sweep on the tp 3 point's error, raised inside its search
    def priced(*args, **kwargs):
        raise AssertionError("a point was priced before the bad point was refused")

    monkeypatch.setattr(sweep_module, "map_items", priced)
    with pytest.raises(SpecError, match=r"field 'search.tensor_parallel': no layout of 32 devices has tp in \[3\]"):
        run_sweep(load_scenario("switch-base-128-tpu-v3"), [parse_vary("search.tensor_parallel=1,3")], workers=1)


def test_a_device_sweep_under_a_fixed_degree_names_every_point_it_does_not_tile(tmp_path):
    path = scenario_file(tmp_path, "switch-base-128-tpu-v3", "tensor_parallel = [32]")
    with pytest.raises(SpecError, match=r"2 of the 3 points do not apply: no layout of 8 devices has tp in \[32\] "
                                        r"\| no layout of 16 devices has tp in \[32\]"):
        run_sweep(load_scenario(path), [parse_vary("devices=8,16,32")], workers=1)


def test_a_sweep_gives_the_degree_lists_back_their_default_every_degree(tmp_path, capsys):
    # main refused 'none' ("'none' is not an integer") on the three degree lists, whose default is the empty list (every
    # degree the devices allow), so a sweep could not set a fixed tp beside the free search
    from moesim.cli import main
    from moesim.search.overrides import parse_value, value_text

    assert [parse_value(f"search.{key}", "none") for key in ("tensor_parallel", "pipeline_parallel",
                                                            "expert_parallel")] == [(), (), ()]
    assert value_text(()) == "none"
    path = scenario_file(tmp_path, "switch-base-128-tpu-v3", "tensor_parallel = [2]")
    swept = run_sweep(load_scenario(path), [parse_vary("search.tensor_parallel=2,none")], workers=1)
    fixed, free = swept["points"]
    assert fixed["layout"]["tp"] == 2 and free["point"] == {"search.tensor_parallel": ()}
    assert free["ranked"] > fixed["ranked"] and free["step_time_s"] <= fixed["step_time_s"]
    assert main(["sweep", path, "--vary", "search.tensor_parallel=none", "--workers", "1", "-q"]) == 0
    assert "search.tensor_parallel=none" in capsys.readouterr().out


def test_the_expert_bias_covers_fc2s_whole_output_under_expert_tensor_parallelism():
    # Megatron-Core adds the bias to FC2's output (Megatron-LM core_v0.17.0 moe/experts.py l.387-398), the etp group's
    # tokens: groups x rows = slots·etp rows of h. main priced slots·h, half of it at etp 2.
    from moesim.ops import layer
    from moesim.ops.layer import LayerOps
    from tests.ops.test_expert_bias import GPT_OSS_L6

    sc = load_scenario(str(GPT_OSS_L6))
    h, slots = sc.model.d_model, 16384.0
    per_element = layer.EXPERT_BIAS_FWD_FP32_BYTES + layer.EXPERT_BIAS_FWD_Q_PASSES * sc.training.bytes_of("activation")
    for etp in (1.0, 2.0, 4.0):
        ops = {op.name: op for op in LayerOps(sc.model, sc.training, 1.0, 1.0, 8.0, etp).experts(slots)}
        groups, rows, n, _ = ops["expert_fc2"].shape
        assert groups * rows == slots * etp and n == h
        assert ops["expert_fc2_bias"].bytes == pytest.approx(per_element * groups * rows * h)
