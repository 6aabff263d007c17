"""review22: a sweep over training.comm_sm_share / a2a_kernel_sms says at each point where the setting moves nothing
(before, a point with another backend's kernels named priced exactly as the default with no word why)."""

from __future__ import annotations

import dataclasses

from moesim.collectives.dispatch import normal_kernel_sms
from moesim.ops.sm_share import unmoved_setting_note
from moesim.search.sweep import parse_vary, run_sweep
from moesim.specs.load import load_hardware
from moesim.specs.training import TrainingSpec
from search_fixtures import TINY_MOE, build

H100 = load_hardware("h100-sxm")


def _tr(**keys) -> TrainingSpec:
    return TrainingSpec(global_batch_sequences=16, **keys)


def test_the_note_names_why_nothing_moves():
    assert unmoved_setting_note(H100, _tr(moe_a2a_overlap=True, dispatch_backend="nccl"), 8, 1) == ""  # defaults
    no_pair = unmoved_setting_note(H100, _tr(comm_sm_share="nccl"), 8, 1)
    assert "overlapped pair" in no_pair and no_pair.startswith("comm_sm_share = nccl moves nothing")
    assert "ep 1" in unmoved_setting_note(H100, _tr(moe_a2a_overlap=True, comm_sm_share="nccl"), 1, 1)
    same = unmoved_setting_note(H100, _tr(moe_a2a_overlap=True, dispatch_backend="nccl", comm_sm_share="hybridep"),
                                8, 1)
    assert "dispatch_backend nccl" in same and "holds 0 SMs" in same
    both = unmoved_setting_note(H100, _tr(moe_a2a_overlap=True, dispatch_backend="nccl", a2a_kernel_sms=20), 8, 1)
    assert both.startswith("a2a_kernel_sms = 20 moves nothing")  # NCCL's all-to-all: no DeepEP / HybridEP count
    # where the setting moves the price, no note: NCCL's own CTAs under "nccl", a run's own DeepEP count
    assert unmoved_setting_note(H100, _tr(moe_a2a_overlap=True, dispatch_backend="nccl", comm_sm_share="nccl"), 8, 1) \
        == ""
    assert unmoved_setting_note(H100, _tr(moe_a2a_overlap=True, dispatch_backend="deepep", a2a_kernel_sms=32), 8, 1) \
        == ""
    no_sms = dataclasses.replace(H100, chip=dataclasses.replace(H100.chip, sm_count=None))
    assert "sm_count" in unmoved_setting_note(no_sms, _tr(moe_a2a_overlap=True, comm_sm_share="nccl"), 8, 1)


def test_a_sweep_over_comm_sm_share_explains_its_points():
    scenario = build(TINY_MOE, devices=8, batch=16, moe_a2a_overlap=True, dispatch_backend="nccl")
    sweep = run_sweep(scenario, [parse_vary("training.comm_sm_share=deepep,hybridep,nccl")], workers=1)
    notes = {p["point"]["training.comm_sm_share"]: [n for n in p["notes"] if n.startswith("all-to-all SMs")]
             for p in sweep["points"]}
    assert notes["deepep"] == []
    assert len(notes["hybridep"]) == 1 and "dispatch_backend nccl" in notes["hybridep"][0]
    assert all(p["status"] == "ok" for p in sweep["points"])


def test_a_run_count_equal_to_the_data_files_moves_nothing():
    same = unmoved_setting_note(H100, _tr(moe_a2a_overlap=True, dispatch_backend="deepep",
                                          a2a_kernel_sms=normal_kernel_sms()), 8, 1)
    assert f"holds {normal_kernel_sms()} SMs as under the defaults" in same
