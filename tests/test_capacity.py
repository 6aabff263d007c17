"""Expert capacity rules and the closed-form dropped-token fraction (modeling.md §1.2, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from moesim.capacity import expected_drop_fraction, expected_max_load, expert_capacity, expert_capacity_array
from moesim.errors import SpecError


def test_capacity_rules():
    # Switch Eq. 3 / Mesh-TF: floor(tokens·CF/E), top-k ignored.
    assert expert_capacity(1000, 64, 2, 1.25, "switch") == 19
    # Megatron-Core get_capacity: ceil(tokens·k·CF/E).
    assert expert_capacity(1000, 64, 2, 1.25, "megatron") == 40
    # MegaBlocks: floor(tokens·k·CF/E).
    assert expert_capacity(1000, 64, 2, 1.25, "megablocks") == 39
    assert expert_capacity(1000, 64, 2, None, "dropless") == 2000
    assert expert_capacity(512, 2048, 1, 1.0, "switch", min_capacity=2) == 2  # T5X min_expert_capacity
    with pytest.raises(SpecError, match="allowed: switch, megatron, megablocks, dropless"):
        expert_capacity(1, 1, 1, 1.0, "nope")


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 100_000), st.integers(1, 512), st.integers(1, 4),
       st.floats(0.25, 4.0), st.sampled_from(["switch", "megatron", "megablocks"]))
def test_array_form_agrees_with_scalar(tokens, experts, k, cf, rule):
    k = min(k, experts)
    scalar = expert_capacity(tokens, experts, k, cf, rule)
    array = expert_capacity_array(np.array([tokens]), experts, k, np.array([cf]), rule)[0]
    assert abs(array - scalar) <= 1  # the array form guards float rounding at exact multiples
    if abs(tokens * k * cf / experts - round(tokens * k * cf / experts)) > 1e-6 and \
            abs(tokens * cf / experts - round(tokens * cf / experts)) > 1e-6:
        assert array == scalar


@pytest.mark.parametrize("mean,capacity,expected,tol", [
    (64, 80, 0.001, 0.0005),  # modeling.md §5.4: μ = 64, CF = 1.25 ⇒ ≈ 0.1 % dropped
    (64, 64, 0.05, 0.005),  # μ = 64, CF = 1.0 ⇒ ≈ 5 %
    (1, 1, np.exp(-1), 0.002),  # μ = 1, CF = 1 ⇒ E[(X−1)+] = e^{−1} ⇒ 37 % (Poisson limit)
])
def test_drop_fraction_closed_forms(mean, capacity, expected, tol):
    experts = 2048
    assert expected_drop_fraction(mean * experts, experts, 1, capacity) == pytest.approx(expected, abs=tol)


def test_drop_fraction_matches_sampling():
    rng = np.random.default_rng(0)
    tokens, experts, capacity = 4096, 64, 72
    loads = rng.multinomial(tokens, np.full(experts, 1 / experts), size=4000)
    sampled = np.maximum(loads - capacity, 0).sum(axis=1).mean() / tokens
    assert expected_drop_fraction(tokens, experts, 1, capacity) == pytest.approx(sampled, rel=0.05)


def test_expected_max_load_tracks_sampling():
    rng = np.random.default_rng(1)
    tokens, groups = 1_000_000, 64
    sampled = rng.multinomial(tokens, np.full(groups, 1 / groups), size=500).max(axis=1).mean()
    assert expected_max_load(tokens, groups) == pytest.approx(sampled, rel=0.002)
