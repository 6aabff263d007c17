"""p2p_net_peer_rule (session 14, a2ab200; moesim/collectives/nccl_p2p_peer.py): the p2p channels NCCL gives a peer on
another node, by the rule of the release (NVIDIA/nccl src/graph/paths.cc ncclTopoGetNchannels /
ncclTopoComputeP2pChannels at v2.18.1-1 .. v2.30.7-1). Unset and with no release named the pricing is as before; a
release up to v2.28.9-1 gives a 2-node B200 all-to-all's network peers 2 channels (2.29.2+: 4); the flag's bad value is
one clear line; the docs' generated block is current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moesim.collectives import nccl_code_rules, nccl_p2p, nccl_p2p_peer
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware
from moesim.topology.system import build_system

ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30
CHANNEL_BYTES_PER_S = 14e9  # NCCL_P2P_PER_CHANNEL_NET_BW (NVIDIA/nccl v2.29.2-1 src/graph/paths.cc)


def _tiers(n=16):
    system = build_system(load_hardware("b200"), n)
    return system.tiers[0], system.tiers[-1]


@pytest.mark.parametrize("version,rule", [
    ("2.18.1", "2.18"), ("2.19.4", "2.18"),  # NCCL_PARAM(NChannelsPerNetPeer, ..., 2)
    ("2.20.3", "2.20"), ("2.24.3", "2.20"), ("2.28.9", "2.20"),  # 2 halved with nRanks, at least the NICs
    ("2.29.2", "2.29"), ("2.30.7", "2.29"),  # max(NICs, ceil(NIC GB/s / 14)), one-round halving
])
def test_the_code_rule_names_the_rule_of_each_release(version, rule):
    assert nccl_code_rules.rule("p2p_net_peer_channels", version) == rule
    assert nccl_code_rules.rule("p2p_net_peer_channels") == "2.29"  # no release named: the pricing before


@pytest.mark.parametrize("n,rule,per_peer", [
    (16, "2.18", 2), (16, "2.20", 2), (16, "2.29", 4),  # 2 x 8 B200: 2.28.9 gives 2, 2.29.2 gives 4 (400 Gb/s NIC)
    (32, "2.20", 2), (32, "2.29", 4),  # 2 x 32 = 64 is not > 4 x 16; 4 x ceil(32 / 8) = 16 is not > 16
    (48, "2.20", 1), (48, "2.29", 2),                    # 2 x 48 > 64; 4 x 6 > 16, 2 x 6 is not
    (80, "2.18", 2), (80, "2.20", 1), (80, "2.29", 1),  # the 10-node count: 1 from 2.20 on
])
def test_the_communicators_per_peer_count_by_rule(n, rule, per_peer):
    tier0, net = _tiers(n)
    assert nccl_p2p.p2p_channel_rule(n, tier0, net, 16, rule)[3] == per_peer


def test_unset_is_the_pricing_before_and_a_release_up_to_2_28_9_halves_the_b200_plateau():
    hw, group = load_hardware("b200"), Group(size=16, devices=16)
    size = 16 * GIB

    def pairwise_s(model):
        return min(c.time_s for c in model.candidates("all_to_all", size, group) if c.algorithm == "pairwise")

    shipped, named = pairwise_s(TopologyModel(hw)), pairwise_s(TopologyModel(hw, p2p_net_peer_rule="2.29"))
    assert shipped == named  # "" with no release named is "2.29", bit for bit
    old = pairwise_s(TopologyModel(hw, p2p_net_peer_rule="2.20"))
    # the other node's 8 peers share their 2 channels: S / 2 network bytes at 2 x 14 GB/s (the shipped channel bound)
    assert old == pytest.approx(size / 2 / (2 * CHANNEL_BYTES_PER_S), rel=0.01)
    assert old > 1.5 * shipped
    # the release in force picks the rule: 2.28.9 prices as "2.20", 2.29.2 as "2.29"
    assert pairwise_s(TopologyModel(hw, nccl_version="2.28.9")) == pytest.approx(old, rel=1e-9)
    assert pairwise_s(TopologyModel(hw, nccl_version="2.28.9", p2p_net_peer_rule="2.29")) < 0.7 * old
    # a send between nodes: capped at its 2 channels x 14 GB/s
    send = TopologyModel(hw, p2p_net_peer_rule="2.20").cost("send_recv", GIB, group).time_s
    assert send == pytest.approx(GIB / (2 * CHANNEL_BYTES_PER_S), rel=0.01)


def test_one_node_does_not_move():
    hw, group = load_hardware("b200"), Group(size=8, devices=8)
    for op in ("all_to_all", "send_recv"):
        times = {TopologyModel(hw, p2p_net_peer_rule=r).cost(op, GIB, group).time_s for r in ("2.18", "2.20", "2.29")}
        assert len(times) == 1


def test_a_bad_rule_is_one_clear_line():
    with pytest.raises(SpecError) as err:
        nccl_p2p_peer.check_rule("2.21")
    assert err.value.field == "p2p_net_peer_rule" and "2.20" in str(err.value)
    run = subprocess.run([sys.executable, "-m", "moesim", "collective", "all_to_all", "--hardware", "b200",
                          "--devices", "16", "--bytes", "1GiB", "--p2p-net-peer-rule", "2.21"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "--p2p-net-peer-rule" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_the_json_key_and_the_flag():
    run = subprocess.run([sys.executable, "-m", "moesim", "collective", "all_to_all", "--hardware", "b200",
                          "--devices", "16", "--bytes", "1GiB", "--a2a-algorithm", "nccl-tests",
                          "--p2p-net-peer-rule", "2.20", "--json"], capture_output=True, text=True, cwd=ROOT)
    report = json.loads(run.stdout)
    assert report["p2p_net_peer_rule"] == "2.20"
    # 1 GiB over 16 ranks: S / 2 across the network on 2 channels x 14 GB/s, busbw = S / t x 15 / 16
    assert report["results"][0]["busbw_GBps"] == pytest.approx(2 * 2 * 14 * 15 / 16, rel=0.02)


def test_doc_block_is_current(doc_block, script_stdout):
    """docs/collectives-history.md's a2ab200_check block is what the script prints now."""
    assert doc_block("a2ab200_check") == script_stdout("scripts/a2ab200_check.py")
