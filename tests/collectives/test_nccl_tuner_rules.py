"""NCCL_PROTO (nccl_proto) and tuner-plugin rules (NCCL's example-plugin CSV): parsing, restriction, loading,
precedence, and bad files failing with one line (collectives/nccl_tuner_rules.py)."""

from __future__ import annotations

import json

import pytest

from moesim.calibrate.nccl_table import entry_model
from moesim.cli import main
from moesim.collectives.base import Group
from moesim.collectives.nccl_tuner_rules import ANY, TunerRule, TunerRules, load_tuner_rules, parse_nccl_proto
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

KIB, MIB, GIB = 2**10, 2**20, 2**30
TWO_NODES = Group(size=16)  # 2 x 8 GPUs: the GKE A3 Ultra / A4 runs' shape


@pytest.fixture(scope="module")
def h200():
    return load_hardware("h200")


@pytest.mark.parametrize("text,expected", [
    ("LL128,Simple", {"LL128", "Simple"}),
    ("^LL", {"LL128", "Simple"}),
    ("simple", {"Simple"}),
    (" ll , LL128 ", {"LL", "LL128"}),
    ("^ll128,simple", {"LL"}),
])
def test_parse_nccl_proto(text, expected):
    found = parse_nccl_proto(text)
    assert set(found) == {"all_reduce", "all_gather", "reduce_scatter", "broadcast"}
    assert all(protocols == expected for protocols in found.values())


def test_parse_nccl_proto_per_collective():
    """NCCL's parseList: the first entry for every collective, later ones replace one collective's list."""
    found = parse_nccl_proto("LL,Simple;allreduce:^LL;AllGather:LL128")
    assert found["all_reduce"] == {"LL128", "Simple"} and found["all_gather"] == {"LL128"}
    assert found["reduce_scatter"] == found["broadcast"] == {"LL", "Simple"}
    assert parse_nccl_proto("reducescatter:Simple")["reduce_scatter"] == {"Simple"}
    assert "all_gather" not in parse_nccl_proto("reducescatter:Simple")  # not set: NCCL's defaults
    assert parse_nccl_proto("reduce:LL") == {} == parse_nccl_proto("")  # NCCL's reduce: not priced


def test_parse_nccl_proto_skips_empty_entries():
    """NCCL's parseList splits on ';' with strtok, which skips empty entries: a trailing, leading or doubled ';' is
    accepted, as NCCL_ALGO's clauses are (nccl_env_lists._clauses); an unprefixed entry after the first still fails
    (session 16 review: 'allreduce:LL;' was 'entries after the first name their collective')."""
    assert parse_nccl_proto("allreduce:LL;") == parse_nccl_proto(";allreduce:LL") == {"all_reduce": {"LL"}}
    assert parse_nccl_proto("LL;;allgather:Simple") == parse_nccl_proto("LL;allgather:Simple")
    assert parse_nccl_proto(";") == {}  # no entry: NCCL's defaults
    with pytest.raises(SpecError, match="entries after the first name their collective"):
        parse_nccl_proto(";LL")  # NCCL: the first token is not at the string's start, so it needs a prefix


@pytest.mark.parametrize("text,fragment", [
    ("LL64", "unknown NCCL protocol 'll64'"),
    ("^LL,LL128,Simple", "NCCL_PROTO leaves no protocol"),
    (",", "NCCL_PROTO names no protocol"),
    ("LL;Simple", "NCCL_PROTO entries after the first name their collective"),
    ("alltoall:LL", "unknown NCCL function 'alltoall'"),
    ("allreduce:", "NCCL_PROTO names no protocol"),
])
def test_parse_nccl_proto_rejects(text, fragment):
    with pytest.raises(SpecError, match=fragment) as err:
        parse_nccl_proto(text)
    assert err.value.field == "nccl_proto"


