"""Flow-level max-min sharing: exact times on toy networks."""

from __future__ import annotations

import math

import pytest
import simpy

from moesim.des.network import Flow, Link, Network, max_min_rates


def _timeline(network: Network, flows: list[tuple[str, tuple, float, float, float]]) -> list[tuple[float, str]]:
    """Start each (name, path, bytes, cap, start_s) and return [(end time, name)] in completion order."""
    env = network.env
    out = []

    def start(name, path, size, cap, at):
        yield env.timeout(at)
        yield network.transfer(path, size, cap)
        out.append((round(env.now, 12), name))

    for f in flows:
        env.process(start(*f))
    env.run()
    return out


def test_two_flows_share_one_link_then_the_survivor_takes_all():
    # 100 B/s link; 100 B and 300 B: both at 50 B/s until t = 2, then 200 B at 100 B/s until t = 4.
    env = simpy.Environment()
    net = Network(env, [Link("l", 100.0)])
    assert _timeline(net, [("a", ((0, 1),), 100, math.inf, 0), ("b", ((0, 1),), 300, math.inf, 0)]) == \
        [(2.0, "a"), (4.0, "b")]


def test_without_contention_each_flow_runs_at_its_cap_alone():
    env = simpy.Environment()
    net = Network(env, [Link("l", 100.0)], contention=False)
    assert _timeline(net, [("a", ((0, 1),), 100, 100, 0), ("b", ((0, 1),), 300, 100, 0)]) == \
        [(1.0, "a"), (3.0, "b")]


def test_a_late_flow_slows_the_running_one():
    # a: 300 B alone at 100 B/s for 1 s (200 left); b joins at 1 s: 50/50 → b (100 B) ends at 3, a at 4.
    env = simpy.Environment()
    net = Network(env, [Link("l", 100.0)])
    assert _timeline(net, [("a", ((0, 1),), 300, math.inf, 0), ("b", ((0, 1),), 100, math.inf, 1)]) == \
        [(3.0, "b"), (4.0, "a")]


def test_capped_flow_leaves_the_rest_to_the_other():
    # a capped at 20 B/s; b gets 80 B/s. a: 40 B → 2 s; b: 160 B → 2 s.
    env = simpy.Environment()
    net = Network(env, [Link("l", 100.0)])
    assert _timeline(net, [("a", ((0, 1),), 40, 20, 0), ("b", ((0, 1),), 160, math.inf, 0)]) == \
        [(2.0, "a"), (2.0, "b")]


def test_multiplicity_counts_like_that_many_flows():
    # One flow standing for 3 on the link, plus one single flow: 4 shares of 25 B/s.
    env = simpy.Environment()
    net = Network(env, [Link("l", 100.0)])
    assert _timeline(net, [("x3", ((0, 3),), 50, math.inf, 0), ("one", ((0, 1),), 50, math.inf, 0)]) == \
        [(2.0, "x3"), (2.0, "one")]


def test_path_latency_is_added_after_the_bytes():
    env = simpy.Environment()
    net = Network(env, [Link("a", 100.0, latency_s=0.25), Link("b", 100.0, latency_s=0.5)])
    assert _timeline(net, [("f", ((0, 1), (1, 1)), 100, math.inf, 0)]) == [(1.75, "f")]


def test_max_min_textbook_parking_lot():
    # Links L0, L1 of capacity 1; flow A crosses both, B only L0, C only L1: all get 1/2.
    # Then with L1 at capacity 2: A limited by L0 to 1/2, C takes 3/2 (Bertsekas & Gallager §6.5.2).
    ev = simpy.Environment().event()
    a = Flow(((0, 1), (1, 1)), 1, math.inf, ev, fid=1)
    b = Flow(((0, 1),), 1, math.inf, ev, fid=2)
    c = Flow(((1, 1),), 1, math.inf, ev, fid=3)
    assert max_min_rates([a, b, c], {0: 1.0, 1: 1.0}) == pytest.approx({1: 0.5, 2: 0.5, 3: 0.5})
    assert max_min_rates([a, b, c], {0: 1.0, 1: 2.0}) == pytest.approx({1: 0.5, 2: 0.5, 3: 1.5})


def test_link_accounting_and_busiest_order():
    env = simpy.Environment()
    net = Network(env, [Link("slow", 100.0), Link("fast", 1000.0)])
    _timeline(net, [("f", ((0, 1), (1, 1)), 200, math.inf, 0)])
    rows = net.busiest(elapsed_s=2.0)
    assert [r["link"] for r in rows] == ["slow", "fast"]
    assert rows[0]["utilisation"] == pytest.approx(1.0) and rows[1]["utilisation"] == pytest.approx(0.1)
    assert rows[0]["carried_bytes"] == 200
