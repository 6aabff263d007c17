"""What a sixth newcomer's walk through the brief's first use, choosing a layout before training, found (session 23,
lane newuser6): each test failed on main at abcb3d6. The log is in docs/collectives-history.md, "Session 23
(newuser6)"."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from moesim.cli import main
from moesim.errors import SpecError
from moesim.search.overrides import parse_value
from moesim.search.rank import search
from moesim.search.sweep import parse_vary, run_sweep
from moesim.specs.load import load_scenario

ROOT = Path(__file__).resolve().parent.parent.parent


def scenario_file(tmp_path: Path, base: str, search_lines: str, name: str = "s.toml") -> str:
    """A bundled scenario (one without a [search] table) with a [search] table of `search_lines` appended."""
    text = (ROOT / "scenarios" / f"{base}.toml").read_text()
    assert "[search]" not in text
    path = tmp_path / name
    path.write_text(f"{text}\n[search]\n{search_lines}\n")
    return str(path)


def error_of(capsys, argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


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
