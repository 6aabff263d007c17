"""NCCL_ALGO / NCCL_PROTO per-collective clauses as NCCL's parseList reads them (moesim/collectives/nccl_env_lists.py;
session 16 algosyntax): src/graph/tuning.cc parseList at v2.24.3-1 .. v2.30.7-1 (clauses), at v2.18.1-1 .. v2.23.4-1
one classic list whose unknown names are ignored, and ncclTopoTuneModel's "ignore NCCL_ALGO=COLLNET" re-enabling of
ring and tree (v2.18.1-1 .. v2.23.4-1, without CollNet). Every test here fails on main (a2c407c), where any ':' or
';' in --nccl-algo is an "unknown NCCL algorithm" error and NCCL_PROTO's clauses are read at every release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moesim.calibrate.nccl_table import read_manifest
from moesim.cli import main
from moesim.collectives.base import Group
from moesim.collectives.nccl import ALGORITHMS
from moesim.collectives.nccl_code_rules import rule
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

H100 = load_hardware("h100-sxm")
TWO_NODES = Group(size=16, devices=16)
MIB = 2**20
ALL = frozenset(ALGORITHMS)
TUNED = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")


def lists(text: str, version: str = "", collnet: bool = False) -> dict:
    return {op: TopologyModel(H100, nccl_algo=text, nccl_version=version, collnet=collnet)._allowed(op)
            for op in TUNED}


def test_the_release_boundary_is_2_24_3_and_unset_follows_the_newest():
    assert [rule("nccl_env_per_collective", v) for v in ("2.18.1", "2.23.4", "2.24.3", "2.30.7", "")] == \
        [False, False, True, True, True]


@pytest.mark.parametrize("version", ["", "2.24.3", "2.30.7"])
def test_clauses_as_parse_list_reads_them(version):
    # the first clause may lack its prefix (every function), the others replace their function's whole list
    got = lists("ring;allreduce:tree,ring;broadcast:ring", version)
    assert got == {"all_reduce": {"tree", "ring"}, "all_gather": {"ring"}, "reduce_scatter": {"ring"},
                   "broadcast": {"ring"}}
    # '^' per clause; prefixes and names case-insensitive; an unnamed function keeps every algorithm
    got = lists("AllReduce:^NVLS,nvlstree;allgather:RING", version)
    assert got == {"all_reduce": ALL - {"nvls", "nvlstree"}, "all_gather": {"ring"}, "reduce_scatter": ALL,
                   "broadcast": ALL}
    # NCCL's reduce is a function moesim does not price: accepted, nothing moves
    assert lists("reduce:tree", version) == dict.fromkeys(TUNED, ALL)
    # strtok: empty clauses skipped, a third ':' part ignored; "^" alone keeps every algorithm, "," none
    assert lists(";;allreduce:ring:tree;", version)["all_reduce"] == {"ring"}
    assert lists("allreduce:^", version)["all_reduce"] == ALL
    assert lists("allreduce:,", version)["all_reduce"] == frozenset()


def test_the_classic_list_at_every_release():
    for version in ("", "2.18.1", "2.23.4", "2.24.3"):
        assert lists("ring,tree", version) == dict.fromkeys(TUNED, {"ring", "tree"})
        assert lists("^nvls,nvlstree", version) == dict.fromkeys(TUNED, ALL - {"nvls", "nvlstree"})
    # 'collnet' (NCCL 2.5-2.13): the documented alias with the release unset, with a warning that NCCL 2.24.3 on
    # fails it (session 18 ncclleft); 2.18.1-2.23.4 ignore the name, so nothing is set and ring and tree come back
    # (session 17 algofallback); 2.24.3 on fail it
    with pytest.warns(UserWarning,
                      match="moesim reads 'collnet' as collnetdirect,collnetchain .* NCCL 2.24.3 on fails"):
        assert lists("collnet") == dict.fromkeys(TUNED, {"collnetdirect", "collnetchain"})
    with pytest.warns(UserWarning, match="NCCL_ALGO '\\^COLLNET': moesim reads 'collnet' as"):
        assert lists("^COLLNET") == dict.fromkeys(TUNED, ALL - {"collnetdirect", "collnetchain"})
    for version in ("2.18.1", "2.23.4"):
        with pytest.warns(UserWarning, match=f"NCCL {version} ignores 'collnet'"):
            assert lists("collnet", version) == dict.fromkeys(TUNED, {"ring", "tree"})
    with pytest.raises(SpecError, match="unknown algorithm 'collnet'"):
        lists("collnet", "2.24.3")


@pytest.mark.parametrize("version", ["2.18.1", "2.19.1", "2.22.3", "2.23.4"])
def test_before_2_24_3_one_list_whose_clauses_name_nothing(version):
    # "allreduce:tree" and "ring;allgather:ring" match no name and are ignored: nothing is enabled, and
    # ncclTopoTuneModel (collNetSupport == 0) re-enables ring and tree for every function
    assert lists("allreduce:tree,ring;allgather:ring", version) == dict.fromkeys(TUNED, {"ring", "tree"})
    # a name outside the clauses is read: tree alone, for every function
    assert lists("tree,allreduce:ring", version) == dict.fromkeys(TUNED, {"tree"})
    # a leading '^' with only clause tokens excludes nothing
    assert lists("^nvls;allreduce:ring", version) == dict.fromkeys(TUNED, ALL)
    # with CollNet in use the re-enabling branch is not taken: nothing stays enabled (nccl_no_pick decides)
    assert lists("allreduce:tree", version, collnet=True) == dict.fromkeys(TUNED, frozenset())


def _algorithm(op: str, algo: str, version: str = "", size: int = 64 * MIB) -> str:
    return TopologyModel(H100, nccl_algo=algo, nccl_version=version).cost(op, size, TWO_NODES).algorithm


def test_a_clause_moves_only_its_collective():
    default = {op: _algorithm(op, "") for op in TUNED}
    assert default["all_reduce"].startswith("nvlstree/")
    picked = {op: _algorithm(op, "allreduce:ring") for op in TUNED}
    assert picked["all_reduce"].startswith("ring/")
    assert {op: picked[op] for op in TUNED[1:]} == {op: default[op] for op in TUNED[1:]}
    assert _algorithm("all_reduce", "ring;allreduce:tree").startswith("tree/")
    # the clause's cost is the classic list's for that collective
    clause = TopologyModel(H100, nccl_algo="ring;allreduce:tree").cost("all_reduce", MIB, TWO_NODES)
    classic = TopologyModel(H100, nccl_algo="tree").cost("all_reduce", MIB, TWO_NODES)
    assert clause == classic


def test_release_keyed_pick():
    # 2.24.3: all_reduce restricted to tree; 2.23.4: the string enables nothing, so ring and tree as NCCL re-enables
    at_new = TopologyModel(H100, nccl_algo="allreduce:tree", nccl_version="2.24.3").cost("all_reduce", 64 * MIB,
                                                                                         TWO_NODES)
    assert at_new == TopologyModel(H100, nccl_algo="tree", nccl_version="2.24.3").cost("all_reduce", 64 * MIB,
                                                                                       TWO_NODES)
    for op in TUNED:
        old = TopologyModel(H100, nccl_algo="allreduce:tree", nccl_version="2.23.4").cost(op, 64 * MIB, TWO_NODES)
        assert old == TopologyModel(H100, nccl_algo="ring,tree", nccl_version="2.23.4").cost(op, 64 * MIB, TWO_NODES)
    assert at_new.algorithm.startswith("tree/") and _algorithm("all_reduce", "allreduce:tree", "2.23.4") == \
        _algorithm("all_reduce", "ring,tree", "2.23.4")


def test_an_empty_clause_fails_only_its_collective_where_nccl_fails_it():
    model = TopologyModel(H100, nccl_algo="allreduce:,")
    with pytest.raises(SpecError, match="leaves no algorithm NCCL runs for all_reduce"):
        model.cost("all_reduce", MIB, TWO_NODES)
    assert model.cost("all_gather", MIB, TWO_NODES) == TopologyModel(H100).cost("all_gather", MIB, TWO_NODES)


def test_nccl_proto_clauses_are_keyed_too():
    text = "LL,Simple;allreduce:^LL"
    unset = TopologyModel(H100, nccl_proto=text)._protos
    assert unset["all_reduce"] == {"LL128", "Simple"} and unset["all_gather"] == {"LL", "Simple"}
    old = TopologyModel(H100, nccl_proto=text, nccl_version="2.23.4")._protos  # tokens "LL", "Simple;allreduce:^LL"
    assert old == dict.fromkeys(TUNED, {"LL"})
    assert TopologyModel(H100, nccl_proto=text, nccl_version="2.24.3")._protos == unset
    # nothing left before 2.24.3: at 2.21.5 NCCL's ring fallback brings every protocol back; at 2.23.4 it fails
    ring = TopologyModel(H100, nccl_proto="allreduce:LL", nccl_version="2.21.5").cost("all_reduce", MIB, TWO_NODES)
    assert ring == TopologyModel(H100, nccl_algo="ring", nccl_version="2.21.5").cost("all_reduce", MIB, TWO_NODES)
    with pytest.raises(SpecError, match=r"NCCL 2\.23\.4 reads NCCL_PROTO 'allreduce:LL' as one list"):
        TopologyModel(H100, nccl_proto="allreduce:LL", nccl_version="2.23.4").cost("all_reduce", MIB, TWO_NODES)


@pytest.mark.parametrize("algo, fragments", [
    ("allreduce:foo", ("clause 'allreduce:foo'", "unknown algorithm 'foo'", "allowed: ring, tree")),
    ("gather:ring", ("clause 'gather:ring'", "unknown collective 'gather'", "allowed: broadcast, reduce, allgather")),
    ("sendrecv:ring", ("unknown collective 'sendrecv'",)),
    ("ring;tree", ("clause 'tree'", "every clause but the first names its collective")),
    (";ring", ("clause 'ring'", "every clause but the first")),  # strtok skips the ';': not the string's first
    ("allreduce:collnet", ("unknown algorithm 'collnet'",)),  # NCCL 2.24.3 on fails the 2.5-2.13 name
    ("ring;:", ("clause ':' names no collective",)),
    # a prefix and no list: NCCL reads 'allreduce' as the list and fails its name; moesim said "unknown algorithm
    # 'allreduce'" (first clause) or "every clause but the first names its collective" (later): session 16 review
    ("allreduce:", ("clause 'allreduce:' names the collective 'allreduce' and no list", "'allreduce:tree,ring'")),
    ("ring;AllGather:", ("clause 'AllGather:' names the collective 'AllGather' and no list",)),
])
def test_bad_clauses_are_one_line_naming_the_flag(capsys, algo, fragments):
    assert main(["collective", "all_reduce", "--hardware", "h100-sxm", "--devices", "16", "--bytes", "1048576",
                 "--nccl-algo", algo]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'--nccl-algo'" in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_cli_json_shows_the_clause_pick(capsys):
    def picked(op: str, *extra: str) -> str:
        assert main(["collective", op, "--hardware", "h100-sxm", "--devices", "16", "--bytes", str(64 * MIB),
                     "--json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        return out["nccl_algo"], out["results"][0]["algorithm"]

    assert picked("all_reduce", "--nccl-algo", "ring;allreduce:tree")[1].startswith("tree/")
    assert picked("all_reduce", "--nccl-algo", "allgather:ring;allreduce:tree") == \
        ("allgather:ring;allreduce:tree", picked("all_reduce", "--nccl-algo", "tree")[1])
    assert picked("all_reduce", "--nccl-algo", "allgather:ring")[1] == picked("all_reduce")[1]
    assert picked("all_reduce", "--nccl-algo", "allreduce:tree", "--nccl-version", "2.23.4")[1] == \
        picked("all_reduce", "--nccl-algo", "ring,tree", "--nccl-version", "2.23.4")[1]


ENTRY = ('[[log]]\nfile = "x_all_reduce_perf.log"\nhardware = "h100-sxm"\ncluster = "c"\nhealthy = true\n'
         'shape = false\nnote = "n"\n')


def _manifest(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "logs.toml"
    path.write_text("schema_version = 1\n\n" + ENTRY + extra, encoding="utf-8")
    return path


def test_the_manifest_keys_take_the_syntax_of_the_entrys_release(tmp_path):
    entry = read_manifest(_manifest(tmp_path, 'nccl_algo = "ring;allreduce:tree"\nnccl_proto = "allreduce:^LL"\n'))[0]
    assert entry["nccl_algo"] == "ring;allreduce:tree"
    with pytest.raises(SpecError) as err:
        read_manifest(_manifest(tmp_path, 'nccl_algo = "allreduce:foo"\n'))
    text = str(err.value)
    assert "log 1 (x_all_reduce_perf.log)" in text and "field 'nccl_algo'" in text and "unknown algorithm 'foo'" in text
    # at 2.23.4 NCCL ignores the clause: the entry reads (priced with ring and tree)
    assert read_manifest(_manifest(tmp_path, 'nccl_algo = "allreduce:foo"\nnccl_version = "2.23.4"\n'))


@pytest.mark.parametrize("version", ["2.18.1", "2.21.5", "2.23.4"])
def test_an_unknown_protocol_name_is_ignored_before_2_24_3(version):
    """v2.18.1-1 .. v2.23.4-1 parseList(protoStr, ncclProtoStr, ...) strcasecmps each ','-token against LL, LL128,
    Simple and sets nothing for a name it does not know: ignored, with one warning, as NCCL_ALGO's."""
    with pytest.warns(UserWarning, match=rf"NCCL_PROTO 'LL,foo': NCCL {version} ignores 'foo' \(not one of its "
                                         r"protocol names; NCCL 2\.24\.3 on fails the string\)"):
        model = TopologyModel(H100, nccl_proto="LL,foo", nccl_version=version)
    assert model._protos == dict.fromkeys(TUNED, {"LL"})
    with pytest.warns(UserWarning, match=f"NCCL {version} ignores 'LL512'"):
        assert TopologyModel(H100, nccl_proto="^LL512,simple", nccl_version=version)._protos == \
            dict.fromkeys(TUNED, {"LL", "LL128"})


@pytest.mark.parametrize("version", ["2.24.3", "2.30.7", ""])
def test_an_unknown_protocol_name_fails_from_2_24_3_and_unset(version):
    with pytest.raises(SpecError, match="unknown NCCL protocol 'foo'"):
        TopologyModel(H100, nccl_proto="LL,foo", nccl_version=version)


def test_a_protocol_list_of_unknown_names_enables_nothing_before_2_24_3():
    """'LL512' alone leaves protoEnable all 0: 2.19.1-2.21.5's ring fallback brings every protocol back (the ring row
    NCCL_ALGO=ring gives); 2.18.x has no fallback and fails the call (nccl_code_rules.toml [nccl_algo_ring_fallback])."""
    with pytest.warns(UserWarning):
        ring = TopologyModel(H100, nccl_proto="LL512", nccl_version="2.21.5").cost("all_reduce", MIB, TWO_NODES)
    assert ring == TopologyModel(H100, nccl_algo="ring", nccl_version="2.21.5").cost("all_reduce", MIB, TWO_NODES)
    with pytest.warns(UserWarning), pytest.raises(SpecError):
        TopologyModel(H100, nccl_proto="LL512", nccl_version="2.18.1").cost("all_reduce", MIB, TWO_NODES)
