"""ZB-V's order as sail-sg's V scheduler builds it (session 22, zbvslot; moesim.des.zbv_order).

The makespans against sail-sg's own run are in test_zbv_few_micro_batches.py (SAIL_SG_ZBV, SAIL_SG_ZBV_PAST_P); here
the walk's inputs and invariants: complete orders, a piece's activation sizes as sail-sg's runtime approximates them,
its memory limit taking effect, and the times the simulator gives it (the median device's, as sail-sg's runtime).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from moesim.collectives.select import default_model
from moesim.des.costs import build_costs
from moesim.des.orders import device_spans
from moesim.des.schedule import zbv_piece_times, zbv_stage_times
from moesim.des.zbv_order import DEFAULT_MEMORY, activation_memory, zbv_orders
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario


def test_activation_sizes_are_sail_sgs_approximation():
    # runtime.py l.1336-1337: f = 34h + 5·a·s, w = −32h; its example run (h 8192, 64 heads, s 4096) the default
    assert activation_memory(8192, 64, 4096) == (34 * 8192 + 5 * 64 * 4096, -32 * 8192) == DEFAULT_MEMORY
    assert DEFAULT_MEMORY == (1_589_248, -262_144)


@pytest.mark.parametrize("p, m", [(2, 1), (4, 3), (4, 9), (8, 9), (8, 20)])
def test_every_device_runs_each_of_its_pieces_f_i_w_once_per_micro_batch(p, m):
    orders = zbv_orders(m, p, (1.0, 2.0, 1.0))
    for d, order in enumerate(orders):
        assert Counter(order) == Counter((k, mb, vs) for k in "FIW" for mb in range(m) for vs in (d, 2 * p - 1 - d))
        # a W follows its I, first in first out
        inputs = [(mb, vs) for k, mb, vs in order if k == "I"]
        assert [(mb, vs) for k, mb, vs in order if k == "W"] == inputs
    assert len(device_spans("zb-v", m, p, 1, 2.0, 4.0, 2.0)) == p  # runs without the orders waiting on each other


def test_the_order_depends_on_ratios_not_units():
    a = zbv_orders(9, 8, (1.0, 2.0, 1.0), 0.1)
    assert zbv_orders(9, 8, (3e-3, 6e-3, 3e-3), 3e-4) == a
    with pytest.raises(ValueError, match="three times >= 0"):
        zbv_orders(9, 8, (1.0, -2.0, 1.0))


def test_the_activation_limit_forces_ws_where_they_hold_memory():
    """sail-sg's F waits for W's while a device would hold more than 2p forwards' activations (zbv.py l.216-218):
    with a W holding nothing (w_mem 0) the same walk runs fewer W's early and another order at p 16, m 34."""
    assert zbv_orders(34, 16, (1.0, 1.5, 0.5), 0.0, DEFAULT_MEMORY) != zbv_orders(34, 16, (1.0, 1.5, 0.5), 0.0, (1, 0))


def test_the_simulator_builds_the_order_on_the_median_devices_times():
    """runtime.py l.1401-1403 `avg_then_mid`: each device's mean over its two pieces, then sorted(a)[p // 2]."""
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, global_batch_sequences=8, micro_batches=8,
                                                              pipeline_schedule="zb-v"))
    costs = build_costs(sc, Layout(dp=1, tp=2, pp=4), sc.training, default_model(sc.hardware), 0.0)
    pieces = zbv_piece_times(costs)
    assert len(pieces) == 8
    for k in range(3):
        means = sorted((pieces[d][k] + pieces[7 - d][k]) / 2 for d in range(4))
        assert zbv_stage_times(costs)[k] == pytest.approx(2 * means[2], rel=1e-12)
    # the ends make device 0 (pieces 0 and 7: embedding, head) the heaviest, so the median is another device's
    device0 = sum(pieces[0]) + sum(pieces[7])
    assert device0 > max(sum(pieces[d]) + sum(pieces[7 - d]) for d in (1, 2, 3))
