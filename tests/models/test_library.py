"""The model library: every file loads, cites its source and states the published figures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from moesim.arithmetic import param_counts
from moesim.estimate import estimate
from moesim.paths import builtin_names
from moesim.specs.load import load_model, load_scenario

NEW_MODELS = ["gshard-600b", "glam-64b-64e", "mixtral-8x7b", "mixtral-8x22b", "deepseek-v2", "deepseek-v2-lite",
              "deepseek-v3", "qwen1.5-moe-a2.7b", "qwen2-57b-a14b", "qwen3-30b-a3b", "qwen3-235b-a22b",
              "olmoe-1b-7b", "dbrx", "st-moe-32b",
              "llama-2-7b", "llama-3-8b", "mistral-7b"]
NEW_SCENARIOS = ["deepseek-v3-h800", "mixtral-8x7b-h100", "mixtral-8x22b-h100", "st-moe-32b-tpu-v3",
                 "glam-64b-64e-tpu-v4", "gshard-600b-tpu-v3"]


@pytest.mark.parametrize("name", NEW_MODELS)
def test_library_model_loads_with_source_and_published_figures(name):
    assert name in builtin_names("models")
    m = load_model(name)
    assert m.name == name and m.source and "Published" in m.notes


def test_dense_baselines_have_no_experts():
    for name in ("llama-2-7b", "llama-3-8b", "mistral-7b"):
        c = param_counts(load_model(name))
        assert c.experts == 0 and c.active == c.total


def test_deepseek_v3_structure():
    """DSv3 §2: 61 layers, first 3 dense, 58 MoE with 1 shared + 256 routed (top-8), sigmoid router with bias."""
    m = load_model("deepseek-v3")
    assert (m.num_layers, m.num_moe_layers, m.moe.leading_dense_layers) == (61, 58, 3)
    assert (m.moe.num_shared_experts, m.moe.num_experts, m.moe.top_k) == (1, 256, 8)
    assert m.moe.router_score == "sigmoid" and m.moe.router_bias and m.moe.dropless


def test_glam_and_gshard_every_other_layer():
    assert load_model("glam-64b-64e").num_moe_layers == 32  # GLaM: 32 MoE layers of 64
    assert load_model("gshard-600b").num_moe_layers == 18  # GShard Table 1: 36864 experts / 2048
    assert load_model("st-moe-32b").num_moe_layers == 12  # st_moe_32b.gin: 6 + 6 sparse layers


@pytest.mark.parametrize("name", NEW_SCENARIOS)
def test_scenario_loads_and_estimates(name):
    s = load_scenario(name)
    assert s.source and s.description
    e = estimate(s)
    assert e.step_time_s > 0 and e.layout.devices == s.devices


def test_deepseek_v3_scenario_layout_is_published_one():
    """DSv3 §3.1: 16-way PP, 64-way EP, ZeRO-1 DP, no TP on 2048 H800; §4.2 batch 15360 x 4096."""
    s = load_scenario("deepseek-v3-h800")
    lay = s.resolve()
    assert (lay.pp, lay.ep, lay.tp, lay.dp, s.devices) == (16, 64, 1, 128, 2048)
    assert s.training.zero_stage == 1 and s.training.global_batch_sequences == 15360 and s.training.seq_len == 4096
    assert "DualPipe" in s.description
    # The library model's 61 layers on 16 uneven stages (no stand-in): the first holds the 3 dense layers, the
    # last, which also runs the MTP module, 2 (the scenario's first/last_stage_layers); the other 56 split evenly.
    # The scenario's [moe] sets the router GEMM's dtype of DeepSeek's own framework (BF16: its H800 trace's kernels);
    # the library model keeps the FP32 default.
    library = load_model("deepseek-v3")
    assert s.model == replace(library, moe=replace(library.moe, router_dtype="bfloat16")) and s.model.mtp_depth == 1
    assert library.moe.router_dtype == "float32"
    assert lay.stage_layers(s.model.num_layers) == (3,) + (4,) * 14 + (2,)
    assert s.training.pipeline_schedule == "dualpipe" and s.training.ema_location == "host"
    # §3.3: the FP8 recipe, with the BF16 combine stated in the file.
    tr = s.training
    assert tr.precision_recipe == "deepseek-v3-fp8" and tr.combine_dtype == "bfloat16"
    assert (tr.dtype_for("gemm"), tr.dtype_for("dispatch"), tr.dtype_for("combine"), tr.dtype_for("attention")) == \
        ("float8", "float8", "bfloat16", "bfloat16")
    # §3.2.2 / §2.1.2: DeepEP-style dispatch (IB once per node, NVLink forwarding), each token to at most 4 nodes.
    assert tr.dispatch_backend == "deepep" and s.model.moe.max_nodes_per_token == 4
