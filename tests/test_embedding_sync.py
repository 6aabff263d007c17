"""The tied word embedding's gradient all-reduce between the first and the last pipeline stage, in both engines
(moesim.estimate.embedding_sync; Megatron finalize_model_grads.py, _allreduce_word_embedding_grads)."""

import dataclasses

import numpy as np
import pytest

from moesim.collectives.select import model_for
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.des.schedule import build_stage_program
from moesim.estimate import estimate
from moesim.estimate.embedding_sync import embedding_members
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

NAME = "embedding_grad_all_reduce"
LABEL = "embedding gradient all-reduce"


def _mixtral(tied: bool = True, schedule: str = "1f1b"):
    """Mixtral 8x7B on 16 H100s at tp 2, ep 8, pp 2, 8 micro-batches; its input and output embeddings tied."""
    sc = load_scenario("mixtral-8x7b-h100", devices=16)
    return dataclasses.replace(
        sc, model=dataclasses.replace(sc.model, tied_embeddings=tied),
        training=dataclasses.replace(sc.training, global_batch_sequences=64, micro_batches=8,
                                     pipeline_schedule=schedule))


LAYOUT = Layout(dp=4, tp=2, ep=8, pp=2)


def test_estimate_prices_one_all_reduce_of_the_embedding_gradient_on_two_ranks():
    sc = _mixtral()
    est = estimate(sc, LAYOUT)
    ar = est.communication[NAME]
    # [V/tp, h] in the gradient dtype (float32): 32000 / 2 x 4096 x 4 bytes, once per step, first and last stage.
    assert ar["size_bytes"] == 32000 / 2 * 4096 * 4
    assert ar["group_size"] == 2 and ar["calls_per_step"] == 1 and ar["op"] == "all_reduce"
    assert ar["time_s"] > 0
    untied = estimate(_mixtral(tied=False), LAYOUT)
    assert NAME not in untied.communication


@pytest.mark.parametrize("change", ["untied", "pp1", "zb-v", "dualpipe"])
def test_no_all_reduce_where_one_device_holds_the_only_copy(change):
    sc = _mixtral(tied=change != "untied", schedule=change if change in ("zb-v", "dualpipe") else "1f1b")
    layout = Layout(dp=8, tp=2, ep=8, pp=1) if change == "pp1" else LAYOUT
    est = estimate(sc, layout)
    assert NAME not in est.communication
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    assert costs.embedding_sync is None


def test_simulator_runs_it_on_the_first_and_last_stage_before_the_optimizer():
    sc = _mixtral()
    est = estimate(sc, LAYOUT)
    costs = build_costs(sc, LAYOUT, sc.training, model_for(sc), est.optimizer_time_s)
    assert costs.embedding_sync.size_bytes == est.communication[NAME]["size_bytes"]
    assert costs.embedding_sync.time_s == pytest.approx(est.communication[NAME]["time_s"])
    for stage in (0, 1):
        ops = build_stage_program(costs, stage).ops
        (ar,) = [op for op in ops if op.name == LABEL]
        (optimizer,) = [op for op in ops if op.name == "optimizer"]
        assert ar.index in optimizer.deps
        assert ar.stream == "grad" and ar.index == max(op.index for op in ops
                                                       if op.stream == "grad" and op.index < optimizer.index)
        # after the optimizer only ZeRO-1's parameter all-gathers (estimate/param_gather.py)
        assert all(op.name.startswith("parameter all-gather") for op in ops[optimizer.index + 1:])


@pytest.mark.parametrize("engine", ["fast", "simpy"])
def test_simulated_step_joins_both_stages_and_agrees_with_the_estimate(engine):
    sc = _mixtral()
    options = SimOptions(contention=False, expected_loads=True, engine=engine)
    tied = simulate(sc, LAYOUT, options)
    runs = [r for r in tied.trace_records if r[2] == LABEL]
    assert len({r[0] // 8 for r in runs}) == 2  # devices of both stages (tp 2 x dp 4 = 8 devices a stage)
    assert len({round(r[-1], 12) for r in runs}) == 1  # one collective: the first stage's wait ends with the last's
    assert tied.step_times_s[0] == pytest.approx(tied.analytical_step_time_s, rel=0.02)
    untied = simulate(_mixtral(tied=False), LAYOUT, options)
    assert not [r for r in untied.trace_records if r[2] == LABEL]
    # The first stage ends the pipeline here and the untied head's gradient syncs on the last stage, under its
    # slack: the tied step is the untied one plus the all-reduce, in both engines (0.00677 s measured).
    ar_s = estimate(sc, LAYOUT).communication[NAME]["time_s"]
    assert tied.step_times_s[0] - untied.step_times_s[0] == pytest.approx(ar_s, rel=0.01)
    assert tied.analytical_step_time_s - untied.analytical_step_time_s == pytest.approx(ar_s, rel=0.01)
    first = [r for r in runs if r[0] // 8 == 0][0]
    optimizer = [r for r in tied.trace_records if r[0] == first[0] and r[2] == "optimizer"][0]
    assert optimizer[-2] == pytest.approx(first[-1])


def test_embedding_members_are_each_pipelines_ends():
    # pp 4 innermost (stride 1): devices 0-3 are one pipeline, 4-7 the next; pp outermost (stride 8 of 32).
    first, last = embedding_members(np.arange(8), 4, 1)
    assert first.tolist() == [0, 0, 0, 0, 4, 4, 4, 4] and last.tolist() == [3, 3, 3, 3, 7, 7, 7, 7]
    first, last = embedding_members(np.array([5, 13, 29]), 4, 8)
    assert first.tolist() == [5, 5, 5] and last.tolist() == [29, 29, 29]


@pytest.mark.parametrize("engine", ["fast", "simpy"])
def test_pipeline_innermost_on_the_mesh(engine):
    """pp innermost (order pp-tp-ep-dp): each pipeline's ends are 3 ids apart; both engines pair them and agree."""
    sc = _mixtral()
    sc = dataclasses.replace(sc, devices=32, training=dataclasses.replace(sc.training, global_batch_sequences=32))
    layout = Layout(dp=4, tp=2, ep=8, pp=4, order=("pp", "tp", "ep", "dp"))
    result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, engine=engine))
    runs = [r for r in result.trace_records if r[2] == LABEL]
    assert runs and {r[0] % 4 for r in runs} <= {0, 3}
    assert len({round(r[-1], 12) for r in runs}) == 1
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)
