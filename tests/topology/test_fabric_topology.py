"""GPU fabrics: NVSwitch / NVL72 domains, rail-optimized Clos, fat trees with and without oversubscription."""

from __future__ import annotations

import dataclasses

import pytest

from moesim.specs.load import load_hardware
from moesim.topology.analysis import cut_bw_bytes_per_s, diameter_hops, min_bisection_bw_bytes_per_s
from moesim.topology.fabric import SwitchedFabric, build_fabric_graph, fat_tree_tiers, hosts_per_leaf
from moesim.topology.system import build_system

NDR_BYTES_PER_S = 50e9  # 400 Gb/s per GPU (SB gpus.md)


def test_dgx_h100_superpod_structure():
    """SB gpus.md: SU = 32 nodes (256 GPUs) under 8 leaves; 4 SUs with 16 spines = 1024 GPUs; 64-port switches."""
    f = build_system(load_hardware("h100-sxm"), 1024).fabric
    assert (f.nodes, f.leaf_domain_devices, f.leaves, f.tiers) == (128, 256, 32, 2)
    g = f and build_fabric_graph(f)
    kinds = {}
    for node in g.nodes:
        kinds[node[0]] = kinds.get(node[0], 0) + 1
    assert kinds == {"device": 1024, "domain_switch": 128, "leaf": 32, "spine": 16}
    # Directed edges: NVLink port, NIC and one uplink per leaf down port, both ways.
    assert g.number_of_edges() == 2 * (1024 + 1024 + 32 * 32)
    # Every leaf joins one rail: GPU 3 of every node in SU 0 sits on leaf (0, 3).
    assert all(("leaf", 0, 3) in g[("device", 8 * node + 3)] for node in range(32))


def test_superpod_bisection_and_diameter():
    """Spine cable bandwidth 51.2 TB/s full duplex (SB gpus.md table) = 25.6 TB/s each way = 1024/2 · 50 GB/s."""
    f = build_system(load_hardware("h100-sxm"), 1024).fabric
    assert f.bisection_bw_bytes_per_s == pytest.approx(25.6e12)
    assert f.diameter_hops == 4
    one_node = build_system(load_hardware("h100-sxm"), 8).fabric
    assert one_node.bisection_bw_bytes_per_s == pytest.approx(4 * 450e9) and one_node.diameter_hops == 2


def test_fat_tree_graph_diameter_and_cut():
    """A radix-8 fat tree of 64 hosts needs three tiers (k³/4 = 128 ≥ 64 > h·k = 32): 6 links end to end."""
    f = SwitchedFabric(devices=64, domain_devices=1, domain_bw_bytes_per_s=1e12, domain_latency_s=0.0,
                       fabric="fat_tree", nic_bw_bytes_per_s=NDR_BYTES_PER_S, radix=8)
    assert fat_tree_tiers(64, 8) == 3 and f.tiers == 3
    g = build_fabric_graph(f, fabric_name="ib")
    fabric = g.edge_subgraph([(u, v, k) for u, v, k, level in g.edges(keys=True, data="level") if level == "ib"])
    devices = [("device", i) for i in range(64)]
    assert diameter_hops(fabric, devices) == f.diameter_hops == 6
    half = f.bisection_bw_bytes_per_s
    assert cut_bw_bytes_per_s(g, devices[:32], devices[32:], level="ib") == pytest.approx(half)


def test_small_fat_tree_bisection_by_brute_force():
    """8 hosts, radix-4 two-tier fat tree (h = 2 per leaf, 4 leaves, 2 spines): every balanced split of the
    hosts cuts at least E/2·b = 4 NIC links' worth, the closed form."""
    f = SwitchedFabric(devices=8, domain_devices=1, domain_bw_bytes_per_s=1e12, domain_latency_s=0.0,
                       fabric="fat_tree", nic_bw_bytes_per_s=NDR_BYTES_PER_S, radix=4)
    assert f.tiers == 2 and f.leaves == 4
    g = build_fabric_graph(f, fabric_name="ib")
    fabric = g.edge_subgraph([(u, v, k) for u, v, k, level in g.edges(keys=True, data="level") if level == "ib"])
    devices = [("device", i) for i in range(8)]
    assert min_bisection_bw_bytes_per_s(fabric, devices) == pytest.approx(f.bisection_bw_bytes_per_s)


def test_oversubscribed_leaves_add_an_uplink_tier():
    """o = 2 at the leaf: h = ⌊k·o/(1+o)⌋ down ports; traffic leaving a leaf gets b/o per device."""
    hw = load_hardware("a100-80gb")
    ib = dataclasses.replace(hw.interconnect[1], oversubscription=2.0, switch_radix=64)
    hw = dataclasses.replace(hw, interconnect=(hw.interconnect[0], ib))
    assert hosts_per_leaf(64, 2.0) == 42
    system = build_system(hw, 1024)
    kinds = [(t.kind, t.domain_devices) for t in system.tiers]
    assert kinds == [("switch", 8), ("fabric", 48), ("uplink", 1024)]  # 42 hosts rounded up to whole nodes
    assert system.tiers[2].port_bw_bytes_per_s == pytest.approx(system.tiers[1].port_bw_bytes_per_s / 2)
    assert system.bisection_bw_bytes_per_s == pytest.approx(512 * 25e9 / 2)


def test_nvl72_is_one_switch_domain():
    system = build_system(load_hardware("gb200-nvl72"), 72)
    assert system.fabric.nodes == 1 and [t.name for t in system.tiers] == ["nvlink", "infiniband"]
    assert system.bisection_bw_bytes_per_s == pytest.approx(36 * 900e9)
    g = system.graph()
    assert g.number_of_nodes() == 73 and g.number_of_edges() == 2 * 72


@pytest.mark.parametrize("name", ["a100-80gb", "b200", "gb200-nvl72", "h100-sxm", "h200", "h800", "cpu-localhost",
                                  "tpu-v2", "tpu-v3", "tpu-v4", "tpu-v5p"])
def test_every_profile_builds_at_its_largest(name):
    hw = load_hardware(name)
    system = build_system(hw, hw.max_devices)
    assert system.bisection_bw_bytes_per_s > 0 and system.summary()["devices"] == hw.max_devices
    domains = [t.domain_devices for t in system.tiers]
    assert all(b % a == 0 for a, b in zip(domains, domains[1:]))
