"""The NCCL version as a fact of the run (issue 11, session 12 ncclver): the parser reads a log's version, the
version-keyed tables give each release tag's value, unset prices as before, bad versions give one clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moesim.calibrate.nccl_table import entry_nccl_version, read_manifest
from moesim.calibrate.nccl_tests import read_nccl_version
from moesim.collectives import nccl_tuning
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "data" / "nccl"


# -- the parser ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("log, version", [
    ("h100-hgx-2node-qoofyk_all_reduce_perf.log", "2.26.2"),      # "NCCL version 2.26.2+cuda12.8"
    ("h800-nf5688m7-1node_broadcast_perf.log", "2.18.3"),         # "NCCL version 2.18.3+cuda12.2"
    ("h100-xxrjun-10node_all_gather_perf.log", "2.29.2"),         # only "nccl-library=22902" in the header
    ("a100-dkh-1node_all_reduce_perf.log", "2.19.3"),             # "nccl-library=21903"
    ("a100-thanos-1node-mpirun_all_reduce_perf.log", ""),         # neither: not stated
    ("b200-vultr-2node_all_gather_perf.log", ""),
])
def test_the_parser_reads_a_logs_version(log, version):
    assert read_nccl_version(LOGS / log) == version


def test_the_parser_reads_the_banner_through_launcher_prefixes_and_before_the_header():
    data = (b"[1,0]<stdout>:# nThread 1 nGpus 1 minBytes 8\n[1,0]<stdout>:NCCL version 2.27.5+cuda12.8\n"
            b"# nccl-tests version 2.17.9 nccl-headers=22403 nccl-library=22403\n")
    assert read_nccl_version("x.log", data=data) == "2.27.5"  # the banner first
    assert read_nccl_version("x.log", data=b"# nccl-tests version 2.17.6 nccl-headers=22808 nccl-library=22809\n") \
        == "2.28.9"
    assert read_nccl_version("x.log", data=b"# nThread 1 nGpus 8\n#  Rank  0 Group  0 Pid 1 device 0\n") == ""


def test_a_manifest_version_fills_in_and_may_not_contradict_the_banner():
    entries = {e["file"]: e for e in read_manifest(LOGS / "logs.toml")}
    assert entry_nccl_version(LOGS, entries["b200-vultr-2node_all_gather_perf.log"]) == "2.28.9"  # logs.toml
    assert entry_nccl_version(LOGS, entries["a100-thanos-1node-mpirun_all_reduce_perf.log"]) == ""
    wrong = dict(entries["h100-hgx-2node-qoofyk_all_reduce_perf.log"], nccl_version="2.24.3")
    with pytest.raises(SpecError, match="prints NCCL 2.26.2"):
        entry_nccl_version(LOGS, wrong)


# -- the tables ----------------------------------------------------------------------------------------------------
# NVIDIA/nccl src/graph/tuning.cc perChMaxRingLL128Bws[BLACKWELL] at each tag (read with git show TAG:file)
@pytest.mark.parametrize("version, row", [
    ("2.26.6", [73.4, 73.4, 73.4]),  # v2.26.6-1: {2*36.7, 2*36.7, 2*36.7}
    ("2.28.9", [73.4, 34.6, 73.4]),  # v2.28.9-1
    ("2.29.2", [34.5, 34.6, 34.5]),  # v2.29.2-1 (the table priced unset)
    ("2.30.7", [40.0, 40.0, 40.0]),  # v2.30.7-1
])
def test_blackwell_ring_ll128_cap_per_tag(version, row):
    with nccl_tuning.at_version(version):
        assert nccl_tuning.tuning()["per_channel_caps"]["ring_ll128_gb_per_s"]["blackwell"] == row
    assert nccl_tuning.tuning()["per_channel_caps"]["ring_ll128_gb_per_s"]["blackwell"] == [34.5, 34.6, 34.5]


@pytest.mark.parametrize("version, path, value", [
    ("2.24.3", ("hop_latency_us", "net", "nvlstree"), [0.0, 0.0, 14.0]),   # v2.24.3-1 hwLat[NET][NVLSTree]
    ("2.28.9", ("hop_latency_us", "net", "nvlstree"), [0.0, 0.0, 20.9]),   # v2.28.9-1 hwLatencies
    ("2.19.3", ("hop_latency_us", "nvlink", "tree"), [0.6, 1.25, 28.0]),   # v2.19.3-1 hwLat[NVLINK][Tree]
    ("2.18.3", ("ll_max_bus_gb_per_s", "hopper"), [87.7, 22.5, 19.0]),     # v2.18.3-1 llMaxBws: Hopper = Ampere's row
    ("2.26.2", ("nvls", "channels", "blackwell"), 32),                     # v2.26.2-1 nvls.cc NVLS_NCHANNELS_SM100
    ("2.27.5", ("nvls", "channels", "blackwell"), 24),                     # v2.27.5-1 NVLS_NCHANNELS_SM100_NVL
    ("2.23.4", ("pat", "bw_factor"), 0.85),                                # v2.23.4-1 PAT busBw *= .85
    ("2.20.5", ("pat", "bw_factor"), 0.75),                                # no PAT before v2.23.4-1: "absent", kept
])
def test_the_tables_give_the_tagged_value(version, path, value):
    with nccl_tuning.at_version(version):
        node = nccl_tuning.tuning()
        for name in path:
            node = node[name]
    assert node == value


def test_unset_is_the_file_itself_and_a_release_equal_to_it_prices_bit_identically():
    assert nccl_tuning.tuning() is nccl_tuning._file()
    hw = load_hardware("b200")
    today, same, older = TopologyModel(hw), TopologyModel(hw, nccl_version="2.29.2"), \
        TopologyModel(hw, nccl_version="2.26.6")
    group = Group(size=16, devices=16)
    moved = 0
    for size in (2.0**10, 2.0**20, 2.0**25, 2.0**30):
        for op in ("all_reduce", "all_gather"):
            a = today.cost(op, size, group)
            assert same.cost(op, size, group) == a  # v2.29.2-1's rows are the file's own values
            moved += older.cost(op, size, group).time_s != a.time_s
    assert moved >= 1  # v2.26.6-1's Blackwell caps (73.4 GB/s per channel) move some of them


def test_pick_scope_prices_today_wire_ranked_at_the_release():
    hw = load_hardware("b200")
    group = Group(size=16, devices=16)
    all_, pick = (TopologyModel(hw, nccl_version="2.26.6", nccl_version_scope=s) for s in ("all", "pick"))
    today = TopologyModel(hw)
    size = 2.0**25
    # at 32 MiB NCCL 2.26.6 picks ring/LL128 (its Blackwell LL128 cap is twice today's), today ring/Simple
    assert all_.cost("all_gather", size, group).algorithm == "ring/LL128"
    assert today.cost("all_gather", size, group).algorithm == "ring/Simple"
    chosen = pick.cost("all_gather", size, group)
    assert chosen.algorithm == "ring/LL128"
    wire = {c.label: c.time_s for c in today.candidates("all_gather", size, group)}
    assert chosen.time_s == wire["ring/LL128"]  # the pick's wire is today's


def test_the_versioned_rows_and_the_docs_block_are_current(load_script):
    script = load_script("scripts/nccl_version_inventory.py")
    text = script.TUNING.read_text(encoding="utf-8")
    block = text.split(script.ROWS_BEGIN)[1].split(script.ROWS_END)[0].strip()
    assert block == script.versioned_rows().strip(), "run: python scripts/nccl_version_inventory.py --rows --write"
    doc = script.DOC.read_text(encoding="utf-8")
    assert doc.split(script.BEGIN)[1].split(script.END)[0].strip() == script.render().strip(), \
        "run: python scripts/nccl_version_inventory.py --write"
    # today's tables are the newest rows (2.30.7), the per-channel caps v2.29.2-1's (nccl_tuning.toml says so)
    for path in nccl_tuning._file()["versioned"]:
        want = nccl_tuning.row_for(path, "2.29.2" if path.startswith("per_channel_caps") else "2.30.7")
        node = nccl_tuning._file()
        for name in path.split("."):
            node = node[name]
        assert node == want, path


# -- bad versions --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["2.26.4", "2.31.0", "2.17.1", "v2.26.2-1", "latest", "2.26"])
def test_a_bad_version_is_one_clear_error(bad):
    with pytest.raises(SpecError, match=r"unsupported NCCL version .*2\.18\.1 - 2\.30\.7") as err:
        TopologyModel(load_hardware("h100-sxm"), nccl_version=bad)
    assert err.value.field == "nccl_version" and "2.26.2" in err.value.allowed


def test_the_cli_flag_and_json_key():
    cmd = [sys.executable, "-m", "moesim", "collective", "all_gather", "--hardware", "b200", "--devices", "16",
           "--bytes", "32MiB", "--json"]
    env = {"PYTHONPATH": str(ROOT)}
    import os
    env = {**os.environ, **env}
    plain = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
    older = json.loads(subprocess.run(cmd + ["--nccl-version", "2.26.6"], capture_output=True, text=True, env=env,
                                      check=True).stdout)
    assert plain["nccl_version"] == "" and older["nccl_version"] == "2.26.6"
    assert plain["nccl_version_scope"] == older["nccl_version_scope"] == "all"
    assert older["results"][0]["algorithm"] == "ring/LL128" != plain["results"][0]["algorithm"]
    bad = subprocess.run(cmd + ["--nccl-version", "2.26.4"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "--nccl-version" in lines[0] and "2.18.1 - 2.30.7" in lines[0]


def test_a_scenario_names_its_release(tmp_path):
    from moesim.collectives.select import model_for
    from moesim.specs.load import load_scenario

    text = (ROOT / "scenarios" / "deepseek-v2-l4-b200-ep8.toml").read_text(encoding="utf-8")
    text = text.replace('model = "', f'model = "{ROOT / "scenarios"}/')
    for version, ok in (("2.26.6", True), ("2.26.4", False)):
        path = tmp_path / f"s{version}.toml"
        path.write_text(text + f'\n[system]\nnccl_version = "{version}"\n', encoding="utf-8")
        if ok:
            assert model_for(load_scenario(path)).nccl_version == version
        else:
            with pytest.raises(SpecError, match="system.nccl_version"):
                load_scenario(path)


def test_docs_print_the_ncclver_check_and_the_rule_is_not_met(load_script):
    """scripts/ncclver_check.py: the logs at their own releases against today's tables; the docs print its block, and
    the candidate fails the ship rule's (b) (so the per-log pricing keeps today's tables: entry_model's version is "")."""
    script = load_script("scripts/ncclver_check.py")
    found = script.rows()
    moved = {r[0] for r in found if r[2] != r[3]}
    assert "h100-voltagepark-4node_all_reduce" in moved and "h100-xxrjun-10node_all_gather" not in moved  # 2.24.3; 2.29.2
    _, met = script.rule_b_lines(found, small_rise=0.01)
    assert not met
    doc = script.DOC.read_text(encoding="utf-8")
    assert doc.split(script.BEGIN)[1].split(script.END)[0].strip() == script.render().strip(), \
        "run: python scripts/ncclver_check.py --write"


def test_a_manifest_with_a_bad_version_names_the_entry(tmp_path):
    manifest = tmp_path / "logs.toml"
    manifest.write_text('schema_version = 1\n\n[[log]]\nfile = "x_all_reduce_perf.log"\nhardware = "h100-sxm"\n'
                        'cluster = "x"\nhealthy = true\nshape = false\nnote = ""\nnccl_version = "2.26"\n',
                        encoding="utf-8")
    with pytest.raises(SpecError) as err:
        read_manifest(manifest)
    text = str(err.value)
    assert "log 1 (x_all_reduce_perf.log)" in text and "nccl_version" in text and "2.18.1 - 2.30.7" in text
