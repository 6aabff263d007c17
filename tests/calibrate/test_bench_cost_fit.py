"""The fit prices an nccl-tests row as the per-log error does (moesim/calibrate/bench_cost.py): alltoall_perf's
flat pairwise exchange, and the host floor of `-g N` launches per iteration, whose rows the fit leaves out."""

from __future__ import annotations

from pathlib import Path

import pytest

from moesim.calibrate import calibrate, render_calibration
from moesim.calibrate.bench_cost import host_bound_rows
from moesim.calibrate.fit import fit_profile, observations_for
from moesim.calibrate.nccl_error import log_error
from moesim.calibrate.nccl_tests import read_nccl_tests
from moesim.calibrate.predict import collective_terms, terms_time_s
from moesim.calibrate.records import CollectivePoint, Measurements
from moesim.cli import main
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"


def test_fit_prices_an_alltoall_log_as_the_pairwise_exchange_log_error_prices():
    """b200, 2 nodes: the model's own choice for 256 B - 32 MiB is the two-level exchange, which alltoall_perf
    never runs; the fit's price of every row is log_error's (the pairwise exchange)."""
    hw = load_hardware("b200")
    points = read_nccl_tests(DATA / "b200-vultr-2node_alltoall_perf.log", op="all_to_all", ranks=16).collectives
    err = log_error(points, hw)
    model = default_model(hw)
    two_level = 0
    for size in err.sizes:
        point = next(p for p in points if p.size_bytes == size.size_bytes)
        assert terms_time_s(collective_terms(point), hw) == pytest.approx(size.predicted_s, rel=1e-12)
        assert size.algorithm.startswith("pairwise")
        chosen = model.cost("all_to_all", point.size_bytes, Group(size=16, devices=16)).algorithm
        two_level += not chosen.startswith("pairwise")
    assert two_level >= 10  # the case the fit used to price differently


def _floored_log(gpus: int, hw_name: str = "a100-80gb"):
    """A noise-free 8-rank all-reduce log priced by the prior, each row at least `gpus` kernel launches."""
    hw = load_hardware(hw_name)
    model, floor_s = default_model(hw), gpus * hw.efficiency.kernel_launch_s
    points = []
    for k in range(3, 28, 2):
        t = max(model.cost("all_reduce", float(2**k), Group(size=8, devices=8)).time_s, floor_s)
        points.append(CollectivePoint(op="all_reduce", size_bytes=float(2**k), group_size=8, time_s=t,
                                      source=f"synthetic:{k}", variant="out_of_place", nccl_tests=True))
    return hw, Measurements(collectives=tuple(points))


def test_host_floor_rows_are_left_out_and_the_links_keep_their_figures():
    hw, log = _floored_log(8)
    floored = host_bound_rows(log, hw, 8)
    assert 0 < len(floored) < len(log.collectives)
    assert len(observations_for(log, set(), hw, gpus_per_thread=8)) == len(log.collectives) - len(floored)
    fit = fit_profile(log, hw, fit_keys=set(), bootstrap=0, level_prior_weight=10.0, gpus_per_thread=8)
    nvlink_alpha_s = fit.levels[0][1]
    assert nvlink_alpha_s == pytest.approx(hw.interconnect[0].latency_s, rel=1e-3)
    nvlink = hw.interconnect[0]  # a constant bandwidth efficiency (0.78)
    assert fit.levels[0][2] == pytest.approx(nvlink.link_bw_bytes_per_s * nvlink.bw_efficiency.points[0][1], rel=1e-3)
    # read as one launch per iteration (the old fit), the 8-launch floor is taken for link latency (x1.6 at prior
    # weight 1; x1.7 at the weight the size check picked and x2.9 before the published NVLink LL hop raised the prior's
    # own floor; since the ramp round, NCCL's per-size channel count raises it again, 5 of 13 rows are floored instead
    # of more, and the size check keeps the prior: weight 100, x1.0)
    naive = fit_profile(log, hw, fit_keys=set(), bootstrap=0, gpus_per_thread=1, level_prior_weight=1.0)
    assert naive.levels[0][1] > 1.4 * hw.interconnect[0].latency_s


def test_calibrate_gpus_per_thread_on_the_dkh_log(tmp_path):
    """The -g 8 A100 log (logs.toml gpus_per_thread = 8): its rows at the 32 us floor are not fitted."""
    path = str(DATA / "a100-dkh-1node_all_reduce_perf.log")
    hw = load_hardware("a100-80gb")
    result = calibrate([path], "a100-80gb", tmp_path / "c.toml", bootstrap=0, holdout_fraction=0.0, gpus_per_thread=8)
    n_rows = len(result.measurements.collectives)
    n_floored = len(host_bound_rows(result.measurements, hw, 8))
    assert n_floored > 0
    assert len(result.fit.observations) == n_rows - n_floored
    assert all(t.gpus_per_thread == 8 for o in result.fit.observations for t in o.terms)
    assert result.as_dict()["fit"]["host_floor_rows_left_out"] == n_floored
    assert f"{n_floored} nccl-tests rows at the host floor (8 kernel launches" in render_calibration(result)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_gpus_per_thread_is_checked(tmp_path, bad):
    hw, log = _floored_log(1)
    with pytest.raises(SpecError, match="gpus_per_thread"):
        fit_profile(log, hw, fit_keys=set(), bootstrap=0, gpus_per_thread=bad)


def test_cli_gpus_per_thread_bad_value_is_one_line(tmp_path, capsys):
    log = str(DATA / "a100-dkh-1node_all_reduce_perf.log")
    code = main(["calibrate", log, "--hardware", "a100-80gb", "-o", str(tmp_path / "c.toml"), "--gpus-per-thread", "0"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--gpus-per-thread" in err


def test_cli_every_row_at_the_floor_is_one_line(tmp_path, capsys):
    log = str(DATA / "a100-dkh-1node_all_reduce_perf.log")
    code = main(["calibrate", log, "--hardware", "a100-80gb", "-o", str(tmp_path / "c.toml"), "--bootstrap", "0",
                 "--gpus-per-thread", "100000"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "host floor" in err
