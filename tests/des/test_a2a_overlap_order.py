"""Megatron-Core's EP A2A overlap (training.moe_a2a_overlap): the interleaved order's FB slots, the estimate's pairs,
the spec's refusal outside the interleaved schedule (session 21, a2aoverlap); pp 1 and the ep 1 refusal (overlapep1)."""

import dataclasses

import numpy as np
import pytest

from moesim.des.orders import Slot, device_order
from moesim.errors import SpecError
from moesim.megatron_rules import MEGATRON_REASONS, megatron_fails
from moesim.estimate.schedules import interleaved_pairs, pipeline_time_s
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario


@pytest.mark.parametrize("device", [0, 1, 3])
def test_the_overlap_pairs_every_steady_state_forward_with_a_backward(device):
    m, p, v = 8, 4, 2
    plain = device_order("interleaved", m, p, v, device)
    paired = device_order("interleaved", m, p, v, device, a2a_overlap=True)
    warm = 2 * (p - device - 1) + (v - 1) * p + 1  # Megatron's warm-up, one more with the overlap
    assert [s.kind for s in paired[:warm]] == ["F"] * warm
    fb = [s for s in paired if s.kind == "FB"]
    assert len(fb) == m * v - warm and all(s.pair[0] == "B" for s in fb)
    # the same forwards and backwards, in the same order each, only grouped differently
    fwd = lambda order: [(s.mb, s.vs) for s in order if s.kind in ("F", "FB")]  # noqa: E731
    bwd = lambda order: [(s.mb, s.vs) for s in order if s.kind == "B"]  # noqa: E731
    assert fwd(paired) == fwd(plain)
    backwards = [s.pair[1:] for s in fb] + [(s.mb, s.vs) for s in paired if s.kind == "B"]
    assert backwards == bwd(plain)


def test_the_estimate_counts_the_last_devices_pairs():
    """The longest path runs through the last device's slots (schedules.interleaved_pairs; session 22, spoverlap):
    its (v − 1)·p + 1 warm-up forwards, the rest FB slots; the first device's count (session 21) is 2(p − 1)/v
    micro-batches fewer."""
    assert interleaved_pairs(8, 4, 2) == pytest.approx((16 - 5) / 2)
    assert interleaved_pairs(8, 4, 2) - (16 - 11) / 2 == pytest.approx(2 * (4 - 1) / 2)
    assert interleaved_pairs(2, 4, 2) == 0.0
    assert interleaved_pairs(3, 4, 2) == pytest.approx((6 - 5) / 2)  # the first device would run none
    assert interleaved_pairs(4, 1, 1) == pytest.approx(3.0)  # pp 1: m − 1, the first device is the last
    for m, p, v in ((16, 4, 2), (8, 2, 4), (32, 8, 2)):
        last = device_order("interleaved", m, p, v, p - 1, a2a_overlap=True)
        assert interleaved_pairs(m, p, v) == pytest.approx(sum(s.kind == "FB" for s in last) / v)
    sched = np.array(["interleaved", "1f1b"])
    t, o = np.array([2.0, 2.0]), np.array([1.5, 1.5])
    on, _ = pipeline_time_s(sched, 8, 4, 2, t, t / 3, t / 3, t / 3, 0.0, None, 0.0, None, a2a_pair_s=o)
    off, _ = pipeline_time_s(sched, 8, 4, 2, t, t / 3, t / 3, t / 3, 0.0, o, 0.0, None)
    assert on[0] == pytest.approx(off[0] - 5.5 * (2.0 - 1.5)) and on[1] == off[1]


def test_the_overlap_outside_its_schedules_is_refused():
    """Interleaved, or 1f1b at pp 1 (Megatron-LM d98e8a64 transformer_config.py l.3007-3011; session 21, overlapep1)."""
    sc = load_scenario("mixtral-8x7b-h100")
    with pytest.raises(SpecError, match="interleaved schedule, or 1f1b at pp 1"):
        dataclasses.replace(sc.training, pipeline_schedule="gpipe", moe_a2a_overlap=True)
    assert dataclasses.replace(sc.training, pipeline_schedule="interleaved", moe_a2a_overlap=True).moe_a2a_overlap
    on = dataclasses.replace(sc, training=dataclasses.replace(sc.training, moe_a2a_overlap=True))  # 1f1b
    with pytest.raises(SpecError, match="at pp = 4 needs pipeline_schedule = interleaved"):
        on.check(Layout(dp=16, ep=8, pp=4))
    on.check(Layout(dp=64, ep=8), micro_batches=4)  # pp 1: Megatron's combined_1f1b_schedule_for_no_pipelining


def test_the_overlap_at_ep_1_is_refused_and_the_search_does_not_rank_it():
    """Megatron-LM d98e8a64 transformer_config.py l.3013-3015 asserts expert_model_parallel_size > 1."""
    sc = load_scenario("mixtral-8x7b-h100")
    on = dataclasses.replace(sc, training=dataclasses.replace(sc.training, moe_a2a_overlap=True))
    with pytest.raises(SpecError, match="moe_a2a_overlap needs ep > 1"):
        on.check(Layout(dp=64, ep=1), micro_batches=4)
    sc.check(Layout(dp=64, ep=1), micro_batches=4)  # without the overlap the layout runs
    g = {"tp": np.array([1, 1]), "ep": np.array([1, 8]), "etp": np.array([1, 1])}
    assert list(megatron_fails(on, g)[-1]) == [True, False]
    assert not megatron_fails(sc, g)[-1].any()
    assert list(MEGATRON_REASONS)[-1] == "megatron_a2a_overlap_needs_ep_above_1"


def test_at_pp_1_the_overlap_runs_megatrons_no_pipelining_order():
    """combined_1f1b.py l.35-135: F0 alone, forward i beside backward i − 1, the last backward alone."""
    order = device_order("1f1b", 4, 1, 1, 0, a2a_overlap=True)
    assert order[0] == Slot("F", 0, 0) and order[-1] == Slot("B", 3, 0)
    assert [(s.kind, s.mb, s.pair) for s in order[1:-1]] == [("FB", i, ("B", i - 1, 0)) for i in (1, 2, 3)]
    assert [s.kind for s in device_order("1f1b", 4, 1, 1, 0)] == ["F", "B"] * 4  # without it: plain
    sched = np.array(["1f1b", "1f1b"])
    t, o = np.array([2.0, 2.0]), np.array([1.5, 1.5])
    on, _ = pipeline_time_s(sched, 4, np.array([1, 2]), 1, t, t / 3, t / 3, t / 3, 0.0, None, 0.0, None,
                            a2a_pair_s=o)
    off, _ = pipeline_time_s(sched, 4, np.array([1, 2]), 1, t, t / 3, t / 3, t / 3, 0.0, None, 0.0, None)
    assert on[0] == pytest.approx(off[0] - 3 * (2.0 - 1.5)) and on[1] == off[1]  # m − 1 pairs at pp 1 only


def test_the_overlap_with_full_recomputation_is_refused():
    """Megatron-LM d98e8a64 transformer_config.py l.3021-3023 asserts it (review21: it was priced silently)."""
    sc = load_scenario("mixtral-8x7b-h100")
    on = dataclasses.replace(sc.training, pipeline_schedule="interleaved", moe_a2a_overlap=True)
    with pytest.raises(SpecError, match="full recomputation") as err:
        dataclasses.replace(on, recompute="full")
    assert err.value.field == "training.recompute" and "selective" in str(err.value)
    assert dataclasses.replace(on, recompute="selective").recompute == "selective"
