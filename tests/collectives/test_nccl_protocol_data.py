"""tests/data/nccl_protocol: published NCCL INFO lines of clusters outside the collected logs (session 13, ll128net
lane; docs/collectives-history.md "Session 13 (ll128net)"). A source of figures, not validation data: these tests
check that each file parses, that the figures the docs quote are the file's, and that the channel bookkeeping the
model already prices (16 coll channels = the graph's 8 rings doubled, nccl_tuning.toml [pipeline] channels and
[per_channel_caps] graph_channels_divisor) is what the excerpt prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moesim.collectives.nccl_tuning import tuning

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl_protocol"
LCCN = DATA / "h100-lccn-2node_info_excerpt.log"

_RING = re.compile(r"NCCL INFO Channel (\d+)/(\d+) :((?:\s+\d+)+)\s*$")
_COLL = re.compile(r"NCCL INFO (\d+) coll channels, (\d+) collnet channels, (\d+) nvls channels, (\d+) p2p channels, "
                   r"(\d+) p2p channels per peer")
_NET = re.compile(r"NCCL INFO Channel (\d+)/0 : (\d+)\[(\d+)\] -> (\d+)\[(\d+)\] \[(send|receive)\] via NET/.*/(\d+)/"
                  r"(GDRDMA)?\s*$")
_COMM = re.compile(r"nRanks (\d+) nNodes (\d+) localRanks (\d+)")
_VERSION = re.compile(r"NCCL version (\d+\.\d+\.\d+)")
_MATRIX = re.compile(r"^\s*(Broadcast|Reduce|AllGather|ReduceScatter|AllReduce) \|\s+(\d)\s+(\d)\s+(\d)\s+\|")


def read_info(path: Path) -> dict:
    """The facts an NCCL INFO excerpt prints: version, ranks / nodes / local ranks, rank 0's rings
    ({channel: [ranks]}, with the count after the slash), the coll / nvls / p2p channel counts, the network
    connections (channel, sender, receiver, direction, NIC, GDR) and the Func/Proto/Algo matrix's
    {function: (LL, LL128, Simple)}."""
    out: dict = {"rings": {}, "ring_total": set(), "net": [], "matrix": {}}
    for line in path.read_text().splitlines():
        if m := _VERSION.search(line):
            out["version"] = m.group(1)
        elif m := _COMM.search(line):
            out["ranks"], out["nodes"], out["local_ranks"] = map(int, m.groups())
        elif m := _RING.search(line):
            out["rings"][int(m.group(1))] = [int(r) for r in m.group(3).split()]
            out["ring_total"].add(int(m.group(2)))
        elif m := _COLL.search(line):
            out["coll"], out["collnet"], out["nvls"], out["p2p"], out["p2p_per_peer"] = map(int, m.groups())
        elif m := _NET.search(line):
            ch, src, src_dev, dst, dst_dev, kind, nic, gdr = m.groups()
            out["net"].append({"channel": int(ch), "src": int(src), "dst": int(dst), "kind": kind, "nic": int(nic),
                               "gdr": gdr == "GDRDMA", "src_dev": int(src_dev), "dst_dev": int(dst_dev)})
        elif m := _MATRIX.search(line):
            out["matrix"][m.group(1)] = tuple(int(x) for x in m.groups()[1:])
    return out


@pytest.fixture(scope="module")
def lccn():
    return read_info(LCCN)


def test_the_excerpt_parses_and_is_the_published_run(lccn):
    # nccl-tests#319: 2 x (8 H100 + 8 CX-7), NCCL 2.26.2
    assert lccn["version"] == "2.26.2"
    assert (lccn["ranks"], lccn["nodes"], lccn["local_ranks"]) == (16, 2, 8)
    assert sorted(lccn["rings"]) == list(range(16)) and lccn["ring_total"] == {16}
    assert all(sorted(r) == list(range(16)) for r in lccn["rings"].values())  # each ring visits every rank once


def test_sixteen_coll_channels_as_the_model_prices(lccn):
    t = tuning()
    assert lccn["coll"] == 16 == t["pipeline"]["channels"]
    assert lccn["nvls"] == 16 == t["nvls"]["channels_multi_node"]["hopper"]
    assert (lccn["p2p"], lccn["p2p_per_peer"]) == (16, 2)


def test_channels_are_the_graphs_eight_rings_doubled_once(lccn):
    # C1 of "Session 11 (ramp)" assumed it (graph = channels / 2, connect.cc ncclTopoPostset); the excerpt prints it
    rings = lccn["rings"]
    assert all(rings[c] == rings[c + 8] for c in range(8))
    distinct = {tuple(r) for r in rings.values()}
    assert len(distinct) == 8 == lccn["coll"] // tuning()["per_channel_caps"]["graph_channels_divisor"]
    assert len({tuple(rings[c]) for c in range(4)}) == 4 and rings[0] != rings[4]  # not a graph of 4 doubled twice


def test_each_ring_crosses_the_network_twice_between_same_index_gpus(lccn):
    edges: dict = {}
    for ring in lccn["rings"].values():
        hops = list(zip(ring, ring[1:] + ring[:1]))
        net = [(a, b) for a, b in hops if a // 8 != b // 8]
        assert len(net) == 2  # out of node 0 and back, once each
        assert all(a % 8 == b % 8 for a, b in net)  # GPU k of one node to GPU k of the other
        for e in net:
            edges[e] = edges.get(e, 0) + 1
    # every GPU sends on 2 of the 16 channels across the network and receives on 2: 16 channels on 8 NICs, 2 each way
    assert len(edges) == 16 and set(edges.values()) == {2}


def test_network_connections_are_gdr_on_the_gpus_own_nic_two_channels_each_way(lccn):
    net = lccn["net"]
    assert len(net) == 8 and all(c["gdr"] for c in net)
    assert all(c["nic"] == c["src_dev"] == c["dst_dev"] for c in net)  # GPU k's traffic on NIC k: no PXN
    for gpu in (1, 3):
        mine = [c for c in net if c["nic"] == gpu]
        assert sum(c["kind"] == "send" for c in mine) == 2 and sum(c["kind"] == "receive" for c in mine) == 2
        sends = sorted(c["channel"] for c in mine if c["kind"] == "send")
        assert sends[1] - sends[0] == 8  # the doubled channel shares the connection's NIC


def test_ll128_matrix_value_is_the_pre_gate_default(lccn):
    # 2 = "enable if the platform allows" (v2.26.2-1 tuning.cc l. 358), printed before the gate (l. 426-431): the
    # excerpt does not say LL128 ran; LL and Simple 1, every function
    assert set(lccn["matrix"]) == {"Broadcast", "Reduce", "AllGather", "ReduceScatter", "AllReduce"}
    assert set(lccn["matrix"].values()) == {(1, 2, 1)}


def test_sources_name_every_file_with_its_address():
    text = (DATA / "SOURCES.md").read_text()
    files = sorted(p.name for p in DATA.iterdir() if p.name != "SOURCES.md")
    assert files == ["h100-lccn-2node_info_excerpt.log"]
    for name in files:
        section = text.split(f"## {name}", 1)
        assert len(section) == 2, name
        assert "https://github.com/NVIDIA/nccl-tests/issues/319" in section[1].split("\n## ", 1)[0]


def test_excerpt_lines_are_not_the_collected_logs():
    # a source of figures, kept out of tests/data/nccl (logs.toml lists only that folder's files)
    manifest = (DATA.parent / "nccl" / "logs.toml").read_text()
    assert "lccn" not in manifest