def test_nccl_proto_restricts_the_tuner(h200):
    """2 x 8 H200 all_gather at 1 KiB: NCCL's ring/LL by default; ^LL leaves LL128, slower; Simple slower still.
    Every candidate left runs an allowed protocol."""
    default = TopologyModel(h200).cost("all_gather", KIB, TWO_NODES)
    no_ll = TopologyModel(h200, nccl_proto="^LL")
    simple = TopologyModel(h200, nccl_proto="Simple").cost("all_gather", KIB, TWO_NODES)
    assert default.algorithm == "ring/LL"
    assert no_ll.cost("all_gather", KIB, TWO_NODES).algorithm == "ring/LL128"
    assert simple.algorithm == "ring/Simple"
    assert default.time_s < no_ll.cost("all_gather", KIB, TWO_NODES).time_s < simple.time_s
    assert {c.protocol for c in no_ll.candidates("all_gather", KIB, TWO_NODES)} == {"LL128", "Simple"}
    # where NCCL already picks LL128 (1 MiB) the restriction changes nothing
    assert (no_ll.cost("all_gather", MIB, TWO_NODES).time_s
            == TopologyModel(h200).cost("all_gather", MIB, TWO_NODES).time_s)


def test_nccl_proto_drops_the_simple_only_algorithms():
    """NVLS (one node) runs Simple only: without Simple it is not a candidate."""
    h100 = load_hardware("h100-sxm")
    assert TopologyModel(h100).cost("all_reduce", GIB, Group(size=8)).algorithm == "nvls/Simple"
    no_simple = TopologyModel(h100, nccl_proto="LL,LL128")
    assert {c.algorithm for c in no_simple.candidates("all_reduce", GIB, Group(size=8))} == {"ring", "tree"}
    assert no_simple.cost("all_reduce", GIB, Group(size=8)).algorithm.endswith("/LL128")


def test_nccl_proto_with_nccl_algo_leaving_nothing(h200):
    with pytest.raises(SpecError, match="leaves no") as err:
        TopologyModel(h200, nccl_algo="nvls", nccl_proto="LL").cost("all_reduce", MIB, Group(size=8))
    assert err.value.field == "nccl_proto"


def test_send_recv_ops_keep_their_size_rule(h200):
    """all_to_all / send_recv pick LL or Simple by the peer's bytes (NCCL's enqueue.cc), not through the tuner."""
    for op in ("all_to_all", "send_recv"):
        for size in (KIB, 64 * MIB):
            assert (TopologyModel(h200, nccl_proto="^LL").cost(op, size, TWO_NODES)
                    == TopologyModel(h200).cost(op, size, TWO_NODES))


def test_bad_nccl_proto_is_a_spec_error(h200):
    with pytest.raises(SpecError, match="field 'nccl_proto'"):
        TopologyModel(h200, nccl_proto="LL256")
    with pytest.raises(SpecError, match="field 'tuner_rules'"):
        TopologyModel(h200, tuner_rules="rules.csv")


RULES = """\
# comment, then the column titles NCCL's README suggests, then rules of 8, 9 and 10 fields
collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks,numPipeOps,regBuff

allgather,0,65536,ring,simple,4,2,16
allgather, 0, 4294967295, ring, ll, -1, 2, -1, -1
allreduce,0,4294967295,nvls_tree,simple,-1,-1,-1,1,0
broadcast,0,1024,tree,ll128,-1,1,8,4,-1
reduce,0,4294967295,ring,simple,-1,-1,-1,-1,1
"""


