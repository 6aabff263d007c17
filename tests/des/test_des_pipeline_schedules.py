"""Pipeline schedules: orders, bubbles against the published formulas, estimate against simulator.

Formulas (../shared/reference/wave2.md §4): 1F1B (p−1)(F+B+W) (Narayanan et al. SC'21 §2.2.1),
interleaved (p−1)(F+B+W)/v (§2.2.2), ZB-H1 (p−1)(F+B−W) (Qi et al. ICLR'24 Table 2, B = input
gradient), DualPipe (p/2−1)(F&B + B_full − 3W) (DeepSeek-V3 Table 2, B_full = B + W).
"""

from __future__ import annotations

import dataclasses

import pytest

from des_helpers import tiny_scenario
from moesim.collectives.select import default_model
from moesim.des import SimOptions, simulate
from moesim.des import run as des_run
from moesim.des.costs import build_costs
from moesim.des.orders import device_order, order_makespan
from moesim.des.schedule import build_stage_program
from moesim.estimate import estimate
from moesim.errors import SpecError
from moesim.specs.layout import Layout

P, M = 4, 8


def _formula(schedule: str, p: int, v: int, f: float, b: float, w: float) -> float:
    full = b + w
    return {"1f1b": (p - 1) * (f + full), "gpipe": (p - 1) * (f + full), "interleaved": (p - 1) * (f + full) / v,
            "zb-h1": (p - 1) * (f + b - w), "dualpipe": (p / 2 - 1) * ((f + full) + full - 3 * w)}[schedule]


@pytest.mark.parametrize("schedule, v", [("1f1b", 1), ("gpipe", 1), ("interleaved", 2), ("interleaved", 4),
                                         ("zb-h1", 1), ("dualpipe", 1)])
@pytest.mark.parametrize("p, m", [(2, 8), (4, 8), (4, 16), (8, 16)])
def test_order_bubbles_are_the_published_formulas(schedule, v, p, m):
    """Equal F, B, W (the ZB paper's setting for its handcrafted schedules), transfers free."""
    bubble = order_makespan(schedule, m, p, v, 1.0, 1.0, 1.0) - m * 3.0
    assert bubble == pytest.approx(_formula(schedule, p, v, 1.0, 1.0, 1.0), abs=1e-9)


def test_zero_bubble_v_beats_zb_h1_and_every_order_is_complete():
    assert order_makespan("zb-v", 16, 4, 2, 1, 1, 1) < order_makespan("zb-h1", 16, 4, 1, 1, 1, 1)
    for schedule, v in (("interleaved", 2), ("zb-h1", 1), ("zb-v", 1), ("dualpipe", 1)):
        for d in range(4):
            slots = device_order(schedule, 8, 4, v, d)
            forwards = [(s.mb, s.vs) for s in slots if s.kind in ("F", "FB")]
            backwards = [(s.mb, s.vs) for s in slots if s.kind in ("B", "I")] + \
                [s.pair[1:] for s in slots if s.kind == "FB"]
            assert len(forwards) == len(set(forwards)) == len(backwards) == len(set(backwards))
            assert sum(s.kind == "W" for s in slots) == sum(s.kind == "I" for s in slots)


def test_interleaved_and_dualpipe_orders_follow_their_sources():
    # Megatron: warm-up 2(p − d − 1) + (v − 1)p forwards, chunk ⌊k/p⌋ mod v of micro-batch ⌊k/(p·v)⌋·p + k mod p.
    first = device_order("interleaved", 4, 2, 2, 0)
    assert [(s.kind, s.mb, s.vs) for s in first[:5]] == [("F", 0, 0), ("F", 1, 0), ("F", 0, 2), ("F", 1, 2),
                                                         ("F", 2, 0)]
    assert first[5] == device_order("interleaved", 4, 2, 2, 0)[5] and first[5].kind == "B" and first[5].vs == 2
    # DualPipe rank 0 of 4 with 8 micro-batches: nF0 twice, nF0F1 once, then B1 W1 F1 (zero bubble).
    dual = [(s.kind, s.mb, s.vs) for s in device_order("dualpipe", 8, 4, 1, 0)]
    assert dual[:7] == [("F", 0, 0), ("F", 1, 0), ("F", 2, 0), ("F", 4, 3), ("I", 4, 3), ("W", 4, 3), ("F", 5, 3)]


