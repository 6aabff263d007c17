"""DeepSeek-V3's FP8 weight copies and the attention output's E5M6 casts as DeepSeek's H800 trace runs them
(moesim/precision.py weight_transpose_bytes, moesim/estimate/precision_terms.py weight_transpose_parts_bytes and
attention_output_cast_bytes; session 20, dsv3left)."""

import csv
import dataclasses
import math

import numpy as np
import pytest

from moesim.errors import SpecError
from moesim.ops.breakdown import term_builder
from moesim.precision import recipe_values, weight_transpose_bytes
from moesim.specs.load import load_scenario
from moesim.specs.training import TrainingSpec

MOE_LAYOUT = "dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2"
RECORD = "tests/data/dsv3_trace/train_kernels.csv"
S_W = 4 / (128 * 128)  # one FP32 scale per 128x128 weight block (DeepSeek-V3 §3.3.2)
# DeepSeek-V3's FP8 GEMM weights of one MoE layer on one device at tp 1, ep 64 (4 of 256 experts), (out, in):
DENSE = {"q_down": (1536, 7168), "kv_down": (576, 7168), "q_up": (128 * 192, 1536), "kv_up": (128 * 256, 512),
         "out_proj": (7168, 128 * 128), "shared_fc1": (2 * 2048, 7168), "shared_fc2": (7168, 2048)}
EXPERT = {"fc1": (2 * 2048, 7168), "fc2": (7168, 2048)}


@pytest.fixture(scope="module")
def moe_terms():
    sc = load_scenario("deepseek-v3-h800", layout=MOE_LAYOUT)
    builder, wl, _ = term_builder(sc, sc.resolve(source="--layout"))
    cls = next(c for c in wl.classes if c.is_moe and not c.mtp)
    return sc, cls, builder.build(cls)


def _bytes(ops, name, pass_):
    found = [op for op in ops if op.name == name and op.pass_ == pass_]
    return {op.part: float(np.asarray(op.bytes).reshape(-1)[0]) for op in found}


def _blocks(shape):
    return math.ceil(shape[0] / 128) * math.ceil(shape[1] / 128)


