"""Calls NCCL answers without its tuner's pick (moesim/collectives/nccl_no_pick.py; issue 11, session 15 zerobytes):
the empty collective NCCL discards (NVIDIA/nccl v2.29.2-1 src/enqueue.cc taskAppend, "Empty collectives can be
discarded."; from v2.20.3-1) and NCCL_ALGO's ring fallback (src/graph/tuning.cc ncclTopoTuneModel `ringbdw`,
v2.19.1-1 .. v2.23.4-1; NVIDIA/nccl#1304), each at the releases either side of its change."""

from __future__ import annotations

import json

import pytest

from moesim.cli import main
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

H100 = load_hardware("h100-sxm")
EIGHT = Group(size=8, devices=8)
TWO_NODES = Group(size=16, devices=16)
MIB = 2**20


@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all"])
@pytest.mark.parametrize("group", [EIGHT, TWO_NODES], ids=["1node", "2node"])
def test_an_empty_collective_costs_nothing(op, group):
    """Unset (2.30.7's rule): taskAppend returns before any task; before this round 20.6 us for all_reduce on 8."""
    model = TopologyModel(H100)
    cost = model.cost(op, 0, group)
    assert (cost.time_s, cost.algorithm, cost.bottleneck) == (0.0, "empty", "none")
    found = model.candidates(op, 0, group)  # the reference path (benchmarks/collective_grid.py --reference) agrees
    assert [(c.label, c.time_s, c.bottleneck) for c in found] == [("empty", 0.0, "none")]
    assert model.cost(op, 1, group).time_s > 0  # one byte is a real call


def test_an_empty_send_recv_still_posts_its_step():
    """addP2pToPlan (v2.29.2-1 src/enqueue.cc): a 0-byte send/recv is planned with nsteps = 1, not discarded."""
    for group in (EIGHT, TWO_NODES):
        cost = TopologyModel(H100).cost("send_recv", 0, group)
        assert cost.time_s > 0 and cost.algorithm != "empty"


def test_empty_collective_discarded_from_2_20_3():
    """v2.19.4-1 has no count == 0 test in taskAppend (its kernel runs: moesim keeps its floor); v2.20.3-1 has it."""
    before = TopologyModel(H100, nccl_version="2.19.4").cost("all_reduce", 0, EIGHT)
    after = TopologyModel(H100, nccl_version="2.20.3").cost("all_reduce", 0, EIGHT)
    assert before.time_s > 0 and before.algorithm != "empty"
    assert (after.time_s, after.algorithm) == (0.0, "empty")


def test_empty_all_to_all_discarded_from_2_28_3():
    """ncclAlltoAll (a collective) from v2.28.3-1; nccl-tests before it groups 0-byte ncclSend / ncclRecv."""
    before = TopologyModel(H100, nccl_version="2.27.7").cost("all_to_all", 0, EIGHT)
    after = TopologyModel(H100, nccl_version="2.28.3").cost("all_to_all", 0, EIGHT)
    assert before.time_s > 0 and before.algorithm != "empty"
    assert (after.time_s, after.algorithm) == (0.0, "empty")


def test_tpu_is_not_nccl():
    cost = TopologyModel(load_hardware("tpu-v4")).cost("all_reduce", 0, Group(size=8, devices=8))
    assert cost.algorithm != "empty"


def test_tree_on_all_gather_fails_where_nccl_fails():
    """v2.24.3-1 on (and unset: 2.30.7) and v2.18.6-1: topoGetAlgoInfo's 'no algorithm/protocol available'."""
    for version in ("", "2.18.6", "2.24.3", "2.29.2"):
        with pytest.raises(SpecError, match="leaves no algorithm NCCL runs for all_gather.*also fails the call"):
            TopologyModel(H100, nccl_algo="tree", nccl_version=version).cost("all_gather", MIB, EIGHT)


