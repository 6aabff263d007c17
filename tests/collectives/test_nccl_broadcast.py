"""broadcast_model (moesim/collectives/nccl_broadcast.py): NCCL's ring broadcast on its per-size channels with its ring
LL bus cap ("nccl"; NCCL v2.24.3-1 enqueue.cc topoGetAlgoInfo, tuning.cc ncclTopoTuneModel), the pricing
before session 10 ("plain", bit for bit), NCCL's per-channel ring LL128 cap on top ("nccl-ll128-cap", the default since
session 17; tuning.cc l. 251) and what nccl-tests 2.17.9 reports for back-to-back broadcasts ("nccl-tests",
src/common.cu BenchTime: 20 iterations, mean over ranks)."""

from __future__ import annotations

import json

import pytest

from moesim.collectives import hierarchy, nccl, nccl_broadcast
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

US = 1e-6
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def _row(model, size, n, proto):
    return next(c for c in model.candidates("broadcast", size, Group(size=n, devices=n)) if c.protocol == proto)


def test_chain_latencies_by_hand():
    # 4 ranks, 2 per node: hop 1 NVLink, hop 2 network, hop 3 NVLink; rank k waits for hops 1..k
    worst, mean = nccl_broadcast.chain_latencies_s(4, (2, 4), (1.0, 10.0))
    assert worst == 10.0
    assert mean == pytest.approx((0 + 1 + 11 + 12) / 4)
    # one tier: n - 1 equal hops, mean (n - 1) / 2
    assert nccl_broadcast.chain_latencies_s(8, (8,), (2.0,)) == (2.0, pytest.approx(7.0))


def test_default_is_nccl_ll128_cap_and_plain_is_the_old_pricing():
    hw = load_hardware("h100-sxm")
    # session 17 (bcast): "nccl-ll128-cap" ships as the default by its ship rule; "nccl" stays selectable
    assert TopologyModel(hw).broadcast_model == nccl_broadcast.DEFAULT_MODEL == "nccl-ll128-cap"
    plain = TopologyModel(hw, broadcast_model="plain")
    for size in (8, 64 * KIB, 1 * MIB, 1 * GIB):
        row = _row(plain, size, 32, "LL")
        # the old ring broadcast: hierarchy.broadcast_terms at W x 0.5 on every tier, no cap, no share
        assert row.time_s == pytest.approx(row.base_latency_s + row.terms.latency_s + max(row.terms.transfer_s))
        assert row.terms.latency_s == pytest.approx((28 * 0.6 + 3 * 2.7) * US)
    with pytest.raises(SpecError, match="broadcast_model"):
        TopologyModel(hw, broadcast_model="pipelined")


def test_ll_cap_binds_a_large_multi_node_ll_broadcast():
    # 4 nodes, Intel / unstated CPU: llMaxBws row 0, 4+ nodes = 20.4 GB/s bus (= alg for a broadcast), v2.24.3 tuning.cc
    hw = load_hardware("h100-sxm")
    row = _row(TopologyModel(hw), 1 * GIB, 32, "LL")
    assert max(row.terms.transfer_s) == pytest.approx(GIB / 20.4e9)
    assert nccl.tuning()["ll_max_bus_gb_per_s"]["volta"][2] == 20.4


def test_small_ll_broadcast_runs_on_fewer_channels():
    # ring LL threshold 8 B x nRanks per thread, 512 threads: one channel per 128 KiB on 32 ranks (of 16): 1 MiB runs
    # on 8 channels, half the full-size rate, under the cap's 20.4 GB/s
    hw = load_hardware("h100-sxm")
    plain, model = TopologyModel(hw, broadcast_model="plain"), TopologyModel(hw, broadcast_model="nccl")
    full = max(_row(plain, 1 * MIB, 32, "LL").terms.transfer_s)
    half = max(_row(model, 1 * MIB, 32, "LL").terms.transfer_s)
    assert half == pytest.approx(max(2 * full, MIB / 20.4e9))
    # LL128's threshold is 8 B per thread of 640 (no x nRanks): 80 KiB fills 16 channels, so 1 MiB runs on all
    assert _row(model, 1 * MIB, 32, "LL128").terms.transfer_s == _row(plain, 1 * MIB, 32, "LL128").terms.transfer_s


