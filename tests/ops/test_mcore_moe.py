"""Megatron-Core's MoE router and dispatcher kernels (moesim/ops/mcore_moe.toml) behind scenario [moe] router_impl."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.ops.base import backward
from moesim.ops.layer import LayerOps
from moesim.ops.mcore_moe import impl_names, moe_impl
from moesim.specs.fields import Table
from moesim.specs.load import load_scenario
from moesim.specs.scenario_file import scenario_moe
from moesim.workload import build_workload

IMPL = "megatron-core-23e00ed0"


def _moe_class(model):
    return next(c for c in build_workload(model, 4096, 0).classes if c.is_moe)


def _ops(model, training, ep=8.0):
    ops = LayerOps(model, training, 1.0, 1.0, ep, 1.0)
    cls = _moe_class(model)
    t = 4096.0
    slots = t * model.moe.top_k
    permute, unpermute = ops.dispatch(slots, t, slots / model.moe.num_experts, dense_einsum=False)
    return ops.router(cls, t) + permute + unpermute + ops.moe_residual(cls)


def test_the_b200_deepseek_scenarios_name_the_runs_implementation():
    for name in ("deepseek-v2-l4-b200-ep8", "deepseek-v3-l4-b200-ep8"):
        assert load_scenario(name).model.moe.router_impl == IMPL
    assert load_scenario("deepseek-v3-h800").model.moe.router_impl == ""


def test_router_impl_prices_the_gating_kernels_read_off_the_source_forward_and_backward():
    sc = load_scenario("deepseek-v2-l4-b200-ep8")
    generic = dataclasses.replace(sc.model, moe=dataclasses.replace(sc.model.moe, router_impl=""))
    by_name = {op.name: op for op in _ops(sc.model, sc.training)}
    gating = by_name["router_gating"]
    impl = moe_impl(IMPL)
    assert gating.kernels == impl.gating_fwd_kernels == 43
    (bwd,) = backward(gating)
    assert bwd.kernels == impl.gating_bwd_kernels == 17
    assert bwd.bytes == pytest.approx(impl.gating_bwd_bytes_per_token_expert * 4096 * 160)
    # TE's row id map (3 passes), the counts' fill, the probs' sort and the shared-expert add are new operators
    assert by_name["permute_row_id_map"].kernels == 3 and not backward(by_name["permute_row_id_map"])
    assert by_name["permute_probs_sort"].kernels == 1 and by_name["dispatch_counts_fill"].kernels == 1
    assert by_name["shared_expert_add"].bytes == pytest.approx(3 * 4096 * 5120 * 2)
    old = {op.name: op for op in _ops(generic, sc.training)}
    assert old["router_gating"].kernels == 4 and "permute_row_id_map" not in old and "shared_expert_add" not in old
    # the probs' sort by local expert (token_dispatcher.py l.679-690) copies probs in the router's dtype, bf16 here:
    # TE's permute writes permuted_probs in probs.dtype (v2.11 triton/permutation.py l.158), one read + one write
    slots = 4096 * sc.model.moe.top_k
    assert by_name["permute_probs_sort"].bytes == pytest.approx(2 * slots * impl.probs_bytes_per_slot)
    assert by_name["permute_probs_sort"].dtype == "bfloat16"
    # one local expert: no probs sort
    one = {op.name: op for op in _ops(sc.model, sc.training, ep=160.0)}
    assert one["permute_probs_sort"].kernels == 0


def test_router_impl_slows_only_the_scenarios_that_set_it():
    sc = load_scenario("deepseek-v2-l4-b200-ep8")
    generic = dataclasses.replace(sc, model=dataclasses.replace(
        sc.model, moe=dataclasses.replace(sc.model.moe, router_impl="")))
    with_impl, without = estimate(sc).step_time_s, estimate(generic).step_time_s
    assert 0 < with_impl - without < 0.02 * without  # ~60 small kernels a MoE layer-micro-batch, 12 of them
    assert np.isfinite(with_impl)


def test_unknown_router_impl_is_a_clear_error():
    sc = load_scenario("deepseek-v2-l4-b200-ep8")
    with pytest.raises(SpecError) as err:
        scenario_moe(sc.model, Table({"router_impl": "megatron-core-main"}, file="s.toml", path="moe"))
    assert "router_impl" in str(err.value) and IMPL in str(err.value)
    assert impl_names() == (IMPL,)


def test_router_impl_on_a_tpu_is_a_clear_error(tmp_path):
    """Megatron-Core's kernels are CUDA launches: a scenario naming them on a TPU profile names the field and the
    hardware (review20: it priced them on the TPU)."""
    path = tmp_path / "s.toml"
    path.write_text('schema_version = 1\nname = "s"\nmodel = "deepseek-v3"\nhardware = "tpu-v5p"\ndevices = 256\n'
                    '[training]\nglobal_batch_sequences = 256\nseq_len = 4096\n'
                    f'[moe]\nrouter_impl = "{IMPL}"\n', encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_scenario(str(path))
    assert err.value.field == "moe.router_impl" and "tpu-v5p" in str(err.value) and "s.toml" in str(err.value)
    assert load_scenario(str(path), hardware="h800").model.moe.router_impl == IMPL


def test_the_probs_all_to_all_is_a_call_of_its_own_where_the_layer_names_megatron():
    """token_dispatcher.py's `global_probs = all_to_all(...)` beside the tokens' (mcore_moe.toml): one call forward
    and its reverse backward, one bf16 probability per token slot; none for the generic dispatcher."""
    from moesim.ops.breakdown import term_builder

    impl = moe_impl(IMPL)
    assert (impl.probs_all_to_all_calls, impl.probs_bytes_per_slot) == (1, 2)
    for name, expected in (("deepseek-v2-l4-b200-ep8", True), ("mixtral-8x7b-h100", False)):
        sc = load_scenario(name)
        builder, wl, _ = term_builder(sc, sc.resolve(source="layout"))
        terms = builder.build(next(c for c in wl.classes if c.is_moe))
        calls = {c.name: c for c in terms.comms}
        assert ("ep_all_to_all_probs" in calls) is expected
        if expected:
            probs, tokens = calls["ep_all_to_all_probs"], calls["ep_all_to_all_dispatch"]
            slots = float(np.asarray(terms.slots).reshape(-1)[0])
            assert float(np.asarray(probs.size_bytes).reshape(-1)[0]) == 2 * slots
            assert probs.axis == "ep" and probs.op == "all_to_all"
            assert np.all(np.asarray(probs.calls) == np.asarray(tokens.calls))  # forward + backward (+ recompute)
            assert estimate(sc).as_dict()["communication"]["ep_all_to_all_probs"]["calls_per_step"] > 0


def test_the_simulator_runs_the_probs_all_to_all_as_the_estimate_prices_it():
    from moesim.des import SimOptions, simulate

    sc = load_scenario("deepseek-v2-l4-b200-ep8")
    result = simulate(sc, sc.resolve(source="layout"), SimOptions(contention=False, expected_loads=True, trace=True))
    names = [(rec[2], rec[3]) for rec in result.trace_records if rec[1] == "comm"]
    assert ("probs all-to-all", "fwd") in names and ("probs all-to-all", "bwd") in names
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=1e-6)


def _with_backend(sc, backend):
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, dispatch_backend=backend))


def test_deepep_and_hybridep_carry_the_probabilities_in_their_dispatch():
    """probsa2a: Megatron-LM @ d98e8a64's flex dispatcher hands the probabilities to DeepEP's / HybridEP's dispatch
    (fused_a2a.py l.116-119, l.425-428): no call of their own there; the alltoall dispatcher's (token_dispatcher.py
    l.718) stays under nccl and DeepEP's low-latency kernels, which Megatron's flex dispatcher does not run."""
    from moesim.ops.breakdown import term_builder
    from moesim.ops.mcore_moe import FLEX_BACKENDS, probs_all_to_all_calls

    impl = moe_impl(IMPL)
    assert FLEX_BACKENDS == ("deepep", "hybridep")
    assert [probs_all_to_all_calls(impl, b) for b in ("nccl", "deepep", "hybridep", "deepep_ll")] == [1, 0, 0, 1]
    base = load_scenario("deepseek-v3-l4-b200-ep8")
    for backend, expected in (("nccl", True), ("deepep", False), ("hybridep", False), ("deepep_ll", True)):
        sc = _with_backend(base, backend)
        builder, wl, _ = term_builder(sc, sc.resolve(source="layout"))
        names = {c.name for c in builder.build(next(c for c in wl.classes if c.is_moe)).comms}
        assert "ep_all_to_all_dispatch" in names
        assert ("ep_all_to_all_probs" in names) is expected, backend
        assert ("ep_all_to_all_probs" in estimate(sc).as_dict()["communication"]) is expected, backend


def test_the_simulator_drops_the_probs_all_to_all_where_deepep_carries_them():
    from moesim.des import SimOptions, simulate

    sc = _with_backend(load_scenario("deepseek-v3-l4-b200-ep8"), "deepep")
    result = simulate(sc, sc.resolve(source="layout"), SimOptions(contention=False, expected_loads=True, trace=True))
    names = {rec[2] for rec in result.trace_records if rec[1] == "comm"}
    assert "probs all-to-all" not in names and names  # the tokens' all-to-alls still run
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=1e-6)
