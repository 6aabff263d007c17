"""What a DeepSeek-V3 H800 device holds, part by part (session 20, dsv3fit; docs/collectives-history.md).

The shipped layout's fullest rank (DualPipe rank 1: stages 1 and 14, four MoE layers each) priced by hand from the
model's shapes (DeepSeek-V3 config: d 7168, q_lora 1536, kv_lora 512, rope 64, 128 heads of 128 + 64 / v 128, 256
routed experts of 2048, one shared, ep 64 -> 4 experts a device), against DeepSeek-V3 arXiv 2412.19437 §3.3.1 (FP8
GEMM inputs; master weights, weight gradients and optimizer states in higher precision), §3.3 "Low-Precision Storage
and Communication" (BF16 AdamW moments, FP32 master weights and gradients), §3.2 (ZeRO-1) and DualPipe's two
parameter copies (DeepSeek-V3 §3.2.1).
"""

from __future__ import annotations

import dataclasses

import pytest

from moesim import estimate, load_scenario
from moesim.errors import SpecError
from moesim.precision import recipe_values
from moesim.specs.training import TrainingSpec

D, Q_LORA, KV_LORA, ROPE, HEADS, QK_NOPE, V_HEAD, F_EXPERT, EXPERTS, N_ROUTED = \
    7168, 1536, 512, 64, 128, 128, 128, 2048, 4, 256
# One MoE layer's FP8 GEMM weights on a device (tp 1): MLA's q_down, q_up, kv_down (with the rope key), kv_up,
# out_proj; the shared expert's and the 4 local experts' SwiGLU (3 matrices each).
MLA = D * Q_LORA + Q_LORA * HEADS * (QK_NOPE + ROPE) + D * (KV_LORA + ROPE) + KV_LORA * HEADS * (QK_NOPE + V_HEAD) \
    + HEADS * V_HEAD * D
SWIGLU = 3 * D * F_EXPERT
GEMM_DENSE, GEMM_EXPERT = MLA + SWIGLU, EXPERTS * SWIGLU
# The rest stays BF16 (§3.3.1: gating and norms): the router, its bias, two RMSNorms of d and MLA's q / kv norms.
OTHER = N_ROUTED * D + N_ROUTED + 2 * D + Q_LORA + KV_LORA
LAYERS = 8  # stages 1 and 14 of 3 | 14 x 4 | 2, on DualPipe rank 1
SCALE = 4 / (128 * 128)  # one FP32 scale a 128x128 weight block (§3.3.2)


def _fullest(**training):
    sc = load_scenario("deepseek-v3-h800")
    if training:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **training))
    return estimate(sc).memory_bytes_per_device


def test_fullest_rank_parts_by_hand():
    """Weights: BF16 for the non-GEMM parameters, one cached FP8 copy of the GEMM weights (no BF16 copy of them);
    FP32 gradients of every held parameter (ZeRO-1 keeps them whole); FP32 master + two BF16 moments, 8 bytes a
    parameter, sharded over dp 128 (dense) and edp 2 (experts)."""
    assert GEMM_DENSE + GEMM_EXPERT == 407_306_240 and OTHER == 1_851_648
    mem = _fullest()
    assert mem["weights"] == pytest.approx(LAYERS * (2 * OTHER + (GEMM_DENSE + GEMM_EXPERT) * (1 + SCALE)), rel=1e-12)
    held = LAYERS * (GEMM_DENSE + GEMM_EXPERT + OTHER)
    assert mem["gradients"] == pytest.approx(4 * held, rel=1e-12)
    assert mem["optimizer_states"] == pytest.approx(
        (4 + 2 * 2) * LAYERS * ((GEMM_DENSE + OTHER) / 128 + GEMM_EXPERT / 2), rel=1e-12)
    assert mem["framework_buffers"] == 0 and mem["reserved"] == 3 * 2**30
    assert mem["total"] / 2**30 == pytest.approx(65.40, abs=0.005)


def test_bf16_copy_of_gemm_weights_is_what_the_key_removes():
    """The recipe before this lane (the BF16 copy kept) holds exactly 2 bytes more per held FP8 GEMM weight, and
    nothing else moves (gradients, optimizer states, activations)."""
    without, with_copy = _fullest(), _fullest(fp8_gemm_param_copy=True)
    assert with_copy["weights"] - without["weights"] == pytest.approx(2 * LAYERS * (GEMM_DENSE + GEMM_EXPERT),
                                                                      rel=1e-12)
    for part in ("gradients", "optimizer_states", "activations", "moe_buffers", "reserved"):
        assert with_copy[part] == without[part]
    assert with_copy["total"] / 2**30 == pytest.approx(71.47, abs=0.005)


def test_zero3_removes_the_sharded_share():
    """At ZeRO-3 the BF16 parameters are sharded (dense over dp·cp 128, experts over edp 2): the key removes
    that share of the GEMM weights, not the whole."""
    without, with_copy = _fullest(zero_stage=3), _fullest(zero_stage=3, fp8_gemm_param_copy=True)
    assert with_copy["weights"] - without["weights"] == pytest.approx(
        2 * LAYERS * (GEMM_DENSE / 128 + GEMM_EXPERT / 2), rel=1e-12)


def test_recipes_and_default():
    """Only the DeepSeek recipe drops the copy; TrainingSpec keeps it by default (Megatron + TE's BF16 parameters)."""
    assert recipe_values("deepseek-v3-fp8")["fp8_gemm_param_copy"] is False
    assert "fp8_gemm_param_copy" not in recipe_values("te-delayed-scaling")
    assert TrainingSpec(global_batch_sequences=8).fp8_gemm_param_copy is True


@pytest.mark.parametrize("keys", [dict(),  # BF16 GEMMs read the BF16 copy
                                  dict(precision_recipe="te-delayed-scaling", fp8_weight_cache=False)])
def test_dropping_the_copy_needs_cached_fp8_gemm_weights(keys):
    with pytest.raises(SpecError, match="fp8_gemm_param_copy"):
        TrainingSpec.with_recipe(global_batch_sequences=8, fp8_gemm_param_copy=False, **keys)