def _scenario(schedule: str, m: int = M):
    sc = tiny_scenario(P, micro_batches=m, pipeline_schedule=schedule, global_batch_sequences=m)
    # 16 equal layers, a tiny vocabulary (no logits to unbalance the last stage), d_model 2048 so that
    # compute dominates the pipeline sends.
    model = dataclasses.replace(sc.model, vocab_size=64, decoder_layers=16, d_model=2048)
    return dataclasses.replace(sc, model=model)


CASES = [("1f1b", 1), ("gpipe", 1), ("interleaved", 2), ("interleaved", 4), ("zb-h1", 1), ("zb-v", 1),
         ("dualpipe", 1)]


@pytest.mark.parametrize("schedule, v", CASES)
def test_estimate_agrees_with_the_simulator_within_two_percent(schedule, v):
    sc, layout = _scenario(schedule), Layout(dp=1, pp=P, vp=v)
    result = simulate(sc, layout, SimOptions(contention=False, trace=False))
    # zb-v: 2.8 % since kernel launches are priced and W is the wgrad operators (W/F 0.63, B/F 0.97 here):
    # the estimate's V-shape formula takes F, B, W alike; the simulated greedy order is faster.
    tolerance = 0.03 if schedule == "zb-v" else 0.02
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=tolerance)


@pytest.mark.parametrize("schedule, v", [("1f1b", 1), ("interleaved", 2), ("interleaved", 4), ("zb-h1", 1)])
def test_simulated_bubble_with_free_transfers_is_the_formula(schedule, v, monkeypatch):
    """The simulator's step minus the optimizer and the m stage-times is the formula, with the model's
    own F, B (input gradient) and W of a stage (uniform stages: pipeline sends and the last stage's
    logits made free)."""
    sc, layout = _scenario(schedule), Layout(dp=1, pp=P, vp=v)
    real = build_costs

    def free_sends(*args, **kwargs):
        costs = real(*args, **kwargs)
        free = lambda s: s and dataclasses.replace(s, time_s=0.0, latency_s=0.0, wire_bytes=0.0)  # noqa: E731
        costs.stages[:] = [dataclasses.replace(st, send_forward=free(st.send_forward), logits_s=0.0,
                                               send_backward=free(st.send_backward)) for st in costs.stages]
        return costs

    monkeypatch.setattr(des_run, "build_costs", free_sends)
    result = simulate(sc, layout, SimOptions(contention=False, trace=False))
    est = estimate(sc, layout)
    costs = real(sc, layout, sc.training, default_model(sc.hardware), est.optimizer_time_s)
    layer = costs.classes[0]
    per_stage = 16 // P
    f, full, w = (per_stage * x for x in (sum(layer.fwd_s.values()), sum(layer.bwd_s.values()), layer.weight_grad_s))
    bubble = result.step_times_s[0] - est.optimizer_time_s - M * (f + full)
    assert bubble == pytest.approx(_formula(schedule, P, v, f, full - w, w), rel=0.01)


def test_bubbles_shrink_in_the_published_order():
    bubbles = {(s, v): estimate(_scenario(s), Layout(dp=1, pp=P, vp=v)).bubble_time_s for s, v in CASES}
    assert bubbles["1f1b", 1] > bubbles["interleaved", 2] > bubbles["zb-h1", 1] > bubbles["zb-v", 1]
    assert bubbles["interleaved", 2] > bubbles["interleaved", 4]
    assert bubbles["1f1b", 1] > bubbles["dualpipe", 1]


def test_dualpipe_pairs_merge_their_collectives_between_each_others_kernels():
    sc = _scenario("dualpipe")
    layout = Layout(dp=1, pp=P)
    costs = build_costs(sc, layout, sc.training, default_model(sc.hardware), 0.0)
    program = build_stage_program(costs, 1)
    compute = [program.ops[i] for i in program.streams["compute"]]
    # Inside an overlapped pair, forward and backward kernels of different micro-batches alternate.
    phases = [(o.phase, o.mb) for o in compute if o.phase in ("fwd", "bwd")]
    switches = sum(1 for a, b in zip(phases, phases[1:]) if a != b)
    assert switches > 2 * M


