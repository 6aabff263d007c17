"""Session 13's fresh logs as they came out (scripts/newlogs4_check.py; docs/collectives-history.md, "Session 13
(newlogs4)"): which logs are fresh, and the option figures the docs section quotes for them."""

import pytest


@pytest.fixture(scope="module")
def check(load_script):
    return load_script("scripts/newlogs4_check.py")


def test_the_fresh_logs_are_the_twelve_engaging_ones(check):
    entries = check.fresh_entries()
    assert len(entries) == 12
    assert {e["cluster"] for e in entries} == {"b200-engaging"}
    assert all(e["healthy"] and e["gpus_per_thread"] == 8 and e["hardware"] == "b200" for e in entries)
    assert sorted({e["file"].split("_", 1)[0] for e in entries}) == ["b200-engaging-1node", "b200-engaging-2node"]


def test_the_options_move_what_the_docs_section_says(check):
    by_file = {e["file"]: e for e in check.fresh_entries()}
    gather = by_file["b200-engaging-2node_all_gather_perf.log"]
    # ^LL128 prices the 1-4 MiB ring rows as Simple: 298.0 -> 231.7 %
    assert check.priced(gather, "nccl_proto=^LL128").mape_large < check.priced(gather).mape_large - 0.5
    # the NCCL version as a fact (2.29.2) moves none of the fresh logs
    for entry in by_file.values():
        assert check.priced(entry, "nccl_version=log's").mape_large == check.priced(entry).mape_large
    # the per-peer sum prices the 2-node all-to-all slower: 279.9 -> 203.7 %
    a2a = by_file["b200-engaging-2node_alltoall_perf.log"]
    assert check.priced(a2a, "p2p_net_model=summed").mape_large < check.priced(a2a).mape_large - 0.5
