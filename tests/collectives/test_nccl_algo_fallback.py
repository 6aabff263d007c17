"""NCCL_ALGO's classic list at 2.18.1-2.23.4 as ncclTopoTuneModel reads it (session 17 algofallback;
docs/collectives-history.md "Session 17 (algofallback)"): one list (parseList ignores a name it does not know), then,
without CollNet, NVLSTree off on one node, NVLS off across nodes, and ring and tree back where ring, tree, NVLS and
NVLSTree are all off (v2.18.1-1 src/graph/tuning.cc l. 250-262, v2.23.4-1 l. 303-314). From 2.24.3 the classic list is
parseList's first clause (an unknown name fails). The figures are moesim's own pricing of the 2 x 8 B200 case."""

from __future__ import annotations

import json

import pytest

from moesim.cli import main
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

B200 = load_hardware("b200")
OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")


def allowed(text: str, version: str, multi: bool, collnet: bool = False) -> frozenset:
    lists = {op: TopologyModel(B200, nccl_algo=text, nccl_version=version, collnet=collnet)._allowed(op, multi)
             for op in OPS}
    assert len(set(lists.values())) == 1, lists  # before 2.24.3 one list for every collective
    return lists["all_reduce"]


def priced(capsys, text: str, version: str) -> tuple[int, str, float | None, str]:
    code = main(["collective", "all_reduce", "--hardware", "b200", "--devices", "16", "--bytes", "1048576",
                 "--nccl-algo", text, "--nccl-version", version, "--json"])
    out = capsys.readouterr()
    if code:
        return code, "", None, out.err
    row = json.loads(out.out)["results"][0]
    return code, row["algorithm"], round(row["busbw_GBps"], 2), out.err


@pytest.mark.parametrize("version,algorithm,busbw", [
    ("2.18.1", "ring/LL", 13.33),  # was an error (no ring fallback at 2.18.x): ring and tree come back
    ("2.19.1", "ring/LL", 13.33),  # was session 15's ring fallback; now ring and tree, ring still picked
    ("2.23.4", "tree/Simple", 16.34),  # was ring/LL 13.33 (ring fallback); tree now runs, as NCCL enables it
])
def test_collnetdirect_without_collnet_gets_ring_and_tree_before_2_24_3(capsys, version, algorithm, busbw):
    assert priced(capsys, "collnetdirect", version)[:3] == (0, algorithm, busbw)
    assert allowed("collnetdirect", version, multi=True) == {"collnetdirect", "ring", "tree"}
    # the clause string algosyntax re-enabled already reads the same now (one code path)
    assert priced(capsys, "collnetdirect;x", version)[:3] == (0, algorithm, busbw)


def test_collnetdirect_without_collnet_fails_from_2_24_3(capsys):
    code, _, _, err = priced(capsys, "collnetdirect", "2.24.3")
    assert code == 2 and "NCCL_ALGO 'collnetdirect' leaves no algorithm NCCL runs for all_reduce" in err


def test_with_collnet_the_branch_is_not_taken():
    assert allowed("collnetdirect", "2.23.4", multi=True, collnet=True) == {"collnetdirect"}


@pytest.mark.parametrize("version", ["2.18.1", "2.23.4"])
def test_nvls_and_nvlstree_count_by_the_nodes(version):
    # NCCL turns NVLS off across nodes and NVLSTree off on one node before its test
    assert allowed("nvls", version, multi=True) == {"nvls", "ring", "tree"}
    assert allowed("nvls", version, multi=False) == {"nvls"}
    assert allowed("nvlstree", version, multi=False) == {"nvlstree", "ring", "tree"}
    assert allowed("nvlstree", version, multi=True) == {"nvlstree"}
    assert allowed("tree", version, multi=True) == {"tree"}  # tree is on: nothing added (all_gather: no_algorithm)


