"""Topology invariants: bisection bounds, the scaling book's ¼ rule, contention, hierarchy, busbw factors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from moesim.collectives.base import OPS, Group, bus_bw_factor
from moesim.collectives.select import default_model
from moesim.collectives.topo_model import TopologyModel
from moesim.collectives.torus_costs import ring_pair_load, torus_bisection_bound_s
from moesim.specs.load import load_hardware

V4 = load_hardware("tpu-v4")
V3 = load_hardware("tpu-v3")
H100 = load_hardware("h100-sxm")
GIB = 2**30


def a2a(model, size, group, algorithm=None):
    cands = model.candidates("all_to_all", size, group)
    return min((c for c in cands if algorithm is None or c.algorithm == algorithm), key=lambda c: c.time_s)


def test_all_to_all_on_a_4096_chip_torus_equals_the_bisection_bound():
    """modeling.md §3.6: uniform all-to-all on a 16x16x16 torus: T = k·M/(8b), plus the diameter's latency."""
    model = TopologyModel(V4)
    m_bytes = 64 * 2**20
    best = a2a(model, m_bytes, Group(size=4096, devices=4096))
    bound = torus_bisection_bound_s(m_bytes, 16, True, 45e9)
    assert best.algorithm == "dimension_ordered"
    assert best.terms.bandwidth_s == pytest.approx(bound, rel=1e-12)
    assert best.time_s == pytest.approx(3.5e-6 + bound + 24 * 1e-6, rel=1e-12)  # + collective_overhead_us


groups = st.sampled_from([
    (V4, 4096, 1, 1), (V4, 64, 1, 64), (V4, 64, 64, 64), (V4, 256, 16, 16), (V4, 16, 4, 4),
    (V3, 2048, 1, 1), (V3, 1024, 2, 2), (V3, 32, 1, 1), (V3, 64, 32, 32), (V3, 128, 16, 16),
    (load_hardware("tpu-v5p"), 8960, 1, 1), (load_hardware("tpu-v5p"), 320, 16, 16),
])


@settings(max_examples=40, deadline=None)
@given(case=groups, size=st.sampled_from([8, 4096, 2**20, 2**28]))
def test_torus_all_to_all_never_beats_the_bisection_bound(case, size):
    """T ≥ k·M_c/(8b) (closed) or k·M_c/(4b) (open), k the group's longest axis, M_c what one chip sends."""
    hw, n, stride, concurrent = case
    model = TopologyModel(hw)
    group = Group(size=n, stride=stride, concurrent=concurrent)
    _, pl = model.placement(group)
    tg = pl.torus
    k = max(tg.m)
    b = hw.interconnect[0].link_bw_bytes_per_s
    closed = any(w for m, w in zip(tg.m, tg.wrap) if m == k)
    bound = torus_bisection_bound_s(tg.q * size, k, closed, b) if k > 1 else 0.0
    assert model.cost("all_to_all", size, group).time_s >= bound * (1 - 1e-12)


@pytest.mark.parametrize("m", [4, 8, 16, 32])
def test_all_to_all_is_a_quarter_of_all_gather_on_a_bidirectional_ring(m):
    """SB sharding.md: AllToAll is "cheaper than an allgather (by a factor of ¼)" on a bidirectional ring.
    Same array V: all-gather of V vs all-to-all with V/m per rank. Exactly m/(4(m−1)) → ¼."""
    model = TopologyModel(V4)
    group = Group(size=m, devices=4096)  # m chips along the closed x axis (m | 16 ... 32 on v3 below)
    if m == 32:
        model, group = TopologyModel(V3), Group(size=64, devices=2048)  # 32 chips x 2 cores, closed x axis
    v = 512 * 2**20
    ag = [c for c in model.candidates("all_gather", v, group) if c.algorithm == "torus_rings"][0]
    per_rank = v / group.size
    all2all = a2a(model, per_rank, group)
    chips = m
    assert all2all.terms.bandwidth_s / ag.terms.bandwidth_s == pytest.approx(chips / (4 * (chips - 1)), rel=1e-9)
    if chips >= 16:
        assert all2all.terms.bandwidth_s / ag.terms.bandwidth_s == pytest.approx(0.25, rel=0.07)


def test_ring_pair_load_closed_forms():
    assert [ring_pair_load(m, True) for m in (2, 3, 4, 8)] == [0.5, 1.0, 2.0, 8.0]
    assert [ring_pair_load(m, False) for m in (2, 3, 4, 8)] == [1, 2, 4, 16]


def test_open_slice_all_to_all_costs_twice_the_closed_one():
    """No wraparound ⇒ half the bandwidth (SB tpus.md): the bound becomes k·M/(4b)."""
    v3 = TopologyModel(V3)
    open_half = a2a(v3, GIB, Group(size=1024, devices=1024))  # 16x32 chips: x open (16 < 32), y closed
    full = a2a(v3, GIB, Group(size=2048, devices=2048))  # 32x32 closed
    assert open_half.terms.transfer_s[0] == pytest.approx(2 * 16 * 2 * GIB / (8 * 1e11))
    assert full.terms.bandwidth_s == pytest.approx(32 * 2 * GIB / (8 * 1e11))