@pytest.mark.parametrize("op", ["all_gather", "reduce_scatter"])
def test_tree_falls_back_to_ring_with_every_protocol_at_2_19_1_to_2_21_5(op):
    """ringbdw, saved before NCCL_PROTO zeroes the table: NCCL_PROTO=Simple is ignored (NVIDIA/nccl#1304)."""
    for version in ("2.19.1", "2.21.5"):
        ring = TopologyModel(H100, nccl_algo="ring", nccl_version=version)
        for proto in ("", "Simple"):
            tree = TopologyModel(H100, nccl_algo="tree", nccl_proto=proto, nccl_version=version)
            for size in (4096, MIB, 256 * MIB):
                for group in (EIGHT, TWO_NODES):
                    assert tree.cost(op, size, group) == ring.cost(op, size, group)
    small = TopologyModel(H100, nccl_algo="tree", nccl_proto="Simple", nccl_version="2.21.5").cost(op, 4096, EIGHT)
    assert small.algorithm != "ring/Simple"  # NCCL_PROTO=Simple did not hold (the ring/LL)


def test_tree_falls_back_to_ring_keeping_nccl_proto_at_2_22_3_to_2_23_4():
    """v2.22.3-1: `if (a == NCCL_ALGO_RING && pEnable == 0) comm->ringbdw[c][p] = 0;`."""
    for version in ("2.22.3", "2.23.4"):
        tree = TopologyModel(H100, nccl_algo="tree", nccl_proto="Simple", nccl_version=version)
        ring = TopologyModel(H100, nccl_algo="ring", nccl_proto="Simple", nccl_version=version)
        cost = tree.cost("all_gather", 4096, EIGHT)
        assert cost == ring.cost("all_gather", 4096, EIGHT) and cost.algorithm == "ring/Simple"
        assert TopologyModel(H100, nccl_algo="tree", nccl_version=version).cost("all_reduce", MIB, TWO_NODES) \
            .algorithm.startswith("tree")  # where tree runs it is not a fallback


