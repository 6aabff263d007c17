"""Session 25 (cpa2a): training.dispatch_backend prices the MoE dispatch / combine only. Context parallelism's Ulysses
all-to-alls run through torch.distributed on the CP group (NCCL: TransformerEngine @ d0067d0d
transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py l.426, l.478 all_to_all_single), so
under DeepEP or HybridEP both engines price them as under "nccl" (collectives/call_model.py); before, DeepEP's kernel
path priced them (newuser8's set-up: 15.67 + 11.31 ms a step against NCCL's 35.25 + 26.52 ms)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from moesim.collectives.base import Group
from moesim.collectives.call_model import model_for_call, nccl_model
from moesim.collectives.dispatch import DispatchModel
from moesim.collectives.select import model_for
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.estimate import estimate
from moesim.search.rank import _MemoModel
from moesim.specs.layout import Layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "des"))
from des_helpers import tiny_scenario  # noqa: E402

# 16 H100 (two nodes), sequences long enough that the Ulysses all-to-alls weigh; EP 8 inside a node, CP 2.
LONG = dict(micro_batches=2, global_batch_sequences=16, seq_len=32768, recompute="selective")
LAYOUT = Layout(dp=8, cp=2, ep=8, cp_comm="a2a")
CP_CALLS = ("cp_all_to_all_qkv", "cp_all_to_all_out")
EXPERT_CALLS = ("ep_all_to_all_dispatch", "ep_all_to_all_combine")


def scenario(backend: str):
    return tiny_scenario(16, dispatch_backend=backend, **LONG)


def test_the_call_model_sends_cp_all_to_alls_to_the_base_and_expert_ones_to_the_backend():
    model = model_for(scenario("deepep"))
    assert isinstance(model, DispatchModel)
    assert model_for_call(model, "cp_all_to_all_qkv", "all_to_all") is model.base
    assert model_for_call(model, "ep_all_to_all_dispatch", "all_to_all").direction == "dispatch"
    assert model_for_call(model, "ep_all_to_all_probs", "all_to_all") is model  # the dispatcher's own call
    assert model_for_call(model, "dp_all_reduce", "all_reduce") is model  # passed to the base by the model itself
    # the search's memo: its NCCL base memoised once, a memo of the DispatchModel's base
    memo = _MemoModel(model)
    base = nccl_model(memo)
    assert isinstance(base, _MemoModel) and base.model is model.base and nccl_model(memo) is base
    group = Group(size=8, stride=1, concurrent=2, devices=16)
    assert base.cost("all_to_all", 2**24, group).time_s == model.base.cost("all_to_all", 2**24, group).time_s
    assert model.cost("all_to_all", 2**24, group).time_s != model.base.cost("all_to_all", 2**24, group).time_s


@pytest.mark.parametrize("backend", ["deepep", "deepep_ll", "hybridep", "pairwise", "hierarchical"])
def test_the_estimate_prices_cp_all_to_alls_as_nccl_and_the_dispatch_on_the_backend(backend):
    nccl = estimate(scenario("nccl"), LAYOUT).communication
    other = estimate(scenario(backend), LAYOUT).communication
    for name in CP_CALLS:
        assert other[name]["time_s"] == nccl[name]["time_s"] > 0, name
        assert other[name]["bytes_per_device"] == nccl[name]["bytes_per_device"], name
    if backend in ("deepep", "deepep_ll", "hybridep"):  # the kernels' path: the expert all-to-alls do move
        for name in EXPERT_CALLS:
            assert other[name]["time_s"] != nccl[name]["time_s"], name


def test_the_simulator_prices_cp_all_to_alls_as_nccl_and_the_dispatch_as_deepep():
    specs = {}
    for backend in ("nccl", "deepep"):
        sc = scenario(backend)
        costs = build_costs(sc, LAYOUT, sc.training, model_for(sc), 0.0)
        specs[backend] = next(c.comms for c in costs.classes if c.is_moe)
    for name in CP_CALLS:
        assert specs["deepep"][name] == specs["nccl"][name], name  # time, latency, wire bytes, no dedup
        assert specs["deepep"][name].dedup_factor == 1.0
    dispatch = (specs[b]["ep_all_to_all_dispatch"] for b in ("nccl", "deepep"))
    assert len({(s.time_s, s.wire_bytes) for s in dispatch}) == 2


def test_cp_a2a_under_deepep_agrees_with_the_estimate():
    """Both engines on one operator list: measured +0.000 % here (uncontended, expected loads; main at dfb36c95 -0.000 %
    too, both engines then pricing DeepEP's path: 0.15497 s, now 0.15434 s; NCCL's 0.15726 s)."""
    sc = scenario("deepep")
    result = simulate(sc, LAYOUT, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.001)
    nccl_cp = dataclasses.replace(sc, training=dataclasses.replace(sc.training, dispatch_backend="nccl"))
    assert estimate(sc, LAYOUT).step_time_s != estimate(nccl_cp, LAYOUT).step_time_s  # the dispatch still differs


def test_the_search_memo_prices_cp_all_to_alls_as_the_plain_model():
    """The layout search prices through a memo of the DispatchModel (search/rank.py _MemoModel): the same figures."""
    sc = scenario("deepep")
    plain = estimate(sc, LAYOUT)
    memo = estimate(sc, LAYOUT, collective_model=_MemoModel(model_for(sc)))
    for name in CP_CALLS:
        assert memo.communication[name] == plain.communication[name], name
    for name in EXPERT_CALLS:  # times (the memo has no wire_factor: its bytes sent are the plain busbw's, as on main)
        assert memo.communication[name]["time_s"] == plain.communication[name]["time_s"], name
    assert memo.step_time_s == plain.step_time_s
