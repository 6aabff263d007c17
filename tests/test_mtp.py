"""Multi-token prediction (DeepSeek-V3 §2.2) in parameters, FLOPs, workload placement, memory and the
step model; and the DeepSeek-V3 scenario as published (fits in 80 GB; its cost beside the published one)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.arithmetic import mtp_params, param_counts
from moesim.estimate import estimate
from moesim.estimate.candidates import single
from moesim.estimate.core import evaluate
from moesim.collectives.select import model_for
from moesim.flops import forward_flops_per_sequence, logits_flops, mtp_forward_flops, training_flops_per_sequence
from moesim.specs.layout import Layout
from moesim.specs.load import load_model, load_scenario
from moesim.workload import build_workload, stage_class_counts, stage_ranges

GIB = 2 ** 30


@pytest.fixture(scope="module")
def dsv3():
    return load_model("deepseek-v3")


def test_deepseek_v3_mtp_parameters(dsv3):
    """README_WEIGHTS.md (deepseek-ai/DeepSeek-V3): "685B ... 671B of the Main Model weights and 14B of the
    MTP Module weights"; the module has 11.5B unique parameters excluding the shared 0.9B embedding and head."""
    mtp, main = mtp_params(dsv3), param_counts(dsv3)
    assert mtp.depth == 1 and main.total == 671_026_419_200  # the MTP module stays outside the 671B
    assert 11.45e9 <= mtp.block < 11.55e9  # one MoE block with MLA: "11.5B" as printed
    assert mtp.projection == 2 * 7168 * 7168 and mtp.norms == 3 * 7168
    assert mtp.shared == 2 * 129280 * 7168  # embedding + head, 0.93B each
    # The checkpoint stores the module with its own embedding and head copies: 671.03B + 13.46B = 684.49B,
    # 685B as the model card rounds it (the FP32 block-scale tensors it also counts add ~0.04B).
    assert main.total + mtp.checkpoint == pytest.approx(685e9, rel=1e-3)
    assert main.as_dict()["mtp_params"] == mtp.unique == mtp.block + mtp.projection + mtp.norms


def test_a_model_without_mtp_is_unchanged():
    mixtral = load_model("mixtral-8x7b")
    assert mtp_params(mixtral).unique == 0 and mtp_forward_flops(mixtral, 4096) == 0
    wl = build_workload(mixtral, 4096, 0)
    assert wl.mtp_layers == 0 and wl.num_layers == 32 and wl.logit_heads == 1 and len(wl.classes) == 1


def test_mtp_flops(dsv3):
    """D·(block + M_k 2·n·2h² + head 2·n·h·V): about +4 % of the main model's forward FLOPs (wave2.md §8.1:
    "about +4.4 % dense FLOPs, of which the output head is more than half")."""
    n = 4096
    with_mtp, without = forward_flops_per_sequence(dsv3, n), forward_flops_per_sequence(dsv3, n, mtp=False)
    assert with_mtp - without == mtp_forward_flops(dsv3, n)
    assert 0.03 < with_mtp / without - 1 < 0.05
    assert logits_flops(dsv3, n) > 0.5 * (mtp_forward_flops(dsv3, n) - logits_flops(dsv3, n))
    kaplan = training_flops_per_sequence(dsv3, n, convention="kaplan")
    assert 0.03 < kaplan / training_flops_per_sequence(dsv3, n, convention="kaplan", mtp=False) - 1 < 0.05


def test_mtp_module_runs_on_the_last_stage(dsv3):
    wl = build_workload(dsv3, 4096, 0)
    assert wl.num_layers == 61 and wl.mtp_layers == 1 and wl.logit_heads == 2
    mtp_cls = wl.classes[wl.layer_class_index[-1]]
    assert mtp_cls.mtp and mtp_cls.is_moe and mtp_cls.flops.mtp_projection == 2 * 4096 * 2 * 7168 ** 2
    for pp in (1, 4, 16):
        ranges = stage_ranges(wl, pp)
        assert ranges[-1][-1] == 61 and sum(len(r) for r in ranges) == 62
        assert stage_class_counts(wl, pp)[:, -1].tolist() == [0] * (pp - 1) + [1]


def test_mtp_costs_in_the_step_model():
    """Against the same scenario without MTP: more work (one block + a second head pass) on the last stage,
    the embedding copy and a second logits tensor in its memory; other stages unchanged."""
    sc = load_scenario("deepseek-v3-h800")
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, pipeline_schedule="1f1b"))
    plain = dataclasses.replace(sc, model=dataclasses.replace(sc.model, mtp_depth=0))
    layout = Layout(dp=128, ep=64, pp=16, last_stage_layers=3)  # the last stage is then the slowest (1F1B)
    ev, ev0 = (evaluate(s, single(s, layout), model_for(s)) for s in (sc, plain))
    ratio = ev.model_flops_per_step / ev0.model_flops_per_step
    assert ratio == pytest.approx(training_flops_per_sequence(sc.model, 4096) /
                                  training_flops_per_sequence(sc.model, 4096, mtp=False))
    assert ev.step_time_s[0] > ev0.step_time_s[0]
    # Last-stage memory: the MTP layer, the embedding copy and a second FP32 logits tensor (pp = 2 with 60
    # layers on the last stage, so that it holds the most).
    one, zero = (estimate(_last_heavy(s)[0], _last_heavy(s)[1]) for s in (sc, plain))
    extra = one.memory_bytes_per_device["activations"] - zero.memory_bytes_per_device["activations"]
    assert extra > 4 * 4096 * 129280  # at least the second FP32 logits tensor (2.1 GB)
    assert one.memory_bytes_per_device["weights"] - zero.memory_bytes_per_device["weights"] > 129280 * 7168 * 2


