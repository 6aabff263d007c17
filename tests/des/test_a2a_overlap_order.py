"""Megatron-Core's EP A2A overlap (training.moe_a2a_overlap): the interleaved order's FB slots, the estimate's pairs,
the spec's refusal outside the interleaved schedule (session 21, a2aoverlap)."""

import dataclasses

import numpy as np
import pytest

from moesim.des.orders import device_order
from moesim.errors import SpecError
from moesim.estimate.schedules import interleaved_pairs, pipeline_time_s
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


def test_the_estimate_counts_the_first_devices_pairs():
    assert interleaved_pairs(8, 4, 2) == pytest.approx((16 - 11) / 2)
    assert interleaved_pairs(2, 4, 2) == 0.0
    sched = np.array(["interleaved", "1f1b"])
    t, o = np.array([2.0, 2.0]), np.array([1.5, 1.5])
    on, _ = pipeline_time_s(sched, 8, 4, 2, t, t / 3, t / 3, t / 3, 0.0, None, 0.0, None, a2a_pair_s=o)
    off, _ = pipeline_time_s(sched, 8, 4, 2, t, t / 3, t / 3, t / 3, 0.0, o, 0.0, None)
    assert on[0] == pytest.approx(off[0] - 2.5 * (2.0 - 1.5)) and on[1] == off[1]


def test_the_overlap_outside_the_interleaved_schedule_is_refused():
    sc = load_scenario("mixtral-8x7b-h100")
    with pytest.raises(SpecError, match="interleaved schedule only"):
        dataclasses.replace(sc.training, moe_a2a_overlap=True)
    assert dataclasses.replace(sc.training, pipeline_schedule="interleaved", moe_a2a_overlap=True).moe_a2a_overlap


def test_the_overlap_with_full_recomputation_is_refused():
    """Megatron-LM d98e8a64 transformer_config.py l.3021-3023 asserts it (review21: it was priced silently)."""
    sc = load_scenario("mixtral-8x7b-h100")
    on = dataclasses.replace(sc.training, pipeline_schedule="interleaved", moe_a2a_overlap=True)
    with pytest.raises(SpecError, match="full recomputation") as err:
        dataclasses.replace(on, recompute="full")
    assert err.value.field == "training.recompute" and "selective" in str(err.value)
    assert dataclasses.replace(on, recompute="selective").recompute == "selective"
