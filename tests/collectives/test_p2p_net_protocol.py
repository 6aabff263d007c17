"""NCCL's send/recv between nodes runs Simple at every size: a p2p network connection has no LL buffer unless
NCCL_ALLOC_P2P_NET_LL_BUFFERS=1 (nccl_tuning.toml [p2p_net] ll_buffers, NVIDIA/nccl 2.30.7 src/transport/net.cc
sendProxyConnect, src/enqueue.cc addP2pToPlan). Inside one node the message size still picks LL up to
NCCL_P2P_LL_THRESHOLD (16 KiB)."""

from __future__ import annotations

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_multinode import p2p_net_runs_ll
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware


def test_nccl_allocates_no_ll_buffer_for_p2p_network_connections_by_default():
    assert tuning()["p2p_net"]["ll_buffers"] is False
    assert not p2p_net_runs_ll(tuning())


@pytest.mark.parametrize("profile", ["h100-sxm", "b200", "a100-80gb", "gb200-nvl72"])
@pytest.mark.parametrize("size", [0.0, 8.0, 4096.0, 16384.0, 2.0**20])
def test_send_recv_between_nodes_runs_simple(profile, size):
    hw = load_hardware(profile)
    per_node = hw.interconnect[0].domain_devices
    model = TopologyModel(hw)
    across = model.cost("send_recv", size, Group(size=2 * per_node, devices=2 * per_node))
    assert across.algorithm == "direct/Simple"
    simple = [c for c in model.candidates("send_recv", size, Group(size=2 * per_node, devices=2 * per_node))]
    assert [c.protocol for c in simple] == ["Simple"]
    inside = model.cost("send_recv", size, Group(size=per_node, devices=per_node))
    assert inside.algorithm == ("direct/LL" if size <= 16384 else "direct/Simple")


def test_with_ll_buffers_the_size_picks_the_protocol_again_and_ll_pays_the_host_leg(monkeypatch):
    """NCCL_ALLOC_P2P_NET_LL_BUFFERS=1 (ll_buffers = true): LL up to the threshold, as inside a node, faster than
    Simple there; its LL send buffer is in host memory, so the network step carries NCCL's LL hop over PCI
    ([net_ll_send_via_host], 1.0 us) on top of the LL network hop, as ring and tree LL network steps do."""
    hw = load_hardware("h100-sxm")
    group = Group(size=16, devices=16)
    simple = TopologyModel(hw).cost("send_recv", 1024.0, group)
    monkeypatch.setitem(tuning()["p2p_net"], "ll_buffers", True)
    model = TopologyModel(hw)
    ll = model.cost("send_recv", 1024.0, group)
    assert ll.algorithm == "direct/LL" and ll.time_s < simple.time_s
    (row,) = model.candidates("send_recv", 0.0, group)
    net = hw.interconnect[1].latency_s
    leg = tuning()["net_ll_send_via_host"]["pci_ll_hop_us"]["ring"] * 1e-6
    assert row.terms.latency_s == pytest.approx(net * 2.7 / 14.0 + leg, rel=1e-12)  # NCCL's LL / Simple net hop
