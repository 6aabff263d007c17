"""Compute beside DeepEP's SMs (moesim/ops/sm_share.py, session 19 smshare): in a DualPipe overlapped pair the
GEMMs and grouped GEMMs run on the SMs DeepEP's normal kernels leave, (132 − 20) / 132 of the chip, in both engines;
nothing changes outside the pair, without DeepEP, without experts split over devices, or without an SM count."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from des_helpers import tiny_scenario
from moesim.collectives.dispatch import normal_kernel_sms
from moesim.collectives.select import default_model
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.des.orders import device_order
from moesim.des.schedule import COMPUTE, build_stage_program
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.ops.breakdown import term_builder
from moesim.ops.price import op_time_s
from moesim.ops.sm_share import SHARED_KINDS, compute_share, overlapped_compute_share
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware

LAYOUT = Layout(dp=8, ep=8, pp=4)
M = 16


def _scenario(backend: str = "deepep", sm_count: int | None = 132, schedule: str = "dualpipe"):
    """The tiny MoE on 32 H100s, 16 equal layers, DualPipe over pp 4 with 16 micro-batches, experts over ep 8."""
    sc = tiny_scenario(32, micro_batches=M, pipeline_schedule=schedule, global_batch_sequences=128,
                       dispatch_backend=backend)
    model = dataclasses.replace(sc.model, decoder_layers=16, d_model=2048, vocab_size=64)
    hw = dataclasses.replace(sc.hardware, chip=dataclasses.replace(sc.hardware.chip, sm_count=sm_count))
    return dataclasses.replace(sc, model=model, hardware=hw)


def test_the_figures_and_their_sources():
    assert normal_kernel_sms() == 20  # DeepSeek-V3 §3.2.2 (deepep.toml [sms])
    for name in ("h800", "h100-sxm"):
        assert load_hardware(name).chip.sm_count == 132
    assert load_hardware("b200").chip.sm_count == 148  # a published measurement (b200.toml; session 24 bwsm)
    assert load_hardware("gb200-nvl72").chip.sm_count is None  # not filled: no sharing priced there
    assert compute_share(132, 20) == pytest.approx(112 / 132)
    with pytest.raises(ValueError, match="communication SMs"):
        compute_share(132, 132)
    sc = _scenario()
    assert overlapped_compute_share(sc.hardware, sc.training) == pytest.approx(112 / 132)
    for other in (_scenario("nccl"), _scenario("deepep_ll"), _scenario(sm_count=None)):
        assert overlapped_compute_share(other.hardware, other.training) == 1.0


def test_a_bad_sm_count_names_the_field(tmp_path: Path):
    text = (Path(__file__).parents[2] / "hardware_profiles" / "h100-sxm.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("sm_count = 132", "sm_count = 0"))
    with pytest.raises(SpecError, match="sm_count"):
        load_hardware(str(bad))


def _moe_terms(sc):
    builder, wl, _ = term_builder(sc, LAYOUT)
    cls = next(c for c in wl.classes if c.is_moe)
    return builder.build(cls), sc.hardware


def test_a_layer_in_the_pair_by_hand():
    """One MoE layer's forward + backward in the pair: the full-chip time plus, for each GEMM and grouped GEMM of its
    operator list, its time less its launches times (132 / 112 − 1); memory-bound operators and the attention
    core unchanged."""
    terms, hw = _moe_terms(_scenario())
    launch_s = hw.efficiency.kernel_launch_s
    extra = 0.0
    kinds = set()
    for op in terms.ops_fwd + terms.ops_bwd:
        kinds.add(op.kind)
        if op.kind in SHARED_KINDS:
            extra += (float(np.asarray(op_time_s(op, hw)).reshape(-1)[0]) - op.kernels * launch_s) * (132 / 112 - 1)
    # the tiny MoE runs Megatron-LM + TE on h100-sxm: its expert GEMMs are one `gemm` per local expert (session 24
    # hopperggemm), priced at the share as the grouped kernel was
    assert {"gemm", "attention", "memory"} <= kinds
    assert any(op.name == "expert_fc1" and op.kind in SHARED_KINDS for op in terms.ops_fwd)
    full = float((terms.fwd_time_s + terms.bwd_time_s)[0])
    assert extra > 0.05 * full
    assert float(terms.pair_time_s()[0]) == pytest.approx(full + extra, rel=1e-12)
    plain, _ = _moe_terms(_scenario("nccl"))  # its own full-chip time: the permute group differs after DeepEP
    assert not plain.fwd_pair_parts_s
    plain_full = float((plain.fwd_time_s + plain.bwd_time_s)[0])
    assert float(plain.pair_time_s()[0]) == pytest.approx(plain_full, rel=1e-12)


def test_the_simulators_pair_kernels_by_hand():
    """The simulator's stage program: every FB slot's layers run their pair parts (and the expert FFN at the
    share), every other slot the full-chip ones; so the compute of device 0 grows by FB slots x the layers' extra."""
    shared, plain = _scenario(), _scenario(sm_count=None)
    totals = []
    for sc in (shared, plain):
        costs = build_costs(sc, LAYOUT, sc.training, default_model(sc.hardware), 0.0)
        program = build_stage_program(costs, 0)
        totals.append(sum(o.duration_s for o in program.ops if o.kind == COMPUTE))
    terms, _ = _moe_terms(shared)
    per_layer_fwd = float(sum(terms.fwd_pair_parts_s.values())[0] - terms.fwd_time_s[0])
    per_layer_bwd = float(sum(terms.bwd_pair_parts_s.values())[0] - terms.bwd_time_s[0])
    layers = 16 // 4  # a stage of 4 equal layers (DualPipe: device 0 holds stages 0 and 3)
    pairs = sum(1 for s in device_order("dualpipe", M, 4, 1, 0) if s.kind == "FB")
    assert pairs > 0
    assert totals[0] - totals[1] == pytest.approx(pairs * layers * (per_layer_fwd + per_layer_bwd), rel=1e-9)


