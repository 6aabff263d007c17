"""Activation memory per tensor class: GEMM inputs stored in BF16 or FP8, the MoE activation recomputed,
the logits with and without a fused cross-entropy (../shared/reference/wave2.md §6.1, §8.2)."""

from __future__ import annotations

import numpy as np
import pytest

from moesim import memory as mem

S, B, H, A, F = 4096, 1, 7168, 128, 2048
R = 8 * S  # token slots of a top-8 dropless MoE layer
E = 256
FP8_BLOCK = 1 + 4 / 128  # an FP8 element with its 1×128 FP32 scale
NONE = np.asarray(0)


def test_attention_keeps_two_gemm_inputs_per_block():
    """Korthikanti 11sbh: QKV input 2 + projection input 2 are GEMM inputs; Q, K, V (6) and the mask (1) are not."""
    bf16 = mem.attention_activation_bytes(B, S, S, H, A, 1, False, np.asarray(1))
    fp8 = mem.attention_activation_bytes(B, S, S, H, A, 1, False, np.asarray(1), FP8_BLOCK)
    assert bf16 == pytest.approx(11 * S * B * H)
    assert bf16 - fp8 == pytest.approx(2 * (2 - FP8_BLOCK) * S * B * H)


def test_mlp_fp8_storage_and_activation_recompute():
    """Gated MLP, per token: input q_st·h + mask h; SwiGLU input 2f at 2 bytes; its output f at q_st.
    Recomputed activation: the SwiGLU input only, at q_st (DeepSeek-V3 §3.3.4)."""
    per = lambda *a: mem.mlp_activation_bytes(B, S, H, F, 1, False, "swiglu", *a) / (S * B)  # noqa: E731
    assert per() == pytest.approx(3 * H + 2 * 2 * F + 2 * F)
    assert per(1.0) == pytest.approx(2 * H + 2 * 2 * F + 1 * F)
    assert per(1.0, True) == pytest.approx(2 * H + 1 * 2 * F)
    # Non-gated: FC1 out f at 2 bytes, GeLU output f at q_st: f = 4h, q_st = 2 gives Korthikanti's 19sbh.
    assert mem.mlp_activation_bytes(B, S, H, 4 * H, 1, False, "gelu") == pytest.approx(19 * S * B * H)


def test_moe_layer_per_tensor_class():
    """modeling.md §4.2: input 2th + mask th + router 8tE + permuted input q_st·hr + expert outputs 2hr + FFN."""
    base = (2 + 1) * S * H + 8 * S * E
    bf16 = mem.moe_activation_bytes(S, R, H, F, E, 1, "swiglu", False, 0)
    assert bf16 == pytest.approx(base + 2 * H * R + 2 * H * R + R * (2 * 2 * F + 2 * F))
    fp8 = mem.moe_activation_bytes(S, R, H, F, E, 1, "swiglu", False, 0, FP8_BLOCK)
    assert fp8 == pytest.approx(base + FP8_BLOCK * H * R + 2 * H * R + R * (2 * 2 * F + FP8_BLOCK * F))
    # DeepSeek-V3: SwiGLU recomputed from its FP8 input, probabilities applied inside it: no expert outputs kept.
    dsv3 = mem.moe_activation_bytes(S, R, H, F, E, 1, "swiglu", False, 0, FP8_BLOCK, True)
    assert dsv3 == pytest.approx(base + FP8_BLOCK * H * R + R * FP8_BLOCK * 2 * F)
    assert dsv3 < 0.45 * bf16


def test_fp8_storage_never_grows_memory_and_expert_tp_splits_the_ffn():
    for q_store in (2.0, FP8_BLOCK, 1.0):
        one = mem.moe_activation_bytes(S, R, H, F, E, 1, "swiglu", False, 0, q_store)
        two = mem.moe_activation_bytes(S, R, H, F, E, 2, "swiglu", False, 0, q_store)
        assert one - two == pytest.approx(R * mem.ffn_inner_bytes_per_token(F, "swiglu", q_store) / 2)
    assert mem.moe_activation_bytes(S, R, H, F, E, 1, "gelu", False, 0, 1.0) < \
        mem.moe_activation_bytes(S, R, H, F, E, 1, "gelu", False, 0)


def test_logits_with_and_without_cross_entropy_fusion():
    """Unfused: FP32 softmax 4·s·b·V/t; TE fused CE: the BF16 logits + two FP32 statistics per row (wave2.md §8.2)."""
    V, t = 129280, 2
    unfused = mem.logits_bytes(B, S, V, t)
    fused = mem.logits_bytes(B, S, V, t, True)
    assert unfused == 4 * S * B * V / t
    assert fused == 2 * S * B * V / t + 8 * S * B
    # MTP (D = 1): a second logits tensor on the last stage (wave2.md §8.1: 2.1 GB per 4k-token micro-batch).
    assert mem.logits_bytes(B, S, V, 1, heads=2) == pytest.approx(2 * 2.118e9, rel=1e-3)
    assert mem.logits_bytes(B, S, V, 1, True, 2, 2) == pytest.approx(2 * (2 * S * V + 8 * S))


