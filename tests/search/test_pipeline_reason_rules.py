"""Session 25 (coldsearch25): pipeline_reason computes a schedule / cp / overlap rule only where some row is of its
kind (a DeepSeek-V3 search of DualPipe alone computed all seven rules over its 307 K rows). Its answer must stay the
rule list written out in full: the first rule each row breaks, -1 when none, as int64 of the rows' length."""

import dataclasses

import numpy as np
import pytest

from moesim.search.enumerate import CP_COMMS, PIPELINE_SCHEDULES, pipeline_reason
from search_fixtures import build


def _written_out(scenario, pp, tp, cp, m, schedule, vp, cp_comm):
    """Every rule over every row (specs.layout.schedule_problems' order, the Ulysses head rule, the overlap's),
    as pipeline_reason computed them before session 25."""
    layers, heads = scenario.model.num_layers, scenario.model.attention.num_heads
    code = PIPELINE_SCHEDULES.index
    inter = schedule == code("interleaved")
    fails = [inter & (layers % (pp * vp) != 0), inter & (m % pp != 0), inter & (pp < 2),
             (schedule == code("zb-v")) & (layers < 2 * pp),
             (schedule == code("dualpipe")) & ((pp % 2 != 0) | (m % 2 != 0) | (m < 2 * pp)),
             (cp > 1) & (cp_comm == CP_COMMS.index("a2a")) & (heads % (tp * cp) != 0),
             (pp > 1) & ~inter & bool(scenario.training.moe_a2a_overlap)]
    reason = np.full(len(m), -1)
    for index in reversed(range(len(fails))):
        reason = np.where(fails[index], index, reason)
    return reason


def _rows(rng, n, schedules, cps):
    return dict(pp=rng.choice([1, 2, 3, 4, 8], n), tp=rng.choice([1, 2, 4, 8], n), cp=rng.choice(cps, n),
                m=rng.choice([1, 2, 3, 4, 6, 8, 16], n), schedule=rng.choice(schedules, n),
                vp=rng.choice([1, 2, 3, 4], n), cp_comm=rng.integers(0, len(CP_COMMS), n))


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("schedules", [list(range(len(PIPELINE_SCHEDULES))), [PIPELINE_SCHEDULES.index("dualpipe")],
                                       [PIPELINE_SCHEDULES.index("interleaved")], [0]], ids=["all", "dualpipe",
                                                                                              "interleaved", "first"])
@pytest.mark.parametrize("cps", [[1], [1, 2, 4]], ids=["cp1", "cp-varied"])
def test_the_rules_a_search_skips_would_fail_nowhere(overlap, schedules, cps):
    base = build()
    scenario = dataclasses.replace(base, training=dataclasses.replace(base.training, moe_a2a_overlap=overlap))
    rng = np.random.default_rng(25)
    rows = _rows(rng, 4000, schedules, cps)
    args = (rows["pp"], rows["tp"], rows["cp"], rows["m"], rows["schedule"], rows["vp"], rows["cp_comm"])
    found, expected = pipeline_reason(scenario, *args), _written_out(scenario, *args)
    assert found.dtype == expected.dtype and found.shape == expected.shape
    assert np.array_equal(found, expected)
    if schedules == list(range(len(PIPELINE_SCHEDULES))):  # the full mix breaks several rules: the test can fail
        assert len(np.unique(expected)) >= 4


def test_no_rows():
    empty = np.zeros(0, dtype=np.int64)
    found = pipeline_reason(build(), *(empty,) * 7)
    assert found.shape == (0,) and found.dtype == _written_out(build(), *(empty,) * 7).dtype


@pytest.mark.parametrize("schedule", range(len(PIPELINE_SCHEDULES)))
def test_one_valued_columns_as_one_entry(schedule):
    """enumerate._rows_of hands pipeline_reason a column that holds one value as its one entry, shape (1,): the
    reasons are those of the column gathered over every row."""
    base = build()
    scenario = dataclasses.replace(base, training=dataclasses.replace(base.training, moe_a2a_overlap=True))
    rng = np.random.default_rng(schedule)
    rows = _rows(rng, 3000, [schedule], [1, 2, 4])
    full = (rows["pp"], rows["tp"], rows["cp"], rows["m"], rows["schedule"], np.full(3000, 2), np.full(3000, 1))
    one = (rows["pp"], rows["tp"], rows["cp"], rows["m"], rows["schedule"][:1], np.array([2]), np.array([1]))
    expected = _written_out(scenario, *full)
    found = pipeline_reason(scenario, *one)
    assert found.shape == (3000,) and np.array_equal(found, expected)
    assert np.array_equal(pipeline_reason(scenario, *full), expected)
