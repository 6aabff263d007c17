"""Training throughput against Switch Transformers Table 1 (arXiv 2101.03961, §2.3).

Table 1 measured examples/sec on 32 TPU v3 cores for T5-Base, T5-Large and Switch-Base with 128
experts at three capacity factors. The batch is not stated; 2048 sequences (the 2^20-token batch
of §3) is consistent with Table 1's own figures: Switch-Base (CF 1.0) reaches the quality
threshold in 62.8 h at 1000 examples/s = 110k steps of 2048, and the caption says every model
needed "pre-training beyond 100k steps". The TPU v3 profile is uncalibrated, so absolute speeds
are checked loosely and speed *ratios* (what the table is for) tightly.
"""

from __future__ import annotations

import dataclasses

import pytest

from moesim.estimate import estimate
from moesim.specs.layout import Layout
from moesim.specs.load import load_model, load_scenario

# Switch Table 1, "Speed (examples/sec)".
PUBLISHED = {
    ("t5-base", None): 1600,
    ("t5-large", None): 470,
    ("switch-base-128", 2.0): 860,
    ("switch-base-128", 1.25): 910,
    ("switch-base-128", 1.0): 1000,
}


def examples_per_s(model: str, capacity_factor: float | None) -> float:
    base = load_scenario("switch-base-128-tpu-v3")  # 32 TPU v3 cores, 2048 sequences, Mesh-TF einsum dispatch
    spec = load_model(model)
    # Full rematerialisation: without it 64 sequences per core do not fit 16 GiB in this model.
    training = dataclasses.replace(base.training, capacity_factor=capacity_factor, recompute="full")
    scenario = dataclasses.replace(base, model=spec, training=training)
    layout = Layout(dp=32, ep=32 if spec.moe else 1)
    result = estimate(scenario, layout)
    assert result.fits_in_memory
    return base.training.global_batch_sequences / result.step_time_s


@pytest.fixture(scope="module")
def predicted():
    return {key: examples_per_s(*key) for key in PUBLISHED}


def ratio(table, a, b):
    return table[a] / table[b]


@pytest.mark.parametrize("numerator,denominator,tolerance", [
    (("t5-large", None), ("t5-base", None), 0.05),  # 0.294 published; predicted within 5 %
    (("switch-base-128", 1.0), ("t5-base", None), 0.10),  # 0.625 published
    (("switch-base-128", 1.25), ("switch-base-128", 1.0), 0.05),  # 0.91 published
])
def test_speed_ratios(predicted, numerator, denominator, tolerance):
    want = ratio(PUBLISHED, numerator, denominator)
    got = ratio(predicted, numerator, denominator)
    assert abs(got / want - 1) < tolerance, (numerator, denominator, got, want)


def test_capacity_factor_two_is_a_known_overestimate_of_the_slowdown(predicted):
    """Known miss: the einsum dispatch over T5X's 8192-token groups makes CF 2.0 cost 0.66x the CF 1.0
    speed here, against 0.86x published; the gap (about −23 %) is recorded, and bounded."""
    want = ratio(PUBLISHED, ("switch-base-128", 2.0), ("switch-base-128", 1.0))
    got = ratio(predicted, ("switch-base-128", 2.0), ("switch-base-128", 1.0))
    assert -0.30 < got / want - 1 < -0.15


@pytest.mark.parametrize("key", list(PUBLISHED))
def test_absolute_speed_within_uncalibrated_band(predicted, key):
    """Uncalibrated TPU v3 efficiency prior: every speed within +45 % / −25 % of the published one
    (measured: T5 +37 %, Switch CF 1.0 +28 %, CF 2.0 −1 %)."""
    assert 0.75 < predicted[key] / PUBLISHED[key] < 1.45
