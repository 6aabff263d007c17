"""Session 11 (bcast2) broadcast models (moesim/collectives/nccl_broadcast.py): `nccl-fill-entry`, the root its node's
ring exit on the slowest channel (NCCL v2.24.3-1 src/graph/connect.cc connectRings, src/init.cc setupChannel: the chain
crosses the network nNodes times), and `nccl-tests-proxy`, nccl-tests 2.17.9's back-to-back reading over it with the
period bounded by the proxy's per-connection op serialisation (src/proxy.cc ProxyAppend / removeOp: 2 network hop
latencies). Neither is the default (docs/collectives-history.md "Session 11 (bcast2)")."""

from __future__ import annotations

import json

import pytest

from moesim.collectives import nccl_broadcast
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware

US = 1e-6
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def _row(model, size, n, proto):
    return next(c for c in model.candidates("broadcast", size, Group(size=n, devices=n)) if c.protocol == proto)


def _brute(n, counts, offset):
    """hop j crosses the outermost tier i whose group size c_i (c_0 = 1, c_i = g_{i-1}) divides j + offset."""
    out = [[0, 0.0] for _ in counts]
    for j in range(1, n):
        tier = 0
        for i in range(1, len(counts)):
            if (j + offset) % counts[i - 1] == 0:
                tier = i
        out[tier][0] += 1
        out[tier][1] += (n - j) / n
    return [(h, pytest.approx(w)) for h, w in out]


def test_hop_weights_with_the_root_as_its_nodes_exit_by_hand():
    # 4 x 8, root last of its node in ring order: the network at hops 1, 9, 17, 25 (4 crossings, 27 NVLink hops)
    (nv, nv_w), (net, net_w) = nccl_broadcast.hop_weights(32, (8, 32), 7)
    assert (nv, net) == (27, 4)
    assert net_w == pytest.approx((31 + 23 + 15 + 7) / 32)
    assert nv_w == pytest.approx(sum(32 - j for j in range(1, 32)) / 32 - net_w)
    # the closed form (offset 0) and the enumeration agree with a brute force, three tiers included
    for n, counts in ((32, (8, 32)), (64, (8, 32, 64)), (16, (4, 16)), (8, (8,))):
        for offset in (0, 1, counts[0] - 1):
            assert list(nccl_broadcast.hop_weights(n, counts, offset)) == _brute(n, counts, offset)


def test_chain_with_the_entry_offset_prices_four_network_hops():
    hw = load_hardware("h100-sxm")
    fill, entry = TopologyModel(hw, broadcast_model="nccl-fill"), TopologyModel(hw, broadcast_model="nccl-fill-entry")
    # 8 B: no fill to speak of; the chain is 27 NVLink hops of 0.6 us and 4 network hops of 2.7 us (ring LL hwLat)
    a, b = _row(fill, 8, 32, "LL"), _row(entry, 8, 32, "LL")
    assert a.terms.latency_s == pytest.approx((28 * 0.6 + 3 * 2.7) * US, rel=1e-3)
    assert b.terms.latency_s == pytest.approx((27 * 0.6 + 4 * 2.7) * US, rel=1e-3)
    assert b.terms.transfer_s == a.terms.transfer_s
    # large LL128: one more network hop, one more store-and-forward chunk of 576,000 B at the per-channel rate
    a, b = _row(fill, 1 * GIB, 32, "LL128"), _row(entry, 1 * GIB, 32, "LL128")
    chunk_s = a.terms.transfer_s[1] * 576000 * 16 / GIB  # the network tier's time for one chunk per channel
    assert b.terms.latency_s - a.terms.latency_s == pytest.approx((4.0 - 1.9) * US + chunk_s, rel=1e-2)
    # one node: no NIC, the root's place changes nothing (entry_offset 0)
    for size in (8, 1 * MIB, 1 * GIB):
        for proto in ("LL", "LL128", "Simple"):
            assert _row(entry, size, 8, proto).time_s == _row(fill, size, 8, proto).time_s


def test_proxy_reading_by_hand():
    hw = load_hardware("h100-sxm")
    entry = TopologyModel(hw, broadcast_model="nccl-fill-entry")
    proxy = TopologyModel(hw, broadcast_model="nccl-tests-proxy")
    net = [1, 9, 17, 25]
    for proto, nv_us, net_us in (("LL", 0.6, 2.7), ("Simple", 3.4, 14.0)):
        one, row = _row(entry, 8, 32, proto), _row(proxy, 8, 32, proto)
        base_us = row.base_latency_s / US
        # the period: max(slowest hop, 2 network hops less the base): LL 2.7 (5.4 - 6.6 < 2.7), Simple 28 - 8.4
        period = max(net_us, 2 * net_us - base_us)
        assert period == (2.7 if proto == "LL" else pytest.approx(19.6))
        mean = (nv_us * sum(32 - j for j in range(1, 32) if j not in net) + net_us * sum(32 - j for j in net)) / 32
        fill_mean = (row.terms.latency_s / US) - (period * 19 + mean) / 20  # 8 B: the fill's mean over ranks / 20
        assert 0 <= fill_mean < 0.01
        assert row.terms.transfer_s == one.terms.transfer_s
        # NCCL picks by one broadcast (nccl-fill-entry): the offset takes the reading back
        assert row.time_s + row.tuner_offset_s == pytest.approx(one.time_s)
    g = Group(size=32, devices=32)
    for size in (8, 1 * MIB, 1 * GIB):
        assert proxy.cost("broadcast", size, g).algorithm == entry.cost("broadcast", size, g).algorithm


def test_proxy_period_needs_a_network_hop():
    hw = load_hardware("h100-sxm")
    one, proxy = TopologyModel(hw, broadcast_model="nccl-tests"), TopologyModel(hw, broadcast_model="nccl-tests-proxy")
    # one node: no network tier, so no proxy bound and no entry offset; the Simple fill's mean over ranks remains
    a, b = _row(one, 8, 8, "LL"), _row(proxy, 8, 8, "LL")
    assert b.terms.latency_s == pytest.approx(a.terms.latency_s, rel=1e-6)


def test_cli_takes_the_new_models(capsys):
    from moesim.cli import main

    for name in ("nccl-fill-entry", "nccl-tests-proxy"):
        assert main(["collective", "broadcast", "--hardware", "h100-sxm", "--devices", "32", "--bytes", "1MiB",
                     "--broadcast-model", name, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["broadcast_model"] == name
        model = TopologyModel(load_hardware("h100-sxm"), broadcast_model=name)
        assert report["results"][0]["time_us"] == pytest.approx(
            model.cost("broadcast", MIB, Group(size=32, devices=32)).time_s / US, rel=1e-6)
    assert nccl_broadcast.DEFAULT_MODEL == "nccl-ll128-cap"  # session 17 (bcast)
