"""DeepEP's internode dispatch and combine in the simulator as the kernels run them (collectives/dispatch.py):
each (token, remote node) record crosses the network once, to the GPU with the same local index, which forwards
it over NVLink to the GPUs holding its experts; the two stages overlap. Both are flows: the network stage on the
InfiniBand ports, the NVLink forwards (S·F/k·f per member, the estimate's own bytes) on the NVLink ports, each
paced at its own term of the estimate's T = T(0) + max(network, forwards), so that the forwards meet other
NVLink traffic (pipeline sends, tensor-parallel and gradient collectives on other streams)."""

from __future__ import annotations

import dataclasses

import pytest

from des_helpers import tiny_scenario
from moesim.collectives.select import model_for
from moesim.des import SimOptions, kernel, simulate
from moesim.des import step as des_step
from moesim.des.costs import build_costs
from moesim.des.schedule import FORWARD_SUFFIX
from moesim.estimate import estimate
from moesim.specs.layout import Layout

ALL_TO_ALLS = ("ep_all_to_all_dispatch", "ep_all_to_all_combine")


def _two_nodes(max_nodes: int):
    """16 H100s on two 8-GPU nodes, EP 16, DeepEP, 8 micro-batches; gradients reduced after the backward (no
    overlap: the comparison below is the all-to-alls', not the gradient window's)."""
    sc = tiny_scenario(16, dropless=True, model_changes={"max_nodes_per_token": max_nodes}, dispatch_backend="deepep",
                       micro_batches=8, global_batch_sequences=128, overlap_grad_reduce=False)
    layout = Layout(dp=16, ep=16)
    est = estimate(sc, layout)
    return sc, layout, est, build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)


@pytest.mark.parametrize("max_nodes, bound", [(0, "network"), (1, "forwards")])
def test_simulator_agrees_with_the_estimate_on_an_internode_deepep_step(max_nodes, bound, monkeypatch):
    """Contention off, uniform routing (expected loads): the simulated step is the estimate's to 1e-9, with the
    NVLink stage a flow of its own; network-bound (no node limit: R/k = 0.45 records per token slot) and
    forwarding-bound (one node per token: the network stage shrinks, the forwards stay). The trace shows each
    member's NVLink stage from T(0) for the forwards' time alone, and the NVLink ports carry the forwards."""
    sc, layout, est, costs = _two_nodes(max_nodes)
    moe = [c for c in costs.classes if c.is_moe]
    specs = {name: moe[0].comms[name] for name in ALL_TO_ALLS}
    for spec in specs.values():
        assert spec.forward_bytes > 0 and spec.time_s == pytest.approx(
            spec.latency_s + max(spec.network_s, spec.forward_s), rel=1e-12)
        assert (spec.network_s >= spec.forward_s) == (bound == "network")
    monkeypatch.setattr(des_step, "BUSIEST_LINKS", 10 ** 4)  # every link's use, not the five busiest
    result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, mode="full"))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=1e-9)
    stages = [r for r in result.trace_records if r[2].endswith(FORWARD_SUFFIX)]
    layers = sum(costs.classes[c].is_moe for c in costs.workload.layer_class_index)
    calls = 2 * layers * costs.micro_batches  # forward and backward of each MoE layer, per micro-batch
    assert len(stages) == len(specs) * calls * 16  # dispatch and combine, every member
    names = {"dispatch all-to-all" + FORWARD_SUFFIX: specs["ep_all_to_all_dispatch"],
             "combine all-to-all" + FORWARD_SUFFIX: specs["ep_all_to_all_combine"]}
    ends = {(r[0], r[3], r[4], r[5], r[2]): r[7] for r in result.trace_records if r[2] + FORWARD_SUFFIX in names}
    for device, stream, name, phase, layer, mb, start, end in stages:
        spec = names[name]
        assert stream == "comm" and end - start == pytest.approx(spec.forward_s, rel=1e-9)
        # the call itself ends with its later stage, T(S) after it started
        call_end = ends[(device, phase, layer, mb, name[:-len(FORWARD_SUFFIX)])]
        assert call_end == pytest.approx(start + max(spec.forward_s, spec.network_s), rel=1e-9)
    nvlink = {r["link"]: r["carried_bytes"] for r in result.busiest_links if r["link"].startswith("nvlink.tx.")}
    forwards = calls * sum(spec.forward_bytes for spec in specs.values())
    assert nvlink and all(carried == pytest.approx(forwards, rel=1e-9) for carried in nvlink.values())


@pytest.mark.parametrize("order, shared", [(("tp", "pp", "ep", "dp"), True), (("tp", "ep", "dp", "pp"), False)])
def test_forwards_give_the_simpy_engines_timeline(order, shared, monkeypatch):
    """EP 16 over 8-GPU nodes with pp 2, zipf loads and stragglers (members differ), contention on. Order
    tp-pp-ep-dp puts the pipeline sends inside the nodes, on the NVLink ports the all-to-alls' forwards use (EP at
    stride 2 over four nodes): the fast engine runs the forwards as flows (member records and their
    materialisation); tp-ep-dp-pp sends across nodes, nothing else uses an NVLink port, and the fast engine gives
    the forwards their time alone without flows (kernel.forwards_alone). Both give the simpy engine's timeline,
    forwards included; only the first has NVLink ports carrying two flows at once."""
    sc = tiny_scenario(32, dropless=True, micro_batches=4, global_batch_sequences=64, pipeline_schedule="gpipe",
                       dispatch_backend="deepep")
    layout = Layout(dp=16, ep=16, pp=2, order=order)
    options = SimOptions(routing="zipf:1.2", straggler_fraction=0.25, straggler_slowdown=1.5, seed=4, mode="full")
    monkeypatch.setattr(des_step, "BUSIEST_LINKS", 10 ** 4)  # every link's use, not the five busiest
    alone = []
    real = kernel.Kernel.run

    def run(self, devices, progress=None):
        real(self, devices, progress)
        alone.append(self.forwards_alone)

    monkeypatch.setattr(kernel.Kernel, "run", run)
    fast = simulate(sc, layout, options)
    assert alone == [not shared]
    ref = simulate(sc, layout, dataclasses.replace(options, engine="simpy"))
    assert fast.step_times_s == pytest.approx(ref.step_times_s, rel=1e-12)
    key = lambda r: (r[0], r[1], round(r[6], 9), r[2], r[4], r[5])  # noqa: E731
    a, b = sorted(fast.trace_records, key=key), sorted(ref.trace_records, key=key)
    assert len(a) == len(b) and any(r[2].endswith(FORWARD_SUFFIX) for r in a)
    for x, y in zip(a, b):
        assert x[:6] == y[:6]
        assert x[6:] == pytest.approx(y[6:], rel=1e-9, abs=1e-15)
    links = {r["link"]: r for r in ref.busiest_links}
    for r in fast.busiest_links:
        assert r["carried_bytes"] == pytest.approx(links[r["link"]]["carried_bytes"], rel=1e-9)
        assert r["peak_concurrent_flows"] == links[r["link"]]["peak_concurrent_flows"]
    nvlink = [r for r in fast.busiest_links if r["link"].startswith("nvlink.")]
    assert nvlink and any(r["peak_concurrent_flows"] > 1 for r in nvlink) == shared
