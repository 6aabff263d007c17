"""NCCL code rules keyed by the release a run names (moesim/collectives/nccl_code_rules.toml; issue 11, session 13
treecorr): each rule at the releases either side of its change (NVIDIA/nccl src/graph/tuning.cc at those tags), and
unset (no version) the pricing as before."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from moesim.calibrate.nccl_table import entry_hardware, read_manifest
from moesim.collectives import nccl_code_rules
from moesim.collectives.base import Group
from moesim.collectives.nccl import tree_correction
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware

MANIFEST = Path(__file__).resolve().parents[2] / "tests" / "data" / "nccl" / "logs.toml"
S = 2**25  # 32 MiB: log2(S / 64) = 19, treeCorrectionFactor[Simple][19] = 0.7


def labels(model, op, size, group):
    return {c.label: c for c in model.candidates(op, size, group)}


def entry_hw(name):
    return entry_hardware(next(e for e in read_manifest(MANIFEST) if e["file"] == name))


def test_every_rule_holds_every_release_once_and_unset_is_todays():
    from moesim.collectives import nccl_tuning
    releases = nccl_tuning.releases()
    for name, entry in nccl_code_rules._file().items():
        if not isinstance(entry, dict):
            continue
        covered = [v for v in releases for first, last, _ in entry["rows"]
                   if nccl_tuning._key(first) <= nccl_tuning._key(v) <= nccl_tuning._key(last)]
        assert covered == list(releases), name
    assert nccl_code_rules.rule("ll128_on_blackwell") is True and nccl_code_rules.rule("pat_available") is True
    assert nccl_code_rules.rule("ring_ll128_factor_one_gpu_per_node") == 0.0
    assert nccl_code_rules.rule("nvlstree_tree_correction") is False


def test_ll128_is_off_on_blackwell_before_2_25_1():
    """ncclTopoTuneModel: `switch (minCompCap)` without `case 100` up to v2.24.3-1 (LL128 off), `case 100` at v2.25.1-1."""
    hw, group = load_hardware("b200"), Group(size=8, devices=8)
    before = labels(TopologyModel(hw, nccl_version="2.24.3"), "all_reduce", S, group)
    after = labels(TopologyModel(hw, nccl_version="2.25.1"), "all_reduce", S, group)
    assert "ring/LL128" not in before and "tree/LL128" not in before and "ring/Simple" in before
    assert "ring/LL128" in after and "tree/LL128" in after
    assert "ring/LL128" in labels(TopologyModel(hw), "all_reduce", S, group)  # unset: as before
    # NCCL_PROTO naming LL128 enables it past the default gate (protoEnable 1), at any release
    assert "ring/LL128" in labels(TopologyModel(hw, nccl_version="2.24.3", nccl_proto="LL128,Simple"), "all_reduce",
                                  S, group)
    # Hopper has LL128 at both
    h100 = load_hardware("h100-sxm")
    assert "ring/LL128" in labels(TopologyModel(h100, nccl_version="2.24.3"), "all_reduce", S, group)


def test_ring_ll128_with_one_gpu_per_node_is_0_7_up_to_2_22_3():
    """`busBw * (ppn < 2 ? 0.7 : 0.92)` for ring LL128 in v2.18.1-1 .. v2.22.3-1, `busBw * 0.92` from v2.23.4-1."""
    hw = load_hardware("h100-sxm")
    ppn1, ppn8 = Group(size=16, stride=8, devices=128), Group(size=16, devices=16)
    old = labels(TopologyModel(hw, nccl_version="2.22.3"), "all_gather", 2**30, ppn1)["ring/LL128"]
    new = labels(TopologyModel(hw, nccl_version="2.23.4"), "all_gather", 2**30, ppn1)["ring/LL128"]
    assert old.terms.bandwidth_s == pytest.approx(new.terms.bandwidth_s * 0.92 / 0.7, rel=1e-9)
    old8 = labels(TopologyModel(hw, nccl_version="2.22.3"), "all_gather", 2**30, ppn8)["ring/LL128"]
    new8 = labels(TopologyModel(hw, nccl_version="2.23.4"), "all_gather", 2**30, ppn8)["ring/LL128"]
    assert old8.terms.bandwidth_s == new8.terms.bandwidth_s  # 8 GPUs per node: 0.92 at both


def test_nvlstree_is_tree_corrected_on_blackwell_x86_from_2_29_2():
    """ncclTopoGetAlgoTime from v2.29.2-1: NVLSTree x treeCorrectionFactor where minCompCap >= 100 and cpuArch x86."""
    hw = entry_hw("b200-vultr-2node_all_reduce_perf.log")  # B200, hosts AMD EPYC (x86)
    assert hw.interconnect[1].host_cpu == "amd"
    group = Group(size=16, devices=16)

    def nvlstree(version, hardware=hw, size=S):
        return labels(TopologyModel(hardware, nccl_version=version), "all_reduce", size, group)["nvlstree/Simple"]

    assert tree_correction("Simple", S, "nvlstree") == 0.7
    before, after = nvlstree("2.28.9"), nvlstree("2.29.2")
    assert after.terms.bandwidth_s == pytest.approx(before.terms.bandwidth_s / 0.7, rel=1e-9)
    # index 23 (512 MiB - 1 GiB) is NVLSTree's: Simple 0.9; none from 1 GiB
    assert nvlstree("2.29.2", size=2**29).terms.bandwidth_s == pytest.approx(
        nvlstree("2.28.9", size=2**29).terms.bandwidth_s / 0.9, rel=1e-9)
    assert nvlstree("2.29.2", size=2**30).terms.bandwidth_s == nvlstree("2.28.9", size=2**30).terms.bandwidth_s
    # a host CPU not stated (GB200's Grace hosts state none) or ARM: not corrected
    for cpu in ("", "arm"):
        other = replace(hw, interconnect=(hw.interconnect[0], replace(hw.interconnect[1], host_cpu=cpu),
                                          *hw.interconnect[2:]))
        assert nvlstree("2.29.2", other).terms.bandwidth_s == nvlstree("2.28.9", other).terms.bandwidth_s
    # Hopper: none at any release
    h100 = load_hardware("h100-sxm")
    assert nvlstree("2.29.2", h100).terms.bandwidth_s == nvlstree("2.28.9", h100).terms.bandwidth_s


def test_pat_exists_from_2_23_4():
    """NCCL_ALGO_PAT and ncclPatEnable from v2.23.4-1 (v2.22.3-1: five algorithms, no PAT)."""
    hw, group = load_hardware("h100-sxm"), Group(size=16, stride=8, devices=128)
    assert "pat/Simple" not in labels(TopologyModel(hw, nccl_version="2.22.3"), "all_gather", S, group)
    assert "pat/Simple" in labels(TopologyModel(hw, nccl_version="2.23.4"), "all_gather", S, group)
    assert "pat/Simple" in labels(TopologyModel(hw), "all_gather", S, group)


def test_docs_print_the_code_rules_check_and_candidate_b_fails(load_script, doc_block):
    script = load_script("scripts/code_rules_check.py")
    found = script.rows()
    _, met = script.rule_b_lines(found, small_rise=0.01)
    assert not met
    assert doc_block("code_rules_check") == script.render().strip(), "run: python scripts/code_rules_check.py --write"
