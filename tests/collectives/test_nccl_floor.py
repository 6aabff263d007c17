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


def tuner_latency_s(model, op, group, c):
    """Latency + tuner offset: NCCL's own latency, once the offset's channel part is taken out (the ramp round: NCCL
    runs TINY on fewer channels after its pick, a wire-only cost, nccl_channels.share_at): the same candidate priced
    with every channel running gives that part."""
    from moesim.collectives import nccl_plan

    saved = nccl_plan.share_at
    nccl_plan.share_at = lambda rule, size: 1.0
    try:
        fresh = TopologyModel(model.hardware, nccl_algo=model.nccl_algo)
        (full,) = [f for f in fresh.candidates(op, TINY, group) if f.label == c.label]
    finally:
        nccl_plan.share_at = saved
    return c.terms.latency_s + c.tuner_offset_s + c.terms.bandwidth_s - full.terms.bandwidth_s


def test_net_overhead_constants_are_nccls():
    t = tuning()["net_overhead"]
    assert (t["us"], t["us_amd"], t["simple_multiplier"]) == (1.0, 2.0, 3)
    assert net_overhead_s("LL") == pytest.approx(1e-6) and net_overhead_s("LL128") == pytest.approx(1e-6)
    assert net_overhead_s("Simple") == pytest.approx(3e-6)


def wire_nvlink_hop_us(model, algorithm, protocol):
    """The NVLink hop (us) the model prices, read off one node: ring all-gather 7 steps, tree all-reduce 2 x 7."""
    if algorithm == "ring":
        return ring(model, "all_gather", Group(size=8), protocol).terms.latency_s / 7 * 1e6
    tree = TopologyModel(model.hardware, nccl_algo="tree")
    found = [c for c in tree.candidates("all_reduce", TINY, Group(size=8)) if c.protocol == protocol]
    return found[0].terms.latency_s / 14 * 1e6


def test_several_node_ring_steps_cost_at_least_the_net_overhead(h100):
    """2 x 8 H100, all-gather: the slowest chunk's 15 steps, 2 across the network (mnfloor round: the ring's worst
    chain, test_ring_chain_crosses_every_node_boundary; NCCL's tuner counts 1); the 13 NVLink steps cost
    max(hop, 1 us): LL's wire hop 1.0 us (published; NCCL's table 0.6) gives 25.0 us with the 6.6 us base (23.3 with
    NCCL's count, 17.7 before the net overhead), max(2.0, 1) with LL128 (NCCL's table 1.9), max(3.4, 3) with Simple.
    An LL network step also pays the 1.0 us host leg (test_ll_network_send_goes_through_host_memory): 27.0 us in
    all. NCCL ranks by its own model (tuner_offset_s): its hops, its N - 1 network steps, no host leg."""
    model, nvl, net = h100
    group = Group(size=16, devices=16)
    h_ll, h_ll128, h_simple = (wire_nvlink_hop_us(model, "ring", p) for p in ("LL", "LL128", "Simple"))
    ll = ring(model, "all_gather", group, "LL")
    assert ll.terms.latency_s == pytest.approx((13 * max(h_ll, 1.0) + 2 * (2.7 * net + 1.0)) * 1e-6)
    assert ll.base_latency_s + ll.terms.latency_s == pytest.approx(27.0e-6, abs=0.05e-6)  # profile figures = NCCL's
    assert ll.base_latency_s + tuner_latency_s(model, "all_gather", group, ll) == pytest.approx(23.3e-6, abs=0.05e-6)
    ll128 = ring(model, "all_gather", group, "LL128")
    assert ll128.terms.latency_s == pytest.approx((13 * max(h_ll128, 1.0) + 2 * 4.0 * net) * 1e-6)
    own = (14 * max(1.9 * nvl, 1.0) + 4.0 * net) * 1e-6  # NCCL's tuner: its 1.9 us hop, one network step
    assert tuner_latency_s(model, "all_gather", group, ll128) == pytest.approx(own)
    simple = ring(model, "all_gather", group, "Simple")
    assert simple.terms.latency_s == pytest.approx((13 * max(h_simple, 3.0) + 2 * 14.0 * net) * 1e-6)
    assert h_simple == pytest.approx(3.4 * nvl)
    # all-reduce: 2(n-1) = 30 steps, 2 x nNodes = 4 of them across the network (NCCL's tuner: 2(nNodes-1) = 2)
    ar = ring(model, "all_reduce", group, "LL")
    assert ar.terms.latency_s == pytest.approx((26 * max(h_ll, 1.0) + 4 * (2.7 * net + 1.0)) * 1e-6)
    assert tuner_latency_s(model, "all_reduce", group, ar) == pytest.approx(
        (28 * max(0.6 * nvl, 1.0) + 2 * 2.7 * net) * 1e-6)


