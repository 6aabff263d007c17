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


# overlap_param_gather_with_optimizer_step (session 25, paramoverlap2): chunk 0's gathers after its own optimizer step.

def _with_step(**changes):
    sc = _mixtral()
    return dataclasses.replace(sc, training=dataclasses.replace(
        sc.training, pipeline_schedule="interleaved", micro_batches=8, overlap_param_gather=True,
        overlap_param_gather_with_optimizer_step=True, **changes))


WITH_STEP_LAYOUT = Layout(dp=8, tp=1, ep=8, pp=2, vp=4)


def test_with_optimizer_step_refuses_what_megatron_refuses():
    """Megatron-LM d98e8a64 arguments.py l.1066-1072: the distributed optimizer, overlap_param_gather and the
    interleaved schedule; each refusal one SpecError naming its field."""
    from moesim.errors import SpecError

    tr = _with_step().training
    cases = ((dict(overlap_param_gather_with_optimizer_step="yes"), "true or false",
              "training.overlap_param_gather_with_optimizer_step"),
             # ZeRO 0: overlap_param_gather's own assert (l.1024-1027) comes first in Megatron too (refusals25)
             (dict(zero_stage=0), "distributed optimizer", "training.overlap_param_gather'"),
             (dict(zero_stage=3), "distributed optimizer", "training.overlap_param_gather_with_optimizer_step"),
             (dict(overlap_param_gather=False), "needs overlap_param_gather",
              "training.overlap_param_gather_with_optimizer_step"),
             (dict(pipeline_schedule="1f1b"), "interleaved", "training.pipeline_schedule"))
    for changes, message, field in cases:
        with pytest.raises(SpecError, match=message) as bad:
            dataclasses.replace(tr, **changes)
        assert field in str(bad.value)
    assert dataclasses.replace(tr, zero_stage=2).overlap_param_gather_with_optimizer_step


def test_with_step_share_and_exposed_by_hand():
    """Chunk 0's optimizer share: its dense states (1/v of the device's) over the device's; what the step waits for
    of the first stage's chunk 0 gathers G_0: max(0, G_0 − (1 − share)·optimizer)."""
    from moesim.estimate.param_gather import chunk_step_share, forward_gathers_s, with_step_exposed_s

    assert chunk_step_share(6.0, 2.0, 4) == pytest.approx(6.0 / 4 / 8.0)
    assert with_step_exposed_s(0.5, 1.0, 0.25) == 0.0
    assert with_step_exposed_s(2.0, 1.0, 0.25) == pytest.approx(1.25)
    import numpy as np

    from types import SimpleNamespace

    tr = _with_step().training
    rows = SimpleNamespace(dp=np.array([2]), cp=np.array([1]), edp=np.array([1]), zero_stage=np.array([1]))
    # two stages gathering 4 s and 2 s, v = 2: chunk 0 of the first stage 2 s; optimizer 1 s, a quarter chunk 0's
    # (dense 2.0 / dp 2 = 1.0 a device, its chunk 0 1.0 / 2, over dense 1.0 + expert 1.0) -> 2 − 0.75 = 1.25 s waited
    # on; the later stage's not
    got = forward_gathers_s(tr, np.array(["interleaved"]), np.array([9.0]), [np.array([4.0]), np.array([2.0])],
                            np.ones((1, 1)), np.ones((1, 2)), np.zeros((1, 2)), np.ones((1, 2)), np.array([2.0]),
                            (np.array([1.0]), np.array([2.0]), np.array([1.0]), rows))
    assert got.tolist() == pytest.approx([1.25])
    plain = forward_gathers_s(dataclasses.replace(tr, overlap_param_gather_with_optimizer_step=False),
                              np.array(["interleaved"]), np.array([9.0]), [np.array([4.0]), np.array([2.0])],
                              np.ones((1, 1)), np.ones((1, 2)), np.zeros((1, 2)), np.ones((1, 2)), np.array([2.0]))
    assert plain.tolist() == pytest.approx([2.0])  # align_param_gather: chunk 0 waited on whole


