"""With sequence parallelism Megatron-Core all-reduces, once a step over the tp group, the gradients of the parameters
every tp rank holds whole: the norms, the MoE router, MLA's duplicated down-projections and latent norms
(NVIDIA/Megatron-LM 23e00ed0 finalize_model_grads.py `_allreduce_non_tensor_model_parallel_grads`;
moesim/estimate/tp_grad_sync.py). Both engines issue it; the bytes here are counted by hand."""

import dataclasses

import pytest

from moesim.collectives.select import model_for
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.des.schedule import COMM_NAMES, build_stage_program
from moesim.estimate import estimate
from moesim.estimate.tp_grad_sync import TP_GRAD_ALL_REDUCE
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

FP32 = 4  # main gradients (--accumulate-allreduce-grads-in-fp32)


def _llama70b(**changes):
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes)) if changes else sc


def test_llama_norms_by_hand():
    """Llama-3-70B, 12 layers at tp 8 with SP: two RMSNorms of h = 8192 a layer plus the final norm, fp32."""
    est = estimate(_llama70b())
    call = est.communication[TP_GRAD_ALL_REDUCE]
    assert call["size_bytes"] == (12 * 2 * 8192 + 8192) * FP32 == 819_200
    assert call["calls_per_step"] == 1 and call["group_size"] == 8 and call["axis"] == "tp"


def test_not_without_sequence_parallelism_or_at_tp_1():
    assert TP_GRAD_ALL_REDUCE not in estimate(_llama70b(sequence_parallel=False)).communication
    sc = _llama70b(global_batch_sequences=32)
    assert TP_GRAD_ALL_REDUCE not in estimate(sc, Layout(dp=8, tp=1)).communication


def test_not_on_tpus():
    """XLA places its own reductions (as moesim.ops.vocab): only Megatron's program on GPUs is priced."""
    sc = load_scenario("st-moe-32b-tpu-v3")
    assert sc.resolve().tp > 1 and sc.training.sequence_parallel
    assert TP_GRAD_ALL_REDUCE not in estimate(sc).communication


def _deepseek_v2_sp():
    sc = load_scenario("deepseek-v2-l4-b200-ep8")
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, sequence_parallel=True))


def test_mla_duplicated_weights_router_and_norms_by_hand():
    """DeepSeek-V2's 4-layer slice (1 dense + 3 MoE) at tp 2 with SP: per layer two norms 2·5120, the latent norms
    1536 + 512, the down-projections 5120·1536 + 5120·(512 + 64); per MoE layer the router 160·5120; the final norm
    5120."""
    h = 5120
    per_layer = 2 * h + (1536 + 512) + h * 1536 + h * (512 + 64)
    params = 4 * per_layer + 3 * 160 * h + h
    assert params == 45_765_632
    est = estimate(_deepseek_v2_sp(), Layout(dp=4, tp=2, ep=8))
    assert est.communication[TP_GRAD_ALL_REDUCE]["size_bytes"] == params * FP32
    # It adds to the step: the same layout without SP has no such call.
    sc = _deepseek_v2_sp()
    off = dataclasses.replace(sc, training=dataclasses.replace(sc.training, sequence_parallel=False))
    assert TP_GRAD_ALL_REDUCE not in estimate(off, Layout(dp=4, tp=2, ep=8)).communication


def test_the_simulator_issues_it_once_after_the_sync_before_the_optimizer():
    sc, layout = _deepseek_v2_sp(), Layout(dp=4, tp=2, ep=8)
    est = estimate(sc, layout)
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    program = build_stage_program(costs, 0)
    ops = [op for op in program.ops if op.name == COMM_NAMES[TP_GRAD_ALL_REDUCE]]
    assert len(ops) == 1 and ops[0].stream == "grad"
    assert ops[0].comm.size_bytes == est.communication[TP_GRAD_ALL_REDUCE]["size_bytes"]
    assert ops[0].comm.time_s == pytest.approx(est.communication[TP_GRAD_ALL_REDUCE]["time_s"], rel=1e-12)
    optimizer = next(op for op in program.ops if op.name == "optimizer")
    # the grad stream's last operation before the optimizer (after it: ZeRO-1's parameter all-gathers)
    grads = [op.index for op in program.ops if op.stream == "grad" and op.index < optimizer.index]
    assert grads[-1] == ops[0].index and optimizer.deps == (ops[0].index,)


def test_both_engines_agree_with_it():
    sc, layout = _llama70b(), Layout(dp=1, tp=8)
    result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)
