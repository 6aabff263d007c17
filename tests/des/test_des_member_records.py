"""The fast engine's member records (flows.py `_flows`): a collective member alone on its two ports starts as one
record, and a flow that later arrives on one of those ports turns that side into the lazy flow it stands for
(`_materialize`), or takes an ended one off. Every path must give the simpy engine's timeline."""

from __future__ import annotations

import dataclasses

import pytest

from des_helpers import tiny_scenario
from moesim.des import SimOptions, flows, simulate
from moesim.specs.layout import Layout


def test_records_and_their_materialisation_give_the_simpy_timeline(monkeypatch):
    # EP 16 over two 8-GPU nodes and pp 2: all-to-alls and pipeline sends use the same inter-node ports, and with
    # GPipe, zipf loads and stragglers a send arrives on a port while a member's flow is half-way (or just done)
    sc = tiny_scenario(32, dropless=True, micro_batches=4, global_batch_sequences=64, pipeline_schedule="gpipe")
    options = SimOptions(routing="zipf:1.2", straggler_fraction=0.25, straggler_slowdown=1.5, seed=4, mode="full")
    seen = {"records": 0, "half-way": 0, "ended": 0}
    start, materialize = flows.FlowSharing._flows, flows.FlowSharing._materialize

    def counting_flows(self, arg):
        before = self.seq
        start(self, arg)
        seen["records"] += sum(1 for entry in self.heap if entry[1] > before and entry[2] == self._member_end)

    def counting_materialize(self, link):
        rec = self.lazy_on[link]
        side = 0 if link == rec[flows._LINK_E] else 1
        seen["ended" if rec[flows._END_E + side] <= self.now else "half-way"] += self.now > rec[flows._START]
        materialize(self, link)

    monkeypatch.setattr(flows.FlowSharing, "_flows", counting_flows)
    monkeypatch.setattr(flows.FlowSharing, "_materialize", counting_materialize)
    layout = Layout(dp=16, ep=16, pp=2)
    fast = simulate(sc, layout, options)
    ref = simulate(sc, layout, dataclasses.replace(options, engine="simpy"))
    assert seen["records"] > 0 and seen["half-way"] > 0 and seen["ended"] > 0  # every path ran
    assert fast.step_times_s == pytest.approx(ref.step_times_s, rel=1e-12)
    key = lambda r: (r[0], r[1], round(r[6], 9), r[2], r[4], r[5])  # noqa: E731
    a, b = sorted(fast.trace_records, key=key), sorted(ref.trace_records, key=key)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[:6] == y[:6]
        assert x[6:] == pytest.approx(y[6:], rel=1e-9, abs=1e-15)
    assert [x["link"] for x in fast.busiest_links] == [y["link"] for y in ref.busiest_links]
    for x, y in zip(fast.busiest_links, ref.busiest_links):
        assert x["peak_concurrent_flows"] == y["peak_concurrent_flows"]
        assert x["utilisation"] == pytest.approx(y["utilisation"], rel=1e-9)
