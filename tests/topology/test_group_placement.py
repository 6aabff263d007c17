"""Mesh axes become concrete device groups; groups become per-tier counts or sub-tori with link sharing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from moesim.collectives.base import Group
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware
from moesim.topology.mapping import active_groups, axis_devices, axis_group, device_coordinates, devices_spanned
from moesim.topology.placement import place
from moesim.topology.system import build_system

layouts = st.builds(
    lambda tp, ep_share, dp_extra, pp, order: Layout(tp=tp, dp=ep_share * dp_extra, ep=ep_share, pp=pp, order=order),
    st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2]), st.sampled_from([1, 2]),
    st.sampled_from([("tp", "ep", "dp", "pp"), ("tp", "dp", "ep", "pp"), ("ep", "tp", "dp", "pp")]))


@settings(max_examples=60, deadline=None)
@given(layout=layouts, axis=st.sampled_from(["tp", "dp", "ep", "etp", "edp", "pp"]))
def test_axis_groups_partition_the_devices(layout, axis):
    """Every device is in exactly one group of each axis, and its members agree on every other axis."""
    groups = axis_devices(layout, axis)
    assert sorted(groups.reshape(-1).tolist()) == list(range(layout.devices))
    for members in groups[: min(len(groups), 4)]:
        coords = [device_coordinates(layout, int(d)) for d in members]
        assert [c[axis] for c in coords] == list(range(len(members)))
        if axis != "pp":
            assert len({c["pp"] for c in coords}) == 1


def test_active_groups_follow_stride_blocks():
    g = Group(size=4, stride=2, concurrent=4)
    assert active_groups(g).tolist() == [[0, 2, 4, 6], [1, 3, 5, 7], [8, 10, 12, 14], [9, 11, 13, 15]]
    assert devices_spanned(g) == 16 and devices_spanned(Group(size=4, stride=8, concurrent=1)) == 25


def test_gpu_group_counts_per_tier():
    """EP over 16 GPUs, one per node (stride 8): 1 per NVLink domain, 16 in the fabric; pairs cross nodes."""
    system = build_system(load_hardware("h100-sxm"), 128)
    pl = place(system, Group(size=16, stride=8, concurrent=8, devices=128))
    assert pl.counts == (1, 16) and pl.top == 1 and pl.children(1) == 16 and pl.ports(1) == 1
    assert pl.pair_tier == 1
    inner = place(system, Group(size=8, stride=1, concurrent=16, devices=128))
    assert inner.counts == (8, 8) and inner.top == 0 and inner.pair_tier == 0


def test_tpu_group_as_a_sub_torus():
    """v3 pod (32x32 chips, 2 cores each). All 2048 cores: both cores of every chip, closed rings."""
    system = build_system(load_hardware("tpu-v3"), 2048)
    tg = place(system, Group(size=2048, devices=2048)).torus
    assert (tg.m, tg.d, tg.wrap, tg.q, tg.share) == ((32, 32), (1, 1), (True, True), 2, (1.0, 1.0))
    # One core per chip, the other core's group running too: both share every link.
    tg = place(system, Group(size=1024, stride=2, concurrent=2, devices=2048)).torus
    assert (tg.q, tg.share) == (1, (2.0, 2.0))
    assert place(system, Group(size=1024, stride=2, concurrent=1, devices=2048)).torus.share == (1.0, 1.0)
    # A column (stride 64 cores = one row of chips): 32 chips along y, both cores' groups share the links.
    tg = place(system, Group(size=32, stride=64, concurrent=64, devices=2048)).torus
    assert (tg.m, tg.wrap, tg.share) == ((1, 32), (False, True), (1.0, 2.0))


def test_tpu_group_with_a_chip_step():
    """v4 4x4x4 slice (closed axes). Pairs of chips two apart on x: the pair closes the x ring (2·2 = 4) and
    shares its links with the interleaved pair; a pipeline of 4 stages along z steps one hop."""
    system = build_system(load_hardware("tpu-v4"), 64)
    tg = place(system, Group(size=2, stride=2, concurrent=2, devices=64)).torus
    assert (tg.m[0], tg.d[0], tg.wrap[0], tg.share[0]) == (2, 2, True, 2.0)
    assert tg.regular and tg.pair_hops == (2, 0, 0)
    pair = place(system, Group(size=4, stride=16, concurrent=16, devices=64)).torus
    assert pair.m == (1, 1, 4) and pair.pair_hops == (0, 0, 1)


@pytest.mark.parametrize("layout,axis", [(Layout(dp=16, ep=16), "ep"), (Layout(dp=8, tp=2, ep=8), "ep"),
                                          (Layout(dp=4, tp=2, pp=2, ep=8), "pp")])
def test_axis_group_matches_mapping(layout, axis):
    group = axis_group(layout, axis)
    assert active_groups(group).shape == (layout.devices // group.size, group.size)
    np.testing.assert_array_equal(active_groups(group), axis_devices(layout, axis))
