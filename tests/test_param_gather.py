"""ZeRO >= 1's parameter all-gather after the optimizer step, in both engines (moesim.estimate.param_gather;
Megatron-LM d98e8a64 distrib_optimizer.py l.3168-3199 step_with_ready_grads, overlap_param_gather off)."""

import dataclasses

import pytest

from moesim.collectives.select import model_for
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.des.schedule import build_stage_program
from moesim.estimate import estimate
from moesim.estimate.param_gather import PARAM_GATHER_LABEL, PARAM_GATHER_NAMES, PARAM_WAIT_LABEL, gathers_after_step
from moesim.report.analysis import breakdown_s
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

LAYOUT = Layout(dp=16, tp=1, ep=8, pp=1)  # Mixtral 8x7B on 16 H100s, one stage: MCore's buckets, many of them


def _mixtral(zero: int = 1, overlap_grad_reduce: bool = True):
    sc = load_scenario("mixtral-8x7b-h100", devices=16)
    return dataclasses.replace(sc, training=dataclasses.replace(
        sc.training, zero_stage=zero, overlap_grad_reduce=overlap_grad_reduce, global_batch_sequences=64,
        micro_batches=4))


def _stage_ops(sc, layout):
    """Each stage's operations, its optimizer step, gradient reduce-scatters and parameter all-gathers."""
    est = estimate(sc, layout)
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    for stage in range(layout.pp):
        ops = build_stage_program(costs, stage).ops
        (optimizer,) = [op for op in ops if op.name == "optimizer"]
        scatters = [op for op in ops if op.name.startswith("gradient reduce-scatter")]
        gathers = [op for op in ops if op.name.startswith(PARAM_GATHER_LABEL.split("{")[0])]
        yield stage, ops, optimizer, scatters, gathers


def test_which_stages_gather_after_the_step():
    assert [gathers_after_step(z) for z in (0, 1, 2, 3)] == [False, True, True, True]


@pytest.mark.parametrize("stage_layout", [LAYOUT, Layout(dp=4, tp=2, ep=8, pp=2)])
def test_the_simulator_gathers_every_bucket_after_the_optimizer(stage_layout):
    """Every bucket's reduce-scatter before the optimizer step, its all-gather after it on the grad stream, as many
    gathers as reduce-scatters, the gathered bytes the reduced bytes × param / grad bytes (BF16 / FP32)."""
    for _, ops, optimizer, scatters, gathers in _stage_ops(_mixtral(), stage_layout):
        assert not [op for op in ops if op.name.startswith("gradient all-gather")]
        assert scatters and all(op.index < optimizer.index for op in scatters)
        assert len(gathers) == len(scatters)
        assert all(op.index > optimizer.index and op.stream == "grad" and optimizer.index in op.deps for op in gathers)
        for axis in ("dp", "edp"):
            reduced = sum(op.comm.size_bytes for op in scatters if op.name.endswith(f"({axis})"))
            gathered = sum(op.comm.size_bytes for op in gathers if op.name.endswith(f"({axis})"))
            assert gathered == pytest.approx(reduced / 2)


def test_zero0_gathers_nothing_after_the_step():
    sc = _mixtral(zero=0)
    est = estimate(sc, LAYOUT)
    assert not set(PARAM_GATHER_NAMES) & set(est.communication)
    costs = build_costs(sc, LAYOUT, sc.training, model_for(sc), est.optimizer_time_s)
    ops = build_stage_program(costs, 0).ops
    assert ops[-1].name == "optimizer"


def test_the_estimate_exposes_the_gathers_whole():
    """With the gradient sync overlapped, the step's exposed sync still holds every parameter all-gather whole
    (nothing runs beside them after the optimizer step); before session 24 they rode on the grad stream under
    the backward and the exposed sync was less than their time."""
    sc = _mixtral()
    est = estimate(sc, LAYOUT)
    gathers_s = sum(est.communication[name]["time_s"] for name in PARAM_GATHER_NAMES)
    assert gathers_s > 0
    assert breakdown_s(est)["gradient sync (exposed)"] >= gathers_s
    # overlap_grad_reduce off: none of the sync hides; the gathers are in it once, not twice
    off = estimate(_mixtral(overlap_grad_reduce=False), LAYOUT)
    assert off.step_time_s == pytest.approx(off.step_time_no_overlap_s, rel=1e-12)


def test_the_simulator_and_the_estimate_agree_on_the_step():
    sc = _mixtral()
    est = estimate(sc, LAYOUT)
    r = simulate(sc, LAYOUT, SimOptions(contention=False, expected_loads=True, trace=False))
    assert r.step_times_s[0] / r.analytical_step_time_s - 1 == pytest.approx(0.0, abs=0.01)
    assert r.analytical_step_time_s == pytest.approx(est.step_time_s, rel=1e-12)