def test_both_engines_agree_and_move_together():
    """Uniform loads, no contention: within 2 % with sharing (+0.74 % measured; +0.41 % without it; +1.20 / +0.87 %
    before autograd's gradient sums, session 20 gradadds; +0.46 / +0.10 % while the simulator counted DualPipe's
    gradient passes by micro-batch, before session 20 leftovers20), and the
    mechanism moves the two engines' step by the same sign and within 15 % of each other (simulator +1.82 ms,
    estimate +1.67 ms measured)."""
    options = SimOptions(contention=False, expected_loads=True, trace=False)
    shared = simulate(_scenario(), LAYOUT, options)
    plain = simulate(_scenario(sm_count=None), LAYOUT, options)
    assert shared.step_times_s[0] == pytest.approx(shared.analytical_step_time_s, rel=0.02)
    d_sim = shared.step_times_s[0] - plain.step_times_s[0]
    d_est = shared.analytical_step_time_s - plain.analytical_step_time_s
    assert d_sim > 0 and d_est > 0
    assert d_sim == pytest.approx(d_est, rel=0.15)


@pytest.mark.parametrize("case", ["1f1b", "nccl", "ep1"])
def test_nothing_moves_outside_a_pair_beside_deepep(case):
    """1F1B runs no overlapped pair, NCCL's all-to-all holds no SMs moesim models, and ep 1 runs no DeepEP: the
    estimate is bit for bit the same with and without an SM count."""
    kw = {"1f1b": dict(schedule="1f1b"), "nccl": dict(backend="nccl"), "ep1": {}}[case]
    layout = Layout(dp=8, pp=4) if case == "ep1" else LAYOUT
    sc = _scenario(**kw)
    if case == "ep1":
        sc = dataclasses.replace(sc, devices=32)
    a = estimate(sc, layout).step_time_s
    b = estimate(dataclasses.replace(sc, hardware=_scenario(sm_count=None, **kw).hardware), layout).step_time_s
    assert a == b
