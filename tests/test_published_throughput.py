"""Training throughput against Switch Transformers Table 1 (arXiv 2101.03961, §2.3).

Table 1 measured examples/sec on 32 TPU v3 cores for T5-Base, T5-Large and Switch-Base with 128
experts at three capacity factors. The batch is not stated; 2048 sequences (the 2^20-token batch
of §3) is consistent with Table 1's own figures: Switch-Base (CF 1.0) reaches the quality
threshold in 62.8 h at 1000 examples/s = 110k steps of 2048, and the caption says every model
needed "pre-training beyond 100k steps". The TPU v3 profile is uncalibrated, so absolute speeds
are checked loosely and speed *ratios* (what the table is for) tightly.

Routing is Mesh-TensorFlow's (the runs' framework, §2.2): groups of 1024 tokens (MoE1D's default
group size; the runs' own setting is unpublished), each with an einsum dispatch and combine of
2·g·E·C·h FLOP per group, i.e. 2·g·CF·h per token: the einsum's cost per token grows with the
group size g. Two known misses remain, both from one capacity-independent cost moesim lacks (see
`test_capacity_independent_moe_cost_is_a_known_miss`).
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
BATCH = 2048  # sequences per step (module docstring)
T5_BASE, T5_LARGE = ("t5-base", None), ("t5-large", None)
SWITCH = {cf: ("switch-base-128", cf) for cf in (1.0, 1.25, 2.0)}


def examples_per_s(model: str, capacity_factor: float | None) -> float:
    base = load_scenario("switch-base-128-tpu-v3")  # 32 TPU v3 cores, 2048 sequences, Mesh-TF einsum dispatch
    spec = load_model(model)
    if spec.moe:  # the scenario's Mesh-TF routing groups, not the model file's T5X ones
        spec = dataclasses.replace(spec, moe=base.model.moe)
    # Full rematerialisation: without it 64 sequences per core do not fit 16 GiB in this model.
    training = dataclasses.replace(base.training, capacity_factor=capacity_factor, recompute="full")
    scenario = dataclasses.replace(base, model=spec, training=training)
    layout = Layout(dp=32, ep=32 if spec.moe else 1)
    result = estimate(scenario, layout)
    assert result.fits_in_memory
    return BATCH / result.step_time_s


@pytest.fixture(scope="module")
def predicted():
    return {key: examples_per_s(*key) for key in PUBLISHED}


def ratio(table, a, b):
    return table[a] / table[b]


def step_s(table, key):
    return BATCH / table[key]


@pytest.mark.parametrize("numerator,denominator,tolerance", [
    (T5_LARGE, T5_BASE, 0.07),  # 0.294 published; predicted +5.9 % (+2.7 % before per-operator pricing)
    (SWITCH[1.25], SWITCH[1.0], 0.05),  # 0.91 published; predicted +2.1 %
])
def test_speed_ratios(predicted, numerator, denominator, tolerance):
    want = ratio(PUBLISHED, numerator, denominator)
    got = ratio(predicted, numerator, denominator)
    assert abs(got / want - 1) < tolerance, (numerator, denominator, got, want)


def test_capacity_proportional_cost_fits_mesh_tf_groups(predicted):
    """What raising the capacity factor from 1.0 to 2.0 adds to a step (padded expert FFN slots, the
    dispatch and combine einsums, all-to-all bytes), over T5-Base's step: published
    (2048/860 − 2048/1000) / (2048/1600) = 0.26; predicted 0.337 (+29 %; 0.354, +36 %, before per-operator pricing) with 1024-token groups.
    The einsum term alone would rule out larger groups: T5X's 8192 gives +206 %, App. F's one group
    per core (32768 tokens) +704 %."""
    def cost(table):
        return (step_s(table, SWITCH[2.0]) - step_s(table, SWITCH[1.0])) / step_s(table, T5_BASE)
    assert abs(cost(predicted) / cost(PUBLISHED) - 1) < 0.5


def test_capacity_independent_moe_cost_is_a_known_miss(predicted):
    """Known miss: Switch-Base at CF 1.0 runs 0.625x T5-Base's speed, moesim says 0.868x (+39 %; 0.855x, +37 %, before per-operator pricing).

    A least-squares line through the three published Switch steps (2.05, 2.25, 2.38 s at CF 1.0,
    1.25, 2.0) is 1.81 s + 0.30 s·CF: at zero capacity Switch-Base would still take 0.53 s more than
    T5-Base's whole 1.28 s step, though it lacks the FFNs of the 12 layers it makes sparse. moesim's
    line is 0.76 s + 0.33 s·CF, 0.17 s *below* its T5-Base (0.94 s): its capacity-proportional cost
    matches, a capacity-independent cost of the MoE layers (of the order of 0.5 s a step) is absent.
    Not modelled candidates: the float32 gating ops (softmax, top-1, one-hot, cumsum; GShard §5.2:
    "not designed to utilize TPUs well"), fixed per-call costs of the 72 all-to-alls a step."""
    got = ratio(predicted, SWITCH[1.0], T5_BASE) / ratio(PUBLISHED, SWITCH[1.0], T5_BASE) - 1
    assert 0.25 < got < 0.5


def test_capacity_factor_two_is_a_known_overestimate_of_the_slowdown(predicted):
    """Known miss, from the same missing capacity-independent cost: CF 2.0 runs 0.774x the CF 1.0
    speed here against 0.86x published (−10.0 %; −10.8 % before per-operator pricing); the added step time itself matches (see above).
    (Was −23 % with T5X's 8192-token groups, whose einsum made capacity 3x too expensive.)"""
    got = ratio(predicted, SWITCH[2.0], SWITCH[1.0]) / ratio(PUBLISHED, SWITCH[2.0], SWITCH[1.0]) - 1
    assert -0.15 < got < -0.05


@pytest.mark.parametrize("key", [T5_BASE, T5_LARGE])
def test_dense_absolute_speed_within_uncalibrated_band(predicted, key):
    """Uncalibrated TPU v3 efficiency prior: T5 speeds within +45 % / −25 % of the published ones
    (measured: T5-Base +20 %, T5-Large +27 %; +37 %, +41 % before norms, activations and residual adds
    were priced as memory-bound operators, moesim/ops)."""
    assert 0.75 < predicted[key] / PUBLISHED[key] < 1.45


@pytest.mark.parametrize("key", list(SWITCH.values()))
def test_switch_absolute_speed_known_overestimate(predicted, key):
    """The uncalibrated prior (T5: about 1.4x too fast) times the missing capacity-independent MoE
    cost (about 1.37x): Switch-Base speeds 1.4x–2.1x the published ones (measured: CF 1.0 +66 %,
    CF 1.25 +70 %, CF 2.0 +50 %; +87 %, +91 %, +67 % before per-operator pricing, moesim/ops)."""
    assert 1.4 < predicted[key] / PUBLISHED[key] < 2.1
