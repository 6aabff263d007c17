"""Graph algorithms on topology graphs: cut bandwidth, minimum bisection and diameter, for small graphs.

The closed forms in torus.py and fabric.py are what moesim uses; these compute the same quantities
from the networkx graph, to validate the closed forms and to measure irregular graphs. Edges carry
`bw_bytes_per_s` (one direction); parallel edges (multiplicity) add up.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import networkx as nx

from moesim.errors import SpecError

BRUTE_FORCE_MAX_ENDPOINTS = 20  # C(20, 10) = 184756 balanced cuts: a second or two


def capacity_digraph(g: nx.MultiDiGraph, level: str | None = None) -> nx.DiGraph:
    """Parallel directed edges merged into one with `capacity` = Σ bw_bytes_per_s (optionally one level)."""
    d = nx.DiGraph()
    d.add_nodes_from(g.nodes)
    for u, v, data in g.edges(data=True):
        if level is not None and data.get("level") != level:
            continue
        cap = d.get_edge_data(u, v, {"capacity": 0.0})["capacity"]
        d.add_edge(u, v, capacity=cap + data["bw_bytes_per_s"])
    return d


def cut_bw_bytes_per_s(g: nx.MultiDiGraph, side_a: Iterable, side_b: Iterable, level: str | None = None) -> float:
    """Maximum one-direction flow from side A to side B (= the minimum cut separating them), via max-flow.

    Switches and other nodes in neither side may fall on either side of the cut (Ford & Fulkerson 1956).
    """
    d = capacity_digraph(g, level)
    d.add_edges_from((("_src", a) for a in side_a), capacity=float("inf"))
    d.add_edges_from(((b, "_dst") for b in side_b), capacity=float("inf"))
    return float(nx.maximum_flow_value(d, "_src", "_dst"))


def min_bisection_bw_bytes_per_s(g: nx.MultiDiGraph, endpoints: list | None = None) -> float:
    """Minimum over every balanced split of the endpoints of the one-direction cut bandwidth (brute force).

    Endpoints default to every node (a torus); give the device nodes of a switched fabric. Exponential:
    refused above BRUTE_FORCE_MAX_ENDPOINTS endpoints.
    """
    nodes = list(g.nodes) if endpoints is None else list(endpoints)
    if len(nodes) > BRUTE_FORCE_MAX_ENDPOINTS:
        raise SpecError(f"{len(nodes)} endpoints are too many for a brute-force bisection", field="endpoints",
                        value=len(nodes), allowed=f"<= {BRUTE_FORCE_MAX_ENDPOINTS}")
    switch_free = endpoints is None
    d = capacity_digraph(g)
    best = float("inf")
    first, rest = nodes[0], nodes[1:]
    for others in itertools.combinations(rest, len(nodes) // 2 - 1):  # fix one node: each split once
        half = {first, *others}
        if switch_free:
            cut = sum(c for u, v, c in d.edges(data="capacity") if u in half and v not in half)
        else:
            cut = cut_bw_bytes_per_s(g, half, [n for n in nodes if n not in half])
        best = min(best, cut)
    return best


def diameter_hops(g: nx.MultiDiGraph, endpoints: list | None = None) -> int:
    """Longest shortest path in links between endpoints (default: every node), ignoring direction."""
    u = nx.Graph(g)
    nodes = list(u.nodes) if endpoints is None else list(endpoints)
    if len(nodes) < 2:
        return 0
    lengths = dict(nx.all_pairs_shortest_path_length(u)) if endpoints is None else \
        {a: nx.single_source_shortest_path_length(u, a) for a in nodes}
    return max(lengths[a][b] for a in nodes for b in nodes)
