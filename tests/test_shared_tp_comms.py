"""The shared experts' tensor-parallel collectives (moesim/estimate/shared_tp_comms.py; Megatron-LM core_v0.17.0
9539a12e shared_experts.py l.59: Megatron's MLP on the tp group; moe_layer.py l.559: run on the layer's sequence shard):
under SP an all-gather of fc1's input and a reduce-scatter of fc2's output a pass, fc1's wgrad re-gather in backward;
without SP an all-reduce a pass. Counted by hand on DeepSeek-V2's 4-layer slice (layers 1-3 MoE with shared experts)
at tp 2, dp 4, ep 8, 4 micro-batches."""

import dataclasses

import pytest

from moesim.des import SimOptions, simulate
from moesim.estimate import estimate, shared_tp_comms
from moesim.estimate.shared_tp_comms import SHARED_ALL_REDUCE, SHARED_GATHER, SHARED_SCATTER, SHARED_WGRAD_GATHER
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

LAYOUT = Layout(dp=4, tp=2, ep=8)
MOE_LAYERS, MICRO_BATCHES = 3, 4


def _scenario(name: str = "deepseek-v2-l4-b200-ep8", **changes):
    sc = load_scenario(name)
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, **{"sequence_parallel": True,
                                                                                 **changes}))


def test_the_calls_by_hand():
    sc = _scenario()
    assert sc.training.micro_batches == MICRO_BATCHES and sc.model.moe.num_shared_experts
    comm = estimate(sc, LAYOUT).communication
    gather, scatter, wgrad = comm[SHARED_GATHER], comm[SHARED_SCATTER], comm[SHARED_WGRAD_GATHER]
    # forward 1 gather + 1 scatter, backward 1 gather (fc2's gradient) + 1 scatter (fc1's) + fc1's wgrad re-gather
    assert gather["calls_per_step"] == scatter["calls_per_step"] == 2 * MOE_LAYERS * MICRO_BATCHES
    assert wgrad["calls_per_step"] == MOE_LAYERS * MICRO_BATCHES
    # the [t, h] activations of the layer's TP blocks, as the attention's out-projection scatter
    assert gather["size_bytes"] == scatter["size_bytes"] == comm["tp_reduce_scatter"]["size_bytes"] > 0
    assert SHARED_ALL_REDUCE not in comm


def test_full_recompute_replays_the_forward_ones():
    comm = estimate(_scenario(recompute="full"), LAYOUT).communication
    assert comm[SHARED_GATHER]["calls_per_step"] == 3 * MOE_LAYERS * MICRO_BATCHES
    assert comm[SHARED_WGRAD_GATHER]["calls_per_step"] == MOE_LAYERS * MICRO_BATCHES


def test_without_sp_an_all_reduce_a_pass():
    comm = estimate(_scenario(sequence_parallel=False), LAYOUT).communication
    assert comm[SHARED_ALL_REDUCE]["calls_per_step"] == 2 * MOE_LAYERS * MICRO_BATCHES
    assert SHARED_GATHER not in comm


def test_no_group_no_call():
    comm = estimate(_scenario(), Layout(dp=8, tp=1, ep=8)).communication
    assert not {SHARED_GATHER, SHARED_SCATTER, SHARED_WGRAD_GATHER, SHARED_ALL_REDUCE} & set(comm)


def test_the_simulator_prices_the_same_calls(monkeypatch):
    """Both engines move by the calls' time: the estimate's breakdown total, the simulator's step."""
    opts = SimOptions(contention=False, expected_loads=True, trace=False)
    sc = _scenario()
    comm = estimate(sc, LAYOUT).communication
    added_s = sum(comm[name]["time_s"] for name in (SHARED_GATHER, SHARED_SCATTER, SHARED_WGRAD_GATHER))
    with_shared = simulate(sc, LAYOUT, opts)
    monkeypatch.setattr(shared_tp_comms, "has_shared", lambda model, cls: False)
    without = simulate(sc, LAYOUT, opts)
    assert added_s > 0
    assert with_shared.step_times_s[0] == pytest.approx(with_shared.analytical_step_time_s, rel=0.02)
    assert with_shared.analytical_step_time_s - without.analytical_step_time_s == pytest.approx(added_s, rel=0.02)
    assert with_shared.step_times_s[0] - without.step_times_s[0] == pytest.approx(added_s, rel=0.02)