def test_cli_help_and_outputs(capsys):
    with pytest.raises(SystemExit):
        main(["collective", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "2.19.1-2.23.4 fall back to ring" in text
    assert main(["collective", "all_gather", "--hardware", "h100-sxm", "--devices", "8", "--bytes", "1048576",
                 "--nccl-algo", "tree", "--nccl-version", "2.22.3", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["algorithm"].startswith("ring/")
    assert main(["collective", "all_reduce", "--hardware", "h100-sxm", "--devices", "8", "--bytes", "0",
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert (row["time_s"], row["algorithm"], row["bottleneck"]) == (0.0, "empty", "none")
    assert main(["collective", "all_gather", "--hardware", "h100-sxm", "--devices", "8", "--bytes", "1048576",
                 "--nccl-algo", "tree"]) == 2
    err = capsys.readouterr().err
    assert "also fails the call" in err and err.count("\n") == 1


def test_broadcast_without_ring_fails_where_nccl_fails_and_runs_ring_where_it_falls_back():
    """NCCL prices broadcast for ring only (v2.29.2-1 src/graph/tuning.cc ncclTopoTuneModel): an NCCL_ALGO without
    ring fails the call at 2.24.3 on (and unset) and 2.18.6, and falls back to ring at 2.19.1-2.23.4."""
    for version in ("", "2.18.6", "2.24.3"):
        with pytest.raises(SpecError, match="leaves no algorithm NCCL runs for broadcast.*also fails the call"):
            TopologyModel(H100, nccl_algo="tree", nccl_version=version).cost("broadcast", MIB, EIGHT)
        if version != "2.18.6":  # discarded before any pick from 2.20.3-1: no error for an empty call
            assert TopologyModel(H100, nccl_algo="tree", nccl_version=version).cost("broadcast", 0, EIGHT).time_s == 0
    for version, proto, label in (("2.21.5", "Simple", "ring/LL"), ("2.23.4", "Simple", "ring/Simple")):
        tree = TopologyModel(H100, nccl_algo="tree", nccl_proto=proto, nccl_version=version)
        ring = TopologyModel(H100, nccl_algo="ring", nccl_proto=proto if version == "2.23.4" else "",
                             nccl_version=version)
        assert tree.cost("broadcast", 4096, EIGHT) == ring.cost("broadcast", 4096, EIGHT)
        assert tree.cost("broadcast", 4096, EIGHT).algorithm == label  # 2.21.5: NCCL_PROTO ignored (nccl#1304)
    assert TopologyModel(H100, nccl_algo="ring,tree").cost("broadcast", MIB, EIGHT) == \
        TopologyModel(H100).cost("broadcast", MIB, EIGHT)  # ring allowed: as before


def test_the_simulators_latency_term_is_a_real_calls_floor():
    """des/costs.py prices a call's latency term as T(0) of that call (it runs with bytes): inside as_floor the empty
    rule is off, so the term is the floor it was (> 0), while an empty call of its own still costs nothing."""
    from moesim.collectives.nccl_no_pick import as_floor

    model = TopologyModel(H100)
    with as_floor():
        floor = model.cost("all_to_all", 0, EIGHT)
    assert floor.time_s > 0 and floor.algorithm != "empty"
    assert floor.time_s < model.cost("all_to_all", MIB, EIGHT).time_s
    assert model.cost("all_to_all", 0, EIGHT).time_s == 0.0


def _no_algorithm_error(group: Group, **kwargs) -> str:
    with pytest.raises(SpecError, match="leaves no algorithm NCCL runs for all_reduce") as info:
        TopologyModel(H100, **kwargs).cost("all_reduce", 64 * MIB, group)
    return str(info.value)


@pytest.mark.parametrize("group", [EIGHT, TWO_NODES], ids=["1node", "2node"])
def test_the_no_algorithm_error_says_what_earlier_releases_do_with_a_clause_string(group):
    """Polish (session 16): the error said "2.19.1-2.23.4 fall back to ring" for a clause string too, but those
    releases read it as one list (nccl_env_lists), which here names nothing and gets ring and tree back: each claim of
    the message is checked against moesim's own pricing at those releases."""
    text = _no_algorithm_error(group, nccl_algo="allreduce:collnetdirect")
    assert "2.18.1-2.23.4 read it as one list" in text and "which enables ring, tree for all_reduce" in text
    assert "fall back to ring" not in text
    for version in ("2.18.6", "2.21.5", "2.23.4"):  # no error, and not a fallback: the tuner's pick of ring / tree
        cost = TopologyModel(H100, nccl_algo="allreduce:collnetdirect", nccl_version=version).cost(
            "all_reduce", 64 * MIB, group)
        assert cost.algorithm.split("/")[0] in ("ring", "tree")


def test_a_clause_string_whose_one_list_leaves_nothing_still_says_ring():
    """With CollNet on, 'collnetdirect;allreduce:collnetdirect' is one empty list before 2.24.3 (no ring / tree
    re-enabled): 2.19.1-2.23.4 fall back to ring, as the message says. The classic list 'collnetdirect' without
    CollNet gets ring and tree back at 2.18.1-2.23.4 (session 17 algofallback), and the message says that instead."""
    text = _no_algorithm_error(EIGHT, nccl_algo="collnetdirect;allreduce:collnetdirect", collnet=True)
    assert "which leaves all_reduce no algorithm: 2.19.1-2.23.4 fall back to ring" in text
    text = _no_algorithm_error(EIGHT, nccl_algo="collnetdirect,collnetchain;allreduce:collnetdirect", collnet=True)
    assert "only collnetdirect, none of which runs here: 2.19.1-2.23.4 fall back to ring" in text
    for algo in ("collnetdirect;allreduce:collnetdirect", "collnetdirect,collnetchain;allreduce:collnetdirect"):
        assert TopologyModel(H100, nccl_algo=algo, collnet=True, nccl_version="2.21.5").cost(
            "all_reduce", 64 * MIB, EIGHT).algorithm.startswith("ring/")
    text = _no_algorithm_error(EIGHT, nccl_algo="collnetdirect")
    assert ("also fails the call ('no algorithm/protocol available'); 2.18.1-2.23.4 enable ring, tree for all_reduce: "
            "ncclTopoTuneModel turns ring and tree back on without CollNet") in text
    assert "one list" not in text and "fall back to ring" not in text
