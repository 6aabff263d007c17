"""Session 20's fresh log as it came out (scripts/newlogs10_check.py; docs/collectives-history.md, "Session 20
(newlogs10)"): which log is fresh, its flags and launch, and the figures the docs section quotes for it."""

from pathlib import Path

import pytest

from moesim.calibrate.nccl_table import entry_nccl_version
from moesim.calibrate.nccl_tests import read_nccl_tests

NCCL_DIR = Path(__file__).resolve().parents[1] / "data" / "nccl"
AZHPC = "h200-azhpc-1node_all_reduce_perf.log"


@pytest.fixture(scope="module")
def check(load_script):
    return load_script("scripts/newlogs10_check.py")


@pytest.fixture(scope="module")
def fresh(check):
    entries = check.fresh_entries()
    assert [e["file"] for e in entries] == [AZHPC]
    return entries[0]


def test_the_fresh_log_is_one_cluster_of_its_own(fresh):
    assert (fresh["cluster"], fresh["hardware"]) == ("h200-azhpc", "h200")
    # session 13's healthy rule, applied before pricing: one row, so no fall, and 31517 against 31516 us
    assert fresh["healthy"] is True
    # eight rank lines on one host, one process per GPU; the log's own banner states NCCL 2.19.3
    (ranks,) = read_nccl_tests(NCCL_DIR / AZHPC).rank_checks
    assert (ranks.ranks, ranks.ranks_from, ranks.listed) == (8, "rank lines", 8) and "gpus_per_thread" not in fresh
    assert entry_nccl_version(NCCL_DIR, fresh) == "2.19.3"
    # the mpirun line's NCCL_MIN_NCHANNELS=32 is a channel knob the model reads (logs.toml)
    assert fresh["nccl_min_nchannels"] == 32


def test_it_meets_the_large_bar_priced_slower_than_measured(check, fresh):
    err = check.priced(fresh)
    assert 0.040 < err.mape_large < 0.055  # 4.7 %
    assert err.mape_small is None  # one size, 8 GiB: nothing below 1 MiB
    assert -0.055 < err.signed_large < -0.040  # measured faster than priced
    (size,) = err.sizes
    assert size.size_bytes == 8 << 30 and size.algorithm == "nvls/Simple"
    assert size.measured_s == pytest.approx(31516e-6)  # the faster of out-of-place / in-place


def test_no_unshipped_option_moves_it(check, fresh):
    shipped = check.priced(fresh).mape_large
    for option in ("nccl_proto=^LL128", "nccl_version=log's", "p2p_net_model=summed"):
        assert check.priced(fresh, option).mape_large == pytest.approx(shipped, abs=1e-3)
