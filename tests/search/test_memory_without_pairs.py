"""Session 20 (warmspeed): a batch without a DualPipe row skips the pair columns' gathers in stage memory
(moesim/estimate/device_state.py), and stage memory reads each candidate's fullest stage by one flat take. Its
figures must be those the batch gets beside DualPipe rows (where the gathers run), bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np

from moesim.collectives.select import model_for
from moesim.estimate import evaluate
from moesim.estimate.candidates import PIPELINE_SCHEDULES
from moesim.search.enumerate import enumerate_layouts
from moesim.specs.load import load_scenario

from tests.conftest import ROOT


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(np.asarray(a, dtype=float)).tobytes()


def test_memory_without_a_dualpipe_row_is_the_memory_beside_one():
    scenario = load_scenario(str(ROOT / "scenarios" / "mixtral-8x7b-h100.toml"))
    scenario = dataclasses.replace(scenario, search=dataclasses.replace(
        scenario.search, pipeline_schedules=("1f1b", "dualpipe")))
    cands = enumerate_layouts(scenario).candidates
    pp = np.asarray(cands.pp)
    deep = np.flatnonzero(pp == 4)  # one pipeline degree: one stage layout for the whole batch
    dual = deep[cands.schedule[deep] == PIPELINE_SCHEDULES.index("dualpipe")]
    plain = deep[cands.schedule[deep] != PIPELINE_SCHEDULES.index("dualpipe")]
    assert len(dual) and len(plain)  # the mixed batch takes the gathering path, the plain one the other
    model = model_for(scenario)
    mixed = evaluate(scenario, cands.take(deep), model, breakdown=False)
    alone = evaluate(scenario, cands.take(plain), model, breakdown=False)
    rows = np.flatnonzero(np.isin(deep, plain))  # the plain rows' positions in the mixed batch
    assert _bits(alone.memory_total_bytes) == _bits(mixed.memory_total_bytes[rows])
    assert _bits(alone.memory_stage) == _bits(mixed.memory_stage[rows])
    assert list(alone.memory) == list(mixed.memory)
    for part, value in alone.memory.items():
        assert _bits(value) == _bits(mixed.memory[part][rows]), part
    assert _bits(alone.step_time_s) == _bits(mixed.step_time_s[rows])
