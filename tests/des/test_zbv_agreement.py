"""ZB-V where both engines' assumptions meet (session 20, zbvagree): the layers a device holds, what an I slot runs,
and each stage's own start-up skew in the closed form."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.collectives.select import default_model
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.des.schedule import build_stage_program
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.estimate.schedules import zbv_pipe_s
from moesim.estimate.stages import pipeline_stages
from moesim.specs.layout import Layout, stage_layers
from moesim.specs.load import load_scenario
from moesim.workload import build_workload, stage_ranges, v_shape_ranges

LAYOUT = Layout(dp=1, tp=2, pp=4)


def _case(schedule: str = "zb-v"):
    """tests/des/test_des_agreement.py's ZB-V case: Llama-3-70B's 12-layer slice on B200, tp 2 · pp 4, m 8."""
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    return dataclasses.replace(sc, training=dataclasses.replace(
        sc.training, global_batch_sequences=8, micro_batches=8, pipeline_schedule=schedule))


def _workload(sc):
    return build_workload(sc.model, *sc.seq_lens)


def test_each_device_holds_its_stages_layers_half_a_chunk():
    """Device d runs pieces d and 2p − 1 − d. 12 layers over pp 4: 3 a device (the estimate's and the layout's split),
    2 on the first leg and 1 on the way back; stage_layers(12, 8) gave the devices 2, 3, 3 and 4."""
    wl = _workload(_case())
    sizes = [len(r) for r in v_shape_ranges(wl, 4)]
    assert sizes == [2, 2, 2, 2, 1, 1, 1, 1]
    assert [sizes[d] + sizes[7 - d] for d in range(4)] == list(stage_layers(12, 4))
    assert [r.start for r in v_shape_ranges(wl, 4)] == [0, 2, 4, 6, 8, 9, 10, 11]  # contiguous along the path
    given = [len(r) for r in v_shape_ranges(wl, 4, 2, 4)]  # first_stage_layers 2, last 4: (2, 3, 3, 4)
    assert [given[d] + given[7 - d] for d in range(4)] == [2, 3, 3, 4]
    # sail-sg's ZB-V (L/pp even): L/(2p) a chunk, what stage_layers(L, 2p) gives.
    assert v_shape_ranges(wl, 2) == stage_ranges(wl, 4)


def test_a_device_of_one_layer_is_refused_by_name():
    with pytest.raises(SpecError, match="zb-v needs first_stage_layers = 1 >= 2"):
        simulate(_case(), Layout(dp=1, tp=2, pp=4, first_stage_layers=1), SimOptions(contention=False, trace=False))


def test_an_input_gradient_slot_runs_the_heads_dx_only():
    """The head costs logits_s a micro-batch: 1/3 forward, 1/3 dX, 1/3 dW (Kaplan et al. 2020 §2.1). Under ZB-V its
    I runs the dX and its W the dW; the I ran both before (4/3 of logits_s a micro-batch)."""
    sc = _case()
    costs = build_costs(sc, LAYOUT, sc.training, default_model(sc.hardware), 0.0)
    head = costs.stages[-1].logits_s
    program = build_stage_program(costs, 0)  # device 0 holds the last piece under ZB-V
    logits = sum(op.duration_s for op in program.ops if op.name == "logits")
    assert logits == pytest.approx(8 * head * 2 / 3, rel=1e-12)
    one = _case("1f1b")  # a full backward keeps both: the last stage runs all of logits_s
    costs = build_costs(one, LAYOUT, one.training, default_model(one.hardware), 0.0)
    program = build_stage_program(costs, 3)
    assert sum(op.duration_s for op in program.ops if op.name == "logits") == pytest.approx(
        8 * costs.stages[-1].logits_s, rel=1e-12)


def test_the_first_device_computes_what_the_estimate_prices_and_runs_without_a_gap():
    """Device 0 (embedding, head, 3 layers) computes exactly the estimate's slowest-stage compute; it starts at once,
    so no start-up skew is its own, and both engines give the same step (+0.00 %; -2.29 % before)."""
    sc = _case()
    result = simulate(sc, LAYOUT, SimOptions(contention=False, expected_loads=True, trace=True))
    est = estimate(sc, LAYOUT)
    device0 = [r for r in result.trace_records if r[0] == 0 and r[1] == "compute" and r[3] != "step"]
    assert sum(r[7] - r[6] for r in device0) == pytest.approx(est.compute_time_s, rel=1e-9)
    assert min(r[6] for r in device0) == 0.0
    assert est.bubble_time_s == 0.0
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=1e-3)


def test_the_closed_form_by_hand():
    """m·t_s + s·F_s/2 + (p − 1)·max(0, t_s − 3W_s − F_s/2), the largest over the stages (at m = 8 = 2p the fill and
    drain bounds of session 21's zbvfew lie below it: tests/des/test_zbv_few_micro_batches.py)."""
    m, p = np.array([8.0]), np.array([4.0])
    equal = zbv_pipe_s(m, p, np.array([[3.0, 3.0, 3.0]]), np.array([[1.0] * 3]), np.array([[1.0] * 3]),
                       np.array([[0.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 1.0]]))
    assert equal[0] == pytest.approx(8 * 3 + 3 * max(0.5, 3 - 3 * 1.0))  # the table's row: (p − 1)·max(F/2, F+B−2W)
    heavy_b = zbv_pipe_s(m, p, np.array([[3.0, 3.0]]), np.array([[1.0, 1.0]]), np.array([[0.5, 0.5]]),
                         np.array([[0.0, 3.0]]), np.array([[3.0, 1.0]]))
    assert heavy_b[0] == pytest.approx(8 * 3 + 3 * (3 - 1.5))  # F + B − 2W = 1.5 > F/2: ZB-H2's row
    first_heavy = zbv_pipe_s(m, p, np.array([[4.0, 3.0, -np.inf]]), np.array([[1.0, 1.0, 0.0]]),
                             np.array([[1.5, 1.0, 0.0]]), np.array([[0.0, 3.0, 0.0]]), np.array([[1.0, 3.0, 0.0]]))
    assert first_heavy[0] == pytest.approx(max(8 * 4.0, 8 * 3.0 + 1.5))  # the first stage starts at once


def test_a_kinds_last_stage_is_its_position():
    """16 layers over pp 6: (2, 3, 3, 3, 3, 2); stages 1-4 are one kind whose last is stage 4."""
    sc = _case()
    stages = pipeline_stages(_workload(dataclasses.replace(sc, model=dataclasses.replace(sc.model, decoder_layers=16))),
                             np.array([6]))
    assert stages.index[0].tolist() == [0, 1, 5]
    assert stages.latest[0].tolist() == [0.0, 4.0, 5.0]
