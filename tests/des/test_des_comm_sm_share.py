"""Compute beside HybridEP's and NCCL's all-to-all kernels (moesim/ops/sm_share.py, session 22 smshare2): behind
training.comm_sm_share (default "deepep", the shipped behaviour) an overlapped pair's GEMMs and grouped GEMMs run on
the SMs HybridEP's kernels (16: hybridep.toml [sms]) or NCCL's all-to-all (one CTA per p2p channel its rounds take)
leave, in both engines; training.a2a_kernel_sms gives a run's own DeepEP / HybridEP SM count."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from des_helpers import tiny_scenario
from moesim.collectives.dispatch import hybridep_kernel_sms
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_p2p import p2p_net_nchannels
from moesim.des import SimOptions, simulate
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.ops.breakdown import term_builder
from moesim.ops.price import op_time_s
from moesim.ops.sm_share import SHARED_KINDS, a2a_kernel_sms, nccl_a2a_sms, overlapped_compute_share
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware, load_scenario
from moesim.specs.training import TrainingSpec

LAYOUT = Layout(dp=8, ep=8, pp=4)
M = 16


def _scenario(backend: str = "nccl", mode: str = "deepep", sms: int | None = None, schedule: str = "dualpipe"):
    """The tiny MoE on 32 H100s (132 SMs), 16 equal layers, DualPipe over pp 4, 16 micro-batches, experts over ep 8."""
    sc = tiny_scenario(32, micro_batches=M, pipeline_schedule=schedule, global_batch_sequences=128,
                       dispatch_backend=backend, comm_sm_share=mode, a2a_kernel_sms=sms)
    model = dataclasses.replace(sc.model, decoder_layers=16, d_model=2048, vocab_size=64)
    hw = dataclasses.replace(sc.hardware, chip=dataclasses.replace(sc.hardware.chip, sm_count=132))
    return dataclasses.replace(sc, model=model, hardware=hw)


def test_the_figures_and_their_sources():
    assert hybridep_kernel_sms() == 16  # DeepEP docs/README_Hybrid-EP.md: the "SM Count" of the rows priced
    h100 = load_hardware("h100-sxm")
    # One NVLink domain: an all-to-all of 4 or 8 ranks takes every one of the 32 p2p channels ([p2p]).
    assert tuning()["p2p"]["p2p_channels"] == 32
    assert nccl_a2a_sms(h100, 8, 8) == nccl_a2a_sms(h100, 4, 4) == 32
    # Across nodes, at most the communicator's 16 ([p2p_net]): 8 rounds' bases over 2 nodes at 16 ranks, all 16 at 32.
    assert p2p_net_nchannels() == 16
    assert nccl_a2a_sms(h100, 16, 8) == 8
    assert nccl_a2a_sms(h100, 32, 8) == nccl_a2a_sms(h100, 256, 8) == 16


@pytest.mark.parametrize("backend, mode, sms", [
    ("deepep", "deepep", 20), ("deepep", "nccl", 20), ("deepep_ll", "nccl", 0),
    ("hybridep", "deepep", 0), ("hybridep", "hybridep", 16), ("hybridep", "nccl", 16),
    ("nccl", "deepep", 0), ("nccl", "hybridep", 0), ("nccl", "nccl", 32), ("pairwise", "nccl", 32),
    ("hierarchical", "nccl", 32),
])
def test_which_kernels_hold_sms(backend, mode, sms):
    sc = _scenario(backend, mode)
    assert a2a_kernel_sms(sc.hardware, sc.training, 8, 1) == sms
    share = overlapped_compute_share(sc.hardware, sc.training, 8, 1)
    assert share == pytest.approx((132 - sms) / 132)


def test_the_expert_group_across_nodes_and_arrays():
    """etp x ep beyond the 8-GPU NVLink domain: the group spans nodes (ep 8 at etp 2: 4 ranks a node); arrays of rows
    give the rows' shares."""
    sc = _scenario("nccl", "nccl")
    hw, tr = sc.hardware, sc.training
    assert a2a_kernel_sms(hw, tr, 8, 2) == nccl_a2a_sms(hw, 8, 4)
    assert a2a_kernel_sms(hw, tr, 1, 1) == 0
    shares = overlapped_compute_share(hw, tr, np.array([8, 16, 1]), np.array([1, 1, 1]))
    assert shares == pytest.approx([100 / 132, (132 - nccl_a2a_sms(hw, 16, 8)) / 132, 1.0])


def test_a_runs_own_sm_count_and_bad_values():
    sc = _scenario("hybridep", "hybridep", sms=32)
    assert overlapped_compute_share(sc.hardware, sc.training, 8, 1) == pytest.approx(100 / 132)
    assert overlapped_compute_share(_scenario("deepep", sms=24).hardware, _scenario("deepep", sms=24).training,
                                    8, 1) == pytest.approx(108 / 132)
    with pytest.raises(SpecError, match="comm_sm_share"):
        TrainingSpec(global_batch_sequences=8, comm_sm_share="all")
    for bad in (0, True, 2.5):
        with pytest.raises(SpecError, match="a2a_kernel_sms"):
            TrainingSpec(global_batch_sequences=8, a2a_kernel_sms=bad)
    with pytest.raises(SpecError, match="a2a_kernel_sms"):  # a Scenario refuses it (review22), pricing too
        _scenario("hybridep", "hybridep", sms=132)
    fits = _scenario("hybridep", "hybridep", sms=131)
    with pytest.raises(SpecError, match="a2a_kernel_sms"):
        overlapped_compute_share(fits.hardware, dataclasses.replace(fits.training, a2a_kernel_sms=132), 8, 1)


