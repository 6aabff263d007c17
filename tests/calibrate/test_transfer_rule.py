"""Session 10 (calpairs): `moesim calibrate --transfer machinery` and the two profile keys it writes, nonring_latency_us
(the hop every NCCL algorithm but ring reads) and alltoall_p2p_factor (the all-to-all's send/recv line);
docs/collectives-history.md "Session 10 (calpairs)"."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.bench_cost import benchmark_cost
from moesim.calibrate.nccl_error import log_error
from moesim.calibrate.nccl_table import calibration_matrix
from moesim.calibrate.nccl_tests import read_nccl_tests
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"
ROOT = Path(__file__).resolve().parents[2]


def _with(prior, **keys):
    return dataclasses.replace(prior, interconnect=tuple(dataclasses.replace(lv, **keys) for lv in prior.interconnect))


def test_nonring_latency_moves_every_algorithm_but_ring():
    """Set on every level (x3 the level's hop), it moves the tree / NVLS / NVLSTree rows of an all-reduce and leaves
    ring all-gather, broadcast and ring all-reduce rows exactly; set equal to latency_us it changes no price."""
    prior = load_hardware("h100-sxm")
    base = default_model(prior)
    same = default_model(_with(prior, nonring_latency_s=None))
    slow = default_model(dataclasses.replace(prior, interconnect=tuple(
        dataclasses.replace(lv, nonring_latency_s=3 * lv.latency_s) for lv in prior.interconnect)))
    moved = set()
    for n in (8, 32):
        group = Group(size=n, devices=n)
        for op in ("all_reduce", "all_gather", "broadcast", "reduce_scatter"):
            for size in (2.0**10, 2.0**16, 2.0**20, 2.0**26):
                before = base.cost(op, size, group)
                assert same.cost(op, size, group).time_s == before.time_s
                after = slow.cost(op, size, group)
                if before.algorithm.startswith("ring") and after.algorithm.startswith("ring"):
                    assert after.time_s == before.time_s, (op, n, size, before.algorithm)
                else:
                    assert after.time_s >= before.time_s
                    moved.add(before.algorithm.split("/")[0])
    assert {"tree", "nvls", "nvlstree"} <= moved


def test_alltoall_p2p_factor_moves_the_all_to_all_not_send_recv():
    prior = load_hardware("h100-sxm")
    base = default_model(prior)
    half = default_model(_with(prior, alltoall_p2p_factor=0.5))
    for n in (8, 16):
        group = Group(size=n, devices=n)
        for size in (2.0**24, 2.0**30):
            assert benchmark_cost(half, "send_recv", size, group)[0] == benchmark_cost(base, "send_recv", size, group)[0]
            assert benchmark_cost(half, "all_to_all", size, group)[0] > 1.2 * benchmark_cost(base, "all_to_all", size,
                                                                                           group)[0]


def test_new_keys_are_checked(tmp_path):
    level = load_hardware("h100-sxm").interconnect[1]
    assert level.nonring_latency_s is None and level.alltoall_p2p_factor is None
    with pytest.raises(SpecError, match="alltoall_p2p_factor"):
        dataclasses.replace(level, alltoall_p2p_factor=5.0)
    with pytest.raises(SpecError, match="nonring_latency"):
        dataclasses.replace(level, nonring_latency_s=-1e-6)
    text = (ROOT / "hardware_profiles" / "h100-sxm.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("latency_us = ", "nonring_latency_us = -2.0\nlatency_us = ", 1))
    with pytest.raises(SpecError, match="nonring_latency"):
        load_hardware(bad)


def test_a_tree_log_leaves_ring_and_broadcast_at_the_prior(tmp_path):
    """Voltage Park: the 4-node all-reduce's tree/LL rows set the network hop 14 -> 10.7 us. Shared, the ring
    all-gather and the broadcast pay it (22.4 -> 24.7, 92.8 -> 97.0 %); by machinery it is written to
    nonring_latency_us, latency_us keeps 14 us and both held-out logs price as under the prior."""
    prior = load_hardware("h100-sxm")
    out = tmp_path / "m.toml"
    result = calibrate([str(DATA / "h100-voltagepark-4node_all_reduce_perf.log")], "h100-sxm", out, bootstrap=0,
                       holdout_fraction=0.0, transfer_rule="machinery")
    ib = tomllib.loads(out.read_text())["interconnect"][1]
    assert ib["latency_us"] == pytest.approx(14.0) and ib["nonring_latency_us"] < 12.0
    assert result.transfer_notes and "non-ring" in result.transfer_notes[0]
    for name in ("all_gather", "broadcast"):
        held = read_nccl_tests(DATA / f"h100-voltagepark-4node_{name}_perf.log").collectives
        assert log_error(held, result.profile).mape_large == pytest.approx(log_error(held, prior).mape_large,
                                                                           rel=1e-9), name
    own = read_nccl_tests(DATA / "h100-voltagepark-4node_all_reduce_perf.log").collectives
    assert log_error(own, result.profile).mape_small < log_error(own, prior).mape_small  # its tree rows keep the fit


def test_machinery_keeps_the_one_peer_and_all_to_all_lines_apart(tmp_path):
    """xxrjun 2 nodes: the all-to-all's rows set P +4.5 %, the sendrecv's -2.4 %. By machinery each log's P goes to
    its own key and the other log prices as under the prior; the two pairs are listed in the matrix."""
    manifest = tmp_path / "logs.toml"
    entries = "".join(f'[[log]]\nfile = "{DATA / f"h100-xxrjun-2node_{op}_perf.log"}"\nhardware = "h100-sxm"\n'
                      f'cluster = "x"\nhealthy = true\nshape = false\nnote = ""\n\n' for op in ("alltoall", "sendrecv"))
    manifest.write_text("schema_version = 1\n\n" + entries)
    shared = {(p.fitted_on, p.held_out): p for p in calibration_matrix(manifest)}
    kept = {(p.fitted_on, p.held_out): p for p in calibration_matrix(manifest, transfer_rule="machinery")}
    assert set(shared) == set(kept) and len(kept) == 2
    for pair, p in kept.items():
        assert shared[pair].calibrated_mape > shared[pair].prior_mape + 0.01  # shared: each gets worse by > 1 pt
        assert p.calibrated_mape == pytest.approx(p.prior_mape, abs=1e-9)  # machinery: at the prior


def test_transfer_rule_is_checked_and_reported(tmp_path, capsys):
    from moesim.cli import main

    log = str(DATA / "h100-xxrjun-2node_alltoall_perf.log")
    with pytest.raises(SpecError, match="transfer"):
        calibrate([log], "h100-sxm", tmp_path / "a.toml", bootstrap=0, transfer_rule="per-op")
    assert main(["calibrate", log, "--hardware", "h100-sxm", "-o", str(tmp_path / "b.toml"), "--bootstrap", "0",
                 "--json", "--transfer", "machinery"]) == 0
    fit = json.loads(capsys.readouterr().out)["fit"]
    assert fit["transfer_rule"] == "machinery" and "all-to-all only" in fit["transfer_notes"][0]
    raw = tomllib.loads((tmp_path / "b.toml").read_text())["interconnect"][1]
    assert raw["alltoall_p2p_factor"] > 1.02 and raw["p2p_factor"] == pytest.approx(1.0)
    assert main(["calibrate", log, "--hardware", "h100-sxm", "-o", str(tmp_path / "c.toml"), "--bootstrap", "0",
                 "--json"]) == 0
    assert "transfer_rule" not in json.loads(capsys.readouterr().out)["fit"]  # the default's JSON is as before
