"""The permute group after DeepEP's / HybridEP's dispatch (session 23, dsv3perm; moesim/ops/layer.py
LayerOps._flex_dispatch, _dispatch_mapping): the received tokens expanded into the experts' rows and reduced back, no
chunk sort, and DeepSeek's counting and mapping kernels, read against DeepSeek's H800 trace
(tests/data/dsv3_trace/train_kernels.csv) and Megatron-LM's flex dispatcher."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.collectives.dispatch import routing_shape
from moesim.ops.breakdown import term_builder
from moesim.ops.price import op_time_s
from moesim.specs.load import load_scenario

LAYOUT = "dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2"  # the trace's (scripts/dsv3_trace.py)


def _moe_terms(**training):
    sc = load_scenario("scenarios/deepseek-v3-h800.toml", layout=LAYOUT)
    if training:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **training))
    builder, wl, _ = term_builder(sc, sc.resolve(source="--layout"))
    return sc, builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))


def _ops(terms, name, pass_):
    return [o for o in terms.ops_fwd + terms.ops_bwd if o.name == name and o.pass_ == pass_]


def _bytes(terms, name, pass_):
    return sum(float(np.ravel(o.bytes)[0]) for o in _ops(terms, name, pass_))


def test_trace_expands_received_tokens_into_rows_and_reduces_them_back(dsv3, kernels):
    """Per layer, forward: the expand's grid is the device's routed rows / 16 (the SwiGLU's grid, one block a row),
    the reduce's grid the tokens DeepEP delivered, fewer than the rows (each token once per GPU, not per expert); no
    kernel sorts chunks; the counting and mapping kernels run on 4 blocks before the expand."""
    rows = dsv3.trace_shapes(kernels)["routed_rows_per_device"]
    grid = lambda k: int(k.grid.split(",")[0])  # noqa: E731
    fwd = [k for k in kernels if k.phase == "mlp(F)"]
    expand = [grid(k) for k in fwd if "expand_to_fused" in k.kernel]
    reduce_ = [grid(k) for k in fwd if "reduce_fused_impl" in k.kernel]
    assert [16 * e for e in expand] == rows
    assert all(0.85 * r < t < r for t, r in zip(reduce_, rows))
    assert not [k for k in kernels if "sort_chunks" in k.kernel.lower()]
    mapping = [k for k in fwd if k.kernel.endswith(("clean_and_count_expert", "get_fused_mapping"))]
    assert len(mapping) == 8 and {k.grid for k in mapping} == {"4,1,1"}
    first = {layer: min(m.order for m in mapping if m.layer == layer) for layer in range(4)}
    assert all(first[k.layer] < k.order for k in fwd if "expand_to_fused" in k.kernel)


def test_received_tokens_are_the_routed_shape_and_near_the_traces(dsv3, kernels):
    """moesim's received tokens, t_dev · Γ (node-limited: 4 of 8 nodes), within 2 % of the trace's mean reduce grid,
    and the expand / reduce bytes by hand: read received, write rows (FP8 with scales) and back (BF16)."""
    sc, terms = _moe_terms()
    moe, h = sc.model.moe, sc.model.d_model
    t_dev, slots = float(np.ravel(terms.tokens_per_device)[0]), float(np.ravel(terms.slots)[0])
    gamma = routing_shape(moe.num_experts, moe.top_k, 64, 8, moe.max_nodes_per_token).distinct_gpus
    received = t_dev * gamma
    trace = [int(k.grid.split(",")[0]) for k in kernels if k.phase == "mlp(F)" and "reduce_fused_impl" in k.kernel]
    assert abs(received / np.mean(trace) - 1) < 0.02
    q_d, q_c = sc.training.element_bytes("dispatch"), sc.training.element_bytes("combine")
    assert q_d < q_c  # FP8 dispatch, BF16 combine (DeepSeek-V3 §3.3.4)
    assert _bytes(terms, "permute", "fwd") == pytest.approx((received + slots) * h * q_d)
    assert _bytes(terms, "unpermute", "fwd") == pytest.approx((slots + received) * h * q_c)
    # backward: the combine's gradient expanded in the dispatch's dtype, the experts' input gradient reduced in BF16
    assert _bytes(terms, "unpermute", "bwd") == pytest.approx((slots + received) * h * q_d)
    assert _bytes(terms, "permute", "bwd") == pytest.approx((received + slots) * h * q_c)
    for name in ("permute_sort", "unpermute_sort"):
        assert all(float(np.ravel(o.bytes)[0]) == 0 and float(np.ravel(o.kernels)[0]) == 0
                   for o in _ops(terms, name, "fwd") + _ops(terms, name, "bwd"))


def test_dispatch_mapping_is_deepseeks_own_and_its_table_prices_the_trace(dsv3, kernels):
    """DeepSeek's framework: two kernels reading the received tokens' int64 top-k indices, forward only, priced back to
    the trace's mean by the H800 table (in-sample); Megatron-LM + TE on the same backend runs none."""
    sc, terms = _moe_terms()
    (mapping,) = _ops(terms, "dispatch_mapping", "fwd")
    assert not _ops(terms, "dispatch_mapping", "bwd")
    received = float(np.ravel(terms.tokens_per_device)[0]) * routing_shape(256, 8, 64, 8, 4).distinct_gpus
    assert float(np.ravel(mapping.bytes)[0]) == pytest.approx(2 * received * 8 * 8)
    assert float(mapping.kernels) == 2
    trace_us = sum(k.dur_us for k in kernels if k.phase == "mlp(F)"
                   and k.kernel.endswith(("clean_and_count_expert", "get_fused_mapping"))) / 4
    assert float(np.ravel(op_time_s(mapping, sc.hardware))[0]) * 1e6 == pytest.approx(trace_us, rel=2e-3)
    _, megatron = _moe_terms(framework="megatron-te")
    assert not _ops(megatron, "dispatch_mapping", "fwd")


@pytest.mark.parametrize("backend", ["nccl", "deepep_ll"])
def test_other_backends_keep_megatrons_alltoall_permute_and_sorts(backend):
    """The all-to-all dispatcher (and DeepEP's low-latency kernels, left as before): the device's own tokens permuted
    into k·t rows before the all-to-all, the received chunks sorted by expert after it; no mapping operator."""
    sc, terms = _moe_terms(dispatch_backend=backend, framework="megatron-te")
    h, q_d = sc.model.d_model, sc.training.element_bytes("dispatch")
    t_dev, slots = float(np.ravel(terms.tokens_per_device)[0]), float(np.ravel(terms.slots)[0])
    assert _bytes(terms, "permute", "fwd") == pytest.approx((t_dev + slots) * h * q_d)
    assert _bytes(terms, "permute_sort", "fwd") == pytest.approx(2 * slots * h * q_d)
    assert not _ops(terms, "dispatch_mapping", "fwd")


def test_hybridep_expands_the_received_tokens_as_deepep_does():
    """HybridEP's dispatch_with_permute / combine_with_unpermute (Megatron-LM d98e8a64 fused_a2a.py): the same
    expand and reduce over the tokens it delivers (its BF16 dispatch here), no sort, no DeepSeek mapping."""
    sc, terms = _moe_terms(dispatch_backend="hybridep", framework="megatron-te", dispatch_dtype="bfloat16")
    h, q_d, q_c = sc.model.d_model, sc.training.element_bytes("dispatch"), sc.training.element_bytes("combine")
    assert q_d == q_c == 2
    t_dev, slots = float(np.ravel(terms.tokens_per_device)[0]), float(np.ravel(terms.slots)[0])
    received = t_dev * routing_shape(256, 8, 64, 8, 4).distinct_gpus
    assert received < slots
    for name in ("permute", "unpermute"):
        assert _bytes(terms, name, "fwd") == pytest.approx((received + slots) * h * q_d)
        assert _bytes(terms, name, "bwd") == pytest.approx((received + slots) * h * q_d)
    assert _bytes(terms, "permute_sort", "fwd") == 0
    assert not _ops(terms, "dispatch_mapping", "fwd")
