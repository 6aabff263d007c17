"""The latency floor of NCCL's all-reduce / all-gather / reduce-scatter across nodes: the network post overhead
of a several-node ring and the tree network hop used when there is one GPU per node (NCCL 2.30.7
src/graph/tuning.cc ncclTopoTuneModel; constants in moesim/collectives/nccl_tuning.toml)."""

from __future__ import annotations

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import net_overhead_s, tuning
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware

TINY = 64  # bytes: latency-bound


@pytest.fixture(scope="module")
def h100():
    hw = load_hardware("h100-sxm")
    nvl, ib = hw.interconnect[0], hw.interconnect[1]
    return TopologyModel(hw, nccl_algo="ring"), nvl.latency_s / 3.4e-6, ib.latency_s / 14e-6


def ring(model, op, group, protocol):
    found = [c for c in model.candidates(op, TINY, group) if c.algorithm == "ring" and c.protocol == protocol]
    assert len(found) == 1
    return found[0]


def test_net_overhead_constants_are_nccls():
    t = tuning()["net_overhead"]
    assert (t["us"], t["us_amd"], t["simple_multiplier"]) == (1.0, 2.0, 3)
    assert net_overhead_s("LL") == pytest.approx(1e-6) and net_overhead_s("LL128") == pytest.approx(1e-6)
    assert net_overhead_s("Simple") == pytest.approx(3e-6)


def test_several_node_ring_steps_cost_at_least_the_net_overhead(h100):
    """2 x 8 H100, all-gather: 15 steps, 1 across the network; the 14 NVLink steps cost max(hop, 1 us): LL's wire hop
    1.0 us (published; NCCL's table 0.6: 23.3 us either way with the 6.6 us base, 17.7 us before the overhead),
    max(2.0, 1) with LL128 (NCCL's table 1.9), max(3.4, 3) with Simple (unchanged)."""
    model, nvl, net = h100
    group = Group(size=16, devices=16)
    ll = ring(model, "all_gather", group, "LL")
    assert ll.terms.latency_s == pytest.approx((14 * max(1.0 * nvl, 1.0) + 2.7 * net) * 1e-6)
    assert ll.base_latency_s + ll.terms.latency_s == pytest.approx(23.3e-6, abs=0.05e-6)  # profile figures = NCCL's
    ll128 = ring(model, "all_gather", group, "LL128")
    assert ll128.terms.latency_s == pytest.approx((14 * max(2.0 * nvl, 1.0) + 4.0 * net) * 1e-6)
    assert ll128.tuner_offset_s == pytest.approx(14 * (max(1.9 * nvl, 1.0) - max(2.0 * nvl, 1.0)) * 1e-6)
    simple = ring(model, "all_gather", group, "Simple")
    assert simple.terms.latency_s == pytest.approx((14 * max(3.4 * nvl, 3.0) + 14.0 * net) * 1e-6)
    # all-reduce: 2(n-1) = 30 steps, 2(nNodes-1) = 2 of them across the network
    ar = ring(model, "all_reduce", group, "LL")
    assert ar.terms.latency_s == pytest.approx((28 * max(1.0 * nvl, 1.0) + 2 * 2.7 * net) * 1e-6)


def test_one_node_ring_has_no_net_overhead(h100):
    model, nvl, _ = h100
    ll = ring(model, "all_gather", Group(size=8), "LL")
    assert ll.terms.latency_s == pytest.approx(7 * 1.0 * nvl * 1e-6)  # the published LL hop (NCCL's table: 0.6)


def test_one_gpu_per_node_uses_the_tree_network_hop(h100):
    """ppn = 1: every ring step crosses the network and NCCL prices it at the tree's NET hop (LL 5.0, LL128 8.5,
    Simple 14 us) instead of the ring's (2.7, 4.0, 14); CollNetChain's network hop becomes 14 us, not 30."""
    model, _, net = h100
    group = Group(size=16, stride=8, devices=128)
    for protocol, hop_us in (("LL", 5.0), ("LL128", 8.5), ("Simple", 14.0)):
        assert ring(model, "all_gather", group, protocol).terms.latency_s == pytest.approx(15 * hop_us * net * 1e-6)
    on = TopologyModel(model.hardware, nccl_algo="collnetchain", collnet=True)
    chain = on.cost("all_reduce", TINY, group)
    assert chain.algorithm == "collnetchain/Simple"
    found = [c for c in on.candidates("all_reduce", TINY, group)][0]
    assert found.terms.latency_s == pytest.approx(14.0 * net * 1e-6)


def test_several_node_ll_cap_is_the_host_cpu_row():
    """NCCL's LL bus-bandwidth cap: one node reads the GPU's row (Hopper 141, Blackwell 282 GB/s), several nodes
    the host CPU's, Intel / default = the first row (39 GB/s on 2 nodes, 20.4 on 4+), whatever the GPU."""
    from moesim.collectives.nccl import _ll_cap

    for name, one_node in (("h100-sxm", 141e9), ("b200", 282e9)):
        tier0 = load_hardware(name).interconnect[0]
        assert _ll_cap(tier0, 1) == pytest.approx(one_node)
        assert _ll_cap(tier0, 2) == pytest.approx(39e9)
        assert _ll_cap(tier0, 8) == pytest.approx(20.4e9)
