"""FP8 current scaling's amax all-reduce over tp under sequence parallelism (moesim/estimate/amax_comms.py; TE v2.14
quantizer.cpp l.882-888, the quantizers linear.py l.1615-1638 / layernorm_linear.py l.1743-1766 set): one 4-byte
all-reduce before each sequence-parallel input's cast in forward and each row-parallel output gradient's in backward.
Counted by hand on DeepSeek-V2's 4-layer slice (4 MLA blocks, layer 0's dense MLP) at tp 2, dp 4, ep 8, 4
micro-batches, and on Llama 3 70B's 12-layer slice at tp 8."""

import dataclasses

import pytest

from moesim.des import SimOptions, simulate
from moesim.estimate import amax_comms, estimate
from moesim.estimate.amax_comms import AMAX_ALL_REDUCE, amax_block_calls
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

LAYOUT = Layout(dp=4, tp=2, ep=8)


def _scenario(name: str = "deepseek-v2-l4-b200-ep8", scaling: str = "per_tensor_current", **changes):
    sc = load_scenario(name)
    changes = {"gemm_dtype": "float8", "gemm_scaling": scaling, "sequence_parallel": True, **changes}
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes))


def test_the_calls_by_hand():
    comm = estimate(_scenario(), LAYOUT).communication[AMAX_ALL_REDUCE]
    # a micro-batch: forward 4 MLA blocks x 2 (the two up-projections' inputs) + the MLP's fc1 input; backward 4 + 1;
    # the 3 MoE layers' shared experts 1 forward (fc1's input) and 1 backward (fc2's gradient) each (shared_tp_comms)
    assert comm["size_bytes"] == 4 and comm["calls_per_step"] == (4 * 2 + 1 + 4 + 1 + 3 * 2) * 4


def test_full_recompute_reduces_the_forward_ones_again():
    comm = estimate(_scenario(recompute="full"), LAYOUT).communication[AMAX_ALL_REDUCE]
    assert comm["calls_per_step"] == (2 * (4 * 2 + 1) + 4 + 1 + 3 * 3) * 4  # shared experts: 2 forward, 1 backward


def test_a_dense_layer_two_each_way():
    sc = _scenario("llama3-70b-l12-b200-tp8")
    layout = sc.resolve()
    comm = estimate(sc, layout).communication[AMAX_ALL_REDUCE]
    # 12 layers, each attention + MLP: linear_qkv's and fc1's inputs forward, linear_proj's and fc2's gradients backward
    assert comm["calls_per_step"] == 12 * 4 * sc.training.micro_batches
    assert amax_block_calls(sc.model, "attention", "fwd") == 1 and amax_block_calls(sc.model, "attention", "bwd") == 1


@pytest.mark.parametrize("changes", [{"sequence_parallel": False}, {"scaling": "per_tensor_delayed"},
                                     {"scaling": "mxfp8"}, {"framework": "none"}, {"gemm_dtype": "bfloat16"}],
                         ids=["no SP", "delayed", "mxfp8", "not megatron-te", "bf16"])
def test_only_current_scaling_with_sp_under_te(changes):
    assert AMAX_ALL_REDUCE not in estimate(_scenario(**changes), LAYOUT).communication


def test_no_group_no_call():
    assert AMAX_ALL_REDUCE not in estimate(_scenario(), Layout(dp=8, tp=1, ep=8)).communication


def test_the_simulator_prices_the_same_calls(monkeypatch):
    """Both engines move by about the calls' time: the estimate's breakdown total, the simulator's step."""
    opts = SimOptions(contention=False, expected_loads=True, trace=False)
    sc = _scenario()
    with_amax = simulate(sc, LAYOUT, opts)
    added_s = estimate(sc, LAYOUT).communication[AMAX_ALL_REDUCE]["time_s"]
    monkeypatch.setattr(amax_comms, "AMAX_TP_SCALINGS", ())
    without = simulate(sc, LAYOUT, opts)
    assert with_amax.step_times_s[0] == pytest.approx(with_amax.analytical_step_time_s, rel=0.02)
    assert with_amax.analytical_step_time_s - without.analytical_step_time_s == pytest.approx(added_s, rel=0.01)
    assert with_amax.step_times_s[0] - without.step_times_s[0] == pytest.approx(added_s, rel=0.01)
