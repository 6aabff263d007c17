"""The published set-ups the schedules and context parallelism make expressible, and the in-flight rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.estimate.schedules import in_flight, pipeline_time_s
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario


def test_in_flight_micro_batches_per_schedule():
    s = np.arange(4)
    # 1F1B / ZB-H1: pp − s (Narayanan §2.2.1; Qi et al. Table 2 p·M_B); GPipe: all m.
    assert in_flight("1f1b", 16, 4, 1, s).tolist() == [4, 3, 2, 1]
    assert in_flight("zb-h1", 16, 4, 1, s).tolist() == [4, 3, 2, 1]
    assert in_flight("gpipe", 16, 4, 1, s).tolist() == [16] * 4
    # Interleaved, stage 0: p + (p − 1)/v micro-batches of its layers (Korthikanti §4.2.3: L(1 + (p−1)/(p·v))).
    assert in_flight("interleaved", 16, 4, 2, 0)[()] == pytest.approx(4 + 3 / 2)
    # ZB-V p everywhere. DualPipe: stage s holds p − s and shares its device with stage p − 1 − s, which
    # holds s + 1: p + 1 per device (DeepSeek-V3 Table 2).
    assert in_flight("zb-v", 16, 4, 1, s).tolist() == [4] * 4
    dual = in_flight("dualpipe", 16, 4, 1, s)
    assert dual.tolist() == [4, 3, 2, 1] and (dual + dual[::-1]).tolist() == [5] * 4


def test_in_flight_rows_alike_in_a_mixed_batch():
    """in_flight skips the schedules no row has: each row gets what a batch of its schedule alone gives, bit for
    bit, and a scalar stage broadcast to the schedules' shape keeps that shape."""
    names = np.array(["1f1b", "gpipe", "interleaved", "zb-v", "dualpipe", "zb-h1"])
    m, p, v = np.array([16.0, 8, 12, 16, 8, 4]), np.array([4.0, 4, 2, 4, 2, 4]), np.array([1.0, 1, 2, 1, 1, 1])
    s = np.array([0, 1, 2, 3])
    mixed = in_flight(names[:, None], m[:, None], p[:, None], v[:, None], s[None, :])
    for i, name in enumerate(names):
        alone = in_flight(np.array([name])[:, None], m[i:i + 1, None], p[i:i + 1, None], v[i:i + 1, None], s[None, :])
        assert np.array_equal(mixed[i:i + 1], alone), name
    assert in_flight(np.array(["1f1b", "1f1b"]), 8, 4, 1, 0).shape == (2,)


def test_bubble_fractions_are_the_published_ones():
    # Interleaved bubble / ideal = (p − 1)/(v·m) (Narayanan §2.2.2), with free sends.
    p, m, v, t = 4, 8, 2, 1.0
    pipe, bubble = pipeline_time_s(np.array(["interleaved"]), m, p, v, t, 0.3, 0.7, 0.3)
    assert bubble[0] / (m * t) == pytest.approx((p - 1) / (v * m))
    # ZB-H1 at F = B = W: a third of 1F1B's (Qi et al. Table 2).
    _, zb = pipeline_time_s(np.array(["zb-h1"]), m, p, 1, 3.0, 1.0, 2.0, 1.0)
    _, one = pipeline_time_s(np.array(["1f1b"]), m, p, 1, 3.0, 1.0, 2.0, 1.0)
    assert zb[0] == pytest.approx(one[0] / 3)


def test_one_f_one_b_sums_every_stage():
    """1F1B / GPipe: T = Σ_s t_s + (m − 1)·max_s t_s (Alpa, Zheng et al. OSDI 2022, §5 Eq. 2), given as the stages'
    summed shortfall Σ_s (t_s − t) ≤ 0 beside the slowest t; at equal stages (shortfall 0) bit for bit the
    (m + p − 1)·t of Narayanan et al. 2021 §2.2.1. The other schedules ignore it (their formulas, module table)."""
    m, p, t = 8, 4, 1.3
    stages = np.array([0.9, 1.1, 1.1, t])  # e.g. a first stage lighter by its one send, the head's stage slowest
    shortfall = float(np.sum(stages - t))
    for name in ("1f1b", "gpipe"):
        pipe, bubble = pipeline_time_s(np.array([name]), m, p, 1, t, 0.4, 0.9, 0.3, below_slowest_s=shortfall)
        assert pipe[0] == pytest.approx(stages.sum() + (m - 1) * t, rel=1e-15)
        assert bubble[0] == pytest.approx(stages.sum() - t, rel=1e-15)
        equal, _ = pipeline_time_s(np.array([name]), m, p, 1, t, 0.4, 0.9, 0.3, below_slowest_s=0.0)
        assert equal[0] == m * t + (p - 1) * t  # bit for bit the equal-stage form
    for name in ("interleaved", "zb-h1", "zb-v", "dualpipe"):
        with_, _ = pipeline_time_s(np.array([name]), m, p, 2, t, 0.4, 0.9, 0.3, below_slowest_s=shortfall)
        without, _ = pipeline_time_s(np.array([name]), m, p, 2, t, 0.4, 0.9, 0.3)
        assert with_[0] == without[0]