def test_pat_is_a_name_from_2_23_4():
    with pytest.warns(UserWarning, match="NCCL 2.22.3 ignores 'pat'"):
        assert allowed("pat", "2.22.3", multi=True) == {"ring", "tree"}  # v2.22.3-1 ncclAlgoStr has no PAT
    assert allowed("pat", "2.23.4", multi=True) == {"pat", "ring", "tree"}
    assert TopologyModel(B200, nccl_algo="pat", nccl_version="2.24.3")._allowed("all_reduce", True) == {"pat"}


def test_an_unknown_name_is_ignored_before_2_24_3_and_fails_from_it(capsys):
    with pytest.warns(UserWarning, match="NCCL 2.23.4 ignores 'rnig'"):
        assert allowed("rnig,tree", "2.23.4", multi=True) == {"tree"}
    with pytest.warns(UserWarning, match="ignores 'rnig'"):
        assert allowed("rnig", "2.18.1", multi=True) == {"ring", "tree"}
    with pytest.raises(SpecError, match="unknown algorithm 'rnig'"):
        TopologyModel(B200, nccl_algo="rnig", nccl_version="2.24.3")
    with pytest.raises(SpecError, match="unknown NCCL algorithm 'rnig'"):  # release unset: as before
        TopologyModel(B200, nccl_algo="rnig")
    # the CLI says it on its warning line, once, and prices
    code, algorithm, _, err = priced(capsys, "rnig,ring", "2.23.4")
    assert (code, algorithm) == (0, "ring/LL")
    assert err.count("moesim: warning: NCCL_ALGO 'rnig,ring': NCCL 2.23.4 ignores 'rnig'") == 1
    code, _, _, err = priced(capsys, "rnig,ring", "2.24.3")
    assert code == 2 and "field '--nccl-algo'" in err and "unknown algorithm 'rnig'" in err


def test_collnet_with_the_release_unset_is_the_documented_alias_with_one_warning(capsys, recwarn):
    # NCCL 2.24.3 on fails 'collnet' (v2.30.7-1 src/graph/tuning.cc l. 109); the `--nccl-algo` help promises it as
    # both CollNets, so with the release unset moesim keeps that reading and says once that NCCL does not
    code, algorithm, busbw, err = priced(capsys, "collnet,ring", "")
    assert code == 0 and (algorithm, busbw) == priced(capsys, "ring", "")[1:3]  # no CollNet without --nccl-collnet
    assert err.count("moesim: warning: NCCL_ALGO 'collnet,ring': moesim reads 'collnet' as "
                     "collnetdirect,collnetchain") == 1, err
    assert " ".join(err.split()).count("NCCL 2.24.3 on fails the string") == 1
    code, same, _, err = priced(capsys, "collnetdirect,collnetchain,ring", "")
    assert (code, same) == (0, algorithm) and "warning" not in err, err  # the names themselves: no warning
    TopologyModel(B200, nccl_algo="ring,tree")
    assert not recwarn.list


def test_the_error_from_2_24_3_says_what_2_18_1_to_2_23_4_do_with_the_classic_list(capsys):
    for version in ("2.24.3", ""):  # unset: 2.24.3 on
        code = main(["collective", "all_reduce", "--hardware", "b200", "--devices", "16", "--bytes", "1048576",
                     "--nccl-algo", "collnetdirect"] + (["--nccl-version", version] if version else []))
        err = " ".join(capsys.readouterr().err.split())
        assert code == 2 and "2.18.1-2.23.4 enable ring, tree for all_reduce: ncclTopoTuneModel" in err, err
        assert "fall back to ring" not in err
    # a list whose names the earlier releases keep as they are still says the ring fallback
    assert main(["collective", "all_gather", "--hardware", "b200", "--devices", "16", "--bytes", "1048576",
                 "--nccl-algo", "tree", "--nccl-version", "2.24.3"]) == 2
    assert "2.19.1-2.23.4 fall back to ring" in " ".join(capsys.readouterr().err.split())
