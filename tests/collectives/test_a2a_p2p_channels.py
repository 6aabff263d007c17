"""p2p_net_model="channels" (session 12, a2ap2p; moesim/collectives/nccl_p2p_net.py, NVIDIA/nccl v2.29.2-1): a grouped
send/recv across nodes on NCCL's p2p channels. The flat all-to-all's network peers run Simple, one message latency per
work batch on the busiest channel plus the proxy's posts of every network (peer, part) op in turn, their transfer at
least the busiest channel's parts at 14 GB/s; a send/recv between nodes adds its parts' posts; one node, TPUs and the
2DH all-to-all do not move; the estimate and the simulator move together; the docs' generated block is current."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from moesim.collectives import nccl, nccl_p2p_net, nccl_p2p_schedule
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import with_system_facts

ROOT = Path(__file__).resolve().parents[2]
US = 1e-6
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
CHANNEL_BYTES_PER_S = 14e9  # NCCL_P2P_PER_CHANNEL_NET_BW (NVIDIA/nccl v2.29.2-1 src/graph/paths.cc)


def _pairwise(model, size, n):
    return min((c for c in model.candidates("all_to_all", size, Group(size=n, devices=n)) if c.algorithm == "pairwise"),
               key=lambda c: c.time_s)


@pytest.mark.parametrize("n,parts,busiest", [
    (16, 1, 8),    # 2 x 8: the other node's 8 rounds are one block on one channel
    (16, 4, 8),    # ... split over 4 channels, 8 parts each
    (80, 1, 8),    # 10 x 8: 9 remote blocks on 9 of the 16 channels
    (512, 1, 32),  # 64 x 8: reverseBits(block, 4) puts 4 blocks on every channel (3 remote on channel 0)
    (8, 1, 0),     # one node: no network op
])
def test_busiest_channel_follows_ncclP2pChannelBaseForRound(n, parts, busiest):
    assert nccl_p2p_schedule.busiest_network_parts(n, (8, n), parts, 16, 8, 8) == busiest


def test_small_two_node_all_to_all_is_one_batch_plus_seven_posts():
    """2 x 8 B200 on AMD hosts at 1 KiB: the 8 network peers are one batch on one channel (one Simple network message,
    as `concurrent` prices it) and the proxy posts 8 ops, 7 after the first at 2 x 3 us; no per-step launches."""
    hw = with_system_facts(load_hardware("b200"), {"host_cpu": "amd"})
    conc = _pairwise(TopologyModel(hw, p2p_net_model="concurrent"), 1 * KIB, 16)
    chan = _pairwise(TopologyModel(hw, p2p_net_model="channels"), 1 * KIB, 16)
    assert chan.terms.latency_s == pytest.approx(conc.terms.latency_s + 7 * 6 * US)
    assert chan.base_latency_s == conc.base_latency_s


def test_channel_bound_binds_where_one_channel_carries_a_node():
    """2 x 8 H100 at 1 MiB: 64 KiB a peer is one part, so the 8 network peers share one channel: 8 x 64 KiB at 14 GB/s,
    above the NIC's time for the same bytes."""
    hw = load_hardware("h100-sxm")
    chan = _pairwise(TopologyModel(hw, p2p_net_model="channels"), 1 * MIB, 16)
    summed = _pairwise(TopologyModel(hw, p2p_net_model="summed"), 1 * MIB, 16)
    assert chan.terms.transfer_s[1] == pytest.approx(8 * 64 * KIB / CHANNEL_BYTES_PER_S)
    assert summed.terms.transfer_s[1] < chan.terms.transfer_s[1]


def test_ten_nodes_posts_and_the_nic():
    """10 x 8 H100 (the xxrjun cluster's 80-rank all-to-all) at 32 MiB: one part a peer (the halving loop: 4 -> 1
    channel at 80 ranks on 16), 10 blocks on 10 channels, one batch each; the latency is one Simple network message +
    71 posts (3 us Intel, 6 us AMD: the difference is 71 x 3 us); the busiest channel (8 x 410 KiB at 14 GB/s) stays
    under the NIC's 72 peers, so the transfer is the shipped one."""
    hw = load_hardware("h100-sxm")
    chan = _pairwise(TopologyModel(hw, p2p_net_model="channels"), 32 * MIB, 80)
    amd = _pairwise(TopologyModel(with_system_facts(hw, {"host_cpu": "amd"}), p2p_net_model="channels"), 32 * MIB, 80)
    summed = _pairwise(TopologyModel(hw, p2p_net_model="summed"), 32 * MIB, 80)
    assert amd.terms.latency_s - chan.terms.latency_s == pytest.approx(71 * 3 * US)
    assert 71 * 3 * US < chan.terms.latency_s < 71 * 3 * US + 30 * US
    assert chan.terms.transfer_s[1] == summed.terms.transfer_s[1]
    assert chan.time_s < summed.time_s  # 72 summed message latencies no longer