def test_too_many_kernel_sms_names_the_scenario_file(tmp_path):
    """review22: the refusal of a2a_kernel_sms >= the chip's SMs names the file, field and allowed values (it was
    raised while pricing, with no file)."""
    text = (Path(__file__).parent / "data" / "gpt-oss-l6-h100.toml").read_text()
    path = tmp_path / "too-many-sms.toml"
    sms = '\ndispatch_backend = "deepep"\na2a_kernel_sms = {}'
    path.write_text(text.replace('pipeline_schedule = "1f1b"', 'pipeline_schedule = "1f1b"' + sms.format(132)))
    with pytest.raises(SpecError) as err:
        load_scenario(path)
    assert err.value.file == str(path) and err.value.field == "training.a2a_kernel_sms"
    assert "1 .. 131" in str(err.value)
    path.write_text(text.replace('pipeline_schedule = "1f1b"', 'pipeline_schedule = "1f1b"' + sms.format(131)))
    assert load_scenario(path).training.a2a_kernel_sms == 131


def test_the_nccl_count_follows_the_profile_not_its_name():
    """review22: nccl_a2a_sms was memoised by the profile's name, so a second profile of the same name with another
    NVLink line rate (a calibrated copy, a user's file) got the first one's count."""
    hw = load_hardware("h100-sxm")
    nvlink = hw.interconnect[0]
    slow = dataclasses.replace(hw, interconnect=(dataclasses.replace(
        nvlink, link_bw_bytes_per_s=nvlink.link_bw_bytes_per_s / 18),) + hw.interconnect[1:])
    assert slow.name == hw.name
    full, fewer = nccl_a2a_sms(hw, 2, 2), nccl_a2a_sms(slow, 2, 2)
    assert full == tuning()["p2p"]["p2p_channels"]  # 18 NVLinks: every one of the 32 p2p channels
    assert fewer < full  # one link's rate: 2 channels per peer (nccl_p2p.p2p_channel_rule), fewer CTAs
    assert nccl_a2a_sms(hw, 2, 2) == full


def test_a_layer_in_the_pair_by_hand():
    """NCCL's all-to-all under "nccl": one MoE layer's forward + backward in the pair is the full-chip time plus, per
    GEMM and grouped GEMM, its time less its launches times (132 / 100 − 1); the default prices no pair."""
    builder, wl, _ = term_builder(_scenario("nccl", "nccl"), LAYOUT)
    terms = builder.build(next(c for c in wl.classes if c.is_moe))
    hw = builder.hw
    extra = sum((float(np.asarray(op_time_s(op, hw)).reshape(-1)[0]) - op.kernels * hw.efficiency.kernel_launch_s)
                * (132 / 100 - 1) for op in terms.ops_fwd + terms.ops_bwd if op.kind in SHARED_KINDS)
    full = float((terms.fwd_time_s + terms.bwd_time_s)[0])
    assert extra > 0.05 * full
    assert float(terms.pair_time_s()[0]) == pytest.approx(full + extra, rel=1e-12)
    builder, wl, _ = term_builder(_scenario("nccl", "deepep"), LAYOUT)
    assert not builder.build(next(c for c in wl.classes if c.is_moe)).fwd_pair_parts_s


def test_both_engines_move_together():
    """Uniform loads, no contention: NCCL's 32 SMs of 132 move the simulator's and the estimate's step the same way,
    within 15 % of each other, and the two stay within 2 %; the default is bit for bit the scenario without it."""
    options = SimOptions(contention=False, expected_loads=True, trace=False)
    shared = simulate(_scenario("nccl", "nccl"), LAYOUT, options)
    plain = simulate(_scenario("nccl", "deepep"), LAYOUT, options)
    assert shared.step_times_s[0] == pytest.approx(shared.analytical_step_time_s, rel=0.02)
    d_sim = shared.step_times_s[0] - plain.step_times_s[0]
    d_est = shared.analytical_step_time_s - plain.analytical_step_time_s
    assert d_sim > 0 and d_est > 0
    assert d_sim == pytest.approx(d_est, rel=0.15)


def test_megatrons_a2a_overlap_at_pp1_moves_too():
    """Megatron's EP all-to-all overlap (1f1b at pp 1) pairs micro-batches as DualPipe does: "nccl" slows its step in
    both engines alike, the default leaves it as the scenario without an SM count prices it."""
    layout = Layout(dp=8, ep=8)
    sc = tiny_scenario(8, micro_batches=8, pipeline_schedule="1f1b", global_batch_sequences=64,
                       dispatch_backend="nccl", moe_a2a_overlap=True)
    base = estimate(sc, layout).step_time_s
    nccl = dataclasses.replace(sc, training=dataclasses.replace(sc.training, comm_sm_share="nccl"))
    assert estimate(nccl, layout).step_time_s > base
    options = SimOptions(contention=False, expected_loads=True, trace=False)
    plain, shared = simulate(sc, layout, options), simulate(nccl, layout, options)
    d_sim = shared.step_times_s[0] - plain.step_times_s[0]  # +1.909 ms measured, as the estimate's
    assert d_sim > 0
    assert d_sim == pytest.approx(shared.analytical_step_time_s - plain.analytical_step_time_s, rel=0.15)
    no_sms = dataclasses.replace(sc, hardware=dataclasses.replace(
        sc.hardware, chip=dataclasses.replace(sc.hardware.chip, sm_count=None)))
    assert estimate(no_sms, layout).step_time_s == base