def test_the_simulator_gathers_chunk0_after_its_optimizer_step():
    """Per stage: the optimizer split in two, chunk 0's share first; chunk 0's gathers (every bucket of its piece)
    dispatched after it and none in the forward; chunk 1 at the step's start, later chunks ahead, as without the key;
    every piece's gradients reduced in one bucket per axis (bucketing off on every chunk)."""
    from moesim.des.param_sync import device_step_share
    from moesim.estimate.param_gather import WITH_STEP_LABEL

    sc, layout = _with_step(), WITH_STEP_LAYOUT
    est = estimate(sc, layout)
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    for stage in range(layout.pp):
        ops = build_stage_program(costs, stage).ops
        (first,) = [op for op in ops if op.name == WITH_STEP_LABEL]
        (rest,) = [op for op in ops if op.name == "optimizer"]
        share = device_step_share(costs, stage)
        assert 0 < share < 1 / layout.vp
        assert first.duration_s == pytest.approx(share * costs.optimizer_s)
        assert rest.duration_s == pytest.approx((1 - share) * costs.optimizer_s)
        gathers = [op for op in ops if op.name.startswith(PARAM_GATHER_LABEL.split("{")[0])]
        chunk0 = [op for op in gathers if op.vs == stage]
        assert chunk0 and all(op.index > first.index for op in chunk0) and first.index in chunk0[0].deps
        assert all(op.index < first.index for op in gathers if op.vs != stage)
        assert not [op for op in ops if op.name == PARAM_WAIT_LABEL and set(op.deps) & {g.index for g in chunk0}]
        scatters = [op for op in ops if op.name.startswith("gradient reduce-scatter")]
        assert len(scatters) == len(gathers) == layout.vp  # one bucket per piece (edp 1 here: dp only)
        assert all(op.name.endswith("(dp)") for op in scatters)


@pytest.mark.parametrize("optimizer_scale", [1.0, 0.01])
def test_the_simulated_step_waits_on_what_chunk0_gathers_beyond_the_optimizer(monkeypatch, optimizer_scale):
    """By hand from the trace (contention off): chunk 0's gathers start as its optimizer share ends, back to back on
    the grad stream; the device's step ends at max(optimizer end, last gather end), so its wait beyond the optimizer
    is max(0, ΣG_0 − (1 − share)·optimizer) (param_gather.with_step_exposed_s): 0 at the optimizer's own time (the
    gathers, ~1.5 ms, under its rest, ~62 ms), positive with it scaled by 0.01 in both engines; the estimate within
    0.5 %."""
    from moesim.estimate import core
    from moesim.estimate.param_gather import WITH_STEP_LABEL, with_step_exposed_s

    optimizer_time_s = core.optimizer_time_s
    monkeypatch.setattr(core, "optimizer_time_s", lambda *a: optimizer_time_s(*a) * optimizer_scale)
    sc, layout = _with_step(), WITH_STEP_LAYOUT
    r = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=True))
    rec = [x for x in r.trace_records if x[0] == 0]
    (first,) = [x for x in rec if x[2] == WITH_STEP_LABEL]
    (rest,) = [x for x in rec if x[2] == "optimizer"]
    after = sorted((x for x in rec if x[2].startswith("parameter all-gather") and x[-2] >= first[-1] - 1e-12),
                   key=lambda x: x[-2])
    assert after and after[0][-2] == pytest.approx(first[-1])
    for a, b in zip(after, after[1:]):
        assert b[-2] == pytest.approx(a[-1])
    gathered_s = sum(x[-1] - x[-2] for x in after)
    expect = with_step_exposed_s(gathered_s, 0.0, 0.0) - (rest[-1] - rest[-2])
    assert max(rest[-1], after[-1][-1]) - rest[-1] == pytest.approx(max(expect, 0.0), abs=1e-9)
    assert (expect > 0) == (optimizer_scale < 1)
    assert max(x[-1] for x in rec) == pytest.approx(max(rest[-1], after[-1][-1]))
    assert r.step_times_s[0] / estimate(sc, layout).step_time_s - 1 == pytest.approx(0.0, abs=0.005)


