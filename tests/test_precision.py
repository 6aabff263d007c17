"""Precision per tensor class: TrainingSpec.dtype_for, named recipes (presets, per-key overrides, strict
loading) and the FP8 quantise cost (moesim/precision.py). Figures: ../shared/reference/wave2.md §6."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moesim.errors import SpecError
from moesim.precision import (
    SCALINGS, load_recipes, quantise_cost, quantise_time_s, recipe_values, scale_bytes_per_element,
)
from moesim.specs.load import load_scenario
from moesim.specs.training import PRECISION_KEYS, TENSOR_CLASSES, TrainingSpec

REPO = Path(__file__).resolve().parents[1]
DSV3 = REPO / "scenarios" / "deepseek-v3-h800.toml"


def spec(**keys) -> TrainingSpec:
    return TrainingSpec.with_recipe(global_batch_sequences=8, **keys)


# --- dtype_for -------------------------------------------------------------------------------

def test_defaults_are_bf16_mixed_precision():
    tr = spec()
    assert {c: tr.dtype_for(c) for c in TENSOR_CLASSES} == {
        "gemm": "bfloat16", "attention": "bfloat16", "activation": "bfloat16", "head": "bfloat16",
        "dispatch": "bfloat16", "combine": "bfloat16", "activation_storage": "bfloat16", "grad": "float32",
        "param": "bfloat16", "optimizer_state": "float32", "master": "float32", "compute": "bfloat16",
        "ema": "float32"}
    assert tr.fp8_scaling == "none" and tr.element_bytes("dispatch") == 2.0


def test_a_float8_compute_dtype_runs_only_the_gemms_in_fp8():
    """The old single knob: FP8 GEMMs; attention, head, activations and the combine stay BF16 (wave2.md §6.1)."""
    tr = spec(compute_dtype="float8")
    assert tr.dtype_for("gemm") == "float8" and tr.fp8_scaling == "per_tensor_delayed"
    for cls in ("attention", "activation", "head", "combine", "activation_storage"):
        assert tr.dtype_for(cls) == "bfloat16", cls
    assert tr.bytes_of("activation") == 2 and tr.bytes_of("compute") == 1


def test_master_weights_follow_the_param_dtype():
    assert spec(param_dtype="float32").dtype_for("master") == "float32"
    assert spec(master_weights=False).dtype_for("master") == "bfloat16"


def test_unknown_tensor_class_names_the_allowed_ones():
    with pytest.raises(SpecError, match="unknown tensor class 'weights'.*allowed: gemm, attention"):
        spec().dtype_for("weights")


@pytest.mark.parametrize("key", ["gemm_dtype", "attention_dtype", "activation_storage_dtype", "combine_dtype",
                                 "activation_dtype"])
def test_unknown_dtype_is_a_spec_error(key):
    with pytest.raises(SpecError, match=f"field 'training.{key}': unknown dtype 'fp8'.*allowed: float32"):
        spec(**{key: "fp8"})


def test_fp8_gemms_need_a_scaling_and_scalings_are_checked():
    with pytest.raises(SpecError, match="FP8 GEMMs need a scaling"):
        spec(gemm_dtype="float8", gemm_scaling="none")
    with pytest.raises(SpecError, match="unknown FP8 scaling 'rowwise'.*allowed: none, per_tensor_delayed"):
        spec(gemm_dtype="float8", gemm_scaling="rowwise")
    assert spec(gemm_dtype="bfloat16", gemm_scaling="blockwise").fp8_scaling == "none"  # no FP8, no scales


# --- recipes ------------------------------------------------------------------------------------

def test_every_shipped_recipe_loads_and_builds_a_spec():
    recipes = load_recipes()
    assert set(recipes) == {"bf16", "deepseek-v3-fp8", "te-delayed-scaling", "te-current-scaling",
                            "mxfp8-blackwell"}
    for name, values in recipes.items():
        assert set(values) <= set(PRECISION_KEYS)
        tr = spec(precision_recipe=name)
        assert all(getattr(tr, k) == v for k, v in values.items()), name
        assert tr.dtype_for("attention") == "bfloat16"  # no recipe trains attention in FP8 (wave2.md §6)


def test_deepseek_v3_recipe_is_the_paper_one():
    """DeepSeek-V3 §3.3: FP8 GEMMs with 1×128 / 128×128 scales, FP8 caching and dispatch, BF16 combine,
    BF16 AdamW moments, FP32 master weights and gradients."""
    tr = spec(precision_recipe="deepseek-v3-fp8")
    assert (tr.dtype_for("gemm"), tr.fp8_scaling, tr.dtype_for("dispatch"), tr.dtype_for("combine")) == \
        ("float8", "blockwise", "float8", "bfloat16")
    assert (tr.dtype_for("activation_storage"), tr.moe_activation_recompute) == ("float8", True)
    assert (tr.dtype_for("optimizer_state"), tr.dtype_for("master"), tr.dtype_for("grad")) == \
        ("bfloat16", "float32", "float32")
    # DeepEP's FP8 dispatch: hidden + hidden/128·4 bytes per token (wave2.md §3.1).
    assert tr.element_bytes("dispatch") * 7168 == 7168 + 7168 / 128 * 4
    assert tr.element_bytes("combine") == 2.0


def test_a_key_given_beside_the_recipe_wins():
    tr = spec(precision_recipe="deepseek-v3-fp8", combine_dtype="float8", gemm_scaling="per_tensor_current")
    assert tr.dtype_for("combine") == "float8" and tr.fp8_scaling == "per_tensor_current"
    assert tr.dtype_for("dispatch") == "float8"  # untouched keys keep the recipe's value


def test_scenario_file_overrides_a_recipe_key(tmp_path):
    text = DSV3.read_text().replace('combine_dtype = "bfloat16"', 'combine_dtype = "float8"')
    (tmp_path / "s.toml").write_text(text)
    tr = load_scenario(str(tmp_path / "s.toml")).training
    assert tr.precision_recipe == "deepseek-v3-fp8" and tr.dtype_for("combine") == "float8"
    assert load_scenario("deepseek-v3-h800").training.dtype_for("combine") == "bfloat16"


def test_unknown_recipe_in_a_scenario_names_file_and_recipes(tmp_path):
    (tmp_path / "s.toml").write_text(DSV3.read_text().replace('"deepseek-v3-fp8"', '"deepseek-fp8"'))
    with pytest.raises(SpecError, match=r"s\.toml: field 'training.precision_recipe': unknown precision recipe "
                                        r"'deepseek-fp8' \(allowed: bf16, deepseek-v3-fp8"):
        load_scenario(str(tmp_path / "s.toml"))
    with pytest.raises(SpecError, match="unknown precision recipe"):
        TrainingSpec(global_batch_sequences=1, precision_recipe="nope")


def test_unknown_recipe_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "s.toml").write_text(DSV3.read_text().replace('"deepseek-v3-fp8"', '"deepseek-fp8"'))
    run = subprocess.run([sys.executable, "-m", "moesim", "estimate", str(tmp_path / "s.toml")], capture_output=True,
                         text=True, cwd=REPO)
    assert run.returncode == 2 and "unknown precision recipe 'deepseek-fp8'" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_recipe_file_is_read_strictly(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text('schema_version = 1\n[x]\nsource = "s"\ngemm_dtyp = "float8"\n')
    with pytest.raises(SpecError, match="field 'x.gemm_dtyp': unknown key"):
        load_recipes(bad)
    bad.write_text('schema_version = 1\n[x]\ngemm_dtype = "float8"\n')
    with pytest.raises(SpecError, match="'source' string"):
        load_recipes(bad)
    bad.write_text('[x]\nsource = "s"\n')
    with pytest.raises(SpecError, match="schema_version"):
        load_recipes(bad)
    with pytest.raises(SpecError, match="unknown precision recipe 'x'"):
        recipe_values("x")


# --- quantise cost ------------------------------------------------------------------------------

def test_scale_bytes_per_element():
    """1×128 FP32 scales (DeepSeek-V3 §3.3.2) and 1×32 E8M0 scales (TE MXFP8)."""
    assert scale_bytes_per_element("blockwise") == 4 / 128
    assert scale_bytes_per_element("mxfp8") == 1 / 32
    assert scale_bytes_per_element("per_tensor_delayed") == 0 == scale_bytes_per_element("none")
    with pytest.raises(SpecError, match="unknown FP8 scaling"):
        scale_bytes_per_element("tensorwise")


@pytest.mark.parametrize("scaling, read, written", [
    ("none", 0, 0),
    ("per_tensor_delayed", 2, 2),  # one read of the BF16 tensor, two FP8 copies (row + transposed)
    ("per_tensor_current", 4, 2),  # an extra amax pass
    ("blockwise", 2, 2 * (1 + 4 / 128)),
    ("mxfp8", 2, 2 * (1 + 1 / 32)),
])
def test_quantise_cost_per_scaling(scaling, read, written):
    n = 1e6
    cost = quantise_cost(n, scaling)
    assert cost.read_bytes == pytest.approx(read * n) and cost.written_bytes == pytest.approx(written * n)
    assert quantise_time_s(n, scaling, 1e12) == pytest.approx((read + written) * n / 1e12)
    assert cost.scale_flops == (0 if scaling == "none" else 2 * n)


def test_quantise_cost_is_vectorised_and_linear():
    sizes = np.array([1e3, 1e6, 4e6])
    cost = quantise_cost(sizes, "per_tensor_current")
    assert np.allclose(cost.bytes_moved / sizes, 6.0)
    assert set(SCALINGS) == {"none", "per_tensor_delayed", "per_tensor_current", "blockwise", "mxfp8"}


def test_recompute_modules_are_checked():
    assert spec(recompute_modules=["core_attn", "layernorm"]).recompute_modules == ("core_attn", "layernorm")
    with pytest.raises(SpecError, match="'mhc' is not allowed.*allowed: core_attn, layernorm, mla_up_proj, mlp, "
                       "moe_act, moe, shared_experts"):
        spec(recompute_modules=["core_attn", "mhc"])  # Megatron-LM d98e8a64's hyper-connections: no such layer here
    assert spec(recompute_modules=["layernorm"]).recompute_modules == ("layernorm",)  # DeepSeek-V3 §3.2.3's set
    with pytest.raises(SpecError, match="needs at least one module"):
        spec(recompute_modules=[])


def test_mla_up_projection_recompute_needs_an_mla_model(tmp_path):
    text = (REPO / "scenarios" / "mixtral-8x7b-h100.toml").read_text()
    text = text.replace("[training]\n", '[training]\nrecompute_modules = ["core_attn", "mla_up_proj"]\n')
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SpecError, match="recomputing MLA up-projections needs an MLA model"):
        load_scenario(str(tmp_path / "s.toml"))