# overlap_param_gather (session 24, paramoverlap): the gathers in the first forward, a layer waiting on its bucket's.

def _overlapped(zero: int = 1, **changes):
    sc = _mixtral(zero)
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, overlap_param_gather=True, **changes))


def test_overlap_param_gather_takes_true_or_false_and_needs_overlap_grad_reduce():
    from moesim.errors import SpecError

    sc = _mixtral()
    with pytest.raises(SpecError, match="true or false") as bad:
        dataclasses.replace(sc.training, overlap_param_gather="yes")
    assert "training.overlap_param_gather" in str(bad.value)
    with pytest.raises(SpecError, match="overlap_grad_reduce") as off:
        dataclasses.replace(sc.training, overlap_param_gather=True, overlap_grad_reduce=False)
    assert "training.overlap_param_gather" in str(off.value)


@pytest.mark.parametrize("stage_layout", [LAYOUT, Layout(dp=8, tp=1, ep=8, pp=2)])
def test_the_simulator_gathers_in_the_first_forward(stage_layout):
    """With overlap_param_gather every bucket's all-gather runs in the piece's first forward, none after the
    optimizer: as many as the reduce-scatters, the same bytes; each waited on by a zero-length compute operation
    that a forward layer follows; every gather but a chain's first dispatched after the previous one's wait."""
    for stage, ops, optimizer, scatters, gathers in _stage_ops(_overlapped(), stage_layout):
        waits = [op for op in ops if op.name == PARAM_WAIT_LABEL]
        assert len(gathers) == len(scatters) == len(waits) > 0
        assert all(op.phase == "fwd" and op.mb == 0 and op.index < optimizer.index for op in gathers)
        for axis in ("dp", "edp"):
            reduced = sum(op.comm.size_bytes for op in scatters if op.name.endswith(f"({axis})"))
            gathered = [op for op in gathers if op.name.endswith(f"({axis})")]
            assert sum(op.comm.size_bytes for op in gathered) == pytest.approx(reduced / 2)
            for before, after in zip(gathered, gathered[1:]):  # dispatched once the one before is waited on
                (wait,) = [w for w in waits if before.index in w.deps]
                assert wait.index in after.deps
        assert {w.deps[0] for w in waits} == {g.index for g in gathers}
        (hook,) = [op for op in ops if op.name == "forward pre-hook"]
        assert (hook.recv is not None) == (stage > 0)  # a later stage dispatches nothing before its receive


def test_the_estimate_hides_the_gathers_at_pp1_and_waits_on_the_fill_later():
    """pp 1: most of the gathers hide under the first forward (the closed form's G/n .. G − F·(1 − 1/n)); pp 2
    (one bucket per axis on the later stage): the step waits on each stage's first gathers in turn."""
    off, on = estimate(_mixtral(), LAYOUT), estimate(_overlapped(), LAYOUT)
    gathers_s = sum(on.communication[name]["time_s"] for name in PARAM_GATHER_NAMES)
    assert on.step_time_s < off.step_time_s
    assert off.step_time_s - on.step_time_s < gathers_s
    assert on.communication_time_s == pytest.approx(off.communication_time_s, rel=1e-12)  # the same gathers
    assert on.step_time_no_overlap_s == pytest.approx(off.step_time_no_overlap_s, rel=1e-12)


def test_the_interleaved_schedule_dispatches_chunks_ahead():
    """align_param_gather: chunks 0 and 1 dispatched at the step's start on every stage, before any compute; chunk
    k + 1 dispatched during chunk k's forwards, one chunk ahead; none after the optimizer; the estimate's step falls
    (the gathers under the fill and the forwards)."""
    layout = Layout(dp=8, tp=1, ep=8, pp=2, vp=4)
    sc = _mixtral()
    base = dataclasses.replace(sc, training=dataclasses.replace(sc.training, pipeline_schedule="interleaved",
                                                                micro_batches=8))
    on = dataclasses.replace(base, training=dataclasses.replace(base.training, overlap_param_gather=True))
    for stage, ops, optimizer, scatters, gathers in _stage_ops(on, layout):
        assert len(gathers) == len(scatters) and all(op.index < optimizer.index for op in gathers)
        chunk = {op.index: op.vs // layout.pp for op in gathers}
        first_compute = min(op.index for op in ops if op.stream == "compute")
        assert {chunk[op.index] for op in gathers if op.index < first_compute} == {0, 1}
        later = [op for op in gathers if chunk[op.index] >= 2]
        assert later and all(op.index > first_compute for op in later)
        for op in later:  # dispatched before its chunk's first forward
            first_forward = min(o.index for o in ops if o.phase == "fwd" and o.vs == op.vs and o.stream == "compute")
            assert op.index < first_forward
    assert estimate(on, layout).step_time_s < estimate(base, layout).step_time_s