def write(tmp_path, text, name="tuner.conf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_tuner_rules(tmp_path):
    rules = load_tuner_rules(write(tmp_path, RULES))
    assert [r.line for r in rules.rules] == [4, 5, 6, 7, 8]
    first, second, third, fourth, fifth = rules.rules
    assert first == TunerRule("all_gather", "ring", "Simple", 0, 65536, nodes=(2, 2), ranks=(16, 16), channels=4,
                              line=4)
    assert (second.protocol, second.ranks, second.pipe_ops, second.reg_buff) == ("LL", ANY, -1, -1)
    assert (third.op, third.algorithm, third.pipe_ops, third.reg_buff) == ("all_reduce", "nvlstree", 1, 0)
    assert (fourth.op, fourth.algorithm, fourth.protocol, fourth.pipe_ops) == ("broadcast", "tree", "LL128", 4)
    assert fifth.op is None  # NCCL's reduce: read, never matched (moesim has no reduce)
    assert rules.ops() == {"all_gather", "all_reduce", "broadcast"}
    assert rules.source.endswith("tuner.conf")


def test_rule_matching_as_the_example_plugin():
    """Both size bounds inclusive; nNodes / nRanks exact or -1; one call = numPipeOps 1, regBuff 0."""
    rule = TunerRule("all_gather", "ring", "LL128", 1024, 2048, nodes=(2, 2), ranks=(16, 16))
    assert rule.matches("all_gather", 1024, 2, 16) and rule.matches("all_gather", 2048, 2, 16)
    assert not rule.matches("all_gather", 1023, 2, 16) and not rule.matches("all_gather", 2049, 2, 16)
    assert not rule.matches("all_gather", 1024, 4, 16) and not rule.matches("all_gather", 1024, 2, 32)
    assert not rule.matches("all_reduce", 1024, 2, 16)
    assert TunerRule("all_gather", "ring", "LL", 0, 9, pipe_ops=1, reg_buff=0).matches("all_gather", 5, 3, 24)
    assert not TunerRule("all_gather", "ring", "LL", 0, 9, pipe_ops=4).matches("all_gather", 5, 3, 24)
    assert not TunerRule("all_gather", "ring", "LL", 0, 9, reg_buff=1).matches("all_gather", 5, 3, 24)


def test_rules_take_the_pick_first_match_wins(h200, tmp_path):
    """Line 4 (ring/Simple up to 64 KiB on 2 nodes x 16 ranks) beats line 5 (ring/LL at any size); above 64 KiB
    line 5 forces LL where NCCL itself runs LL128; a 4-node group matches neither (NCCL's own pick)."""
    rules = load_tuner_rules(write(tmp_path, RULES))
    ruled, own = TopologyModel(h200, tuner_rules=rules), TopologyModel(h200)
    at_1k = ruled.cost("all_gather", KIB, TWO_NODES)
    assert at_1k.algorithm == "ring/Simple"
    forced = [c for c in own.candidates("all_gather", KIB, TWO_NODES) if c.label == "ring/Simple"]
    assert at_1k.time_s == forced[0].time_s
    assert own.cost("all_gather", MIB, TWO_NODES).algorithm == "ring/LL128"
    assert ruled.cost("all_gather", MIB, TWO_NODES).algorithm == "ring/LL"
    four = Group(size=32)
    assert ruled.cost("all_gather", KIB, four) == own.cost("all_gather", KIB, four)


def test_rules_yield_to_nccl_algo_proto_and_what_cannot_run(h200, tmp_path):
    """A rule whose pick NCCL_PROTO / NCCL_ALGO rules out, or that cannot run here (NVLSTree on one node), is
    passed over: the next matching rule, else NCCL's own pick."""
    rules = load_tuner_rules(write(tmp_path, RULES))
    no_simple = TopologyModel(h200, tuner_rules=rules, nccl_proto="^Simple")
    assert no_simple.cost("all_gather", KIB, TWO_NODES).algorithm == "ring/LL"  # line 4 passed over, line 5 taken
    no_ll = TopologyModel(h200, tuner_rules=rules, nccl_proto="^LL")
    assert no_ll.cost("all_gather", MIB, TWO_NODES).algorithm == "ring/LL128"  # line 5 passed over: NCCL's own
    one_node = Group(size=8)
    assert (TopologyModel(h200, tuner_rules=rules).cost("all_reduce", MIB, one_node)
            == TopologyModel(h200).cost("all_reduce", MIB, one_node))
    assert TopologyModel(h200, tuner_rules=rules).cost("all_reduce", MIB, TWO_NODES).algorithm == "nvlstree/Simple"
    ring_only = TopologyModel(h200, tuner_rules=rules, nccl_algo="ring")
    assert ring_only.cost("all_reduce", MIB, TWO_NODES).algorithm.startswith("ring/")


def test_rules_leave_non_nccl_systems_alone(tmp_path):
    rules = TunerRules((TunerRule("all_reduce", "ring", "LL"),))
    tpu = load_hardware("tpu-v3")
    assert (TopologyModel(tpu, tuner_rules=rules).cost("all_reduce", MIB, Group(size=64))
            == TopologyModel(tpu).cost("all_reduce", MIB, Group(size=64)))


@pytest.mark.parametrize("line,fragment", [
    ("allgather,0,65536,ring,ll64,-1,2,16",
     ":3: field 'protocol': unknown protocol 'll64' (allowed: ll, ll128, simple)"),
    ("allgathr,0,65536,ring,ll,-1,2,16", ":3: field 'collective_type': unknown collective_type 'allgathr'"),
    ("allgather,0,65536,rings,ll,-1,2,16", ":3: field 'algorithm': unknown algorithm 'rings'"),
    ("allgather,0,65536,ring,ll,-1,2", ":3: 7 fields; NCCL's tuner format has 8 to 10"),
    ("allgather,0,65536,ring,ll,-1,2,16,1,0,9", ":3: 11 fields"),
    ("allgather,70000,65536,ring,ll,-1,2,16", ":3: field 'min_bytes': min_bytes 70000 is above max_bytes 65536"),
    ("allgather,0,64KiB,ring,ll,-1,2,16", ":3: field 'max_bytes': '64KiB' is not an integer"),
    ("allgather,-5,65536,ring,ll,-1,2,16", ":3: field 'min_bytes': must be >= 0"),
    ("allgather,0,65536,ring,ll,0,2,16", ":3: field 'channels': must be -1 (any) or a positive count"),
    ("allgather,0,65536,ring,ll,-1,-2,16", ":3: field 'nNodes': must be >= -1"),
    ("allgather,0,65536,ring,ll,-1,2,16,1,2", ":3: field 'regBuff': must be -1 (any), 0 or 1"),
])
def test_bad_rules_file_fails_with_one_line(capsys, tmp_path, line, fragment):
    path = write(tmp_path, "# rules\n\n" + line + "\n")
    with pytest.raises(SpecError) as err:
        load_tuner_rules(path)
    assert fragment in str(err.value) and str(path) in str(err.value)
    code = main(["collective", "all_gather", "--hardware", "h200", "--devices", "16", "--bytes", "1KiB",
                 "--tuner-rules", str(path)])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


def test_missing_rules_file(capsys, tmp_path):
    code = main(["collective", "all_gather", "--hardware", "h200", "--devices", "16",
                 "--tuner-rules", str(tmp_path / "absent.csv")])
    assert code == 2
    assert "absent.csv: field '--tuner-rules': tuner rules file not found" in capsys.readouterr().err


def test_cli_nccl_proto_and_rules(capsys, tmp_path):
    argv = ["collective", "all_gather", "--hardware", "h200", "--devices", "16", "--sweep", "1KiB:2KiB", "--json"]
    assert main(argv + ["--nccl-proto", "^LL"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["nccl_proto"] == "^LL" and data["tuner_rules"] is None
    assert [r["algorithm"] for r in data["results"]] == ["ring/LL128", "ring/LL128"]
    path = write(tmp_path, "allgather,0,1024,ring,simple,-1,2,16\n")
    assert main(argv + ["--tuner-rules", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tuner_rules"] == str(path) and data["nccl_proto"] == ""
    assert [r["algorithm"] for r in data["results"]] == ["ring/Simple", "ring/LL"]
    assert main(argv[:-1] + ["--nccl-proto", "LL512"]) == 2
    assert "field '--nccl-proto': unknown NCCL protocol 'll512'" in capsys.readouterr().err


def test_manifest_entry_model_takes_nccl_proto(h200):
    """logs.toml's nccl_proto key reaches the model a log is priced with, as nccl_algo does."""
    assert entry_model({"file": "x.log"}, h200) is None
    model = entry_model({"file": "x.log", "nccl_proto": "^LL"}, h200)
    assert model.cost("all_gather", KIB, TWO_NODES).algorithm == "ring/LL128"


TOML_RULES = """\
schema_version = 1

[[rule]]  # 2-3 nodes of 8: all-gather up to 64 KiB per rank on ring / LL128
collective = "all_gather"
algorithm = "ring"
protocol = "LL128"
per_rank_bytes = [0, 65535]
nodes = [2, 3]
ranks_per_node = [8, 8]
channels = 8

[[rule]]
collective = "all_reduce"
algorithm = "tree"
protocol = "Simple"
bytes = [0, 1048575]
"""


def test_toml_rules_take_ranges_and_per_rank_sizes(h200, tmp_path):
    """The .toml form: node and ranks-per-node ranges, per-rank sizes (an all-gather's size / ranks)."""
    rules = load_tuner_rules(write(tmp_path, TOML_RULES, "tuner.toml"))
    first, second = rules.rules
    assert (first.per_rank, first.min_bytes, first.max_bytes, first.nodes, first.ranks_per_node, first.channels,
            first.line) == (True, 0, 65535, (2, 3), (8, 8), 8, 1)
    assert (second.per_rank, second.max_bytes, second.nodes, second.line) == (False, 1048575, ANY, 2)
    model = TopologyModel(h200, tuner_rules=rules)
    # 16 ranks on 2 nodes: 1 MiB is 64 KiB per rank, 1 MiB + 16 B is past the per-rank bound
    assert model.cost("all_gather", 16 * KIB, TWO_NODES).algorithm == "ring/LL128"
    assert model.cost("all_gather", 1024 * KIB - 16, TWO_NODES).algorithm == "ring/LL128"
    assert (model.cost("all_gather", 1024 * KIB + 16, TWO_NODES)
            == TopologyModel(h200).cost("all_gather", 1024 * KIB + 16, TWO_NODES))
    assert model.cost("all_gather", 16 * KIB, Group(size=32)).algorithm == "ring/LL"  # 4 nodes: NCCL's own
    assert model.cost("all_gather", 16 * KIB, Group(size=24)).algorithm == "ring/LL128"  # 3 nodes
    assert model.cost("all_reduce", 64 * KIB, TWO_NODES).algorithm == "tree/Simple"


@pytest.mark.parametrize("body,fragment", [
    ('schema_version = 2\n', "field 'schema_version': unsupported schema_version"),
    ('schema_version = 1\nrules = []\n', "unknown keys ['rules']"),
    ('schema_version = 1\n[[rule]]\ncollective = "allgather"\nalgorithm = "ring"\nprotocol = "LL"\n',
     "field 'collective': rule 1: missing or unknown"),
    ('schema_version = 1\n[[rule]]\ncollective = "all_gather"\nalgorithm = "ring"\nprotocol = "ll"\n',
     "field 'protocol': rule 1: missing or unknown"),
    ('schema_version = 1\n[[rule]]\ncollective = "all_gather"\nalgorithm = "ring"\nprotocol = "LL"\n'
     'nodes = [3, 2]\n', "field 'nodes': rule 1: must be [min, max]"),
    ('schema_version = 1\n[[rule]]\ncollective = "all_gather"\nalgorithm = "ring"\nprotocol = "LL"\n'
     'bytes = [0, 9]\nper_rank_bytes = [0, 9]\n', "rule 1: give bytes or per_rank_bytes, not both"),
    ('schema_version = 1\n[[rule]]\ncollective = "all_gather"\nalgorithm = "ring"\nprotocol = "LL"\n'
     'chanels = 4\n', "rule 1: unknown keys ['chanels']"),
])
def test_bad_toml_rules_fail_with_one_line(capsys, tmp_path, body, fragment):
    path = write(tmp_path, body, "tuner.toml")
    with pytest.raises(SpecError, match=None) as err:
        load_tuner_rules(path)
    assert fragment in str(err.value) and str(path) in str(err.value)
    assert main(["collective", "all_gather", "--hardware", "h200", "--devices", "16", "--bytes", "1KiB",
                 "--tuner-rules", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


def test_broadcast_rules_and_proto(h200):
    """Broadcast goes through NCCL's tuner too (ring): a rule or NCCL_PROTO sets its protocol."""
    own = TopologyModel(h200).cost("broadcast", 64 * KIB, TWO_NODES)
    rules = TunerRules((TunerRule("broadcast", "ring", "Simple"),))
    ruled = TopologyModel(h200, tuner_rules=rules).cost("broadcast", 64 * KIB, TWO_NODES)
    assert own.algorithm != "ring/Simple" and ruled.algorithm == "ring/Simple"
    assert TopologyModel(h200, nccl_proto="LL128").cost("broadcast", 64 * KIB, TWO_NODES).algorithm == "ring/LL128"


def test_nccl_proto_per_collective_in_the_model(h200):
    model = TopologyModel(h200, nccl_proto="allgather:^LL")
    assert model.cost("all_gather", KIB, TWO_NODES).algorithm == "ring/LL128"
    assert model.cost("reduce_scatter", KIB, TWO_NODES) == TopologyModel(h200).cost("reduce_scatter", KIB, TWO_NODES)


def test_nccl_proto_keeping_ll128_passes_ncclls_default_gate():
    """NCCL (tuning.cc up to 2.28) applies its LL128 gate only to protocols NCCL_PROTO left at the default: a B200
    ring across nodes over a PHB GPU-NIC path has no LL128 by default, and has it when NCCL_PROTO's list for the
    collective keeps LL128 ("^LL" or "LL128,Simple"); a list for another collective leaves the gate in place."""
    from moesim.specs.system_facts import with_system_facts

    hw = with_system_facts(load_hardware("b200"), {"gpu_nic_path": "PHB"})
    protocols = {proto: {c.protocol for c in TopologyModel(hw, nccl_proto=proto).candidates("all_gather", MIB,
                                                                                             TWO_NODES)}
                 for proto in ("", "^LL", "LL128,Simple", "reducescatter:LL128")}
    assert protocols[""] == {"LL", "Simple"} == protocols["reducescatter:LL128"]
    assert protocols["^LL"] == {"LL128", "Simple"} == protocols["LL128,Simple"]


def test_no_tuner_plugin_interface_before_2_19_1():
    """v2.19.1-1 adds src/misc/tuner.cc (ncclLoadTunerPlugin, NCCL_TUNER_PLUGIN) and getCollInfo; v2.18.x has
    neither (nccl_code_rules.toml [tuner_plugin_available])."""
    from moesim.collectives.nccl_code_rules import rule
    assert [rule("tuner_plugin_available", v) for v in ("2.18.1", "2.18.6", "2.19.1", "2.30.7", "")] == \
        [False, False, True, True, True]


@pytest.mark.parametrize("version", ["2.18.1", "2.18.6"])
def test_rules_at_2_18_warn_and_nccl_picks_itself(h200, tmp_path, version):
    """NCCL 2.18.x never loads a plugin: its own pick, with one warning naming the flag, the release and 2.19.1."""
    rules = load_tuner_rules(write(tmp_path, RULES))
    with pytest.warns(UserWarning, match=rf"--tuner-rules: NCCL {version} has no tuner plugin interface "
                                         r"\(NCCL_TUNER_PLUGIN is read from 2.19.1\)"):
        ruled = TopologyModel(h200, tuner_rules=rules, nccl_version=version)
    assert ruled.tuner_rules is None
    own = TopologyModel(h200, nccl_version=version)
    assert ruled.cost("all_gather", MIB, TWO_NODES) == own.cost("all_gather", MIB, TWO_NODES)
    assert own.cost("all_gather", MIB, TWO_NODES).algorithm != "ring/LL"  # what line 5 would have forced
    at_219 = TopologyModel(h200, tuner_rules=rules, nccl_version="2.19.1")
    assert at_219.cost("all_gather", MIB, TWO_NODES).algorithm == "ring/LL"  # from 2.19.1 the rule is taken


def test_cli_rules_at_2_18_one_warning_line(capsys, tmp_path):
    path = write(tmp_path, "allgather,0,1048576,ring,ll,-1,2,16\n")
    argv = ["collective", "all_gather", "--hardware", "h200", "--devices", "16", "--bytes", "1MiB", "--json",
            "--nccl-version", "2.18.3"]
    assert main(argv + ["--tuner-rules", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        "moesim: warning: --tuner-rules: NCCL 2.18.3 has no tuner plugin interface (NCCL_TUNER_PLUGIN is read from "
        "2.19.1), so NCCL's own tuner picks; the rules are not applied"]
    assert main(argv) == 0
    assert json.loads(out)["results"] == json.loads(capsys.readouterr().out)["results"]


@pytest.mark.parametrize("version,scope", [("2.19.1", "all"), ("2.24.3", "all"), ("2.30.7", "all"),
                                           ("2.30.7", "pick")])
def test_rules_apply_at_a_named_release(h200, version, scope):
    """With a release named the rows are priced under the release's layout key ((op, version)); the rule's row is
    looked up there too (it was looked up under `op` alone, so no rule ever matched with --nccl-version)."""
    rules = TunerRules((TunerRule("all_gather", "ring", "LL"),))
    ruled = TopologyModel(h200, tuner_rules=rules, nccl_version=version, nccl_version_scope=scope)
    own = TopologyModel(h200, nccl_version=version, nccl_version_scope=scope)
    assert own.cost("all_gather", MIB, TWO_NODES).algorithm == "ring/LL128"
    assert ruled.cost("all_gather", MIB, TWO_NODES).algorithm == "ring/LL"
