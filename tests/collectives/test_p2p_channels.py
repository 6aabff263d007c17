"""NCCL's send/recv over NVLink inside one node runs on a number of p2p channels that grows with the size
(nccl_tuning.toml [p2p], NCCL 2.30.7 enqueue.cc addP2pToPlan); each channel carries half an NVLink's line rate."""

import dataclasses

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import p2p_bw_cap, p2p_channels
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware
from moesim.topology.system import build_system

MIB = 2**20


def nvlink(hw_name):
    return build_system(load_hardware(hw_name), 8).tiers[0]


@pytest.mark.parametrize("size_mib, channels", [(1, 4), (64, 4), (128, 8), (256, 16), (512, 32), (1024, 32)])
def test_channels_of_one_peer_grow_with_the_size_on_eight_a100(size_mib, channels):
    # 8 ranks: 32 per peer (2 x 12 NVLinks -> 24 -> 32), at least 32 / 8 = 4; doubled while a part > 16 MiB
    assert p2p_channels(size_mib * MIB, 8, nvlink("a100-80gb")) == channels


def test_small_messages_use_a_channel_per_64_kib_and_fewer_ranks_more_channels():
    tier = nvlink("h100-sxm")
    assert p2p_channels(100_000, 8, tier) == 2  # ceil(100 kB / 64 KiB)
    assert p2p_channels(4 * MIB, 4, tier) == 8 and p2p_channels(4 * MIB, 2, tier) == 16
    assert p2p_channels(4 * MIB, 8, nvlink("h800")) == 4  # 8 NVLinks: 16 per peer, 16 / ... -> 4 of 8 ranks
    assert p2p_bw_cap(4 * MIB, 2, tier) == pytest.approx(16 * 12.5e9)


def test_send_recv_inside_a_node_is_channel_bound_and_across_nodes_unchanged():
    hw = load_hardware("a100-80gb")
    model = TopologyModel(hw)
    group = Group(size=8, devices=8)
    # 128 MiB on 8 channels: 100 GB/s; 256 MiB on 16: 200 GB/s; 1 GiB on 32: the port (234 GB/s usable)
    for size, gb_per_s in ((128 * MIB, 100), (256 * MIB, 200), (1024 * MIB, 234)):
        t = model.cost("send_recv", size, group).time_s
        assert size / t / 1e9 == pytest.approx(gb_per_s, rel=0.02)
    # an architecture without a listed line rate keeps the port
    plain = dataclasses.replace(hw, interconnect=(dataclasses.replace(hw.interconnect[0], nccl_arch=""),)
                                + hw.interconnect[1:])
    t = TopologyModel(plain).cost("send_recv", 128 * MIB, group).time_s
    assert 128 * MIB / t / 1e9 == pytest.approx(234, rel=0.03)
    # across nodes the pair meets on the network tier: the NIC's 200 Gb/s x 0.9, not NVLink channels
    cost = model.cost("send_recv", 128 * MIB, Group(size=16, devices=16))
    assert cost.bottleneck == "infiniband" and 128 * MIB / cost.time_s / 1e9 == pytest.approx(22.5, rel=0.02)