def test_the_trace_transposes_every_weight_once_a_micro_batch():
    """The trace's cuda::batched_transpose grids, per layer, are the layer's weights counted in 128x128 blocks
    (one CTA a block): the non-expert ones in the backward chunk (attn(B), mlp(B)), the 4 local experts' in the
    forward chunk (mlp(F)). The pair's casting kernels are these activation casts only (per token or per row, their
    transposed re-quantisation, the dequantisations): none reads a weight."""
    with open(RECORD, encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    grids = {}
    for r in rows:
        if r["kernel"] == "cuda::batched_transpose":
            grids.setdefault((r["layer"], r["phase"]), []).append(int(r["grid"].split(",")[0]))
    for layer in "0123":
        assert sorted(grids[(layer, "attn(B)")]) == sorted(_blocks(DENSE[k]) for k in
                                                           ("q_down", "kv_down", "q_up", "kv_up", "out_proj"))
        assert sorted(grids[(layer, "mlp(B)")]) == sorted(_blocks(DENSE[k]) for k in ("shared_fc1", "shared_fc2"))
        assert sorted(grids[(layer, "mlp(F)")]) == sorted(4 * _blocks(EXPERT[k]) for k in ("fc1", "fc2"))
    assert sum(sum(v) for v in grids.values()) == 4 * (14136 + 10752)
    casts = {r["kernel"] for r in rows if "cast" in r["kernel"]}
    assert casts == {"cuda::per_token_cast_to_fp8_with_channels", "cuda::per_channel_cast_and_transpose",
                     "cuda::per_token_cast_to_fp8_with_fp8_special_fmt", "cuda::per_token_cast_back_special_fmt_impl",
                     "cuda::cast_back_impl", "cuda::swiglu_and_per_channel_cast_and_transpose",
                     "cuda::swiglu_forward_with_weight_and_per_token_cast_to_fp8_w"}


def test_the_recipe_caches_one_copy_and_transposes_it_every_micro_batch(moe_terms):
    sc, cls, terms = moe_terms
    assert recipe_values("deepseek-v3-fp8")["fp8_weight_cache"] is True
    assert sc.training.fp8_weight_cache and sc.training.fp8_weight_transpose == "per_micro_batch"
    assert not _bytes(terms.ops_fwd, "fp8_weight_cast", "fwd")  # no cast of the weights inside a micro-batch
    dense = sum(o * i for o, i in DENSE.values())
    experts = 4 * sum(o * i for o, i in EXPERT.values())
    assert (dense, experts) == (231_145_472, 176_160_768)
    assert cls.params_shardable + cls.params_duplicated_gemm == dense and cls.params_experts / 64 == experts
    # read one FP8 copy with its block scales, write it transposed
    assert _bytes(terms.ops_bwd, "fp8_weight_transpose", "bwd") == {"attention": pytest.approx(2 * dense * (1 + S_W))}
    assert _bytes(terms.ops_fwd, "fp8_weight_transpose", "fwd") == {"permute": pytest.approx(2 * experts * (1 + S_W))}
    assert weight_transpose_bytes(1000.0, "per_tensor_delayed") == 2000.0  # one scale a tensor: ~0 bytes


def test_the_attention_outputs_e5m6_cast_and_its_dequantisation_by_hand(moe_terms):
    """§3.3.4: the input of the Linear after attention is kept in E5M6; the trace casts it forward
    (per_token_cast_to_fp8_with_fp8_special_fmt) beside out_proj's E4M3 cast and casts it back in backward
    (per_token_cast_back_special_fmt_impl): 4096 tokens x 128 heads x d_v 128, BF16 in, 12 bits + a FP32 scale per
    128 elements out, and back."""
    _, _, terms = moe_terms
    per_element = 2 + 12 / 8 + 4 / 128
    assert _bytes(terms.ops_fwd, "attention_output_cast", "fwd") == \
        {"attention": pytest.approx(4096 * 16384 * per_element)}
    assert _bytes(terms.ops_bwd, "attention_output_dequantise", "bwd") == \
        {"attention": pytest.approx(4096 * 16384 * per_element)}


def test_without_the_key_nothing_is_added(moe_terms):
    sc, cls, _ = moe_terms
    tr = dataclasses.replace(sc.training, fp8_weight_transpose="cached", attention_output_storage_bits=0)
    sc2 = dataclasses.replace(sc, training=tr)
    builder, wl, _ = term_builder(sc2, sc2.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    names = {op.name for op in terms.ops_fwd + terms.ops_bwd}
    assert not names & {"fp8_weight_transpose", "attention_output_cast", "attention_output_dequantise"}


def test_a_bad_value_and_mxfp8_are_named():
    with pytest.raises(SpecError, match="fp8_weight_transpose"):
        TrainingSpec(global_batch_sequences=1, fp8_weight_transpose="every_step")
    with pytest.raises(SpecError, match="fp8_weight_transpose"):
        TrainingSpec(global_batch_sequences=1, gemm_dtype="float8", gemm_scaling="mxfp8",
                     fp8_weight_transpose="per_micro_batch")
    with pytest.raises(SpecError, match="fp8_weight_transpose"):
        weight_transpose_bytes(1.0, "mxfp8")


def test_the_swiglu_inputs_are_dequantised_before_their_recomputation(moe_terms):
    """§3.3.4 / §3.5.2 and the trace's cuda::cast_back_impl<__nv_fp8x2_e4m3> (mlp(B), 196 us a layer): the FP8-stored
    SwiGLU input (2 x 2048 per row, 1 + 4/128 bytes) read and written back in BF16, for 4096 tokens x 8 routed
    slots (dropless) and the shared expert's 4096 tokens; nothing under TE's cast-transpose."""
    sc, _, terms = moe_terms
    per_row = 2 * 2048 * ((1 + 4 / 128) + 2)
    assert _bytes(terms.ops_bwd, "moe_activation_dequantise", "bwd") == {
        "permute": pytest.approx(4096 * 8 * per_row), "shared_experts": pytest.approx(4096 * per_row)}
    te = dataclasses.replace(sc, training=dataclasses.replace(sc.training, fp8_transpose="cast_transpose"))
    builder, wl, _ = term_builder(te, te.resolve(source="--layout"))
    ops = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp)).ops_bwd
    assert not _bytes(ops, "moe_activation_dequantise", "bwd")
