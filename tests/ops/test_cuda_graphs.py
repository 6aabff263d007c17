"""Per-layer CUDA graphs (training.cuda_graph_scope; moesim.ops.graphs; session 21, bridgekeys): a captured module's
operators are charged one launch per part and pass instead of one per kernel; nothing else moves."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.collectives.select import model_for
from moesim.errors import SpecError
from moesim.estimate import evaluate, step_estimate
from moesim.estimate.candidates import single
from moesim.ops.base import gemm
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
    (("full_iteration",), "not allowed"),
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
