"""Session 19 (actmem): the activations a flash attention kernel keeps, counted by hand from the shapes of the
tensors Megatron-LM 23e00ed0 and TransformerEngine v2.11 save for backward, and the B200 runs' measured memory
(validation only, never fitted)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim import memory as mem
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.estimate.selective import flash_qkv_per_token, stored_inputs
from moesim.specs.load import load_scenario
from moesim.specs.training import TrainingSpec

NONE = np.asarray(0)
SELECTIVE = np.asarray(1)
GIB = 2**30

# Llama-3-70B (arXiv 2407.21783 Table 3): h 8192, 64 heads, 8 KV heads of 128; one 4096-token sequence, TP8 + SP.
B, S, H, A, G, D, TP = 1, 4096, 8192, 64, 8, 128, 8


def test_flash_attention_keeps_what_te_saves_llama3_70b():
    """Per device, bf16 (2 bytes), SP divides everything by t: the QKV GEMM's input (LayerNormLinear ln_out) s·h,
    Q s·a·d, K and V s·g·d each (FusedAttnFunc q, k, v), O s·a·d (also linear_proj's input), FP32 softmax
    statistics [b, a, s, 1]; no dropout mask (--attention-dropout 0.0 --hidden-dropout 0.0)."""
    hand = (2 * S * H + 2 * S * A * D + 2 * 2 * S * G * D + 2 * S * A * D + 4 * A * S) / TP
    qkv = mem.qkv_per_token_flash(A, G, D)
    assert qkv == A * D + 2 * G * D == 10240
    got = mem.attention_activation_bytes(B, S, S, H, A, TP, True, NONE, q_input=2, mask=0.0, qkv_per_token=qkv,
                                         proj_in_per_token=A * D, kernel="flash")
    assert got == pytest.approx(hand)
    assert got / 2**20 == pytest.approx(26.125)  # MiB per layer per micro-batch


def test_flash_keeps_no_score_matrix_and_selective_drops_only_the_statistics():
    kw = dict(q_input=2, mask=0.0, qkv_per_token=3 * H, kernel="flash")
    one = mem.attention_activation_bytes(B, S, S, H, A, 1, False, NONE, **kw)
    cross = mem.attention_activation_bytes(B, S, 4 * S, H, A, 1, False, NONE, **kw)
    assert cross == one  # nothing of size n_q·n_kv
    assert mem.attention_activation_bytes(B, 2 * S, 2 * S, H, A, 1, False, NONE, **kw) == pytest.approx(2 * one)
    rec = mem.attention_activation_bytes(B, S, S, H, A, 1, False, SELECTIVE, **kw)
    assert one - rec == pytest.approx(4 * A * S)  # Megatron's checkpointed core_attn keeps Q, K, V, not the LSE
    unfused = mem.attention_activation_bytes(B, S, S, H, A, 1, False, NONE, q_input=2, mask=0.0)
    assert unfused - (one - 4 * A * S) == pytest.approx(2 * A * S * S)  # Korthikanti's softmax output, no dropout


def test_unfused_core_with_dropout_is_korthikanti():
    assert mem.attention_core_bytes(B, S, S, A) == 5 * A * S * S
    assert mem.attention_core_bytes(B, S, S, A, mask=0.0) == 2 * A * S * S
    assert mem.attention_core_bytes(B, S, S, A, "flash") == 4 * A * S  # with or without dropout: RNG state only
    assert mem.attention_core_bytes(B, S, S, A, "flash", mask=0.0) == 4 * A * S


def test_mla_flash_keeps_full_width_qkv_and_the_latents():
    """DeepSeek-V2 (arXiv 2405.04434 §2.1.2; HF config): a 128, d 128, d_r 64, d_v 128, r_q 1536, r_kv 512.
    Q and K 128·(128 + 64) each, V 128·128 (multi_latent_attention.py qkv_up_proj_and_rope_apply), c_Q as the
    q_layernorm's input and output 2·1536, the KV down-projection's output 512 + 64 and c_KV's norm output 512."""
    model = load_scenario("deepseek-v2-l4-b200-ep8").model
    assert flash_qkv_per_token(model) == 128 * 192 * 2 + 128 * 128 + 2 * 1536 + (512 + 64) + 512 == 69696
    flash = TrainingSpec(global_batch_sequences=1, attention_kernel="flash",
                         recompute_modules=("core_attn", "mla_up_proj"))
    unfused = dataclasses.replace(flash, attention_kernel="unfused")
    rec = np.asarray([0, 1])
    assert stored_inputs(model, flash, rec, 2).qkv_per_token.tolist() == [69696, 1536 + 512 + 64]
    assert stored_inputs(model, unfused, rec, 2).qkv_per_token.tolist() == [3 * 5120, 1536 + 512 + 64]


def test_gqa_flash_keeps_kv_heads_unfused_repeats_them():
    model = load_scenario("llama3-70b-l12-b200-tp8").model
    assert flash_qkv_per_token(model) == 64 * 128 + 2 * 8 * 128
    unfused = TrainingSpec(global_batch_sequences=1, attention_kernel="unfused")
    assert stored_inputs(model, unfused, NONE, 2).qkv_per_token is None  # Korthikanti's 3h


def test_probs_in_activation_keeps_no_expert_outputs():
    t, r, h, f, e = 4096, 6 * 4096, 5120, 1536, 160
    kept = mem.moe_activation_bytes(t, r, h, f, e, 1, "swiglu", False, 0)
    megatron = mem.moe_activation_bytes(t, r, h, f, e, 1, "swiglu", False, 0, probs_in_activation=True)
    assert kept - megatron == 2 * h * r


def test_attention_kernel_is_checked():
    with pytest.raises(SpecError, match="'flash2' is not allowed") as bad:
        TrainingSpec(global_batch_sequences=1, attention_kernel="flash2")
    assert "training.attention_kernel" in str(bad.value) and "unfused" in str(bad.value)


# Peak allocated memory (torch.cuda.max_memory_allocated) of the runs: SimuMax docs/b200/b200_release_v1.2_summary.md
# @ 4dcaae51, "real alloc GiB". Validation only. Before session 19 the estimate was +25.5 % / +84.2 %.
MEASURED_GIB = [
    ("llama3-70b-l12-b200-tp8", 28.29),  # llama3_70b_l12_tp8_pp1_dp1_mbc4_cef
    ("deepseek-v2-l4-b200-ep8", 45.63),  # deepseekv2_tp1_ep8_pp1_dp8_l4_mbc4_cef
]


@pytest.mark.parametrize("name, measured_gib", MEASURED_GIB)
def test_b200_memory_against_the_measured_peak(name, measured_gib):
    """Memory per device less the `reserved` allowance: −1.95 % / −1.82 % with actmem's activations alone (then
    left out: the peak's transient buffers, the loss's logits, the optimizer step; docs/collectives-history.md
    Session 19 (actmem)); −0.3 % / +0.3 % since peakmem's framework_buffers and peak_transients and the scenarios'
    fused cross-entropy merged (docs/operators.md). The 3 % bar is actmem's."""
    memory = estimate(load_scenario(name)).memory_bytes_per_device
    err = (memory["total"] - memory["reserved"]) / GIB / measured_gib - 1
    assert abs(err) < 0.03