def test_ring_chain_crosses_every_node_boundary(h100):
    """A ring over N nodes has N network edges (NCCL connectRings joins each node's chain to the next node's) and a
    chunk crosses n-1 consecutive edges per pass (runRing), so the last chunk to arrive crosses all N, one more than
    NCCL's tuner counts (nInterSteps = nNodes - 1 per pass). All-reduce: +2 when a node holds >= 3 ranks (the two
    skipped edges next to the reducing rank are NVLink edges), +1 with 2 ranks per node, 0 with 1 (every edge is a
    network edge). One node: no change."""
    from moesim.collectives.nccl_multinode import ring_chain_extra_net_steps

    assert [ring_chain_extra_net_steps(1, c) for c in ([8], [8, 16], [2, 4], [1, 16], [8, 64, 128])] == [0, 1, 1, 0, 1]
    assert [ring_chain_extra_net_steps(2, c) for c in ([8], [8, 16], [3, 6], [2, 4], [1, 16])] == [0, 2, 2, 1, 0]
    model, nvl, net = h100
    # 4 x 8 all-gather: 31 steps, 4 across the network, 27 over NVLink at max(hop, 1 us net overhead)
    ll128 = ring(model, "all_gather", Group(size=32, devices=32), "LL128")
    h_ll128 = wire_nvlink_hop_us(model, "ring", "LL128")
    assert ll128.terms.latency_s == pytest.approx((27 * max(h_ll128, 1.0) + 4 * 4.0 * net) * 1e-6)


def test_ll_network_send_goes_through_host_memory(h100):
    """NCCL keeps a network connection's LL send buffer in host memory even with GPUDirect RDMA (net.cc
    sendProxyConnect: GPU memory only for p != LL; the proxy CPU polls the LL flags, NVIDIA/nccl#756), so every LL
    network hop of ring and tree adds NCCL's LL hop over PCI, hwLatencies[PCI][ring|tree][LL] = 1.0 us; LL128 and
    Simple (GPU memory with GDR) do not. Not scaled by the network tier's latency_us; not in NCCL's own ranking."""
    from moesim.collectives.nccl_multinode import net_ll_send_leg_s

    assert tuning()["net_ll_send_via_host"]["pci_ll_hop_us"] == {"ring": 1.0, "tree": 1.0}
    assert net_ll_send_leg_s(tuning()) == {"ring": pytest.approx(1e-6), "tree": pytest.approx(1e-6)}
    model, nvl, net = h100
    # ppn = 1: every step is a network step at the tree's hop (5.0 us) + the 1.0 us leg; LL128 has no leg
    group = Group(size=16, stride=8, devices=128)
    ll = ring(model, "all_gather", group, "LL")
    assert ll.terms.latency_s == pytest.approx(15 * (5.0 * net + 1.0) * 1e-6)
    assert tuner_latency_s(model, "all_gather", group, ll) == pytest.approx(15 * 5.0 * net * 1e-6)
    assert ring(model, "all_gather", group, "LL128").terms.latency_s == pytest.approx(15 * 8.5 * net * 1e-6)
    # the tree all-reduce over 2 x 8: 2 x (7 NVLink hops + 1 network hop of 5.0 + 1.0 us)
    tree = TopologyModel(model.hardware, nccl_algo="tree")
    found = [c for c in tree.candidates("all_reduce", TINY, Group(size=16, devices=16)) if c.protocol == "LL"]
    h_ll = wire_nvlink_hop_us(model, "tree", "LL")
    assert found[0].terms.latency_s == pytest.approx(2 * (7 * h_ll + 5.0 * net + 1.0) * 1e-6)
    assert tuner_latency_s(tree, "all_reduce", Group(size=16, devices=16), found[0]) == pytest.approx(
        2 * (7 * 0.6 * nvl + 5.0 * net) * 1e-6)


def test_one_node_ring_has_no_net_overhead(h100):
    model, nvl, _ = h100
    ll = ring(model, "all_gather", Group(size=8), "LL")
    assert ll.terms.latency_s == pytest.approx(7 * 1.0 * nvl * 1e-6)  # the published LL hop (NCCL's table: 0.6)


def test_one_gpu_per_node_uses_the_tree_network_hop(h100):
    """ppn = 1: every ring step crosses the network and NCCL prices it at the tree's NET hop (LL 5.0, LL128 8.5,
    Simple 14 us) instead of the ring's (2.7, 4.0, 14); CollNetChain's network hop becomes 14 us, not 30."""
    model, _, net = h100
    group = Group(size=16, stride=8, devices=128)
    # (LL: + the 1.0 us host leg of an LL network send, test_ll_network_send_goes_through_host_memory)
    for protocol, hop_us, leg_us in (("LL", 5.0, 1.0), ("LL128", 8.5, 0.0), ("Simple", 14.0, 0.0)):
        assert ring(model, "all_gather", group, protocol).terms.latency_s == pytest.approx(
            15 * (hop_us * net + leg_us) * 1e-6)
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
