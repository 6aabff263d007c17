"""TransformerEngine's two-kernel norm backward and Megatron's padded vocabulary (session 21 normvocab), both where
training.framework is "megatron-te" on GPUs only (moesim/ops/layer.py TE_NORM_BACKWARD_KERNELS,
moesim/ops/vocab_padding.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.estimate import estimate
from moesim.ops.breakdown import operator_breakdown
from moesim.ops.layer import logits_ops
from moesim.ops.vocab import embedding_ops
from moesim.ops.vocab_padding import padded_vocab_size
from moesim.specs.load import load_scenario

LLAMA3_VOCAB = 128256  # Llama-3's tokenizer: 1002·128, already a multiple of 128 at tp 1


def test_padding_is_megatrons_multiple_of_128_tp():
    # tokenizer.py _vocab_size_with_padding: the next multiple of 128·tp; the B200 rows' 129024 at tp 8 (16128 a rank)
    assert padded_vocab_size(LLAMA3_VOCAB, 8, "megatron-te") == 129024
    assert padded_vocab_size(LLAMA3_VOCAB, 1, "megatron-te") == LLAMA3_VOCAB
    assert padded_vocab_size(50257, 1, "megatron-te") == 50304  # GPT-2's vocabulary as Megatron's GPT runs it
    got = padded_vocab_size(LLAMA3_VOCAB, np.array([1.0, 2.0, 4.0, 8.0]), "megatron-te")
    assert got.tolist() == [128256, 128256, 128512, 129024]  # 128256 = 501·256: tp 2 pads nothing
    assert padded_vocab_size(LLAMA3_VOCAB, 8, "none") == LLAMA3_VOCAB  # e.g. HAI-LLM: no source pads
    assert padded_vocab_size(LLAMA3_VOCAB, 8, "megatron-te", "tpu_chip") == LLAMA3_VOCAB  # XLA programs: as given


def _head(training, kind="gpu"):
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    fwd, bwd = logits_ops(sc.model, training or sc.training, 1.0, 8.0, 4096, kind)
    return {(op.name, op.pass_): op for op in fwd + bwd}


def test_head_and_loss_run_over_the_padded_shard():
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    ops = _head(sc.training)
    assert ops[("logits", "fwd")].shape[1] == 16128
    assert float(ops[("cross_entropy_fused", "fwd")].bytes) == pytest.approx(2 * 2 * 4096 * 16128)
    plain = _head(dataclasses.replace(sc.training, framework="none"))
    assert plain[("logits", "fwd")].shape[1] == LLAMA3_VOCAB / 8


def test_embedding_gradient_covers_the_padded_shard():
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    _, bwd = embedding_ops(sc.model, sc.training, np.array([1.0]), np.array([8.0]), 4096)
    zero = next(op for op in bwd if op.name == "embedding_grad_zero")
    assert float(np.asarray(zero.bytes)[0]) == pytest.approx(2 * 16128 * sc.model.d_model)


def _norm_kernels(scenario):
    rows = operator_breakdown(scenario, scenario.resolve())
    return {(r.name, r.pass_): r.kernels for r in rows if r.name.endswith("norm")}


def test_te_norm_backward_is_two_kernels_elsewhere_one():
    """TE v2.11 rmsnorm_bwd_semi_cuda_kernel.cu: the main backward kernel, then the dgamma finalize."""
    sc = load_scenario("deepseek-v2-l4-b200-ep8")  # MLA's latent norms and the MoE norm too
    got = _norm_kernels(sc)
    assert {"attn_norm", "q_norm", "kv_norm", "final_norm"} <= {name for name, _ in got}
    assert all(k == (2.0 if pass_ == "bwd" else 1.0) for (_, pass_), k in got.items())
    none = dataclasses.replace(sc, training=dataclasses.replace(sc.training, framework="none"))
    assert set(_norm_kernels(none).values()) == {1.0}
    tpu = load_scenario("switch-base-128-tpu-v3")  # an XLA program: the framework key is not read
    assert set(_norm_kernels(tpu).values()) <= {1.0}


def test_the_tp8_row_prices_the_finalize_launches_and_the_padding():
    """framework "none" against "megatron-te" on the tp 8 row: the head and loss over 16032 against 16128 columns
    and one launch less per norm backward; nothing else differs in time (framework_buffers are memory only)."""
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    layout = sc.resolve()
    none = dataclasses.replace(sc, training=dataclasses.replace(sc.training, framework="none"))
    te_rows, none_rows = operator_breakdown(sc, layout), operator_breakdown(none, layout)
    diff = {(a.layer_class, a.name, a.pass_): a.step_time_s - b.step_time_s for a, b in zip(te_rows, none_rows)
            if a.step_time_s != b.step_time_s}
    assert {name for _, name, _ in diff} == {"attn_norm", "mlp_norm", "final_norm", "logits", "cross_entropy_fused",
                                             "embedding_grad_zero", "embedding_main_grad_add"}
    launch_s = sc.hardware.efficiency.kernel_launch_s
    norm = next(r for r in te_rows if r.name == "attn_norm" and r.pass_ == "bwd")
    assert diff[(norm.layer_class, "attn_norm", "bwd")] == pytest.approx(launch_s * norm.calls_per_step)
    # the B200 table holds the runs' own 16128-column head GEMM: its forward reads that point and gets faster
    assert all(d > 0 for (_, name, pass_), d in diff.items() if (name, pass_) != ("logits", "fwd"))
    assert estimate(sc).step_time_s > estimate(none, layout).step_time_s
