"""Session 15's fresh logs as they came out (scripts/newlogs6_check.py; docs/collectives-history.md, "Session 15
(newlogs6)"): which logs are fresh, their flags and launch facts, and the figures the docs section quotes for them."""

import pytest


@pytest.fixture(scope="module")
def check(load_script):
    return load_script("scripts/newlogs6_check.py")


@pytest.fixture(scope="module")
def by_file(check):
    return {e["file"]: e for e in check.fresh_entries()}


def test_the_fresh_logs_are_the_eight_kept(by_file):
    assert len(by_file) == 8
    clusters = {}
    for f, e in by_file.items():
        clusters.setdefault(e["cluster"], []).append(f)
    assert {c: len(v) for c, v in clusters.items()} == {"b200-engaging-ubuntu": 6, "h100-lambda": 1, "h100-mghpcc-dgx": 1}
    # every one is a -g 8 run across two nodes: one process per node, no binding flag (logs.toml cites the scripts)
    assert all(e["gpus_per_thread"] == 8 and e["processes_per_node"] == 1 and e["bind_to"] == "default"
               for e in by_file.values())
    # session 13's healthy rule, applied before pricing: the two H100 runs' rows fail it, the Ubuntu pair's pass
    assert sorted(f for f, e in by_file.items() if not e["healthy"]) == [
        "h100-lambda-2node-g8_all_reduce_perf.log", "h100-mghpcc-dgx-2node-g8_all_reduce_perf.log"]


def test_the_per_call_cost_is_on_every_g8_pair_at_about_half_on_the_ubuntu_stack(check, by_file):
    """The Ubuntu pair misses on the five collectives the Rocky pairs miss, by about half as much; its sendrecv (one
    network peer per node) is met; the two H100 -g 8 pairs of other clusters miss by 2-4x the bar as well."""
    ubuntu = {c: check.priced(by_file[f"b200-engaging-ubuntu-2node_{c}_perf.log"]).mape_large
              for c in ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "broadcast", "sendrecv")}
    assert all(ubuntu[c] > 1.0 for c in ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "broadcast"))
    assert ubuntu["sendrecv"] < 0.10  # 6.3 %
    assert 1.20 < ubuntu["all_gather"] < 1.30  # 124.5 % (the Rocky pairs: 298.0 / 239.4 %)
    gather_1mib = check.priced(by_file["b200-engaging-ubuntu-2node_all_gather_perf.log"]).sizes[0]
    assert gather_1mib.size_bytes == 1 << 20 and 3.5 < gather_1mib.busbw_error < 4.0  # +375 % (Rocky: +776 / +962 %)
    for name in ("h100-lambda-2node-g8_all_reduce_perf.log", "h100-mghpcc-dgx-2node-g8_all_reduce_perf.log"):
        assert check.priced(by_file[name]).mape_large > 2.0  # 238.4 / 407.3 %


def test_the_options_move_what_the_docs_section_says(check, by_file):
    gather = by_file["b200-engaging-ubuntu-2node_all_gather_perf.log"]
    # ^LL128 prices the 1-4 MiB ring rows as Simple: 124.5 -> 94.0 %, still a miss
    assert 0.5 < check.priced(gather, "nccl_proto=^LL128").mape_large < check.priced(gather).mape_large - 0.2
    # the NCCL version as a fact (2.29.2) moves none of the Ubuntu logs; the DGX pair's 2.18.3 moves it, further off
    for f, entry in by_file.items():
        if f.startswith("b200-engaging-ubuntu-2node_"):
            assert check.priced(entry, "nccl_version=log's").mape_large == check.priced(entry).mape_large
    dgx = by_file["h100-mghpcc-dgx-2node-g8_all_reduce_perf.log"]
    assert check.priced(dgx, "nccl_version=log's").mape_large > check.priced(dgx).mape_large + 1.0  # 407.3 -> 557.5 %
    # the per-peer sum: the Ubuntu alltoall 122.7 -> 90.2 %
    a2a = by_file["b200-engaging-ubuntu-2node_alltoall_perf.log"]
    assert check.priced(a2a, "p2p_net_model=summed").mape_large < check.priced(a2a).mape_large - 0.3
