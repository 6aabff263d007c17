"""The Bridge rows' expert all-to-all (moesim.models.bridge_a2a) and what the EP A2A overlap, priced in the list in
Megatron's order (moesim.estimate.a2a_order), hides of it."""

import pytest

from moesim.models import bridge_a2a as ba
from moesim.models import bridge_perf as bp

BY_CASE = {r.case: r for r in bp.load_rows()}
H100_DSV3 = "25.09-h100-dsv3-pp8vp4ep64tp2"
H100_QWEN = "25.11-h100-qwen3-235b-fp8cs-tp2pp8vp4ep32"


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


H100_QWEN_26 = "26.02-h100-qwen3-235b-fp8cs-tp2pp8vp4ep32"


@pytest.mark.parametrize("case", [H100_DSV3, H100_QWEN_26])
def test_megatrons_order_hides_no_more_than_the_all_to_all(case):
    """On the rows that price the overlap (their recipe's vp), the step with it is shorter than without, by less than
    the all-to-alls the estimate charges: Megatron's order hides part of them, never compute."""
    import dataclasses

    from moesim.collectives.select import model_for
    from moesim.estimate import evaluate, step_estimate
    from moesim.estimate.candidates import single

    p = bp.price_row(BY_CASE[case])
    sc, layout, est = ba._estimate(p)
    assert sc.training.moe_a2a_overlap and p.vp > 1
    off = dataclasses.replace(sc, training=dataclasses.replace(sc.training, moe_a2a_overlap=False))
    without = step_estimate(off, evaluate(off, single(off, layout), model_for(off)), 0)
    a2a_step_s = sum(a.step_s for a in ba.a2a_rows(p))
    assert 0 < without.step_time_s - est.step_time_s < a2a_step_s