def test_send_recv_between_nodes_adds_its_parts_posts():
    """1 GiB between two H100 nodes: 4 parts (4 channels a network peer at 16 ranks), 3 posts after the first at 3 us;
    its transfer is the shipped one (already capped at 4 x 14 GB/s). A 4 KiB send is one part: the shipped price."""
    hw = load_hardware("h100-sxm")
    group = Group(size=16, devices=16)
    summed = TopologyModel(hw, p2p_net_model="summed").candidates("send_recv", 1 * GIB, group)[0]
    chan = TopologyModel(hw, p2p_net_model="channels").candidates("send_recv", 1 * GIB, group)[0]
    assert chan.terms.latency_s == pytest.approx(summed.terms.latency_s + 3 * 3 * US)
    assert chan.terms.transfer_s == summed.terms.transfer_s
    small = [TopologyModel(hw, p2p_net_model=m).cost("send_recv", 4 * KIB, group).time_s
             for m in ("summed", "channels")]
    assert small[0] == small[1]


@pytest.mark.parametrize("hardware,n", [("b200", 8), ("h100-sxm", 8), ("tpu-v4", 64)])
def test_one_node_and_tpus_do_not_move(hardware, n):
    hw = load_hardware(hardware)
    for op in ("all_to_all", "send_recv"):
        for size in (1 * KIB, 4 * MIB, 1 * GIB):
            a = TopologyModel(hw, p2p_net_model="channels").cost(op, size, Group(size=n, devices=n))
            b = TopologyModel(hw, p2p_net_model="summed").cost(op, size, Group(size=n, devices=n))
            assert a.time_s == b.time_s


def test_the_2dh_all_to_all_does_not_move():
    hw = load_hardware("h100-sxm")
    for size in (1 * MIB, 1 * GIB):
        group = Group(size=32, devices=32)
        a, b = (min((c for c in TopologyModel(hw, p2p_net_model=m).candidates("all_to_all", size, group)
                     if c.algorithm == "hierarchical"), key=lambda c: c.time_s) for m in ("channels", "summed"))
        assert a.time_s == b.time_s


def test_estimate_and_simulator_move_together():
    """The expert all-to-all (dispatch backend "pairwise": the flat exchange) over 16 H100 on two nodes: both engines
    price it through the same collective model (des/costs.py CollectivePricer), so each call moves by the same time in
    both, and both steps move the same way."""
    sys.path.insert(0, str(ROOT / "tests" / "des"))
    from des_helpers import tiny_scenario

    from moesim.collectives.select import model_for
    from moesim.des import SimOptions, simulate
    from moesim.des.costs import build_costs
    from moesim.estimate import estimate
    from moesim.specs.layout import Layout

    sc, layout = tiny_scenario(16, dispatch_backend="pairwise"), Layout(dp=16, ep=16)
    out = {}
    for name in ("summed", "channels"):
        dm = model_for(sc)
        model = dataclasses.replace(dm, base=dataclasses.replace(dm.base, p2p_net_model=name))
        result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False),
                          collective_model=model)
        est = estimate(sc, layout, collective_model=model)
        costs = build_costs(sc, layout, sc.training, model, est.optimizer_time_s)
        spec = next(c for c in costs.classes if c.is_moe).comms["ep_all_to_all_dispatch"]
        entry = est.communication["ep_all_to_all_dispatch"]
        out[name] = (result.step_times_s[0], result.analytical_step_time_s, entry["time_s"] / entry["calls_per_step"],
                     spec.time_s)
    s, c = out["summed"], out["channels"]
    assert c[2] != s[2]
    assert c[2] - s[2] == pytest.approx(c[3] - s[3], rel=1e-9)
    assert (c[0] - s[0]) * (c[1] - s[1]) > 0


def test_docs_block_is_current(doc_block, script_stdout):
    """docs/collectives-history.md's a2a_p2p_channels_check block is what the script prints now."""
    assert doc_block("a2a_p2p_channels_check") == script_stdout("scripts/a2a_p2p_channels_check.py")


def test_figures_the_model_reads():
    t = nccl.tuning()
    assert t["p2p_net"]["per_channel_net_gb_per_s"] == 14 and t["p2p_net"]["p2p_channels"] == 16
    assert nccl_p2p_net.launch_s("") == pytest.approx(3 * US) and nccl_p2p_net.launch_s("amd") == pytest.approx(6 * US)


def test_cli_option_and_json_key(capsys):
    import json

    from moesim.cli import main

    assert main(["collective", "all_to_all", "--hardware", "h100-sxm", "--devices", "80", "--bytes", "32MiB",
                 "--p2p-net-model", "channels", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["p2p_net_model"] == "channels"
    model = TopologyModel(load_hardware("h100-sxm"), p2p_net_model="channels")
    assert report["results"][0]["time_us"] == pytest.approx(_pairwise(model, 32 * MIB, 80).time_s / US, rel=1e-5)
