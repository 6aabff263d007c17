"""CUDA graphs (training.cuda_graph_scope; moesim.ops.graphs): per layer (session 21, bridgekeys) a captured module's
operators are charged one launch per part and pass instead of one per kernel; the whole-iteration graph (session 21,
bridgerows2) charges no launch and no per-layer host cost; nothing else moves."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.collectives.select import model_for
from moesim.errors import SpecError
from moesim.estimate import evaluate, step_estimate
from moesim.estimate.candidates import single
from moesim.ops.base import Op, gemm
from moesim.ops.graphs import captured_parts, graphed
from moesim.ops.price import op_time_s
from moesim.specs.load import load_scenario
from moesim.specs.training import TrainingSpec


def test_the_modules_capture_megatrons_regions():
    assert captured_parts(("attn", "moe_router", "moe_preprocess"), True) == {"attention", "router", "shared_experts"}
    assert captured_parts(("attn", "moe_router"), False) == {"attention"}  # a dense layer has no router
    assert captured_parts(("mlp",), True) == set() and captured_parts(("mlp",), False) == {"dense_ffn"}
    # cuda_graph.md: moe_router holds "shared experts (if not EP-comm-overlapped)" (review21: they were captured)
    assert captured_parts(("attn", "moe_router"), True, a2a_overlap=True) == {"attention", "router"}
    assert captured_parts(("moe",), True, a2a_overlap=True) >= {"router", "shared_experts"}


def test_a_captured_part_launches_once_and_its_kernels_keep_their_time():
    ops = [gemm("attention", "qkv", "bfloat16", 4096, 1024, 1024, count=3.0),
           gemm("attention", "proj", "bfloat16", 4096, 1024, 1024), gemm("expert_ffn", "fc1", "bfloat16", 64, 64, 64)]
    out = graphed(ops, ("attn",), True)
    assert [o.launch_count for o in out] == [1.0, 0.0, 1.0]
    assert [o.kernels for o in out] == [3.0, 1.0, 1.0]  # the kernels are still there (breakdowns count them)
    hw = load_scenario("mixtral-8x7b-h100").hardware
    launch = hw.efficiency.kernel_launch_s
    assert launch > 0
    t = lambda op: float(np.asarray(op_time_s(op, hw)).reshape(-1)[0])  # noqa: E731
    assert t(ops[0]) - t(out[0]) == pytest.approx(2 * launch)
    assert t(ops[1]) - t(out[1]) == pytest.approx(launch)
    assert t(ops[2]) == t(out[2])


@pytest.mark.parametrize("scope, message", [
    (("moe_preprocess",), "must be captured with moe_router"),
    (("attn", "attn"), "given twice"),
    (("full_iteration", "attn"), "full_iteration alone"),
    (("full_step",), "not allowed"),
])
def test_bad_scopes_are_named(scope, message):
    with pytest.raises(SpecError, match=message) as err:
        TrainingSpec(global_batch_sequences=8, cuda_graph_scope=scope)
    assert err.value.field == "training.cuda_graph_scope"


def test_a_whole_moe_layer_graph_needs_drop_and_pad():
    sc = load_scenario("mixtral-8x7b-h100")
    dropless = dataclasses.replace(sc.model, moe=dataclasses.replace(sc.model.moe, capacity_rule="dropless",
                                                                     capacity_factor_train=None))
    with pytest.raises(SpecError, match="drop-and-pad"):
        dataclasses.replace(sc, model=dropless, training=dataclasses.replace(sc.training, cuda_graph_scope=("moe",)))


def test_graphs_shorten_the_step_by_the_launches_they_save_and_nothing_else():
    """Mixtral on H100 with attention and the router captured: the compute falls (launches only: the exposed
    communication moves only as less compute hides it), memory is the same."""
    sc = load_scenario("mixtral-8x7b-h100")
    layout = sc.resolve()
    graphs = dataclasses.replace(sc, training=dataclasses.replace(sc.training, cuda_graph_scope=("attn", "moe_router")))
    before, after = (step_estimate(s, evaluate(s, single(s, layout), model_for(s)), 0) for s in (sc, graphs))
    assert after.step_time_s < before.step_time_s and after.compute_time_s < before.compute_time_s
    assert before.compute_time_s - after.compute_time_s < 0.05 * before.compute_time_s
    assert after.memory_bytes_per_device["total"] == before.memory_bytes_per_device["total"]
    assert np.isfinite(after.step_time_s)


def test_a_whole_iteration_graph_charges_no_launch_and_no_host_time():
    host = Op("layer_overhead", "layer_overhead", "host", "fwd", "float32", time_s=np.array([2e-5, 3e-5]), kernels=0.0)
    ops = [host, gemm("attention", "qkv", "bfloat16", 4096, 1024, 1024, count=3.0),
           gemm("expert_ffn", "fc1", "bfloat16", 64, 64, 64)]
    out = graphed(ops, ("full_iteration",), True)
    assert [o.launch_count for o in out[1:]] == [0.0, 0.0]
    assert [o.kernels for o in out[1:]] == [3.0, 1.0]  # the kernels run: only their launches go
    assert np.all(out[0].time_s == 0.0) and out[0].time_s.shape == (2,)
    hw = load_scenario("mixtral-8x7b-h100").hardware
    t = lambda op: float(np.asarray(op_time_s(op, hw)).reshape(-1)[0])  # noqa: E731
    assert t(ops[1]) - t(out[1]) == pytest.approx(3 * hw.efficiency.kernel_launch_s)


def test_a_whole_iteration_graph_of_a_dropless_model_needs_hybridep():
    """Static dispatch shapes: Megatron-LM gets them from HybridEP's capacity budget (cuda_graph.md)."""
    sc = load_scenario("mixtral-8x7b-h100")
    dropless = dataclasses.replace(sc.model, moe=dataclasses.replace(sc.model.moe, capacity_rule="dropless",
                                                                     capacity_factor_train=None))
    whole = dataclasses.replace(sc.training, cuda_graph_scope=("full_iteration",))
    with pytest.raises(SpecError, match="static dispatch shapes") as err:
        dataclasses.replace(sc, model=dropless, training=whole)
    assert err.value.field == "training.cuda_graph_scope"
    ok = dataclasses.replace(sc, model=dropless, training=dataclasses.replace(whole, dispatch_backend="hybridep"))
    assert ok.training.cuda_graph_scope == ("full_iteration",)


