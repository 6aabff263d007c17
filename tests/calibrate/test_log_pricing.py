"""calibrate/log_pricing.PricedLog (session 15, tidy): one manifest log priced as the per-log table prices it, the step
nccl_table.prior_rows and the check scripts share."""

from __future__ import annotations

from pathlib import Path

import pytest

from moesim.calibrate.log_pricing import PricedLog, priced_log
from moesim.calibrate.nccl_error import log_error
from moesim.calibrate.nccl_table import _points, entry_hardware, entry_model, read_manifest
from moesim.collectives.select import default_model
from moesim.specs.load import load_hardware

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "nccl" / "logs.toml"
ENTRIES = {e["file"]: e for e in read_manifest(MANIFEST)}
# a forced NCCL_ALGO, a -g 8 run, a log with a stated host CPU (system fact), a plain one
FORCED = "h100-nccl1047-1node-ring_reduce_scatter_perf.log"
G8 = "b200-engaging-1node_all_gather_perf.log"
FACTS = "b200-vultr-2node_all_reduce_perf.log"
PLAIN = "a100-dkh-1node_all_reduce_perf.log"


def _log(name: str) -> PricedLog:
    return priced_log(MANIFEST.parent, ENTRIES[name])


@pytest.mark.parametrize("name", (FORCED, G8, FACTS, PLAIN))
def test_error_is_the_per_log_tables_pricing(name):
    """What the scripts did by hand before the fold: entry_hardware, entry_model (None: the default), the entry's -g."""
    entry = ENTRIES[name]
    hw = entry_hardware(entry)
    by_hand = log_error(_points(MANIFEST.parent, entry), hw, entry_model(entry, hw), entry.get("gpus_per_thread", 1))
    assert _log(name).error() == by_hand


def test_the_entrys_knobs_and_floor_are_carried():
    forced = _log(FORCED)
    assert forced.model().nccl_algo == "ring" and all(s.algorithm.startswith("ring/") for s in forced.error().sizes)
    g8 = _log(G8)
    assert g8.gpus_per_thread == 8 and g8.group_size == 8 and g8.name == "b200-engaging-1node_all_gather"
    one_launch = log_error(g8.points, g8.hardware, None, 1)
    assert g8.error() != one_launch  # the host floor of 8 launches per iteration is priced
    assert all(a.predicted_s >= b.predicted_s for a, b in zip(g8.error().sizes, one_launch.sizes))


def test_model_changes_are_a_new_model_and_leave_the_log_alone():
    log = _log(PLAIN)
    assert log.model() is not log.model()  # built at each call: plans are memoised per model
    summed = log.model(p2p_net_model="summed")
    assert summed.p2p_net_model == "summed" and log.model().p2p_net_model != "summed"
    # a log that forces no knob is priced by the profile's default model
    assert log.error() == log_error(log.points, log.hardware, default_model(log.hardware), log.gpus_per_thread)


def test_on_a_profile_keeps_the_entrys_system_facts():
    log = _log(FACTS)
    assert {level.host_cpu for level in log.hardware.interconnect if level.host_cpu} == {"amd"}
    moved = log.on(load_hardware("b200"))
    assert moved.hardware == log.hardware and moved.points is log.points
    assert moved.error() == log.error()
