"""moesim.memory_peak: the framework's resident buffers (TransformerEngine's dummy weight gradients, Megatron's
all-gather buffer) and the step's largest transient, by hand from the cited shapes (Megatron-LM 23e00ed0, TE v2.11;
the B200 validation runs, docs/operators.md)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim import memory_peak as peak
from moesim.estimate import estimate
from moesim.specs.load import load_scenario

BF16 = 2

# Llama-3-70B slice, TP8 (h 8192, 64 heads of 128, 8 KV heads, FFN 28672 SwiGLU, vocab 128256): [out, in] per device.
LLAMA_TP8_SHAPES = [
    ((64 + 2 * 8) * 128 // 8, 8192),  # linear_qkv
    (8192, 64 * 128 // 8),  # linear_proj
    (2 * 28672 // 8, 8192),  # linear_fc1 (gate + up)
    (8192, 28672 // 8),  # linear_fc2
    (129024 // 8, 8192),  # output_layer: Megatron's vocabulary padded to 128·tp (moesim/ops/vocab_padding.py)
]
# DeepSeek-V2 slice, EP8 x DP8, tp 1 (h 5120, 128 heads, q_lora 1536, kv_lora 512, d 128, d_r 64, d_v 128; dense FFN
# 12288; experts 1536, 2 shared of 1536; vocab 102400). Experts' fc1 [3072, 5120] appears once.
DSV2_SHAPES = [
    (1536, 5120), (128 * 192, 1536), (512 + 64, 5120), (128 * 256, 512), (5120, 128 * 128),  # MLA
    (2 * 12288, 5120), (5120, 12288),  # the dense layer
    (2 * 1536, 5120), (5120, 1536),  # routed experts (grouped)
    (2 * 3072, 5120), (5120, 3072),  # the two shared experts as one MLP
    (102400, 5120),  # output_layer
]


def _memory(name, **training):
    sc = load_scenario(name)
    if training:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **training))
    return estimate(sc).memory_bytes_per_device


# Megatron's "mpu" all-gather buffer of the output layer's input under SP: [s·b, h] in bf16 (Llama: tp 8 with SP;
# DeepSeek-V2: tp 1, none).
@pytest.mark.parametrize("name, shapes, gather", [("llama3-70b-l12-b200-tp8", LLAMA_TP8_SHAPES, BF16 * 4096 * 8192),
                                                  ("deepseek-v2-l4-b200-ep8", DSV2_SHAPES, 0)])
def test_framework_buffers_are_one_dummy_wgrad_per_weight_shape_and_the_gather_buffer(name, shapes, gather):
    assert len(set(shapes)) == len(shapes)
    want = BF16 * sum(r * c for r, c in shapes) + gather
    assert _memory(name)["framework_buffers"] == pytest.approx(want, rel=1e-12)


def test_llama_peak_transient_is_the_bf16_logits_beside_their_fp32_copy():
    mem = _memory("llama3-70b-l12-b200-tp8", fused_cross_entropy=False)  # Megatron's unfused loss
    assert mem["moe_buffers"] == 0
    assert mem["peak_transients"] == pytest.approx(BF16 * 4096 * 129024 / 8, rel=1e-12)  # s·b·V/t at 2 B, V padded


def test_dsv2_peak_transient_is_the_loss_above_the_dispatch_buffers():
    mem = _memory("deepseek-v2-l4-b200-ep8", fused_cross_entropy=False)  # Megatron's unfused loss
    loss = BF16 * 4096 * 102400
    dispatch = 2 * 4096 * 6 * 5120 * BF16  # send + receive, k·t slots of h (the existing moe_buffers term)
    assert mem["moe_buffers"] == pytest.approx(dispatch, rel=1e-12)
    assert mem["peak_transients"] == pytest.approx(loss - dispatch, rel=1e-12)


def test_fused_cross_entropy_peaks_in_the_output_layers_backward():
    # TE's fused CE writes the gradient into the logits: what is left is the input gradient [s, h] and its
    # reduce-scatter shard [s/t, h], bf16
    mem = _memory("llama3-70b-l12-b200-tp8", fused_cross_entropy=True)
    assert mem["peak_transients"] == pytest.approx(BF16 * 4096 * 8192 * (1 + 1 / 8), rel=1e-12)


def test_unfused_head_backward_frees_more_than_it_takes():
    # Llama: input gradient 2·4096·8192·9/8 against (2 − 4)·4096·16032 freed from the softmax: below the loss
    got = peak.head_backward_excess_bytes(1, 4096, 8192, 128256, np.array([8.0]), True, False, 2, 2)
    assert got.tolist() == [2 * 4096 * 8192 * 9 / 8 - 2 * 4096 * 16032]


def test_total_is_the_sum_of_its_parts():
    mem = _memory("deepseek-v2-l4-b200-ep8")
    assert mem["total"] == pytest.approx(sum(v for k, v in mem.items() if k != "total"), rel=1e-12)


def test_no_framework_terms_off_gpus():
    mem = _memory("switch-base-128-tpu-v3")
    assert mem["framework_buffers"] == 0 and mem["peak_transients"] == 0


def test_distinct_shapes_count_once_and_only_where_present():
    # two devices (rows) holding four weights each (columns); the last one absent on device 0
    rows = np.array([[4.0, 4.0, 3.0, 4.0], [4.0, 2.0, 3.0, 9.0]])
    cols = np.array([[5.0, 5.0, 7.0, 5.0], [5.0, 5.0, 7.0, 5.0]])
    present = np.array([[True, True, True, False], [True, True, True, True]])
    got = peak.distinct_shape_bytes(rows, cols, present, 2)
    # device 0: (4, 5) twice -> once, (3, 7); device 1: (4, 5), (2, 5), (3, 7), (9, 5)
    assert got.tolist() == [2 * (20 + 21), 2 * (20 + 10 + 21 + 45)]


def test_shapes_by_presence_pattern_read_back_per_candidate_and_stage():
    # group A on both stages, group B on the second only; two distinct layout rows, three candidates
    a = [(np.array([4.0, 4.0]), np.array([5.0, 5.0])), (np.array([4.0, 2.0]), np.array([5.0, 5.0]))]
    b = [(np.array([3.0, 3.0]), np.array([7.0, 7.0])), (np.array([4.0, 9.0]), np.array([5.0, 5.0]))]
    code = np.array([[0b01, 0b11]] * 3)  # bit 0: group A, bit 1: group B
    got = peak.distinct_shape_bytes_by_pattern(code, [a, b], np.array([0, 1, 0]), 2)
    row0 = [2 * 20, 2 * (20 + 21)]  # (4, 5) once; then (3, 7) on stage 1 ((4, 5) already there)
    row1 = [2 * (20 + 10), 2 * (20 + 10 + 21 + 45)]
    assert got.tolist() == [row0, row1, row0]


def test_the_largest_transient_is_held_once():
    one = lambda x: np.array([float(x)])  # noqa: E731
    # loss 5, head 4, embedding excess 3, dispatch buffers 2 already in the total -> 3 more
    assert peak.peak_transient_bytes([one(5), one(4), one(3)], one(2)).tolist() == [3.0]
    # the output layer's backward is the largest
    assert peak.peak_transient_bytes([one(1), one(7), one(3)], one(2)).tolist() == [5.0]
    # the embedding gradient past its micro-batch's activations is
    assert peak.peak_transient_bytes([one(1), one(-1), one(6)], one(2)).tolist() == [4.0]
    # the dispatch buffers are: nothing more
    assert peak.peak_transient_bytes([one(1), one(-1), one(-9)], one(2)).tolist() == [0.0]


def test_gather_buffer_only_with_sequence_parallelism_over_several_ranks():
    got = peak.gather_buffer_bytes(1, 4096, 8192, np.array([1.0, 8.0]), True, 2)
    assert got.tolist() == [0.0, 2 * 4096 * 8192]
    assert peak.gather_buffer_bytes(1, 4096, 8192, np.array([8.0]), False, 2).tolist() == [0.0]


def test_embedding_gradient_is_dense_v_over_t_by_h():
    assert peak.embedding_grad_bytes(128256, 8192, np.array([8.0]), 2).tolist() == [2 * 16032 * 8192]