def test_mixtral_vp8_reference_mapping():
    """Megatron-Core MoE README reference mapping: Mixtral 8x7B on 64 H100, TP1 EP8 PP4 VP8."""
    sc = load_scenario("mixtral-8x7b-h100-vp8")
    lay = sc.resolve()
    assert (lay.tp, lay.ep, lay.pp, lay.vp, sc.devices) == (1, 8, 4, 8, 64)
    assert sc.training.pipeline_schedule == "interleaved"
    est = estimate(sc)
    assert est.fits_in_memory  # the reference mapping runs on 80 GB H100s
    plain = estimate(load_scenario("mixtral-8x7b-h100"))
    # Same layout under 1F1B: the bubble (p − 1)/m of the ideal shrinks by about v, plus the sends on the fill path.
    # By less than 4 since session 18 (pipebound): 1F1B's bubble is Σ_s t_s − max_s t_s (the lighter first stages
    # fill and drain it faster; Alpa Eq. 2), interleaved's still (p − 1)·t/v of the slowest stage: 3.92x.
    assert est.bubble_time_s < plain.bubble_time_s / 3.5
    assert est.step_time_s < plain.step_time_s


def test_estimate_checks_the_layout_against_the_training_it_is_given():
    # A vp layout is valid under an interleaved training passed to estimate(), even when the scenario's own
    # schedule is 1F1B (the check read the scenario's training, not the one priced).
    plain = load_scenario("mixtral-8x7b-h100")
    vp8 = load_scenario("mixtral-8x7b-h100-vp8")
    layout = vp8.resolve()
    with pytest.raises(SpecError, match="needs pipeline_schedule = interleaved"):
        estimate(plain, layout)
    est = estimate(plain, layout, vp8.training)
    same = estimate(dataclasses.replace(plain, training=vp8.training), layout)
    assert est.step_time_s == pytest.approx(same.step_time_s)


def test_llama2_7b_128k_with_cp4_fits_and_splits_the_work():
    """Fits where NeMo ran it; CP changes no per-device compute against the same tokens per device
    without CP (balanced causal attention), only adds its traffic."""
    sc = load_scenario("llama-2-7b-128k-cp4-h100")
    est = estimate(sc)
    assert est.fits_in_memory
    one = dataclasses.replace(sc.training, micro_batches=1)
    plain = estimate(sc, Layout(dp=32, tp=4), one)
    assert est.compute_time_s == pytest.approx(plain.compute_time_s, rel=0.01)  # kernel shapes differ a little
    assert "cp_ring_send_recv" in est.communication


def test_llama2_7b_128k_with_cp4_fits_and_meets_the_published_throughput():
    """NVIDIA/NeMo performance_long_sequence.md: LLAMA2-7B, 128K tokens, 128 H100, TP4 CP4 DP8: 555 model
    TFLOPS per GPU (FP8 GEMMs; priced in BF16 here, see the scenario). Validation only, never fitted.
    Measured: 715 model TFLOPS/GPU, +28.9 % (726, +30.8 %, before FA3 lookups kept to their head_dim and
    the H100 bf16 GEMM table; before the FA3 backward table and executed-work HFU: 803,
    +44.7 %, HFU 1.04; before the operator tables: 533, -4.0 %, full-matrix attention at the GEMM prior).
    Still too fast: a known gap (the published run's 24.03 kernels are not FA3; the forward reads FA3's
    d256 point no longer: lookups keep to their head_dim), asserted in its band, sign included."""
    sc = load_scenario("llama-2-7b-128k-cp4-h100")
    lay = sc.resolve()
    assert (lay.tp, lay.cp, lay.dp, lay.pp, sc.training.seq_len) == (4, 4, 8, 1, 131072)
    est = estimate(sc)
    assert est.fits_in_memory
    assert est.hfu < 1  # hardware FLOPs are the computed tiles the time is priced on
    tflops = est.model_flops_per_step / est.step_time_s / sc.devices / 1e12
    err = tflops / 555 - 1
    assert 0.15 < err < 0.40  # 555: NeMo docs/source/performance/performance_long_sequence.md@0aa26711
    # Without CP the same 128 GPUs as TP4 DP32 hold a whole 128K sequence each: no longer fits.
    one = dataclasses.replace(sc.training, micro_batches=1)
    assert not estimate(sc, Layout(dp=32, tp=4), one).fits_in_memory


