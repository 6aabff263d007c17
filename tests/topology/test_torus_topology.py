"""Tori: slice shapes, wraparound rules, link counts, bisection and diameter in closed form vs the graph."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from moesim.errors import SpecError
from moesim.specs.load import load_hardware
from moesim.topology.analysis import cut_bw_bytes_per_s, diameter_hops, min_bisection_bw_bytes_per_s
from moesim.topology.system import build_system
from moesim.topology.torus import (
    TorusSlice, axis_wraps, build_torus_graph, slice_shape, torus_bisection_links, torus_diameter_hops,
    torus_link_count,
)

B = 1e11  # any link bandwidth


def torus(dims, wraps, per_chip=1):
    return TorusSlice(pod_dims=tuple(dims), dims=tuple(dims), wraps=tuple(wraps), devices_per_chip=per_chip,
                      link_bw_bytes_per_s=B, latency_s=1e-6)


@pytest.mark.parametrize("pod,chips,shape", [
    ((16, 16, 16), 64, (4, 4, 4)), ((16, 16, 16), 128, (4, 4, 8)), ((16, 16, 16), 4096, (16, 16, 16)),
    ((32, 32), 16, (4, 4)), ((32, 32), 512, (16, 32)), ((32, 32), 1024, (32, 32)),
    ((16, 20, 28), 8960, (16, 20, 28)), ((4, 4), 7, (2, 4)),  # 7 chips fit no shape exactly: smallest slice
])
def test_slice_shape_most_cubic(pod, chips, shape):
    assert slice_shape(pod, chips) == shape


def test_slice_shape_rejects_more_chips_than_the_pod():
    with pytest.raises(SpecError, match="do not fit"):
        slice_shape((4, 4), 17)


@pytest.mark.parametrize("rule,dims,pod,wraps", [
    ("full_axis", (32, 32), (32, 32), (True, True)),
    ("full_axis", (16, 32), (32, 32), (False, True)),  # v3: only an axis spanning the pod wraps
    ("multiple_of_4", (4, 4, 8), (16, 16, 16), (True, True, True)),
    ("multiple_of_4", (2, 2, 1), (16, 16, 16), (False, False, False)),
    ("always", (2, 1), (2, 1), (True, False)),  # an axis of one chip has no links at all
    ("never", (16, 16), (16, 16), (False, False)),
])
def test_wraparound_rules(rule, dims, pod, wraps):
    assert axis_wraps(rule, dims, pod) == wraps


def test_unknown_wraparound_rule_names_the_allowed_ones():
    with pytest.raises(SpecError, match="allowed: full_axis, multiple_of_4, always, never"):
        axis_wraps("sometimes", (4,), (4,))


dims_st = st.lists(st.integers(1, 5), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None)
@given(dims=dims_st, data=st.data())
def test_link_count_closed_form_matches_graph(dims, data):
    """Undirected links Σ (P/a)·(a if wrap else a−1); the graph has one directed edge per direction."""
    wraps = tuple(data.draw(st.booleans()) and a > 1 for a in dims)
    g = build_torus_graph(torus(dims, wraps))
    assert g.number_of_nodes() == math.prod(dims)
    assert g.number_of_edges() == 2 * torus_link_count(tuple(dims), wraps)


def test_axis_of_length_two_keeps_both_links():
    """A periodic axis of size 2: the +1 link and the wrap link join the same chips (design.md trap)."""
    g = build_torus_graph(torus((2, 3), (True, True)))
    assert g.number_of_edges((0, 0), (1, 0)) == 2 and g.number_of_edges((1, 0), (0, 0)) == 2
    assert g.number_of_edges((0, 0), (0, 1)) == 1  # axis of 3: one link per neighbour pair
    assert torus_link_count((2, 3), (True, True)) == 6 + 6
    assert torus_link_count((2, 3), (False, True)) == 3 + 6


@pytest.mark.parametrize("dims,wraps", [((4,), (True,)), ((6,), (False,)), ((4, 2), (True, True)),
                                         ((4, 4), (True, True)), ((4, 3), (True, False)), ((2, 2, 4), (True,) * 3)])
def test_bisection_closed_form_is_the_minimum_balanced_cut(dims, wraps):
    """Brute force over every balanced bipartition of the chips (small tori) equals (P/k)·(2 if wrap else 1)·b."""
    t = torus(dims, wraps)
    assert min_bisection_bw_bytes_per_s(build_torus_graph(t)) == pytest.approx(t.bisection_bw_bytes_per_s)


def test_bisection_equals_max_flow_across_the_longest_axis():
    t = torus((8, 4, 4), (True, True, True))
    g = build_torus_graph(t)
    left = [n for n in g.nodes if n[0] < 4]
    right = [n for n in g.nodes if n[0] >= 4]
    assert cut_bw_bytes_per_s(g, left, right) == pytest.approx(t.bisection_bw_bytes_per_s)
    assert torus_bisection_links((8, 4, 4), (True,) * 3) == 2 * 16


@settings(max_examples=25, deadline=None)
@given(dims=dims_st, data=st.data())
def test_diameter_closed_form_matches_graph(dims, data):
    wraps = tuple(data.draw(st.booleans()) and a > 1 for a in dims)
    assert torus_diameter_hops(tuple(dims), wraps) == diameter_hops(build_torus_graph(torus(dims, wraps)))


def test_tpu_cores_share_their_chip():
    """TPU v3: two TensorCores per chip sit on one graph node and share its four links."""
    system = build_system(load_hardware("tpu-v3"), 32)
    t = system.torus
    assert t.dims == (4, 4) and t.wraps == (False, False)  # v3-32: no wraparound below a full axis
    g = system.graph()
    assert g.nodes[(0, 0)]["devices"] == (0, 1) and g.nodes[(1, 0)]["devices"] == (2, 3)
    coords = t.chip_coords([0, 1, 2, 31])
    assert (coords[0] == coords[1]).all() and tuple(coords[2]) == (1, 0) and tuple(coords[3]) == (3, 3)
    assert g.out_degree((1, 1)) == 4


def test_full_pods_in_closed_form():
    v3 = build_system(load_hardware("tpu-v3"), 2048)
    assert v3.torus.dims == (32, 32) and v3.torus.wraps == (True, True)
    assert v3.torus.link_count == 2 * 1024 and v3.diameter_hops == 32
    v4 = build_system(load_hardware("tpu-v4"), 4096)
    assert v4.torus.link_count == 3 * 4096 and v4.diameter_hops == 24
    v5p = build_system(load_hardware("tpu-v5p"), 8960)
    assert v5p.torus.dims == (16, 20, 28) and v5p.torus.wraps == (True, True, True)
