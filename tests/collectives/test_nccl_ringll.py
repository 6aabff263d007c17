"""NCCL's ring LL bus bandwidth factor by release (nccl_code_rules.toml [ring_ll_factor]; session 17 ringll):
NVIDIA/nccl src/graph/tuning.cc ncclTopoTuneModel `busBw * ((nNodes > 1 || coll == ncclFuncAllReduce || coll ==
ncclFuncReduce) ? 1.0/4.0 : 1.0/3.0)` at v2.18.1-1 (l. 169) .. v2.20.5-1 (l. 181), `busBw * .5` from v2.21.5-1
(l. 180). Kept off by default (the ship rule's (b) not met), priced inside nccl_code_rules.in_force."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from moesim.collectives import nccl_code_rules, nccl_tuning
from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware

SIZE = 2**16  # 64 KiB: on H100 the ring LL candidates run below the llMaxBws cap at every factor here
ONE_NODE, TWO_NODES = Group(size=8, devices=8), Group(size=16, devices=16)  # h100-sxm: 8 GPUs per node
# by hand from the cited lines: (release, op, nodes) -> factor; "" = no release named (2.30.7's 0.5)
HAND = {(v, op, nodes): (0.5 if v in ("2.21.5", "") else 1.0 / 3.0 if (op, nodes) == ("all_gather", 1) else 1.0 / 4.0)
        for v in ("2.18.1", "2.20.5", "2.21.5", "") for op in ("all_reduce", "all_gather") for nodes in (1, 2)}


@pytest.mark.parametrize("version, op, nodes", sorted(HAND))
def test_factor_at_each_release_against_the_source_lines(version, op, nodes):
    with nccl_code_rules.in_force("ring_ll_factor"), nccl_tuning.at_version(version) if version else nullcontext():
        assert nccl_code_rules.ring_ll_bw_factor(op, nodes, 0.5) == HAND[version, op, nodes]


def test_the_rows_hold_the_quarter_and_the_third_exactly():
    entry = nccl_code_rules._file()["ring_ll_factor"]
    assert entry["rows"] == [["2.18.1", "2.20.5", [1.0 / 4.0, 1.0 / 3.0]], ["2.21.5", "2.30.7", [0.0, 0.0]]]
    assert entry["unset"] == [0.0, 0.0] and entry["priced"] is False


def test_kept_off_by_default_at_every_release():
    for version in ("2.18.1", "2.19.3", "2.20.5"):
        assert nccl_code_rules.rule("ring_ll_factor", version) == [0.0, 0.0]
        with nccl_tuning.at_version(version):
            assert nccl_code_rules.ring_ll_bw_factor("all_gather", 1, 0.5) == 0.5
    assert "priced" not in nccl_code_rules._file()["pat_available"]  # in_force restores what it found
    with nccl_code_rules.in_force("pat_available", "ring_ll_factor"):
        assert nccl_code_rules.rule("ring_ll_factor", "2.19.3") == [0.25, 1.0 / 3.0]
    assert "priced" not in nccl_code_rules._file()["pat_available"]
    assert nccl_code_rules._file()["ring_ll_factor"]["priced"] is False


def _ring_ll_s(version, op, group, on):
    with nccl_code_rules.in_force("ring_ll_factor") if on else nullcontext():
        model = TopologyModel(load_hardware("h100-sxm"), nccl_version=version)
        found = {c.label: c for c in model.candidates(op, SIZE, group)}
    return found["ring/LL" if op != "all_to_all" else "pairwise/LL"].terms.bandwidth_s


@pytest.mark.parametrize("op, group, ratio", [
    ("all_reduce", ONE_NODE, 2.0), ("all_reduce", TWO_NODES, 2.0),  # 1/4 against 1/2
    ("all_gather", ONE_NODE, 1.5), ("all_gather", TWO_NODES, 2.0),  # 1/3 on one node, 1/4 across
    ("broadcast", ONE_NODE, 1.5), ("broadcast", TWO_NODES, 2.0),  # the broadcast's protocol rows, as all-gather
    ("all_to_all", ONE_NODE, 1.0),  # send/recv: NCCL's p2p, no tuner factor
])
def test_pricing_moves_by_the_factor_in_both_paths(op, group, ratio):
    off, on = _ring_ll_s("2.19.3", op, group, False), _ring_ll_s("2.19.3", op, group, True)
    assert on == pytest.approx(off * ratio, rel=1e-12)
    # from v2.21.5-1 the factor is 0.5 as 2.30.7's: on or off the same
    assert _ring_ll_s("2.21.5", op, group, True) == _ring_ll_s("2.21.5", op, group, False)
