"""Memory formulas against Korthikanti et al. 2022 (arXiv 2205.05198, Table 2) and ZeRO (arXiv 1910.02054)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from moesim import memory as mem
from moesim.specs.training import TrainingSpec

S, B, H, A = 2048, 4, 4096, 32  # a GPT-like layer; f = 4h as Korthikanti assumes
F = 4 * H


def dense_layer(tp, sp, recompute):
    """attention + MLP + two layer norms, as the estimate adds them for a dense layer (Korthikanti's unfused
    attention kernel, which keeps the a·s² scores)."""
    rec = np.asarray(mem.RECOMPUTE_CODES[recompute])
    return (mem.attention_activation_bytes(B, S, S, H, A, tp, sp, rec, kernel="unfused")
            + mem.mlp_activation_bytes(B, S, H, F, tp, sp, "gelu")
            + mem.norm_activation_bytes(B, S, H, tp, sp, 2))


def test_no_parallelism_is_34sbh_plus_5as2b():
    """Korthikanti Eq. 1: sbh(34 + 5as/h) bytes per layer."""
    assert dense_layer(1, False, "none") == pytest.approx(S * B * H * (34 + 5 * A * S / H))


@pytest.mark.parametrize("t", [2, 4, 8])
def test_tensor_parallel_without_sp(t):
    """Korthikanti Eq. 2: sbh(10 + 24/t + 5as/(ht))."""
    assert dense_layer(t, False, "none") == pytest.approx(S * B * H * (10 + 24 / t + 5 * A * S / (H * t)))


@pytest.mark.parametrize("t", [2, 4, 8])
def test_tensor_and_sequence_parallel(t):
    """Korthikanti Eq. 4: (sbh/t)(34 + 5as/h)."""
    assert dense_layer(t, True, "none") == pytest.approx(S * B * H / t * (34 + 5 * A * S / H))


@pytest.mark.parametrize("t", [1, 2, 8])
def test_selective_recompute_with_sp(t):
    """Korthikanti Eq. 6: 34·sbh/t."""
    assert dense_layer(t, True, "selective") == pytest.approx(34 * S * B * H / t)


def test_full_recompute_keeps_layer_input():
    """Korthikanti Table 2: full recomputation stores 2sbh per layer."""
    assert mem.full_recompute_bytes(B, S, H, 1, False) == 2 * S * B * H


ZERO_PARAMS = 7.5e9  # ZeRO Figure 1: Ψ = 7.5B, N_d = 64, K = 12
ZERO_DP = 64
MIXED_ADAM = TrainingSpec(global_batch_sequences=1, param_dtype="bfloat16", grad_dtype="bfloat16",
                          optimizer="adam", optimizer_state_dtype="float32", master_weights=True)


@pytest.mark.parametrize("stage,published_gb", [
    (0, 120.0),  # ZeRO Fig. 1 "Baseline": (2 + 2 + K)·Ψ = 120 GB
    (1, 31.4),  # P_os: 2Ψ + 2Ψ + KΨ/N_d = 31.4 GB
    (2, 16.6),  # P_os+g: 2Ψ + (2 + K)Ψ/N_d = 16.6 GB
    (3, 1.9),  # P_os+g+p: (2 + 2 + K)Ψ/N_d = 1.9 GB
])
def test_zero_figure_1(stage, published_gb):
    k = mem.optimizer_state_bytes_per_param(MIXED_ADAM, 4096, 4096)
    assert k == 12  # ZeRO §3.1: K = 12 for mixed-precision Adam
    parts = mem.model_state_bytes(ZERO_PARAMS, ZERO_DP, stage, MIXED_ADAM, k)
    total_gb = float(sum(parts)) / 1e9
    assert total_gb == pytest.approx(published_gb, abs=0.05)


def test_megatron_eighteen_bytes_per_param():
    """Megatron keeps fp32 main grads: 2 + 4 + 12 = 18 B/param (theoretical_memory_usage.py)."""
    training = TrainingSpec(global_batch_sequences=1, grad_dtype="float32")
    k = mem.optimizer_state_bytes_per_param(training, 4096, 4096)
    assert float(sum(mem.model_state_bytes(1.0, 8, 0, training, k))) == 18


def test_adafactor_factored_state_is_small():
    training = TrainingSpec(global_batch_sequences=1, param_dtype="float32", optimizer="adafactor",
                            master_weights=False)
    assert mem.optimizer_state_bytes_per_param(training, 1000, 4000) == pytest.approx(4 * 5000 / 4e6)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 64), st.sampled_from([0, 1, 2, 3]))
def test_zero_sharding_never_increases_memory(n, stage):
    k = mem.optimizer_state_bytes_per_param(MIXED_ADAM, 1, 1)
    lower = float(sum(mem.model_state_bytes(1e9, n, stage, MIXED_ADAM, k)))
    higher = float(sum(mem.model_state_bytes(1e9, n, max(stage - 1, 0), MIXED_ADAM, k)))
    more_devices = float(sum(mem.model_state_bytes(1e9, n + 1, stage, MIXED_ADAM, k)))
    assert lower <= higher and more_devices <= lower


def test_in_flight_micro_batches():
    assert mem.in_flight_micro_batches("1f1b", 8, 4, 0) == 4  # first stage holds pp micro-batches
    assert mem.in_flight_micro_batches("1f1b", 8, 4, 3) == 1
    assert mem.in_flight_micro_batches("1f1b", 2, 4, 0) == 2
    assert mem.in_flight_micro_batches("gpipe", 8, 4, 3) == 8