def test_mtp_module_inputs():
    """M_k's input 2h per token at q_st plus the inputs of its two RMSNorms (DeepSeek-V3 eq. 21)."""
    assert mem.mtp_input_activation_bytes(B, S, H, 1, False) == 8 * S * B * H
    assert mem.mtp_input_activation_bytes(B, S, H, 4, True, 1.0) == (2 + 4) * S * B * H / 4


def test_recomputed_norms_mla_up_projections_and_no_dropout():
    """DeepSeek-V3 §3.2.3: RMSNorm outputs and MLA up-projection outputs are not stored; without dropout no masks
    and an attention core of 2·a·s² (softmax output only) instead of 5·a·s²."""
    r_q, r_kv, d_r = 1536, 512, 64
    full = mem.attention_activation_bytes(B, S, S, H, A, 1, False, NONE)
    lean = mem.attention_activation_bytes(B, S, S, H, A, 1, False, NONE, 2, q_input=0.0, mask=0.0,
                                          qkv_per_token=r_q + r_kv + d_r)
    assert full - lean == pytest.approx((2 + 1) * S * B * H + 2 * (3 * H - (r_q + r_kv + d_r)) * S * B
                                        + 3 * A * S * S * B)
    assert mem.mlp_activation_bytes(B, S, H, F, 1, False, "swiglu", 2, False, 0.0, 0.0) == \
        pytest.approx(S * B * (2 * 2 * F + 2 * F))
    assert mem.moe_activation_bytes(S, R, H, F, E, 1, "swiglu", False, 0, 2, False, 0.0, 0.0) == \
        pytest.approx(mem.moe_activation_bytes(S, R, H, F, E, 1, "swiglu", False, 0) - 3 * S * H)
    assert mem.mtp_input_activation_bytes(B, S, H, 1, False, 1.0, 0.0) == 4 * S * B * H


def test_ema_location_charges_the_device_only_when_kept_there():
    """DeepSeek-V3 §3.2.3 keeps the parameters' EMA in CPU memory: "host" and "none" cost no device memory,
    "device" adds ema_dtype bytes per parameter to the optimizer states (sharded with them under ZeRO)."""
    from moesim.specs.training import TrainingSpec  # noqa: PLC0415
    base = TrainingSpec(global_batch_sequences=8)
    host = TrainingSpec(global_batch_sequences=8, ema_location="host")
    device = TrainingSpec(global_batch_sequences=8, ema_location="device")
    bf16 = TrainingSpec(global_batch_sequences=8, ema_location="device", ema_dtype="bfloat16")
    k = [mem.optimizer_state_bytes_per_param(t, 1024, 1024) for t in (base, host, device, bf16)]
    assert k == [12, 12, 16, 14]


def test_ema_location_is_validated():
    from moesim.errors import SpecError  # noqa: PLC0415
    from moesim.specs.training import TrainingSpec  # noqa: PLC0415
    with pytest.raises(SpecError, match="'gpu' is not allowed"):
        TrainingSpec(global_batch_sequences=8, ema_location="gpu")


def test_attention_output_is_stored_at_its_own_width_and_format():
    """The output projection's input is a·d_v per token (MLA: 128 x 128 = 16384 against h = 7168) kept at
    attention_output_storage_bits / 8 + scales (DeepSeek-V3 §3.3.4: E5M6, 12 bits, 1x128 tiles)."""
    from moesim.specs.training import TrainingSpec  # noqa: PLC0415
    tr = TrainingSpec.with_recipe(global_batch_sequences=8, precision_recipe="deepseek-v3-fp8")
    assert tr.attention_output_storage_bits == 12
    assert tr.attention_output_storage_bytes == pytest.approx(1.5 + 4 / 128)
    fp8 = TrainingSpec.with_recipe(global_batch_sequences=8, precision_recipe="deepseek-v3-fp8",
                                   attention_output_storage_bits=0)
    assert fp8.attention_output_storage_bytes == fp8.element_bytes("activation_storage") == pytest.approx(1 + 4 / 128)
    rec = np.asarray(1)
    kw = dict(q_input=0.0, mask=0.0, qkv_per_token=2112)
    narrow = mem.attention_activation_bytes(1, 4096, 4096, 7168, 128, 1, False, rec, 1.0, **kw)
    wide = mem.attention_activation_bytes(1, 4096, 4096, 7168, 128, 1, False, rec, 1.0, **kw,
                                          proj_in_per_token=16384, q_proj=1.5)
    assert wide - narrow == pytest.approx(4096 * (16384 * 1.5 - 7168 * 1.0))