def test_nccl_tests_reading_is_the_period_plus_the_mean_chain_over_iters():
    hw = load_hardware("h100-sxm")
    one, tests = TopologyModel(hw), TopologyModel(hw, broadcast_model="nccl-tests")
    a, b = _row(one, 8, 32, "LL"), _row(tests, 8, 32, "LL")
    # 28 NVLink hops of 0.6 us and 3 network hops of 2.7 us (NCCL's ring LL hwLat), the network ones at j = 8, 16, 24
    mean = (0.6 * sum(32 - j for j in range(1, 32) if j % 8) + 2.7 * sum(32 - j for j in (8, 16, 24))) / 32
    assert b.terms.latency_s == pytest.approx((2.7 * 19 + mean) / 20 * US)
    assert b.terms.transfer_s == a.terms.transfer_s and b.base_latency_s == a.base_latency_s
    # NCCL picks its protocol by one broadcast: the offset takes the reading back
    assert b.time_s + b.tuner_offset_s == pytest.approx(a.time_s)
    for size in (8, 1 * MIB, 1 * GIB):
        pick = one.cost("broadcast", size, Group(size=32, devices=32)).algorithm
        assert tests.cost("broadcast", size, Group(size=32, devices=32)).algorithm == pick


def test_other_ops_and_one_node_tiers_are_untouched():
    hw = load_hardware("h100-sxm")
    g = Group(size=32, devices=32)
    for op in ("all_reduce", "all_gather", "all_to_all", "send_recv"):
        for size in (8, 1 * MIB, 1 * GIB):
            costs = {m: TopologyModel(hw, broadcast_model=m).cost(op, size, g) for m in nccl_broadcast.MODELS}
            assert len({(c.time_s, c.algorithm) for c in costs.values()}) == 1
    tpu = load_hardware("tpu-v4")
    assert TopologyModel(tpu).cost("broadcast", 1 * MIB, Group(size=16)) == \
        TopologyModel(tpu, broadcast_model="plain").cost("broadcast", 1 * MIB, Group(size=16))


