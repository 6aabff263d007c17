"""The GDR-less legs of send/recv-based calls (gpu_nic_path past PXB, session 8: nccl_facts.no_gdr_step_legs_s) reach
the estimate and the simulator alike: both price every collective through the same collective model (des/costs.py:
CollectivePricer over the estimate's model). An NCCL expert all-to-all over 16 H100 on 2 nodes with a GPU-NIC path
through the CPU (PHB): each call (2DH at its size: one network message) grows by 2 x 5.7 us in both, and so does
the step, by the same time in both engines (the legs of this session isolated: PHB with them against PHB without)."""

from __future__ import annotations

import dataclasses

import pytest
from des_helpers import tiny_scenario

from moesim.collectives import nccl_facts
from moesim.collectives.base import Group
from moesim.collectives.select import model_for
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.estimate import estimate
from moesim.specs.layout import Layout
from moesim.specs.system_facts import with_system_facts

LAYOUT = Layout(dp=16, ep=16)
A2A = ("ep_all_to_all_dispatch", "ep_all_to_all_combine")
GROUP = Group(size=16, devices=16)


def phb():
    sc = tiny_scenario(16)
    return dataclasses.replace(sc, hardware=with_system_facts(sc.hardware, {"gpu_nic_path": "PHB"}))


def _run(sc):
    result = simulate(sc, LAYOUT, SimOptions(contention=False, expected_loads=True, trace=False))
    est = estimate(sc, LAYOUT)
    costs = build_costs(sc, LAYOUT, sc.training, model_for(sc), est.optimizer_time_s)
    calls = {name: [c for c in costs.classes if c.is_moe][0].comms[name] for name in A2A}
    return result, est, calls


def test_both_engines_move_by_the_same_legs(monkeypatch):
    staged = _run(phb())
    monkeypatch.setattr(nccl_facts, "no_gdr_step_legs_s", lambda *args: None)
    legless = _run(phb())
    for name in A2A:
        (_, est, calls), (_, est0, calls0) = staged, legless
        algorithm = model_for(phb()).cost("all_to_all", calls[name].size_bytes, GROUP).algorithm
        assert algorithm.startswith("hierarchical")  # 2DH at this size: one network message per call (pairwise: 8)
        assert calls[name].time_s - calls0[name].time_s == pytest.approx(11.4e-6, abs=1e-12)
        per_call = est.communication[name]["time_s"] / est.communication[name]["calls_per_step"]
        per_call0 = est0.communication[name]["time_s"] / est0.communication[name]["calls_per_step"]
        assert per_call - per_call0 == pytest.approx(calls[name].time_s - calls0[name].time_s, abs=1e-12)
    simulated = staged[0].step_times_s[0] - legless[0].step_times_s[0]
    estimated = staged[0].analytical_step_time_s - legless[0].analytical_step_time_s
    assert estimated >= 4 * 11.4e-6
    assert simulated == pytest.approx(estimated, rel=1e-9)
