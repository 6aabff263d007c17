"""Send/recv in a communicator spanning several nodes: NCCL 2.30.7 gives a network peer
max(NICs, ceil(NIC GB/s / 14)) channels, the whole communicator the smallest count over its peers, halved
while per-peer x ceil(ranks / 8) exceeds the p2p channels; one channel is priced at NCCL's own 14 GB/s
(nccl_tuning.toml [p2p_net]; paths.cc ncclTopoGetNchannels / ncclTopoComputeP2pChannels)."""

import dataclasses

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import p2p_channels, p2p_net_bw_cap, p2p_net_peer_channels
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware
from moesim.topology.system import build_system

MIB = 2**20


def tiers(hw_name, devices=16):
    t = build_system(load_hardware(hw_name), devices).tiers
    return t[0], t[1]


def test_channels_per_network_peer_follow_the_nic_speed():
    nvl, nic = tiers("b200")
    assert p2p_net_peer_channels(nic) == 4  # 400 Gb/s = 50 GB/s: ceil(50 / 14)
    assert p2p_net_peer_channels(tiers("a100-80gb")[1]) == 2  # 200 Gb/s: ceil(25 / 14)
    slow = dataclasses.replace(nic, port_bw_bytes_per_s=12.5e9)  # 100 Gb/s: one NIC, one channel
    assert p2p_net_peer_channels(slow) == 1


@pytest.mark.parametrize("ranks, channels", [(16, 4), (32, 4), (64, 2), (80, 1), (128, 1), (256, 1), (1024, 1)])
def test_large_communicators_halve_the_channels_per_peer(ranks, channels):
    nvl, nic = tiers("h100-sxm", min(ranks, 1024))
    # 4 per peer while 4 x ceil(ranks / 8) <= 16 p2p channels across nodes (session 11: pow2Up of the 16 collective
    # channels, paths.cc ncclTopoComputeP2pChannels); the NVLink peers' 36 do not raise it
    assert p2p_channels(1024 * MIB, ranks, nvl, nic) == channels
    assert p2p_net_bw_cap(1024 * MIB, ranks, nvl, nic) == pytest.approx(channels * 14e9)


@pytest.mark.parametrize("ranks, channels", [(16, 4), (64, 4), (80, 2), (128, 2), (256, 1), (1024, 1)])
def test_thirty_two_p2p_channels_across_nodes_is_the_count_before_session_11(ranks, channels):
    nvl, nic = tiers("h100-sxm", min(ranks, 1024))
    assert p2p_channels(1024 * MIB, ranks, nvl, nic, 32) == channels


def test_multi_node_parts_are_network_chunks():
    nvl, nic = tiers("b200")
    # parts of 64 KiB .. 128 KiB (P2P_NET_CHUNKSIZE 128 KiB), starting from 4 / 2 = 2 channels for 16 ranks:
    # 64 KiB -> 1, 200 KiB -> 2 (100 KiB parts), 300 KiB -> 4 (150 KiB parts are over 128 KiB)
    assert p2p_channels(64 * 1024, 16, nvl, nic) == 1
    assert p2p_channels(200 * 1024, 16, nvl, nic) == 2
    assert p2p_channels(300 * 1024, 16, nvl, nic) == 4
    # without the NIC tier (one node) the NVLink rule holds: 4 MiB between 16 ranks would be 2 channels
    assert p2p_channels(4 * MIB, 16, nvl) == 2


def test_send_across_nodes_is_nic_bound_on_small_groups_and_channel_bound_on_large_ones():
    model = TopologyModel(load_hardware("h100-sxm"))
    # 16 ranks: 4 channels x 14 = 56 GB/s > the NIC's 50 x 0.94 = 47 GB/s: the NIC bounds, as before
    cost = model.cost("send_recv", 1024 * MIB, Group(size=16, devices=16))
    assert cost.bottleneck == "infiniband" and 1024 * MIB / cost.time_s / 1e9 == pytest.approx(47.0, rel=0.01)
    # 256 ranks: one channel per peer, 14 GB/s
    t = model.cost("send_recv", 1024 * MIB, Group(size=256, devices=256)).time_s
    assert 1024 * MIB / t / 1e9 == pytest.approx(14.0, rel=0.01)
    # A100 (200 Gb/s): 2 channels x 14 = 28 GB/s > 25 x 0.9: the NIC bounds
    a100 = TopologyModel(load_hardware("a100-80gb"))
    t = a100.cost("send_recv", 1024 * MIB, Group(size=16, devices=16)).time_s
    assert 1024 * MIB / t / 1e9 == pytest.approx(22.5, rel=0.01)
