"""p2p_net_model="concurrent" (moesim/collectives/nccl_p2p_net.py, NCCL v2.28.9-1): a flat all-to-all's network peers
run Simple at once, one message latency per work batch, and the proxy launches every Simple step of every network
peer in turn at NCCL's tuner network overhead; the default ("summed") prices as before, bit for bit; the estimate
and the simulator move together; the docs' generated block is current."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from moesim.collectives import nccl, nccl_p2p_net
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import with_system_facts

ROOT = Path(__file__).resolve().parents[2]
US = 1e-6
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def _pairwise(model, size, n):
    return min((c for c in model.candidates("all_to_all", size, Group(size=n, devices=n)) if c.algorithm == "pairwise"),
               key=lambda c: c.time_s)


@pytest.mark.parametrize("peer_bytes,parts,steps", [
    (0, 1, 1),                # a 0-byte send still posts one step
    (16 * KIB, 1, 1),         # under one 128 KiB step: chunk / 4 = 32 KiB
    (64 * KIB, 1, 2),         # 2 x 32 KiB
    (128 * KIB, 1, 2),        # under 8 steps: chunk / 2 = 64 KiB
    (512 * KIB, 4, 8),        # 4 parts of 128 KiB, 2 x 64 KiB each
    (1 * MIB, 4, 8),          # 8 steps: the full 128 KiB chunk
    (64 * MIB, 4, 512),
    (100_000, 3, 5),          # parts alignUp(33,334, 4 KiB) = 36,864, 36,864, 26,272 at 32 KiB chunks: 2 + 2 + 1
])
def test_steps_follow_addp2ptoplan_chunks(peer_bytes, parts, steps):
    assert nccl_p2p_net.peer_steps(peer_bytes, parts) == steps


def test_launch_is_the_tuners_simple_network_overhead():
    assert nccl_p2p_net.launch_s("") == pytest.approx(3 * US)       # getNetOverhead 1 us x 3 (Simple)
    assert nccl_p2p_net.launch_s("amd") == pytest.approx(6 * US)    # 2 us on AMD x86, x 3
    assert nccl_p2p_net.launches_s(8, 6 * US) == pytest.approx(42 * US)
    assert nccl_p2p_net.launches_s(1, 6 * US) == 0.0


def test_default_is_channels_and_summed_stays_selectable():
    """Since session 12 (a2ap2p) the default is "channels" (tests/collectives/test_a2a_p2p_channels.py); "summed", the
    pricing before, stays selectable: the two agree on one node and differ across nodes."""
    hw = load_hardware("h100-sxm")
    default, summed = TopologyModel(hw), TopologyModel(hw, p2p_net_model="summed")
    assert default.p2p_net_model == nccl_p2p_net.DEFAULT_MODEL == "channels"
    for op in ("all_to_all", "send_recv"):
        for size in (1 * KIB, 1 * MIB, 1 * GIB):
            a, b = default.cost(op, size, Group(size=8, devices=8)), summed.cost(op, size, Group(size=8, devices=8))
            assert a.time_s == b.time_s and a.algorithm == b.algorithm
    assert _pairwise(default, 1 * MIB, 64).time_s != _pairwise(summed, 1 * MIB, 64).time_s


def test_unknown_model_is_a_spec_error():
    with pytest.raises(SpecError, match="p2p_net_model"):
        TopologyModel(load_hardware("h100-sxm"), p2p_net_model="overlapped")


def test_one_node_does_not_move():
    hw = load_hardware("b200")
    for size in (1 * KIB, 4 * MIB, 1 * GIB):
        assert _pairwise(TopologyModel(hw, p2p_net_model="concurrent"), size, 8).time_s == \
            _pairwise(TopologyModel(hw), size, 8).time_s


def test_two_nodes_small_all_to_all_is_one_network_message_plus_seven_launches():
    """2 x 8 B200 on AMD hosts (the Vultr logs' CPU) at 1 KiB: every peer one 32 KiB-chunk step; the 8 network peers
    are one batch on one channel (one Simple network latency), the proxy launches 8 steps, 7 after the first at
    6 us; the NVLink peers (7 LL messages, priced as shipped) run on another channel and are shorter."""
    hw = with_system_facts(load_hardware("b200"), {"host_cpu": "amd"})
    summed = _pairwise(TopologyModel(hw, p2p_net_model="summed"), 1 * KIB, 16)
    conc = _pairwise(TopologyModel(hw, p2p_net_model="concurrent"), 1 * KIB, 16)
    simple = [p for p, _, _ in _layout_rows(hw) if p.name == "Simple"][0]
    alpha_net = [a for p, a, _ in _layout_rows(hw) if p.name == "Simple"][0]["ring"][1]
    assert conc.terms.latency_s == pytest.approx(alpha_net)
    assert conc.terms.transfer_s[1] == pytest.approx(7 * 6 * US)
    assert conc.base_latency_s == pytest.approx(max(summed.base_latency_s, simple.base_latency_s("pairwise")))
    assert conc.time_s > summed.time_s  # seven launches at 6 us outweigh seven summed LL messages here


def _layout_rows(hw):
    model = TopologyModel(hw, p2p_net_model="concurrent")
    group = Group(size=16, devices=16)
    model.candidates("all_to_all", 1 * KIB, group)
    _, _, layouts = model._placed(group)
    return layouts["all_to_all"].protocols


def test_large_all_to_all_is_bound_by_the_proxys_launches_on_amd():
    """1 GiB over 2 x 8 on AMD hosts: 8 network peers x 512 steps of 128 KiB, 4095 launches at 6 us = 24.6 ms, above
    the NIC's 8/16 GiB at the priced bandwidth; on Intel hosts 3 us a launch."""
    for cpu, launch in (("amd", 6 * US), ("intel", 3 * US)):
        hw = with_system_facts(load_hardware("b200"), {"host_cpu": cpu})
        conc = _pairwise(TopologyModel(hw, p2p_net_model="concurrent"), 1 * GIB, 16)
        assert conc.terms.transfer_s[1] >= (8 * 512 - 1) * launch * (1 - 1e-12)
    hw = with_system_facts(load_hardware("b200"), {"host_cpu": "amd"})
    conc = _pairwise(TopologyModel(hw, p2p_net_model="concurrent"), 1 * GIB, 16)
    assert conc.terms.transfer_s[1] == pytest.approx(4095 * 6 * US)


def test_send_recv_between_nodes_is_launch_bound_only_where_the_launches_are_slower_than_the_nic():
    """1 GiB between two H100 nodes (Intel figure, 3 us a launch): 8192 steps of 128 KiB, 8191 launches = 24.6 ms
    against the NIC's 22.8 ms: the launches bound it; latency and base latency as shipped. A 4 KiB send is one step:
    no launch after the first, the shipped price."""
    hw = load_hardware("h100-sxm")
    group = Group(size=16, devices=16)
    summed = TopologyModel(hw, p2p_net_model="summed").candidates("send_recv", 1 * GIB, group)[0]
    conc = TopologyModel(hw, p2p_net_model="concurrent").candidates("send_recv", 1 * GIB, group)[0]
    assert conc.latency_s == summed.latency_s
    assert summed.terms.transfer_s[-1] < 8191 * 3 * US
    assert conc.terms.transfer_s[-1] == pytest.approx(8191 * 3 * US)
    small = [TopologyModel(hw, p2p_net_model=m).cost("send_recv", 4 * KIB, group).time_s for m in nccl_p2p_net.MODELS]
    assert small[0] == small[1]


def test_estimate_and_simulator_move_together():
    """Both engines price every call through the collective model they are given (des/costs.py CollectivePricer):
    with the concurrent model the pipeline send between the two H100 nodes (launch-bound at 3 us per 128 KiB step)
    grows, by the same per-call time in both, and both steps grow. (The expert all-to-all here runs 2DH, which the
    model leaves as it is.)"""
    sys.path.insert(0, str(ROOT / "tests" / "des"))
    from des_helpers import pipeline_send_engines

    out = pipeline_send_engines({"summed": {"p2p_net_model": "summed"}, "concurrent": {"p2p_net_model": "concurrent"}})
    assert out["concurrent"][2] > out["summed"][2]
    assert out["concurrent"][2] - out["summed"][2] == pytest.approx(out["concurrent"][3] - out["summed"][3], rel=1e-9)
    assert out["concurrent"][0] > out["summed"][0] and out["concurrent"][1] > out["summed"][1]


def test_docs_block_is_current(doc_block, script_stdout):
    """docs/collectives-history.md's a2a_concurrent_check block is what the script prints now."""
    assert doc_block("a2a_concurrent_check") == script_stdout("scripts/a2a_concurrent_check.py")


def test_nccl_tuning_figures_the_model_reads():
    t = nccl.tuning()
    assert t["p2p_net"]["chunk_bytes"] == 128 * KIB and t["net_overhead"]["simple_multiplier"] == 3


def test_cli_option_prices_the_concurrent_model_and_says_so(capsys):
    from moesim.cli import main

    assert main(["collective", "all_to_all", "--hardware", "b200", "--devices", "16", "--bytes", "1GiB",
                 "--p2p-net-model", "concurrent", "--json"]) == 0
    import json
    report = json.loads(capsys.readouterr().out)
    model = TopologyModel(load_hardware("b200"), p2p_net_model="concurrent")
    assert report["p2p_net_model"] == "concurrent"
    assert report["results"][0]["time_us"] == pytest.approx(_pairwise(model, 1 * GIB, 16).time_s / US, rel=1e-6)
    assert main(["collective", "all_to_all", "--hardware", "b200", "--devices", "16", "--bytes", "1GiB", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["p2p_net_model"] == "channels"  # the default since session 12


def test_cli_bad_values_exit_2(capsys):
    from _cli import run_bad

    run_bad(capsys, ["collective", "all_to_all", "--hardware", "h100-sxm", "--devices", "16", "--bytes", "1KiB",
                     "--p2p-net-model", "overlap"], "--p2p-net-model", "summed, concurrent")
    run_bad(capsys, ["collective", "all_to_all", "--hardware", "tpu-v4", "--devices", "16", "--bytes", "1KiB",
                     "--p2p-net-model", "concurrent"], "--p2p-net-model", "GPU")