def test_a_whole_iteration_graph_falls_alike_in_both_engines():
    """A Megatron-Bridge row run under cuda_graph_impl full_iteration (26.08 GB200 Qwen3-30B-A3B, HybridEP, pp 1):
    estimate and simulator both fall, by launches only (memory the same), and stay within 2 % of each other."""
    from moesim.des import SimOptions, simulate
    from moesim.models import bridge_perf as bp

    row = next(r for r in bp.load_newer_rows() if r.case == "26.08-gb200-qwen3-30b-mxfp8-ep8")
    assert row.cuda_graph_scope == ("full_iteration",)
    whole = bp.row_scenario(row, row.recompute, row.recompute_modules)
    eager = dataclasses.replace(whole, training=dataclasses.replace(whole.training, cuda_graph_scope=()))
    layout = whole.resolve()
    est = [step_estimate(s, evaluate(s, single(s, layout), model_for(s)), 0) for s in (eager, whole)]
    des = [float(simulate(s, layout, SimOptions(contention=False, expected_loads=True, trace=False)).step_times_s[0])
           for s in (eager, whole)]
    assert est[1].step_time_s < est[0].step_time_s and des[1] < des[0]
    assert est[1].memory_bytes_per_device["total"] == est[0].memory_bytes_per_device["total"]
    for e, d in zip(est, des):
        assert d == pytest.approx(e.step_time_s, rel=0.02)
    assert (des[0] - des[1]) == pytest.approx(est[0].step_time_s - est[1].step_time_s, rel=0.25)
