"""The B200 release table's Llama rows per decoder layer (docs/operators.md, Session 19 (hostcost)): the split adds
back up to the estimate, the host-bound step is the formula it says, and the decomposition's finding holds as
computed (the stale-block check: tests/ops/test_b200_release.py). Validation only: nothing here is priced or
fitted, and no error is asserted to be small."""

from __future__ import annotations

import pytest

from moesim.errors import SpecError
from moesim.models import b200_host_bound as hb
from moesim.models import b200_release as rel

ROWS = {r.case: r for r in rel.load_rows()}
TP = {tp: ROWS[case] for tp, case in ((2, "llama3_70b_tp2_pp1_dp4_l12_mbc4_cef"),
                                      (4, "llama3_70b_l12_tp4_pp1_dp2_mbc4_cef"),
                                      (8, "llama3_70b_l12_tp8_pp1_dp1_mbc4_cef"))}


@pytest.fixture(scope="module")
def splits():
    return {tp: hb.split_row(row) for tp, row in TP.items()}


def test_the_split_adds_back_up_to_the_estimate(splits):
    for tp, s in splits.items():
        priced = rel.price_row(TP[tp])
        assert s.step_s == pytest.approx(priced.step_s, rel=1e-12)
        assert 0 < s.outside_s < s.step_s
        assert s.outside_s + s.layer_micro_batches * s.layer_priced_s == pytest.approx(s.step_s, rel=1e-12)
        assert s.layer_micro_batches == 12 * 4
        assert s.launch_s == pytest.approx(s.kernels * 4e-6)  # b200.toml kernel_launch_us = 4
        assert s.collective_calls == 10  # SP: 4 all-gathers, 4 reduce-scatters, 2 wgrad all-gathers per layer·mb


def test_host_bound_step_is_the_longer_of_gpu_and_host_per_layer(splits):
    s = splits[8]
    # A host faster than the GPU: the GPU's pace, without the launch charge the host now stands for.
    assert hb.host_bound_step_s(s, 0.0) == pytest.approx(s.step_s - s.layer_micro_batches * s.launch_s)
    # At the host time it needs, the published step time.
    assert hb.host_bound_step_s(s, s.host_needed_s) == pytest.approx(TP[8].real_ms / 1e3)
    assert hb.host_bound_step_s(s, 2 * s.host_needed_s) > TP[8].real_ms / 1e3


def test_gpu_time_per_layer_falls_with_tp_and_only_tp8_would_be_host_bound(splits):
    """The finding as computed (docs/operators.md): the host time Llama-3-70B's tp 8 row would need exceeds its
    GPU time per layer·mb and is under tp 4's and tp 2's, so one host time per layer cannot explain the error's
    growth from tp 2 to tp 4."""
    gpu = [splits[tp].layer_gpu_s for tp in (2, 4, 8)]
    assert gpu[0] > gpu[1] > gpu[2]
    need = splits[8].host_needed_s
    assert splits[8].layer_gpu_s < need < splits[4].layer_gpu_s < splits[2].layer_gpu_s
    for tp in (2, 4):
        s = splits[tp]
        assert hb.host_bound_step_s(s, need) == pytest.approx(s.step_s - s.layer_micro_batches * s.launch_s)


def test_rows_it_does_not_split_are_named():
    for case in ("llama3_70b_l12_tp1_pp2_dp4_mbc4_cef", "deepseekv2_tp1_ep8_pp1_dp8_l4_mbc4_cef",
                 "llama3_70b_l12_tp2_cp4_pp1_dp1_seq32768_mbc4_cef"):
        with pytest.raises(SpecError, match=case):
            hb.split_row(ROWS[case])


def test_the_generated_block_is_current(load_script, doc_block):
    script = load_script("scripts/b200_host_bound.py")
    block = doc_block("b200_host_bound", "docs/operators.md")
    assert block == hb.render_block(hb.split_rows()).strip(), "run: python scripts/b200_host_bound.py --write"
    assert script.main(["--check"]) == 0

