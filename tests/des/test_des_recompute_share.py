"""The selective recomputation beside DeepEP's SMs (session 23, dsv3perm): in a DualPipe overlapped pair a backward
chunk's recompute runs beside the other chunk's DeepEP kernels, so its GEMMs run on the SMs those leave, as the pair's
forward and backward GEMMs do (moesim/ops/sm_share.py); DeepSeek's H800 trace runs the recomputed MLA up-projections
on 112 CTAs (scripts/dsv3_trace.py: ~80 us a layer over the full-chip price). Both engines read one figure
(ClassTerms.recompute_pair_time_s); outside a pair nothing moves."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.collectives.select import default_model
from moesim.des.costs import build_costs
from moesim.des.schedule import COMPUTE, build_stage_program
from moesim.estimate.selective import recomputed_ops
from moesim.ops.breakdown import term_builder
from moesim.ops.price import op_time_s
from moesim.ops.sm_share import SHARED_KINDS, overlapped_compute_share
from moesim.specs.load import load_scenario

LAYOUT = "dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2"  # the trace's (scripts/dsv3_trace.py)


@pytest.fixture(scope="module")
def dsv3():
    sc = load_scenario("scenarios/deepseek-v3-h800.toml", layout=LAYOUT)
    layout = sc.resolve(source="--layout")
    builder, wl, _ = term_builder(sc, layout)
    return sc, layout, builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))


def test_the_recomputed_gemms_at_the_share_by_hand(dsv3):
    """recompute_pair_s − recompute_time_s = Σ over the recomputed GEMMs of (time − launches)·(1/share − 1): the
    MLA up-projections only (the norms and RoPE are memory-bound), 60-100 us a layer (the trace: ~80)."""
    sc, _, terms = dsv3
    hw, share = sc.hardware, overlapped_compute_share(sc.hardware, sc.training)
    assert share == pytest.approx(112 / 132)
    redo = [op for op in recomputed_ops(sc.training, terms.ops_fwd) if op.kind in SHARED_KINDS]
    assert sorted(op.name for op in redo) == ["kv_up_proj", "q_up_proj"]
    launch_s = hw.efficiency.kernel_launch_s
    extra = sum((float(np.ravel(op_time_s(op, hw))[0]) - float(op.kernels) * launch_s) * (1 / share - 1)
                for op in redo)
    got = float((terms.recompute_pair_s() - terms.recompute_time_s)[0])
    assert got == pytest.approx(extra, rel=1e-9)
    assert 60e-6 < got < 100e-6


def test_the_simulator_runs_the_shared_recompute_in_fb_slots_only(dsv3):
    """The stage program's recompute kernels: the pair's figure in DualPipe's FB slots, the full-chip one elsewhere."""
    sc, layout, terms = dsv3
    costs = build_costs(sc, layout, sc.training, default_model(sc.hardware), 0.0)
    lc = next(c for c in costs.classes if c.is_moe and c.recompute_pair_s is not None)
    assert lc.recompute_pair_s == pytest.approx(float(terms.recompute_pair_s()[0]), rel=1e-12)
    assert lc.recompute_s == pytest.approx(float(terms.recompute_time_s[0]), rel=1e-12)
    program = build_stage_program(costs, 1)  # a stage of 4 MoE layers
    durations = {round(o.duration_s, 12) for o in program.ops if o.kind == COMPUTE and o.name == "attention recompute"}
    assert durations == {round(lc.recompute_pair_s, 12), round(lc.recompute_s, 12)}
    assert lc.recompute_pair_s > lc.recompute_s