def test_zero_bubble_refuses_overlap_param_gather_and_a_search_row_runs_without_what_megatron_refuses():
    """sail-sg/zero-bubble-pipeline-parallelism @ 39f2c186 zbpp_utils.py l.130-132: with the distributed optimizer,
    zero bubble asserts overlap_param_gather off (ZB-V enables zero bubble, l.121-122). A search row whose schedule or
    ZeRO stage Megatron refuses a key with runs without it (Candidates.training), as the estimate prices that row."""
    from moesim.errors import SpecError
    from moesim.specs.param_overlap import row_overrides

    tr = _overlapped().training
    for schedule in ("zb-h1", "zb-v"):
        with pytest.raises(SpecError, match="zero-bubble") as bad:
            dataclasses.replace(tr, pipeline_schedule=schedule)
        assert "training.overlap_param_gather" in str(bad.value)
        # ZeRO 0: no distributed optimizer, and Megatron-LM refuses the key there too (refusals25)
        with pytest.raises(SpecError, match="distributed optimizer"):
            dataclasses.replace(tr, pipeline_schedule=schedule, zero_stage=0)
        assert row_overrides(tr, schedule, 1) == {"overlap_param_gather": False} == row_overrides(tr, schedule, 0)
    base = _with_step().training
    assert row_overrides(base, "interleaved", 1) == {} == row_overrides(base, "interleaved", 2)
    for schedule, zero in (("1f1b", 1), ("interleaved", 0), ("interleaved", 3)):
        # at ZeRO 0 overlap_param_gather is off too (Megatron-LM d98e8a64 arguments.py l.1024-1027; refusals25)
        assert row_overrides(base, schedule, zero) == {"overlap_param_gather_with_optimizer_step": False} | (
            {"overlap_param_gather": False} if zero == 0 else {})
        dataclasses.replace(base, pipeline_schedule=schedule, zero_stage=zero, **row_overrides(base, schedule, zero))


def test_a_search_prices_each_row_as_its_estimate():
    """With overlap_param_gather_with_optimizer_step, a search over schedules and ZeRO stages: each row's step is the
    estimate of that row's layout and training (the rows that cannot run the key priced without it)."""
    from moesim.search import search

    sc = _with_step()
    sc = dataclasses.replace(sc, search=dataclasses.replace(sc.search, pipeline_schedules=("1f1b", "interleaved"),
                                                            virtual_stages=(2,), zero_stages=(0, 1, 3)))
    result = search(sc, threads=1)
    seen = set()
    for i in range(min(len(result.candidates), 400)):
        layout, training = result.candidates.layout(i), result.candidates.training(i, sc.training)
        key = (training.pipeline_schedule, training.zero_stage, layout.pp)
        if key in seen or layout.pp == 1:
            continue
        seen.add(key)
        one = estimate(dataclasses.replace(sc, training=training), layout)
        assert float(result.step_time_s[i]) == pytest.approx(float(one.step_time_s), rel=1e-9), key
    assert {("interleaved", 1), ("1f1b", 1), ("interleaved", 0)} <= {k[:2] for k in seen}


def test_dualpipe_keeps_the_gathers_after_the_step():
    """Not built (docs/collectives-history.md, Session 25 (paramoverlap2)): Megatron-LM has no DualPipe and
    deepseek-ai/DualPipe no parameter sync, so with overlap_param_gather DualPipe's gathers stay after the optimizer
    step in both engines, the step as without the key."""
    layout = Layout(dp=8, tp=1, ep=8, pp=2)
    sc = _mixtral()
    base = dataclasses.replace(sc, training=dataclasses.replace(sc.training, pipeline_schedule="dualpipe",
                                                                micro_batches=8))
    on = dataclasses.replace(base, training=dataclasses.replace(base.training, overlap_param_gather=True))
    assert estimate(on, layout).step_time_s == pytest.approx(estimate(base, layout).step_time_s, rel=1e-12)
    for _, ops, optimizer, scatters, gathers in _stage_ops(on, layout):
        assert len(gathers) == len(scatters) and all(op.index > optimizer.index for op in gathers)
