"""Session 11 (p2pcong): NCCL's p2p channels where a send/recv spans several nodes (p2pnChannels = pow2Up of the
communicator's collective channels, NVIDIA/nccl v2.29.2-1 src/graph/paths.cc ncclTopoComputeP2pChannels), 16 by
default across nodes, 32 on one node; the option TopologyModel(p2p_net_nchannels=N) / --p2p-net-nchannels N."""

import json
import sys
from pathlib import Path

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import p2p_channels, p2p_net_nchannels, tuning
from moesim.collectives.select import default_model
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware
from moesim.topology.system import build_system

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30


def test_default_is_sixteen_across_nodes_and_thirty_two_on_one_node():
    assert p2p_net_nchannels() == 16 == tuning()["p2p_net"]["p2p_channels"]
    assert tuning()["p2p"]["p2p_channels"] == 32
    assert p2p_net_nchannels(24) == 32 and p2p_net_nchannels(9) == 16  # NCCL rounds comm->nChannels up to 2^k


def test_together_b200_info_line():
    # togethercomputer/together-nccl-tests @280e4df2 benchmarks/B200/sendrecv-p2p-scaling/run1/
    # nccl-sendrecv-2node-79912.out (NCCL 2.29.7, 2 x 8 B200): "16 coll channels, 16 collnet channels, 0 nvls channels,
    # 16 p2p channels, 4 p2p channels per peer"; a large send of those 16 ranks runs on all 4 of the peer's channels
    t = build_system(load_hardware("b200"), 16).tiers
    assert p2p_channels(GIB, 16, t[0], t[1]) == 4


@pytest.mark.parametrize("ranks, gbps", [(16, 47.0), (64, 28.0), (80, 14.0), (128, 14.0), (256, 14.0)])
def test_send_recv_busbw_steps_down_with_the_halved_channels(ranks, gbps):
    # large sends: min(NIC 47 GB/s usable, channels x NCCL_P2P_PER_CHANNEL_NET_BW 14 GB/s); 4 -> 2 -> 1 channels
    hw = load_hardware("b200")
    cost = default_model(hw).cost("send_recv", GIB, Group(size=ranks))
    assert GIB / cost.time_s / 1e9 == pytest.approx(gbps, rel=0.02)


def test_one_node_does_not_move():
    hw = load_hardware("h100-sxm")
    for size in (4096, 2**20, GIB):
        costs = {v: TopologyModel(hw, p2p_net_nchannels=v).cost("send_recv", size, Group(size=8)).time_s
                 for v in (None, 1, 64)}
        assert len(set(costs.values())) == 1


def test_option_prices_the_count_it_is_given():
    hw = load_hardware("h100-sxm")
    times = {v: TopologyModel(hw, p2p_net_nchannels=v).cost("send_recv", GIB, Group(size=80)).time_s
             for v in (None, 16, 32, 64)}
    assert times[None] == times[16]
    assert GIB / times[32] / 1e9 == pytest.approx(28.0, rel=0.01)  # 2 channels: the price before session 11
    assert times[64] < times[32] < times[16]


@pytest.mark.parametrize("bad", [0, -1, 65, 16.0, True, "16"])
def test_bad_values_name_the_field(bad):
    with pytest.raises(SpecError, match="p2p_net_nchannels"):
        TopologyModel(load_hardware("h100-sxm"), p2p_net_nchannels=bad)


def test_cli_flag_and_json_key(capsys):
    from moesim.cli import main

    args = ["collective", "send_recv", "--hardware", "h100-sxm", "--devices", "80", "--bytes", "1GiB", "--json"]
    assert main(args) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert main(args + ["--p2p-net-nchannels", "32"]) == 0
    option = json.loads(capsys.readouterr().out)
    assert shipped["p2p_net_nchannels"] is None and option["p2p_net_nchannels"] == 32
    assert shipped["results"][0]["busbw_GBps"] == pytest.approx(14.0, rel=0.01)
    assert option["results"][0]["busbw_GBps"] == pytest.approx(28.0, rel=0.01)
    for bad, hardware in (("0", "h100-sxm"), ("16", "tpu-v4")):
        assert main(["collective", "send_recv", "--hardware", hardware, "--devices", "32", "--bytes", "1GiB",
                     "--p2p-net-nchannels", bad]) == 2
        assert "--p2p-net-nchannels" in capsys.readouterr().err


def test_estimate_and_simulator_move_together():
    """Both engines price a pipeline send through the collective model (des/costs.py CollectivePricer): one p2p
    channel across nodes (the option at 1) slows the send between the two H100 nodes to 14 GB/s in both."""
    sys.path.insert(0, str(ROOT / "tests" / "des"))
    from des_helpers import pipeline_send_engines

    out = pipeline_send_engines({"shipped": {}, "one": {"p2p_net_nchannels": 1}})
    assert out["one"][2] > out["shipped"][2]
    assert out["one"][2] - out["shipped"][2] == pytest.approx(out["one"][3] - out["shipped"][3], rel=1e-9)
    assert out["one"][0] > out["shipped"][0] and out["one"][1] > out["shipped"][1]


def test_docs_block_is_current(load_script):
    module = load_script("scripts/p2p_net_nchannels_check.py")
    doc = (ROOT / "docs" / "collectives-history.md").read_text(encoding="utf-8")
    assert doc.split(module.BEGIN, 1)[1].split(module.END, 1)[0].strip() == module.render()