def test_concurrent_groups_share_torus_links():
    """v3: expert groups on one core of each chip share the chip's links with the other core's group."""
    model = TopologyModel(V3)
    alone = model.cost("all_reduce", GIB, Group(size=1024, stride=2, concurrent=1, devices=2048))
    shared = model.cost("all_reduce", GIB, Group(size=1024, stride=2, concurrent=2, devices=2048))
    assert shared.time_s > 1.9 * alone.time_s


def test_concurrent_expert_groups_through_one_nodes_nics():
    """8 expert groups, one GPU per node each: on the rail-optimized full-bisection SuperPod every GPU uses
    its own rail's NIC, so 8 groups cost what one costs. On a fat tree oversubscribed 4:1 at the leaf the
    8 groups fill every leaf and get b/4 across leaves; a lone group has the uplinks to itself."""
    model = TopologyModel(H100)
    one = model.cost("all_to_all", GIB, Group(size=128, stride=8, concurrent=1, devices=1024))
    eight = model.cost("all_to_all", GIB, Group(size=128, stride=8, concurrent=8, devices=1024))
    assert eight.time_s == pytest.approx(one.time_s) and one.bottleneck == "infiniband"
    a100 = load_hardware("a100-80gb")
    ib = dataclasses.replace(a100.interconnect[1], oversubscription=4.0, switch_radix=64)
    thin = TopologyModel(dataclasses.replace(a100, interconnect=(a100.interconnect[0], ib)))
    lone = thin.cost("all_to_all", GIB, Group(size=128, stride=8, concurrent=1, devices=1024))
    busy = thin.cost("all_to_all", GIB, Group(size=128, stride=8, concurrent=8, devices=1024))
    assert lone.bottleneck == "infiniband"
    assert busy.time_s > 2 * lone.time_s and busy.bottleneck == "infiniband-uplink"
    # On rails, a lone group with one GPU per node sits on one rail leaf: it meets the oversubscription too.
    ib_rail = dataclasses.replace(H100.interconnect[1], oversubscription=4.0)
    rail = TopologyModel(dataclasses.replace(H100, interconnect=(H100.interconnect[0], ib_rail)))
    assert rail.cost("all_to_all", GIB, Group(size=128, stride=8, concurrent=1, devices=1024)).bottleneck \
        == "infiniband-uplink"


@pytest.mark.parametrize("nodes", [2, 4, 8])
def test_all_to_all_across_nodes_degrades_more_than_4x(nodes):
    """SB gpus.md: "We go from B/(8·450e9) within a single H100 node to B/(2·400e9) when spanning 2 nodes,
    a more than 4x degradation". Per GPU the same bytes (an EP layer's tokens per GPU do not shrink with EP):
    one node 7/8·M/W_nvl, N nodes (N−1)/N·M/W_nic per GPU. Holds for the best and the 2DH algorithm."""
    model = TopologyModel(H100)
    m_bytes = 256 * 2**20
    one = model.cost("all_to_all", m_bytes, Group(size=8)).time_s
    spread = Group(size=8 * nodes, devices=8 * nodes)
    assert model.cost("all_to_all", m_bytes, spread).time_s > 4 * one
    assert a2a(model, m_bytes, spread, "hierarchical").time_s > 4 * one


@pytest.mark.parametrize("hw,n,stride", [(H100, 8, 1), (H100, 64, 1), (H100, 16, 8), (V3, 2048, 1), (V4, 64, 1),
                                          (load_hardware("cpu-localhost"), 8, 1)])
def test_busbw_factors_follow_nccl_tests(hw, n, stride):
    """nccl-tests PERFORMANCE.md: busbw = algbw × 2(n−1)/n (AR), (n−1)/n (AG, RS, A2A), 1 (bcast, p2p)."""
    model = default_model(hw)
    group = Group(size=n, stride=stride)
    for op in OPS:
        cost = model.cost(op, GIB, group)
        assert cost.algbw_bytes_per_s == pytest.approx(GIB / cost.time_s)
        assert cost.busbw_bytes_per_s == pytest.approx(cost.algbw_bytes_per_s * bus_bw_factor(op, n))
    assert bus_bw_factor("all_reduce", 8) == 1.75 and bus_bw_factor("all_to_all", 8) == 0.875


def test_protocol_switches_with_size():
    """NCCL's tuner: LL for tiny messages, Simple for large (NVIDIA/nccl src/graph/tuning.cc)."""
    model = TopologyModel(H100)
    assert model.cost("all_reduce", 8, Group(size=8)).algorithm.endswith("/LL")
    assert model.cost("all_reduce", 4 * GIB, Group(size=8)).algorithm == "nvls/Simple"  # NVLink SHARP
    assert model.cost("all_reduce", 4 * GIB, Group(size=8)).bottleneck == "nvlink"
    assert TopologyModel(H100, nccl_algo="^nvls").cost("all_reduce", 4 * GIB, Group(size=8)).algorithm == "ring/Simple"
    assert model.cost("all_gather", GIB, Group(size=16, stride=8, devices=128)).bottleneck == "infiniband"


def test_groups_on_one_chip_copy_through_hbm():
    model = TopologyModel(V3)
    cost = model.cost("all_reduce", GIB, Group(size=2, devices=2))
    assert cost.bottleneck == "on_chip" and cost.time_s > 0