def test_cli_option_and_json_key(capsys):
    from moesim.cli import main

    assert main(["collective", "broadcast", "--hardware", "h100-sxm", "--devices", "32", "--bytes", "8",
                 "--broadcast-model", "nccl-tests", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    model = TopologyModel(load_hardware("h100-sxm"), broadcast_model="nccl-tests")
    assert report["broadcast_model"] == "nccl-tests"
    assert report["results"][0]["time_us"] == pytest.approx(
        model.cost("broadcast", 8, Group(size=32, devices=32)).time_s / US, rel=1e-6)
    assert main(["collective", "broadcast", "--hardware", "h100-sxm", "--devices", "32", "--bytes", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["broadcast_model"] == "nccl-ll128-cap"


def test_cli_bad_values_exit_2(capsys):
    from _cli import run_bad

    run_bad(capsys, ["collective", "broadcast", "--hardware", "h100-sxm", "--devices", "32", "--bytes", "1KiB",
                     "--broadcast-model", "pipelined"], "--broadcast-model",
            "plain, nccl, nccl-fill, nccl-tests, nccl-fill-entry, nccl-tests-proxy")
    run_bad(capsys, ["collective", "broadcast", "--hardware", "tpu-v4", "--devices", "16", "--bytes", "1KiB",
                     "--broadcast-model", "plain"], "--broadcast-model", "GPU")


def test_broadcast_terms_are_hierarchys_ring():
    # the ring broadcast the three models share: n - 1 hops split by tier, S / (c_i W_i) where crossed
    t = hierarchy.broadcast_terms("ring", 1e6, 32, (8, 32), (1.0, 10.0), (100.0, 50.0))
    assert t.latency_s == pytest.approx(28 * 1.0 + 3 * 10.0)
    assert t.transfer_s == pytest.approx((1e6 / 100.0, 1e6 / (8 * 50.0)))


def test_docs_block_is_current(doc_block, script_stdout):
    """docs/collectives-history.md's broadcast_model_check block is what the script prints now."""
    assert doc_block("broadcast_model_check") == script_stdout("scripts/broadcast_model_check.py")


def test_store_and_forward_fill_by_hand():
    # two tiers, hops (28 NVLink, 3 network) weighted as hop_weights; a 1 MiB share over 4 channels is one chunk of
    # 256 KiB (< the 512 KiB Simple chunk): each store-and-forward hop takes the tier's whole transfer, less the slowest
    sf = nccl_broadcast.hop_weights(32, (8, 32))
    one, mean = nccl_broadcast.fill_s(sf, 512 * KIB, 1 * MIB, 4, (2.0, 3.0))
    assert one == pytest.approx(28 * 2.0 + 3 * 3.0 - 3.0) and mean == pytest.approx(14.0 * 2.0 + 1.5 * 3.0)
    # 64 MiB over 16 channels: 4 MiB per channel, one 512 KiB chunk is 1/8 of it; LL / LL128: network hops only
    net_only = ((0, 0.0), sf[1])
    one, _ = nccl_broadcast.fill_s(net_only, 512 * KIB, 64 * MIB, 16, (80.0, 40.0))
    assert one == pytest.approx(3 * 40.0 / 8 - 40.0 / 8)
    assert nccl_broadcast.fill_s(net_only, 512 * KIB, 0, 16, (0.0, 0.0)) == (0.0, 0.0)


def test_fill_model_adds_the_fill_to_nccl():
    hw = load_hardware("h100-sxm")
    one, fill = TopologyModel(hw), TopologyModel(hw, broadcast_model="nccl-fill")
    for size in (8, 64 * KIB, 16 * MIB, 1 * GIB):
        a, b = _row(one, size, 32, "Simple"), _row(fill, size, 32, "Simple")
        assert b.terms.transfer_s == a.terms.transfer_s and b.terms.latency_s > a.terms.latency_s
    # one node of NVLink: LL forwards lines as they come, so no fill
    assert _row(fill, 1 * MIB, 8, "LL").time_s == _row(one, 1 * MIB, 8, "LL").time_s


def test_the_runs_channel_knobs_reach_the_broadcast():
    # NCCL_MAX_NCHANNELS=4: the 16 channels' share of a 64 MiB LL128 broadcast is 4 / 16, so its transfer is 4x
    # (under "nccl": the default's per-channel LL128 cap would bind the full share only)
    hw = load_hardware("h100-sxm")
    full = _row(TopologyModel(hw, broadcast_model="nccl"), 64 * MIB, 32, "LL128")
    four = _row(TopologyModel(hw, broadcast_model="nccl", nccl_max_nchannels=4), 64 * MIB, 32, "LL128")
    assert max(four.terms.transfer_s) == pytest.approx(4 * max(full.terms.transfer_s))


def test_ll128_cap_by_hand():
    # NVIDIA/nccl v2.24.3-1 src/graph/tuning.cc l. 251: ring LL128 busBw <= graphs[RING]->nChannels x
    # perChMaxRingLL128Bw (l. 159: Hopper 36.7 GB/s at N1 / N2 / N4); graph channels = 16 / 2 (connect.cc l. 455);
    # a broadcast's algBw = busBw (l. 228 nsteps = nRanks, l. 286 ratio 1): 256 MiB at 8 x 36.7 GB/s
    hw = load_hardware("h100-sxm")
    cap = TopologyModel(hw, broadcast_model="nccl-ll128-cap")
    one = TopologyModel(hw, broadcast_model="nccl")
    for n in (8, 32):  # one node (N1) and four (N4): the same Hopper figure
        capped, free = _row(cap, 256 * MIB, n, "LL128"), _row(one, 256 * MIB, n, "LL128")
        assert max(capped.terms.transfer_s) == pytest.approx(256 * MIB / (8 * 36.7e9))
        assert max(free.terms.transfer_s) < max(capped.terms.transfer_s)  # the cap binds: the uncapped is faster
        assert capped.terms.latency_s == free.terms.latency_s
        for proto in ("LL", "Simple"):  # the other protocols are "nccl"'s, bit for bit
            assert _row(cap, 256 * MIB, n, proto).time_s == _row(one, 256 * MIB, n, proto).time_s
    # per_channel_caps off: "nccl" bit for bit
    off = TopologyModel(hw, broadcast_model="nccl-ll128-cap", per_channel_caps=False)
    for size in (8, 1 * MIB, 256 * MIB):
        g = Group(size=32, devices=32)
        assert off.cost("broadcast", size, g) == one.cost("broadcast", size, g)


def test_ll128_cap_moves_the_pick_only_where_capped_ll128_loses():
    # NCCL's tuner ranks the capped candidate (the cap is in its busBw): a pick can only leave LL128, never join it
    hw = load_hardware("h100-sxm")
    cap, one = TopologyModel(hw), TopologyModel(hw, broadcast_model="nccl")
    g = Group(size=32, devices=32)
    for size in (64 * KIB, 1 * MIB, 16 * MIB, 128 * MIB, 512 * MIB, 4 * GIB):
        a, b = one.cost("broadcast", size, g), cap.cost("broadcast", size, g)
        assert b.time_s >= a.time_s
        if "LL128" not in a.algorithm:
            assert b == a


def test_session17_block_is_current(doc_block, script_stdout):
    """docs/collectives-history.md's bcast_ll128_cap_check block (session 17's rule (b) and residual table)."""
    assert doc_block("bcast_ll128_cap_check") == script_stdout("scripts/bcast_ll128_cap_check.py")