def _last_heavy(sc):
    """`sc` on pp = 2 with 60 of 61 layers on the last stage, which then needs the most memory."""
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, micro_batches=15, pipeline_schedule="1f1b"))
    return sc, Layout(dp=1024, ep=64, pp=2, first_stage_layers=1)


def test_fused_cross_entropy_halves_the_logits_memory():
    sc, layout = _last_heavy(load_scenario("deepseek-v3-h800"))
    fused = dataclasses.replace(sc, training=dataclasses.replace(sc.training, fused_cross_entropy=True))
    a, b = estimate(sc, layout), estimate(fused, layout)
    saved = a.memory_bytes_per_device["activations"] - b.memory_bytes_per_device["activations"]
    assert saved == pytest.approx(2 * (2 * 4096 * 129280 - 8 * 4096))  # two heads: 4 → 2 bytes a logit, + row stats


def test_deepseek_v3_scenario_fits_in_80_gb_and_its_cost_is_reported():
    """Done-when of issue 12: the paper's set-up (PP16, EP64 over 8 nodes, FP8 recipe, BF16 combine, ZeRO-1,
    MTP) in an 80 GB H800. The published 180K H800 GPU hours per trillion tokens (DeepSeek-V3 §1, Table 1)
    is validation only: the error is stated in moesim/models/published.py, not fitted.
    Session 20 (dsv3left): the recipe caches one FP8 weight copy (DeepSeek's H800 trace casts no weight inside a
    DualPipe pair); beside the BF16 parameters moesim assumed the set-up held 71.47 GiB, over the 70.78 GiB moesim
    keeps usable. Session 20 (dsv3fit): no BF16 copy of the FP8 GEMM weights (DeepSeek-V3 §3.3.1 names the master
    weights, weight gradients and optimizer states as what it stores in higher precision; the GEMMs take FP8
    inputs): 65.40 GiB, it fits (docs/collectives-history.md). Recorded figures updated with their new values."""
    sc = load_scenario("deepseek-v3-h800")
    layout = sc.resolve()
    # EP64 over 8 nodes: ep is the innermost axis (tp = 1), so each group is 64 consecutive GPUs = 8 nodes of 8.
    assert layout.order[:2] == ("tp", "ep") and layout.ep == 64 and sc.hardware.interconnect[0].domain_devices == 8
    e = estimate(sc)
    total = sum(v for k, v in e.memory_bytes_per_device.items() if k != "total")
    assert total <= 80e9 and e.fits_in_memory
    assert total / 2**30 == pytest.approx(65.40, abs=0.005)
    # The BF16 copy kept (the recipe before dsv3fit): 71.47 GiB, over the usable memory; uncached as before: 68.43.
    with_copy = estimate(dataclasses.replace(sc, training=dataclasses.replace(sc.training, fp8_gemm_param_copy=True)))
    assert not with_copy.fits_in_memory
    assert with_copy.memory_bytes_per_device["total"] / 2**30 == pytest.approx(71.47, abs=0.005)
    uncached = estimate(dataclasses.replace(sc, training=dataclasses.replace(
        sc.training, fp8_weight_cache=False, fp8_gemm_param_copy=True)))
    assert uncached.fits_in_memory
    assert uncached.memory_bytes_per_device["total"] / 2**30 == pytest.approx(68.43, abs=0.005)
    tokens = sc.training.global_batch_sequences * sc.training.seq_len
    gpu_hours_per_trillion = e.step_time_s * sc.devices / 3600 * 1e12 / tokens
    assert np.isfinite(gpu_hours_per_trillion) and gpu_hours_per_trillion > 0
    # Without FP8 activation caching and the SwiGLU recompute the same set-up does not fit (the issue's ~120 GiB).
    bf16_store = dataclasses.replace(sc, training=dataclasses.replace(
        sc.training, activation_storage_dtype="bfloat16", moe_activation_recompute=False))
    assert not estimate(bf16_store).fits_in_memory


def test_deepseek_recompute_modules_trade_memory_for_time():
    """§3.2.3: recomputing the RMSNorms and MLA up-projections, without dropout, lowers the activations and adds
    recompute time (the up-projection GEMMs and a memory-bound pass per norm); leaving the attention core out of
    the set (as DeepSeek does) saves its recompute and keeps its softmax statistics."""
    sc = load_scenario("deepseek-v3-h800")
    assert sc.training.recompute_modules == ("layernorm", "mla_up_proj") and not sc.training.dropout

    def modules(*names, **kw):
        return dataclasses.replace(sc, training=dataclasses.replace(sc.training, recompute_modules=names, **kw))

    with_core = modules("core_attn", "layernorm", "mla_up_proj")
    plain = modules("core_attn", dropout=True)
    a, b, c = estimate(with_core), estimate(plain), estimate(sc)
    assert a.memory_bytes_per_device["activations"] < 0.7 * b.memory_bytes_per_device["activations"]
    assert a.compute_time_s > b.compute_time_s and a.hardware_flops_per_step > b.hardware_flops_per_step
    assert a.model_flops_per_step == b.model_flops_per_step == c.model_flops_per_step
    assert c.compute_time_s < a.compute_time_s and c.hardware_flops_per_step < a.hardware_flops_per_step
    assert c.memory_bytes_per_device["activations"] > a.memory_bytes_per_device["activations"]
