"""MLA's down-projections as Megatron-LM builds them, whole on every tensor-parallel rank (TELinear
parallel_mode='duplicated', Megatron-LM d98e8a6 megatron/core/transformer/multi_latent_attention.py l.526-527,
573-574), counted by hand at tp 2; and `training.framework`, which says whose resident buffers a GPU step holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from moesim.arithmetic import layer_params, layer_shapes, param_counts
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.estimate.precision_terms import weight_cast_bytes
from moesim.ops.layer import LayerOps
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario
from moesim.specs.training import TrainingSpec
from moesim.workload import build_workload

BF16 = 2
# DeepSeek-V2 (the slice scenario's model): h 5120, 128 heads of d 128 + d_r 64, d_v 128, r_q 1536, r_kv 512.
H, A, D, D_R, D_V, R_Q, R_KV = 5120, 128, 128, 64, 128, 1536, 512
DOWN_GEMM = H * R_Q + H * (R_KV + D_R)  # linear_q_down_proj [r_q, h] + linear_kv_down_proj [r_kv + d_r, h]
DOWN_NORMS = R_Q + R_KV  # q_layernorm, kv_layernorm (RMSNorm scales)
SCENARIO = "deepseek-v2-l4-b200-ep8"


def _tp2(sequence_parallel=True, **training):
    """The DeepSeek-V2 slice at tp 2 (dp 4 x tp 2, ep 8 over the 8 GPUs)."""
    sc = load_scenario(SCENARIO)
    assert (sc.layout_given["dp"], sc.layout_given["tp"], sc.layout_given["ep"]) == (8, 1, 8)
    tr = dataclasses.replace(sc.training, sequence_parallel=sequence_parallel, **training)
    return dataclasses.replace(sc, layout_given={**sc.layout_given, "dp": 4, "tp": 2}, training=tr)


def _one(x) -> float:
    return float(np.asarray(x, dtype=float).reshape(-1)[0])


def _dims(shape) -> tuple:
    return tuple(_one(x) for x in shape)


def _classes():
    sc = load_scenario(SCENARIO)
    return build_workload(sc.model, sc.training.seq_len, sc.training.seq_len).classes


def test_down_projections_and_latent_norms_are_replicated_parameters():
    for cls in _classes():
        router = H * 160 + 0 if cls.is_moe else 0  # 160 routed experts, no router bias
        norms = 2 * H  # the layer's two RMSNorms
        assert cls.params_replicated == router + norms + DOWN_GEMM + DOWN_NORMS
        assert cls.params_duplicated_gemm == DOWN_GEMM
        # The rest of the attention block stays split: q_up [a(d + d_r), r_q], kv_up [a(d + d_v), r_kv], out [h, a d_v].
        attention_split = A * (D + D_R) * R_Q + A * (D + D_V) * R_KV + H * A * D_V
        dense = 3 * H * 12288 if not cls.is_moe else 2 * 3 * H * 1536  # dense SwiGLU, or the two shared experts
        assert cls.params_shardable == attention_split + dense


@pytest.mark.parametrize("sp", [True, False])
def test_down_projection_gemms_are_whole_over_the_tokens_a_rank_holds(sp):
    sc = _tp2(sequence_parallel=sp)
    b, n, tp = 1, sc.training.seq_len, 2
    cls = _classes()[0]
    ops = {op.name: op for op in LayerOps(sc.model, sc.training, np.array([b]), np.array([tp]), np.array([8]),
                                          np.array([1])).attention(cls)}
    tokens = b * n / tp if sp else b * n  # the layer input as it arrives: the sequence shard with SP
    assert _dims(ops["q_down_proj"].shape) == (tokens, R_Q, H)
    assert _dims(ops["kv_down_proj"].shape) == (tokens, R_KV + D_R, H)
    assert _one(ops["q_down_proj"].flops) == 2 * tokens * R_Q * H
    # The up-projections are column-parallel: every token, a tp-th of the heads.
    assert _dims(ops["q_up_proj"].shape) == (b * n, A * (D + D_R) / tp, R_Q)
    assert _dims(ops["kv_up_proj"].shape) == (b * n, A * (D + D_V) / tp, R_KV)
    # Latent norms over the whole rank: the same per-token work as moesim's other norms (read + write).
    q_act = sc.training.bytes_of("activation")
    assert _one(ops["q_norm"].bytes) == 2 * tokens * R_Q * q_act
    assert _one(ops["kv_norm"].bytes) == 2 * tokens * R_KV * q_act


def test_framework_buffers_hold_whole_down_projection_dummy_wgrads_at_tp2():
    # One dummy weight gradient per distinct weight shape on a device at tp 2 (tests/test_memory_peak.py's list at tp 1).
    shapes = [
        (R_Q, H), (A * (D + D_R) // 2, R_Q), (R_KV + D_R, H), (A * (D + D_V) // 2, R_KV), (H, A * D_V // 2),  # MLA
        (2 * 12288 // 2, H), (H, 12288 // 2),  # the dense layer
        (2 * 1536, H), (H, 1536),  # routed experts (etp 1); the two shared experts as one MLP split by tp 2,
        # [2·3072/2, h] and [h, 3072/2], are the same two shapes: one dummy weight gradient each (base.py l.83)
        (102400 // 2, H),  # output_layer
    ]
    assert len(set(shapes)) == len(shapes)
    sc = _tp2()
    gather = BF16 * sc.training.seq_len * 1 * H  # Megatron's "mpu" buffer under SP at tp 2: [s·b, h]
    b = sc.training.global_batch_sequences // sc.resolve().dp // sc.training.micro_batches
    want = BF16 * sum(r * c for r, c in shapes) + gather * b
    assert estimate(sc).memory_bytes_per_device["framework_buffers"] == pytest.approx(want, rel=1e-12)


def test_weights_per_device_keep_the_down_projections_whole():
    """tp 2 holds half the split weights and all the replicated ones: weights(tp 1) - weights(tp 2) is half the
    split part only (4 layers of the slice, the embedding and output layer on the one stage)."""
    sc1 = load_scenario(SCENARIO)
    sc2 = _tp2(sequence_parallel=sc1.training.sequence_parallel)
    q_p = sc1.training.bytes_of("param")
    w1, w2 = (estimate(s).memory_bytes_per_device["weights"] for s in (sc1, sc2))
    layers = [layer_params(sc1.model, shape) for shape in layer_shapes(sc1.model)]
    assert len(layers) == 4
    split = sum(p.attention - DOWN_GEMM - DOWN_NORMS + p.dense_ffn + p.shared_experts for p in layers)
    counts = param_counts(sc1.model)
    split += counts.embedding + counts.lm_head  # the one stage holds both, split by tp (vocab-parallel)
    assert w1 - w2 == pytest.approx(q_p * split / 2, rel=1e-12)


def test_fp8_weight_casts_include_the_whole_down_projections():
    tr = TrainingSpec(global_batch_sequences=1, gemm_dtype="float8", gemm_scaling="blockwise", fp8_weight_cache=False)
    cls = _classes()[0]
    both = weight_cast_bytes(tr, cls, np.array([2.0]), np.array([1.0]), np.array([1.0]))["attention"]
    alone = weight_cast_bytes(tr, dataclasses.replace(cls, params_duplicated_gemm=0), np.array([2.0]),
                              np.array([1.0]), np.array([1.0]))["attention"]
    split = weight_cast_bytes(tr, dataclasses.replace(cls, params_shardable=0, params_duplicated_gemm=DOWN_GEMM),
                              np.array([2.0]), np.array([1.0]), np.array([1.0]))["attention"]
    assert _one(both) == pytest.approx(_one(alone) + _one(split), rel=1e-12) and _one(split) > 0


def test_gqa_layers_have_nothing_duplicated():
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    for cls in build_workload(sc.model, sc.training.seq_len, sc.training.seq_len).classes:
        assert cls.params_duplicated_gemm == 0 and cls.params_replicated == 2 * sc.model.d_model


# training.framework: whose resident buffers a GPU step holds.

def test_no_framework_buffers_where_the_framework_is_none():
    sc = load_scenario(SCENARIO)
    assert sc.training.framework == "megatron-te"  # the default: Megatron-LM + TransformerEngine, as the runs
    with_te = estimate(sc).memory_bytes_per_device
    none = estimate(dataclasses.replace(sc, training=dataclasses.replace(sc.training, framework="none")))
    mem = none.memory_bytes_per_device
    assert with_te["framework_buffers"] > 0 and mem["framework_buffers"] == 0
    # Only that part moves: the transients (PyTorch's and the loss's) and everything else stay.
    for part in with_te:
        if part not in ("framework_buffers", "total"):
            assert mem[part] == with_te[part], part
    assert with_te["total"] - mem["total"] == pytest.approx(with_te["framework_buffers"], rel=1e-12)


def test_deepseek_v3_h800_states_its_own_framework():
    sc = load_scenario("deepseek-v3-h800")
    assert sc.training.framework == "none"
    assert estimate(sc).memory_bytes_per_device["framework_buffers"] == 0


def test_a_wrong_framework_names_the_file_field_and_choices(tmp_path):
    text = (Path(__file__).resolve().parents[1] / "scenarios" / "deepseek-v3-h800.toml").read_text()
    assert text.count('framework = "none"') == 1
    bad = tmp_path / "s.toml"
    bad.write_text(text.replace('framework = "none"', 'framework = "hai-llm"'))
    with pytest.raises(SpecError) as err:
        load_scenario(str(bad))
    message = str(err.value)
    assert "'hai-llm' is not allowed" in message and "training.framework" in message
    assert "megatron-te" in message and "none" in message and "s.toml" in message
