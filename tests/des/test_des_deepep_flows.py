"""The simulator's flows of a DeepEP expert all-to-all carry what the kernels move (collectives/dispatch.py):
across nodes each (token, node) pair's record once over the network, one node each (token, GPU) pair's record
over NVLink; the same per-operator byte counts the estimate prices (DispatchModel.stage_factors)."""

import numpy as np
import pytest
from des_helpers import tiny_scenario

from moesim.collectives.select import model_for
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.des.schedule import TO_EXPERTS, build_stage_program
from moesim.des.variation import stage_work
from moesim.estimate import estimate
from moesim.specs.layout import Layout


def deepep_costs(devices, backend="deepep", max_nodes=0):
    sc = tiny_scenario(devices, dropless=True, model_changes={"max_nodes_per_token": max_nodes},
                       dispatch_backend=backend)
    layout = Layout(dp=devices, ep=devices)
    est = estimate(sc, layout)
    return sc, est, build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)


@pytest.mark.parametrize("devices, max_nodes", [(16, 0), (16, 1), (8, 0)])
def test_deepep_flows_carry_the_estimates_network_bytes(devices, max_nodes):
    """16 experts, top-2 on 8-GPU H100 nodes: the network flow of each member is S·R/k·f (the records of its
    (token, remote node) pairs, f from deepep.toml [records]), not the plain all-to-all's S·(n−1)/n; one node:
    the NVLink copies S·F/k·f. Alone, the member still takes the estimate's time: one node at the pace
    wire/(T − T0); across nodes its NVLink forwards S·F/k·f are a second stage, each paced at its own term of the
    estimate's max (DispatchModel.stage_times_s)."""
    sc, est, costs = deepep_costs(devices, max_nodes=max_nodes)
    moe = next(c for c in costs.classes if c.is_moe)
    model = model_for(sc)
    for name, direction in (("ep_all_to_all_dispatch", "dispatch"), ("ep_all_to_all_combine", "combine")):
        spec = moe.comms[name]
        nvlink, network = model.directed(direction).stage_factors(devices)
        expected = spec.size_bytes * (network if devices > 8 else nvlink)
        assert spec.wire_bytes == pytest.approx(expected, rel=1e-12)
        plain = spec.size_bytes * (devices - 1) / devices
        assert spec.wire_bytes < plain and spec.dedup_factor == pytest.approx(spec.wire_bytes / plain)
        if devices > 8:  # two stages, each at its own pace: the member ends with the later (the estimate's max)
            assert spec.forward_bytes == pytest.approx(spec.size_bytes * nvlink, rel=1e-12)
            assert spec.wire_bytes / spec.cap_bytes_per_s == pytest.approx(spec.network_s, rel=1e-12)
            assert spec.forward_bytes / spec.forward_cap_bytes_per_s == pytest.approx(spec.forward_s, rel=1e-12)
            assert spec.latency_s + max(spec.network_s, spec.forward_s) == pytest.approx(spec.time_s, rel=1e-12)
        else:
            assert spec.forward_bytes == 0.0
            assert spec.wire_bytes / spec.cap_bytes_per_s + spec.latency_s == pytest.approx(spec.time_s)
        entry = est.communication[name]  # the estimate's call: the same time, its bytes on both stages
        assert spec.time_s == pytest.approx(entry["time_s"] / entry["calls_per_step"], rel=1e-12)
        assert entry["bytes_per_device"] / entry["calls_per_step"] == \
            pytest.approx(spec.size_bytes * (nvlink + network), rel=1e-12)
    # the NCCL backend keeps the plain all-to-all's wire bytes
    _, _, nccl = deepep_costs(devices, backend="nccl", max_nodes=max_nodes)
    spec = next(c for c in nccl.classes if c.is_moe).comms["ep_all_to_all_dispatch"]
    assert spec.dedup_factor == 1.0 and spec.wire_bytes == spec.size_bytes * (devices - 1) / devices


def test_routing_loads_scale_the_deepep_records():
    """Expected loads (every device sends and receives S·(n−1)/n of token slots to other GPUs) give each member
    exactly the estimate's network bytes; a device that sends twice the slots sends twice the records."""
    sc, est, costs = deepep_costs(16)
    program = build_stage_program(costs, 0)
    moe = next(c for c in costs.classes if c.is_moe)
    ops = [op for op in program.ops if op.load == TO_EXPERTS and op.comm is not None]
    assert ops
    n = 16
    slots = moe.slots
    sent = np.full(n, slots * (n - 1) / n)
    sent[3] *= 2
    loads = {(op.moe, op.mb): (sent, np.full(n, slots), np.full(n, slots * (n - 1) / n)) for op in ops}
    work = stage_work(costs, program, np.arange(n), loads=loads, slowdown=np.ones(n), noise_sigma=0.0,
                      rng=np.random.default_rng(0))
    col = list(work.cols).index(ops[0].index)
    assert work.egress_cols[0, col] == pytest.approx(ops[0].comm.wire_bytes)
    assert work.egress_cols[3, col] == pytest.approx(2 * ops[0].comm.wire_bytes)


def test_simulated_network_ports_carry_the_deepep_records():
    """2 nodes, contention on, expected loads: each GPU's InfiniBand port carries, per expert all-to-all call,
    the estimate's S·R/k·f where the NCCL backend's carries S·(n−1)/n (forward and backward, dispatch and
    combine: two calls of each per MoE layer and micro-batch); every other byte on the port (the gradient
    all-reduce) is the same. Before the simulator carried DeepEP's calls as the plain all-to-all's."""
    carried = {}
    for backend in ("deepep", "nccl"):
        sc, _, costs = deepep_costs(16, backend=backend)
        result = simulate(sc, Layout(dp=16, ep=16), SimOptions(steps=1, seed=0, expected_loads=True))
        ports = [r for r in result.busiest_links if r["link"].startswith("infiniband.tx.")]
        assert ports
        carried[backend] = ports[0]["carried_bytes"]
        if backend == "deepep":
            saved = sum(2 * costs.micro_batches * (spec.size_bytes * 15 / 16 - spec.wire_bytes)
                        for layer in costs.workload.layer_class_index if costs.classes[layer].is_moe
                        for spec in (costs.classes[layer].comms[name]
                                     for name in ("ep_all_to_all_dispatch", "ep_all_to_all_combine")))
    assert saved > 0
    assert carried["nccl"] - carried["deepep"] == pytest.approx(saved, rel=1e-9)
