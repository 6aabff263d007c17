"""p2p_net_model="channels-steps" (session 14, p2pops; moesim/collectives/nccl_p2p_ops.py, NVIDIA/nccl v2.29.7-1): a
send/recv between nodes with every Simple step launched by the proxy at the tuner's network overhead (getNetOverhead
x 3, src/graph/tuning.cc). Against a hand computation from NCCL's figures (baseLatencies Ring Simple 8.4 us, the
profile's 14 us network hop as π, NCCL_P2P_NET_CHUNKSIZE 128 KiB and addP2pToPlan's / 4, / 2 chunk rule, 4 parts a network peer
from 512 KiB at 16 ranks, 14 GB/s a p2p channel); the option's plumbing; unset, the shipped pricing; the docs' block."""

from __future__ import annotations

import json

import pytest

from moesim.collectives import nccl_p2p_net, nccl_p2p_ops
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import with_system_facts

US = 1e-6
KIB, MIB = 1 << 10, 1 << 20
BASE_US, PI_US, LAUNCH_US = 8.4, 14.0, 3.0  # tuning.cc baseLatencies Ring Simple; profile latency_us; 1 us x 3
GROUP = Group(size=16, devices=16)  # the Together 2-node communicator: 2 x 8 B200, rank r sends to r + 1


def _send(model: str, size: float, hw=None):
    return TopologyModel(hw or load_hardware("b200"), p2p_net_model=model).candidates("send_recv", size, GROUP)[0]


@pytest.mark.parametrize("size,parts,steps", [
    (1 * KIB, 1, 1),       # one part, one 32 KiB chunk (bytes under one 128 KiB step: chunk / 4)
    (64 * KIB, 1, 2),      # one part of 64 KiB in 32 KiB chunks
    (128 * KIB, 1, 2),     # one part in 64 KiB chunks (under 8 steps: chunk / 2)
    (1 * MIB, 4, 8),       # 4 parts of 256 KiB, 128 KiB chunks
    (256 * MIB, 4, 2048),  # 4 parts of 64 MiB
])
def test_steps_of_one_send_from_nccls_chunk_rule(size, parts, steps):
    assert nccl_p2p_net.peer_steps(size, parts) == steps


def test_one_kib_hand_computation():
    """1 KiB: one op, one step: 8.4 + 14 + 3 us + 1 KiB at one channel's 14 GB/s = 25.47 us (shipped 22.47)."""
    cand, ship = _send("channels-steps", 1 * KIB), _send("channels", 1 * KIB)
    assert cand.time_s == pytest.approx((BASE_US + PI_US + LAUNCH_US) * US + 1 * KIB / 14e9, rel=1e-9)
    assert cand.time_s - ship.time_s == pytest.approx(LAUNCH_US * US, rel=1e-9)
    assert cand.terms.transfer_s == ship.terms.transfer_s


def test_one_mib_hand_computation():
    """1 MiB: 4 ops of 2 steps: latency 14 + 4 x 3 = 26 us; the 4 further launches (12 us) under the NIC's 22.3 us."""
    cand, ship = _send("channels-steps", 1 * MIB), _send("channels", 1 * MIB)
    assert cand.terms.latency_s == pytest.approx((PI_US + 4 * LAUNCH_US) * US, rel=1e-9)
    assert cand.terms.transfer_s == ship.terms.transfer_s
    assert ship.terms.transfer_s[-1] > 4 * LAUNCH_US * US
    assert cand.time_s == pytest.approx(56.71 * US, abs=0.01 * US)


def test_large_send_is_bound_by_the_launches():
    """256 MiB: 2048 steps, 2044 launched after the ops' first: 6132 us, above the NIC's 5711 us."""
    cand, ship = _send("channels-steps", 256 * MIB), _send("channels", 256 * MIB)
    assert cand.terms.transfer_s[-1] == pytest.approx(2044 * LAUNCH_US * US, rel=1e-9)
    assert ship.terms.transfer_s[-1] < cand.terms.transfer_s[-1]
    assert cand.time_s == pytest.approx((BASE_US + PI_US + 4 * LAUNCH_US + 2044 * LAUNCH_US) * US, rel=1e-9)


def test_amd_hosts_launch_at_six_us():
    hw = with_system_facts(load_hardware("b200"), {"host_cpu": "amd"})
    cand, ship = _send("channels-steps", 1 * KIB, hw), _send("channels", 1 * KIB, hw)
    assert cand.time_s - ship.time_s == pytest.approx(6 * US, rel=1e-9)


def test_variants_price_one_part_each():
    """V1 (first=False): the floor alone; V2 (floor=False): the first launch alone."""
    ship = _send("channels", 256 * MIB).terms
    v1 = nccl_p2p_ops.steps_send_recv_terms(ship, 2048, 4, LAUNCH_US * US, first=False)
    v2 = nccl_p2p_ops.steps_send_recv_terms(ship, 2048, 4, LAUNCH_US * US, floor=False)
    assert v1.latency_s == ship.latency_s and v1.transfer_s[-1] == pytest.approx(2044 * LAUNCH_US * US)
    assert v2.transfer_s == ship.transfer_s and v2.latency_s == pytest.approx(ship.latency_s + LAUNCH_US * US)


@pytest.mark.parametrize("op,n", [("all_to_all", 16), ("send_recv", 8), ("all_to_all", 8), ("all_reduce", 16)])
def test_only_the_send_recv_between_nodes_moves(op, n):
    hw = load_hardware("b200")
    for size in (1 * KIB, 1 * MIB, 256 * MIB):
        a = TopologyModel(hw, p2p_net_model="channels-steps").cost(op, size, Group(size=n, devices=n))
        b = TopologyModel(hw, p2p_net_model="channels").cost(op, size, Group(size=n, devices=n))
        assert a.time_s == b.time_s


def test_unset_is_the_shipped_pricing():
    hw = load_hardware("b200")
    assert nccl_p2p_net.DEFAULT_MODEL == "channels"
    for size in (1 * KIB, 1 * MIB, 256 * MIB):
        assert TopologyModel(hw).cost("send_recv", size, GROUP).time_s == _send("channels", size).time_s


def test_cli_option_and_json_key(capsys):
    from moesim.cli import main

    assert main(["collective", "send_recv", "--hardware", "b200", "--devices", "16", "--bytes", "1KiB",
                 "--p2p-net-model", "channels-steps", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["p2p_net_model"] == "channels-steps"
    assert report["results"][0]["time_us"] == pytest.approx(25.473, abs=1e-3)


def test_cli_bad_value_is_one_line(capsys):
    from moesim.cli import main

    assert main(["collective", "send_recv", "--hardware", "b200", "--devices", "16", "--bytes", "1KiB",
                 "--p2p-net-model", "steps"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--p2p-net-model" in err[0] and "channels-steps" in err[0]


def test_docs_block_is_current(doc_block, script_stdout):
    """docs/collectives-history.md's p2p_ops_check block is what the script prints now."""
    assert doc_block("p2p_ops_check") == script_stdout("scripts/p2p_ops_check.py")
