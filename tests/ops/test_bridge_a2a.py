"""The Bridge rows' expert all-to-all and the EP A2A overlap beside the list (moesim.models.bridge_a2a)."""

import pytest

from moesim.models import bridge_a2a as ba
from moesim.models import bridge_perf as bp

BY_CASE = {r.case: r for r in bp.load_rows()}
H100_DSV3 = "25.09-h100-dsv3-pp8vp4ep64tp2"
H100_QWEN = "25.11-h100-qwen3-235b-fp8cs-tp2pp8vp4ep32"


def test_the_layer_pair_follows_megatrons_three_phases():
    # comm-bound middle phase: the two dispatch-shaped all-to-alls outlast the MoE work
    assert ba.layer_pair_s(1.0, 2.0, 3.0, 4.0, 5.0, 0.5) == pytest.approx(1.0 + 10.0 + 3.0)
    # compute-bound: every all-to-all hidden, the pair takes the compute alone
    assert ba.layer_pair_s(1.0, 2.0, 3.0, 4.0, 0.1, 0.1) == pytest.approx(10.0)
    # a combine longer than the attention beside it shows through
    assert ba.layer_pair_s(1.0, 2.0, 3.0, 4.0, 0.1, 2.0) == pytest.approx(2.0 + 6.0 + 3.0)


def test_paired_fraction_counts_megatrons_warmup():
    # pp 8, vp 4, 128 micro-batches: (8 − 1)·2 + 3·8 + 1 = 39 warm-up chunks of 512
    assert ba.paired_fraction(128, 8, 4) == pytest.approx((512 - 39) / 512)
    assert ba.paired_fraction(4, 8, 4) == 0.0
    assert ba.paired_fraction(8, 1, 1) == pytest.approx(7 / 8)


def test_the_recipes_overlap_and_dispatcher_are_recorded():
    assert BY_CASE[H100_DSV3].moe_a2a_overlap == "on" and BY_CASE[H100_DSV3].dispatcher == "deepep"
    assert BY_CASE[H100_QWEN].moe_a2a_overlap == "on" and BY_CASE[H100_QWEN].dispatcher == ""
    assert BY_CASE["26.02-b200-dsv3-fp8mx-pp16ep8"].moe_a2a_overlap == "off"
    p = bp.price_row(BY_CASE[H100_QWEN])
    assert any("EP all-to-all overlap" in t for t in bp.not_written(p))


@pytest.mark.parametrize("case", [H100_DSV3, H100_QWEN])
def test_the_breakdown_reads_the_estimates_all_to_all(case):
    p = bp.price_row(BY_CASE[case])
    rows = ba.a2a_rows(p)
    assert [a.name for a in rows] == list(ba.A2A_ENTRIES)
    for a in rows:
        assert a.per_call_s * a.calls_per_step == pytest.approx(a.step_s)
        assert a.bottleneck == "infiniband" and a.nodes == a.group_size * BY_CASE[case].tp // 8


@pytest.mark.parametrize("case", [H100_DSV3, H100_QWEN])
def test_the_variant_hides_no_more_than_the_all_to_all(case):
    p = bp.price_row(BY_CASE[case])
    v = ba.overlap_variant(p)
    assert v.step_s == pytest.approx(p.step_s)
    comm = 2 * v.dispatch_s + 2 * v.combine_s
    comp = v.serial_pair_s - comm
    assert max(comm, comp) <= v.overlapped_pair_s + 1e-12 and v.overlapped_pair_s < v.serial_pair_s
    a2a_step_s = sum(a.step_s for a in ba.a2a_rows(p))
    if p.vp > 1 and p.row.moe_a2a_overlap == "on":  # priced in the operator list already (bp.row_scenario)
        assert v.variant_step_s == v.step_s
    else:
        assert 0 < v.step_s - v.variant_step_s <= a2a_step_s
