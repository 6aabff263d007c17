"""Session 25 (refusals25): settings the run refuses or ignores, said as the run says them.

(1) Megatron-LM refuses --overlap-param-gather without the distributed optimizer (NVIDIA/Megatron-LM @ d98e8a64
megatron/training/arguments.py l.1024-1027): a scenario at zero_stage 0 is an error naming the file and field; a search
row at ZeRO 0 runs without it (specs/param_overlap.py row_overrides). (2) sail-sg's zero bubble asserts
overlap_grad_reduce off with the distributed optimizer (zero-bubble-pipeline-parallelism @ 39f2c186
megatron/core/zbpp_utils.py l.130-132): priced as off, now said in the estimate's warnings. (3) `sweep`'s best-layout
column is the line `estimate --layout` takes, edp included."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from moesim import estimate
from moesim.cli import main
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]
MIXTRAL = ROOT / "scenarios" / "mixtral-8x7b-h100.toml"
ODD_SCENARIO = ROOT / "tests" / "search" / "data" / "odd-moe-12-h100.toml"


def _with_zero(tmp_path, zero: int) -> Path:
    text = MIXTRAL.read_text()
    assert re.search(r"(?m)^zero_stage = 1\b", text)
    path = tmp_path / f"mixtral-zero{zero}.toml"
    path.write_text(re.sub(r"(?m)^zero_stage = 1\b.*$", f"zero_stage = {zero}\noverlap_param_gather = true", text))
    return path


def test_overlap_param_gather_at_zero0_names_the_file_field_and_rule(tmp_path, capsys):
    path = _with_zero(tmp_path, 0)
    assert main(["estimate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "training.overlap_param_gather" in err
    assert "distributed optimizer" in err and "d98e8a64 arguments.py l.1024-1027" in err
    assert "Traceback" not in err
    assert main(["estimate", str(_with_zero(tmp_path, 1))]) == 0  # the distributed optimizer: runs
    capsys.readouterr()


def test_a_search_row_at_zero0_runs_without_overlap_param_gather():
    """Rows at ZeRO 0 price as the same search without the key (it moved nothing there: estimate/param_gather.py
    gathers_after_step), their training has it off; rows at ZeRO 1 keep it."""
    from moesim.search import search

    sc = load_scenario("mixtral-8x7b-h100", devices=16)
    sc = dataclasses.replace(sc, search=dataclasses.replace(sc.search, zero_stages=(0, 1)))
    on = dataclasses.replace(sc, training=dataclasses.replace(sc.training, overlap_param_gather=True))
    with_key, without = search(on, threads=1), search(sc, threads=1)

    def steps(result, zero):
        c = result.candidates
        return sorted(float(result.step_time_s[i]) for i in range(len(c)) if int(c.zero_stage[i]) == zero)

    zero0 = steps(with_key, 0)
    assert zero0 and zero0 == steps(without, 0)
    c = with_key.candidates
    rows = {int(c.zero_stage[i]): i for i in range(len(c))}
    assert c.training(rows[0], on.training).overlap_param_gather is False
    assert c.training(rows[1], on.training).overlap_param_gather is True
    # and the row says so (its estimate's warnings); the ZeRO 1 row says nothing of it
    (zero0,), (zero1,) = with_key.estimates([rows[0]]), with_key.estimates([rows[1]])
    said = [w for w in zero0.warnings if w.startswith("training.overlap_param_gather = true not run")]
    assert len(said) == 1 and "zero_stage 0" in said[0]
    assert not [w for w in zero1.warnings if "not run on this row" in w]


def _zero_bubble(schedule: str, zero: int, overlap_grad_reduce: bool):
    sc = load_scenario("mixtral-8x7b-h100", devices=16)
    return dataclasses.replace(sc, training=dataclasses.replace(
        sc.training, pipeline_schedule=schedule, zero_stage=zero, overlap_grad_reduce=overlap_grad_reduce,
        global_batch_sequences=64, micro_batches=8))


@pytest.mark.parametrize("schedule", ["zb-h1", "zb-v"])
def test_zero_bubble_says_overlap_grad_reduce_is_priced_off(schedule):
    layout = Layout(dp=4, tp=1, ep=4, pp=4)
    on = estimate(_zero_bubble(schedule, 1, True), layout)
    off = estimate(_zero_bubble(schedule, 1, False), layout)
    said = [w for w in on.warnings if w.startswith("training.overlap_grad_reduce")]
    assert len(said) == 1 and "zbpp_utils.py l.130-132" in said[0] and "priced as off" in said[0]
    assert not [w for w in off.warnings if "overlap_grad_reduce" in w]
    assert on.step_time_s == off.step_time_s  # said, not priced: the same step either way
    at_zero0 = estimate(_zero_bubble(schedule, 0, True), layout)
    assert [w for w in at_zero0.warnings if "runtime.py l.195" in w]  # no assert there, still synced after
    plain = estimate(_zero_bubble("1f1b", 1, True), layout)
    assert not [w for w in plain.warnings if "overlap_grad_reduce" in w]


def test_sweep_best_layout_column_is_the_estimate_layout_line(capsys):
    from moesim.cli.sweep_cmd import layout_column, render

    assert main(["sweep", str(ODD_SCENARIO), "--vary", "seq_len=512", "--workers", "1", "--json"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    (point,) = sweep["points"]
    line = layout_column(point["layout"])
    assert f" edp={point['layout']['edp']} " in line and line in render(sweep)
    assert main(["estimate", str(ODD_SCENARIO), "--layout", line, "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["step_time_s"] == pytest.approx(point["step_time_s"], rel=1e-12)
    dense = dict(point["layout"])
    dense.pop("capacity_factor")
    assert "cf=" not in layout_column(dense)  # a dense model's layout has none: no "cf=-" that --layout refuses