def test_schedule_rules_reject_impossible_layouts():
    sc = _scenario("interleaved", m=6)
    with pytest.raises(SpecError, match="micro_batches = 6 divisible by pp = 4"):
        sc.check(Layout(dp=1, pp=P, vp=2), micro_batches=6)
    with pytest.raises(SpecError, match="vp = 3 needs layers = 16 divisible by pp·vp = 4·3"):
        _scenario("interleaved").check(Layout(dp=1, pp=P, vp=3))
    with pytest.raises(SpecError, match="dualpipe needs pp = 4 even and micro_batches = 6 even and >= 2·pp"):
        _scenario("dualpipe", m=6).check(Layout(dp=1, pp=P), micro_batches=6)
    with pytest.raises(SpecError, match="vp = 2 needs pipeline_schedule = interleaved"):
        _scenario("1f1b").check(Layout(dp=1, pp=P, vp=2))


@pytest.mark.parametrize("schedule", ["zb-v", "dualpipe"])
def test_simulator_runs_exactly_the_order(schedule, monkeypatch):
    """With free transfers and no collectives the simulated step is the order's own makespan with the
    model's F, B (input gradient) and W: the simulator executes the schedule, nothing else. (A DualPipe
    pair may start its forward before the backward's gradient arrives, which the order's slot-level
    makespan does not: up to 1 % earlier there.)"""
    sc, layout = _scenario(schedule), Layout(dp=1, pp=P)
    real = build_costs

    def free_sends(*args, **kwargs):
        costs = real(*args, **kwargs)
        free = lambda s: s and dataclasses.replace(s, time_s=0.0, latency_s=0.0, wire_bytes=0.0)  # noqa: E731
        costs.stages[:] = [dataclasses.replace(st, send_forward=free(st.send_forward), logits_s=0.0,
                                               send_backward=free(st.send_backward)) for st in costs.stages]
        return costs

    monkeypatch.setattr(des_run, "build_costs", free_sends)
    result = simulate(sc, layout, SimOptions(contention=False, trace=False))
    est = estimate(sc, layout)
    layer = real(sc, layout, sc.training, default_model(sc.hardware), est.optimizer_time_s).classes[0]
    per_stage = 16 // P
    f, full, w = (per_stage * x for x in (sum(layer.fwd_s.values()), sum(layer.bwd_s.values()), layer.weight_grad_s))
    expected = order_makespan(schedule, M, P, 1, f, full - w, w) + est.optimizer_time_s
    if schedule == "dualpipe":
        assert 0.99 * expected <= result.step_times_s[0] <= expected * (1 + 1e-9)
    else:
        assert result.step_times_s[0] == pytest.approx(expected, rel=1e-6)


def test_mixtral_vp8_simulated_within_two_percent():
    from moesim.specs.load import load_scenario
    sc = load_scenario("mixtral-8x7b-h100-vp8")
    result = simulate(sc, None, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)


def test_deepseek_v3_dualpipe_simulated_near_the_estimate():
    """DeepSeek-V3 under DualPipe on its uneven stages (15 x 4, last stage 1 layer + MTP): the estimate
    charges every micro-batch the slowest stage's time where the simulator's eight-step order runs stage s
    for one direction and stage pp-1-s for the other, so the estimate is an upper bound here (-10.9 % when
    measured after merging the precision recipe; -2.7 % on the even split before it). Asserted: below the
    estimate and within 15 % (20 % since the unfused cross-entropy is priced by its passes, issue 10: the two
    heads' 129K-vocabulary CE make the last stage heavier, -15.5 %)."""
    from moesim.specs.load import load_scenario
    sc = load_scenario("deepseek-v3-h800")  # the scenario file keeps 1F1B (DualPipe does not fit there: see report)
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, pipeline_schedule="dualpipe"))
    result = simulate(sc, None, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] <= result.analytical_step_time_s * 1.001
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.20)
