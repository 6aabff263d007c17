"""The shared experts' SP gathers and casts under Megatron-LM + TE with FP8 (session 25, sharedfp8).

Megatron-Core core_v0.17.0 (9539a12e) models/gpt/moe_module_specs.py l.53-63: the shared experts' fc1 is
backend.column_parallel_linear() and fc2 backend.row_parallel_linear(), TE Linears as a dense MLP's (without
moe_shared_expert_overlap, Megatron's default). So under FP8 + SP fc1's input is cast on the sequence shard and
all-gathered in FP8, its wgrad re-gather too, and fc2's output gradient is cast on its shard and gathered in FP8
(TE v2.14 f031cf87 linear.py l.182-215, base.py l.1228-1233); the reduce-scatters stay BF16. DeepSeek-V2's 4-layer
slice (layers 1-3 MoE with shared experts) at tp 2, dp 4, ep 8."""

import dataclasses

import pytest

from moesim.des import SimOptions, simulate
from moesim.estimate import estimate
from moesim.estimate.precision_terms import quantised_elements
from moesim.estimate.shared_tp_comms import SHARED_GATHER, SHARED_SCATTER, SHARED_WGRAD_GATHER
from moesim.precision import recipe_values
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario
from moesim.workload import build_workload

LAYOUT = Layout(dp=4, tp=2, ep=8)


def _scenario(recipe: str = "", **changes):
    sc = load_scenario("deepseek-v2-l4-b200-ep8")
    keys = {**(recipe_values(recipe) if recipe else {}), "sequence_parallel": True, **changes}
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, **keys))


@pytest.mark.parametrize("recipe, q", [("te-current-scaling", 1.0), ("mxfp8-blackwell", 1.0 + 1 / 32)])
def test_shared_gathers_carry_fp8_shards(recipe, q):
    """fc1's gather (forward and backward's fc2 gradient gather) and its wgrad re-gather at 1 + s bytes an element,
    the scatters at BF16's 2, the same calls as under BF16."""
    bf16 = estimate(_scenario(), LAYOUT).communication
    fp8 = estimate(_scenario(recipe), LAYOUT).communication
    for name in (SHARED_GATHER, SHARED_WGRAD_GATHER):
        assert fp8[name]["size_bytes"] == pytest.approx(bf16[name]["size_bytes"] * q / 2.0)
        assert fp8[name]["calls_per_step"] == bf16[name]["calls_per_step"]
    assert fp8[SHARED_SCATTER]["size_bytes"] == bf16[SHARED_SCATTER]["size_bytes"]


def test_without_sp_or_te_the_gathers_stay_bf16():
    """SP off: an all-reduce, no gather; framework "none" (not Megatron-LM + TE): BF16 gathers."""
    assert SHARED_GATHER not in estimate(_scenario("te-current-scaling", sequence_parallel=False), LAYOUT).communication
    bf16 = estimate(_scenario(), LAYOUT).communication
    other = estimate(_scenario("te-current-scaling", framework="none"), LAYOUT).communication
    assert other[SHARED_GATHER]["size_bytes"] == bf16[SHARED_GATHER]["size_bytes"]


def test_shared_fc1_input_and_fc2_gradient_cast_the_shard():
    """The shared experts' fc1 input and fc2 output gradient: h / t a token each under shard casts, not h; the inner
    widths, the attention's other casts and the routed experts as before."""
    sc = _scenario()
    cls = next(c for c in build_workload(sc.model, 4096, 0).classes if c.is_moe)
    h, tp, slots = sc.model.d_model, 2, 4096 * sc.model.moe.top_k
    whole = quantised_elements(sc.model, cls, 1, tp, 1, slots, te_casts=True, sequence_parallel=True)
    shard = quantised_elements(sc.model, cls, 1, tp, 1, slots, te_casts=True, sequence_parallel=True,
                               shard_casts=True)
    assert whole["shared_experts"][0] - shard["shared_experts"][0] == pytest.approx(4096 * h * (1 - 1 / tp))
    assert whole["shared_experts"][1] - shard["shared_experts"][1] == pytest.approx(4096 * h * (1 - 1 / tp))
    assert whole["permute"] == shard["permute"]


def test_deepseek_casts_never_go_negative():
    """DeepSeek's recipe drops the shared fc1's own input cast (it reads the dispatch's copy), whatever its width."""
    sc = _scenario()
    cls = next(c for c in build_workload(sc.model, 4096, 0).classes if c.is_moe)
    slots = 4096 * sc.model.moe.top_k
    both = quantised_elements(sc.model, cls, 1, 2, 1, slots, deepseek_casts=True, shard_casts=True)
    f_s = sc.model.moe.num_shared_experts * sc.model.moe.shared_expert_d_ff
    assert both["shared_experts"][0] == pytest.approx(4096 * f_s / 2)


def test_the_simulator_reads_the_fp8_shared_gathers():
    """Both engines price the same CommCalls: the simulator's step within 2 % of the estimate under FP8 + SP."""
    sc = _scenario("te-current-scaling")
    result = simulate(sc, LAYOUT, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)
