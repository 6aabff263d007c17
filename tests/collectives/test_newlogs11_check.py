"""Session 21's fresh logs as they came out (scripts/newlogs11_check.py; docs/collectives-history.md, "Session 21
(newlogs11)"): which logs are fresh, their flags, and the figures the docs section quotes for them."""

from pathlib import Path

import pytest

from moesim.calibrate.nccl_table import entry_nccl_version
from moesim.calibrate.nccl_tests import read_nccl_tests

NCCL_DIR = Path(__file__).resolve().parents[1] / "data" / "nccl"
HOSTPAIR = "h100-hostpair-2node_all_reduce_perf.log"
TOGETHER = "h100-together-sky-2node_all_reduce_perf.log"


@pytest.fixture(scope="module")
def check(load_script):
    return load_script("scripts/newlogs11_check.py")


@pytest.fixture(scope="module")
def fresh(check):
    entries = {e["file"]: e for e in check.fresh_entries()}
    assert sorted(entries) == [HOSTPAIR, TOGETHER]
    return entries


def test_each_fresh_log_is_a_cluster_of_its_own(fresh):
    assert [(fresh[f]["cluster"], fresh[f]["hardware"]) for f in (HOSTPAIR, TOGETHER)] == [
        ("h100-hostpair", "h100-sxm"), ("h100-together-sky", "h100-sxm")]
    # session 13's healthy rule, applied before pricing: busbw rises at every size, the two columns within 1.2 %
    assert all(fresh[f]["healthy"] is True and "gpus_per_thread" not in fresh[f] for f in fresh)
    # the README prints 16 rank lines on two hosts; SkyPilot's page prints none, so the entry states 16 (2 x 8)
    (ranks,) = read_nccl_tests(NCCL_DIR / HOSTPAIR).rank_checks
    assert (ranks.ranks, ranks.ranks_from, ranks.listed) == (16, "rank lines", 16)
    assert fresh[TOGETHER]["ranks"] == 16
    (ranks,) = read_nccl_tests(NCCL_DIR / TOGETHER, ranks=16).rank_checks
    assert ranks.fits == (16, 16)  # busbw/algbw = 2 x 15/16 on every row
    # neither source states an NCCL release: both are priced at the profile's
    assert all(entry_nccl_version(NCCL_DIR, fresh[f]) == "" for f in fresh)


@pytest.mark.parametrize("name, mape, sizes_mib", [
    (HOSTPAIR, 0.0185, (256, 512, 1024, 2048, 4096, 8192)),
    (TOGETHER, 0.0263, (512, 1024, 2048, 4096, 8192)),
])
def test_both_meet_the_large_bar_priced_a_little_fast(check, fresh, name, mape, sizes_mib):
    err = check.priced(fresh[name])
    assert err.mape_large == pytest.approx(mape, abs=0.001)  # 1.9 % and 2.6 %
    assert err.mape_small is None  # no row below 1 MiB
    assert err.signed_large > 0.01  # measured slower than priced
    assert tuple(int(s.size_bytes) >> 20 for s in err.sizes) == sizes_mib
    assert {s.algorithm for s in err.sizes} == {"nvlstree/Simple"}
    # the error grows with the size, to +3.3 / +3.5 % at 8 GiB (measured / priced time - 1)
    assert 0.03 < err.sizes[-1].busbw_error < 0.04
    assert [s.busbw_error for s in err.sizes] == sorted(s.busbw_error for s in err.sizes)


def test_no_unshipped_option_moves_them(check, fresh):
    for entry in fresh.values():
        shipped = check.priced(entry).mape_large
        for option in ("nccl_proto=^LL128", "nccl_version=log's", "p2p_net_model=summed"):
            assert check.priced(entry, option).mape_large == pytest.approx(shipped, abs=1e-3)