def test_search_keys_and_layout_keys_load_from_a_scenario_file(tmp_path):
    text = (Path(__file__).parents[1] / "scenarios" / "mixtral-8x7b-h100.toml").read_text()
    good = text + ('\n[search]\npipeline_schedules = ["1f1b", "interleaved", "dualpipe"]\nvirtual_stages = [2, 8]\n'
                   'context_parallel = [1, 2]\ncp_comms = ["p2p", "a2a"]\n')
    (tmp_path / "good.toml").write_text(good)
    space = load_scenario(str(tmp_path / "good.toml")).search
    assert space.pipeline_schedules == ("1f1b", "interleaved", "dualpipe") and space.virtual_stages == (2, 8)
    assert space.context_parallel == (1, 2) and space.cp_comms == ("p2p", "a2a")
    (tmp_path / "bad.toml").write_text(text + '\n[search]\npipeline_schedules = ["chimera"]\n')
    with pytest.raises(SpecError, match="'chimera' is not allowed"):
        load_scenario(str(tmp_path / "bad.toml"))
    (tmp_path / "vp.toml").write_text(text.replace("pp = 4", "pp = 4\nvp = 3\ncp_comm = \"a2a\""))
    with pytest.raises(SpecError, match="vp = 3 needs pipeline_schedule = interleaved"):
        load_scenario(str(tmp_path / "vp.toml")).resolve()


def test_dualpipe_device_holds_stages_s_and_p_minus_1_minus_s():
    """DualPipe rank r holds stages r and p − 1 − r (`deepseek-ai/DualPipe:examples/example_dualpipe.py`:
    full_modules[rank], full_modules[pp_size - 1 - rank]); its first rank therefore holds the first and the
    last stage, and the MTP module reads the embedding there (DeepSeek-V3 §3.2.3): no second copy."""
    from moesim.workload import build_workload, stage_class_counts  # noqa: PLC0415
    sc = load_scenario("deepseek-v3-h800")
    # The even split 15 x 4 | 1 (the shipped file's 3 | 14 x 4 | 2 peaks on a middle rank): rank 0 holds most.
    layout = dataclasses.replace(sc.resolve(), first_stage_layers=None, last_stage_layers=1)
    tr = dataclasses.replace(sc.training, pipeline_schedule="dualpipe")
    e = estimate(sc, layout, tr)
    wl = build_workload(sc.model, *sc.seq_lens)
    counts = stage_class_counts(wl, layout.pp, layout.first_stage_layers, layout.last_stage_layers)
    per_layer = np.array([c.params_shardable + c.params_replicated + c.params_experts / layout.ep for c in wl.classes])
    stage = counts @ per_layer  # tp = 1
    stage[0] += wl.embedding_params + wl.position_params
    stage[-1] += wl.lm_head_params + wl.final_norm_params  # the MTP module's embedding is the first stage's
    device = stage + stage[::-1]
    # The recipe's one cached FP8 copy of each FP8 GEMM weight (not the embedding, head, router, norms), with its
    # 128x128-block FP32 scales (moesim/precision_recipes.toml deepseek-v3-fp8: fp8_weight_transpose per_micro_batch).
    gemm = counts @ np.array([c.params_shardable + c.params_duplicated_gemm + c.params_experts / layout.ep
                              for c in wl.classes])
    held_gemm = (gemm + gemm[::-1])[device.argmax()]
    fp8_copy = held_gemm * (1 + 4 / (128 * 128))
    # No BF16 copy of those FP8 GEMM weights (the recipe's fp8_gemm_param_copy = false, DeepSeek-V3 §3.3.1): BF16 for
    # the rest (embedding, head, router, norms) only.
    assert e.memory_bytes_per_device["weights"] == pytest.approx(
        tr.bytes_of("param") * (device.max() - held_gemm) + fp8_copy, rel=1e-9)
    assert e.memory_bytes_per_device["gradients"] == pytest.approx(tr.bytes_of("grad") * device.max(), rel=1e-9)
    # Not twice the heaviest stage (first: 3 dense layers and the embedding), as a 2x of one stage would give.
    assert device.max() < 2 * stage.max()
