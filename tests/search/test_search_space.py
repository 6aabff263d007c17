"""The search space: rejection counts per rule against a brute-force enumeration, order dedupe, options."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from brute_force import classify, options, placement
from moesim.errors import SpecError
from moesim.search import REASONS, enumerate_layouts, search
from moesim.search import placement as placement_module
from moesim.search.placement import all_orders, distinct_placements
from moesim.specs.layout import Layout
from moesim.specs.scenario import SearchSpace
from search_fixtures import DENSE, ODD_MOE, TINY_MOE, build

SMALL = SearchSpace(zero_stages=(0, 3), recompute_modes=("none", "full"), max_micro_batches=4)


@pytest.mark.parametrize("make", [
    lambda: build(ODD_MOE, devices=12, search=SMALL),
    lambda: build(ODD_MOE, devices=8, batch=12, search=SMALL),
    lambda: build(TINY_MOE, devices=8, batch=16, seq_len=1024, search=SMALL),
    lambda: build(DENSE, devices=8, batch=8, seq_len=1024, search=SMALL),
    lambda: build(ODD_MOE, devices=12, search=SMALL, sequence_parallel=False),
    lambda: build(TINY_MOE, devices=8, batch=16, seq_len=1024, search=SMALL, sequence_parallel=False,
                  dispatch_backend="deepep"),
    lambda: build(DENSE, devices=8, batch=8, seq_len=1024, search=SMALL, sequence_parallel=False),
    lambda: build(TINY_MOE, devices=8, batch=16, seq_len=1024, search=SMALL, moe_a2a_overlap=True),
], ids=["odd-moe-12", "odd-moe-8", "tiny-moe-8", "dense-8", "odd-moe-12-no-sp", "tiny-moe-8-deepep-no-sp",
        "dense-8-no-sp", "tiny-moe-8-a2a-overlap"])
def test_rejections_match_brute_force(make):
    """Every considered layout in exactly one bucket, the first rule it breaks, as Scenario.problems says."""
    scenario = make()
    found = enumerate_layouts(scenario)
    brute = classify(scenario)
    n_opt = len(options(scenario))
    expected = Counter(reason for _, reason in brute.values())
    assert found.considered == len(brute) * n_opt
    assert len(found.candidates) == expected.pop(None, 0) * n_opt
    for reason in REASONS:
        if reason != "out_of_memory":
            assert found.rejected[reason] == expected.get(reason, 0) * n_opt, reason
    assert found.rejected["out_of_memory"] == 0  # counted by the ranking, after evaluation


def test_every_rule_bites_on_the_odd_model():
    # The schedule and context-parallel rules need those choices in the space (the default has none).
    wide = dataclasses.replace(SMALL, pipeline_schedules=("1f1b", "interleaved", "zb-v", "dualpipe"),
                               virtual_stages=(2, 3), context_parallel=(1, 2, 4), cp_comms=("p2p", "a2a"))
    found = enumerate_layouts(build(ODD_MOE, devices=24, batch=36, seq_len=500, search=wide))
    megatron = [r for r in REASONS if r.startswith("megatron_")]
    assert len(megatron) == 4 and all(found.rejected[r] == 0 for r in megatron)  # sequence parallel on, NCCL
    overlap_rules = ["a2a_overlap_needs_interleaved_at_pp_above_1"]  # the overlap off here: below
    assert all(found.rejected[r] > 0 for r in REASONS if r != "out_of_memory" and r not in megatron + overlap_rules)
    assert found.rejected["a2a_overlap_needs_interleaved_at_pp_above_1"] == 0
    refused = enumerate_layouts(build(ODD_MOE, devices=24, batch=36, seq_len=500, search=wide,
                                      sequence_parallel=False, dispatch_backend="deepep"))
    assert all(refused.rejected[r] > 0 for r in megatron[1:3])
    # the EP A2A overlap at ep 1 (Megatron-LM d98e8a64 transformer_config.py l.3013-3015; session 21, overlapep1)
    overlap = enumerate_layouts(build(ODD_MOE, devices=24, batch=36, seq_len=500, search=wide, moe_a2a_overlap=True,
                                      pipeline_schedule="interleaved"))
    assert overlap.rejected["megatron_a2a_overlap_needs_ep_above_1"] > 0
    assert overlap.rejected["a2a_overlap_needs_interleaved_at_pp_above_1"] > 0  # 1f1b / zb-v / dualpipe at pp > 1
    # HybridEP: Megatron-LM d98e8a64 token_dispatcher.py asserts tp·ep > 1 for the deepep backend only (l.1835-1836),
    # not in its hybridep branch (review21: the search refused HybridEP at etp·ep = 1 as DeepEP)
    hybrid = enumerate_layouts(build(ODD_MOE, devices=24, batch=36, seq_len=500, search=wide,
                                     dispatch_backend="hybridep"))
    assert hybrid.rejected["megatron_flex_dispatcher_needs_etp_ep_above_1"] == 0
    assert refused.rejected["megatron_flex_dispatcher_needs_etp_ep_above_1"] > 0
    # 4 KV heads at tp 8 (8 heads): replicated kv heads, which Megatron refuses
    tiny = enumerate_layouts(build(TINY_MOE, devices=8, batch=16, seq_len=1024, search=SMALL))
    assert tiny.rejected["megatron_query_groups_not_divisible_by_tp"] > 0
    assert enumerate_layouts(build(TINY_MOE, devices=8, batch=16, seq_len=1024, search=SMALL, framework="none")
                             ).rejected["megatron_query_groups_not_divisible_by_tp"] == 0


def test_megatron_refusals_only_where_the_scenario_runs_megatron_on_gpus():
    """Megatron-LM 23e00ed0 moe_layer.py l.258 refuses an MoE layer at tp > 1 without sequence parallelism: the search
    drops those layouts for framework megatron-te on GPUs, and ranks them for framework "none" and on TPUs."""
    def tp_above_1(scenario):
        found = enumerate_layouts(scenario)
        return found.rejected["megatron_moe_tp_needs_sequence_parallel"], int((found.candidates.tp > 1).sum())

    refused, ranked = tp_above_1(build(ODD_MOE, devices=12, search=SMALL, sequence_parallel=False))
    assert refused > 0 and ranked == 0
    for other in (build(ODD_MOE, devices=12, search=SMALL, sequence_parallel=False, framework="none"),
                  build(ODD_MOE, devices=16, search=SMALL, sequence_parallel=False, hardware="tpu-v3"),
                  build(ODD_MOE, devices=12, search=SMALL)):
        refused, ranked = tp_above_1(other)
        assert refused == 0 and ranked > 0
    assert "moe_layer.py l.258" in REASONS["megatron_moe_tp_needs_sequence_parallel"]
    assert "token_dispatcher.py l.1163" in REASONS["megatron_flex_dispatcher_needs_etp_ep_above_1"]


def test_counts_add_up_after_ranking(switch_c):
    for scenario in (switch_c, build(ODD_MOE, devices=12)):
        result = search(scenario)
        assert result.ranked + sum(result.rejected.values()) == result.considered
        assert result.rejected["out_of_memory"] >= 0


def test_candidates_are_valid_and_distinct():
    scenario = build(ODD_MOE, devices=12, search=SMALL)
    cands = enumerate_layouts(scenario).candidates
    keys = set()
    for i in range(len(cands)):
        layout = cands.layout(i)
        assert scenario.problems(layout, int(cands.micro_batches[i])) == []
        keys.add((placement(layout), layout.dp, layout.tp, layout.pp, layout.ep, layout.etp,
                  int(cands.micro_batches[i]), int(cands.zero_stage[i]), int(cands.recompute[i])))
    assert len(keys) == len(cands)
    assert np.all(np.diff(cands.pp) >= 0)  # sorted by pp: the ranking evaluates one pp per batch


def test_order_dedupe_e_plus_d_versus_d_plus_e():
    """DeepSpeed's E+D (tp-ep-dp-pp) and D+E (tp-dp-ep-pp) are distinct when ep and edp are both > 1,
    and the same placement when ep = 1."""
    orders = all_orders()
    assert orders[0] == ("tp", "ep", "dp", "pp") and len(set(orders)) == 24
    arr = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    keep, mismatch = distinct_placements(orders, dp=arr(8, 8), tp=arr(1, 1), pp=arr(1, 1), ep=arr(4, 1),
                                         etp=arr(1, 1))
    e_d, d_e = orders.index(("tp", "ep", "dp", "pp")), orders.index(("tp", "dp", "ep", "pp"))
    assert keep[e_d, 0] and keep[d_e, 0]
    assert keep[e_d, 1] and not keep[d_e, 1]
    assert keep[:, 1].sum() == 1  # only dp > 1: every order is the same placement


def test_search_orders_restrict_and_validate():
    only = SearchSpace(orders=(("tp", "dp", "ep", "pp"),))
    cands = enumerate_layouts(build(ODD_MOE, devices=12, search=only)).candidates
    assert cands.orders == (("tp", "dp", "ep", "pp"),)
    with pytest.raises(SpecError, match="search.orders"):
        enumerate_layouts(build(ODD_MOE, devices=12, search=SearchSpace(orders=(("tp", "dp", "pp"),))))


def test_capacity_factors_from_search_table():
    scenario = build(TINY_MOE, devices=8, batch=16, seq_len=1024,
                     search=SearchSpace(capacity_factors=(1.0, 2.0), zero_stages=(0,), recompute_modes=("none",)))
    cands = enumerate_layouts(scenario).candidates
    assert set(cands.capacity_factor.tolist()) == {1.0, 2.0}
    with pytest.raises(SpecError, match="search.capacity_factors"):
        enumerate_layouts(build(DENSE, devices=8, batch=8, search=SearchSpace(capacity_factors=(1.0,))))


@pytest.mark.parametrize("space, field", [  # since issue #14 ranges are checked when the space is built
    (dict(zero_stages=(4,)), "search.zero_stages"),
    (dict(recompute_modes=()), "search.recompute_modes"),
    (dict(max_micro_batches=0), "search.max_micro_batches"),
])
def test_bad_search_space_is_a_spec_error(space, field):
    with pytest.raises(SpecError, match=field):
        enumerate_layouts(build(ODD_MOE, devices=12, search=SearchSpace(**space)))


def test_micro_batches_are_divisors_up_to_the_maximum():
    scenario = build(TINY_MOE, devices=8, batch=48, seq_len=1024, search=SearchSpace(max_micro_batches=4))
    cands = enumerate_layouts(scenario).candidates
    for dp in np.unique(cands.dp):
        got = set(cands.micro_batches[cands.dp == dp].tolist())
        assert got == {m for m in range(1, 5) if (48 // dp) % m == 0}


def test_dense_model_has_no_expert_mesh():
    cands = enumerate_layouts(build(DENSE, devices=8, batch=8, search=SMALL)).candidates
    assert set(cands.ep.tolist()) == {1} and set(cands.etp.tolist()) == {1}


def test_layout_dict_round_trips():
    result = search(build(ODD_MOE, devices=12, search=SMALL))
    lay = result.layout_dict(0)
    assert set(lay) == {"dp", "tp", "ep", "pp", "etp", "edp", "order", "micro_batches", "zero_stage", "recompute",
                        "capacity_factor", "pipeline_schedule"}  # pipeline_schedule: added with the schedule search
    layout = Layout(dp=lay["dp"], tp=lay["tp"], ep=lay["ep"], pp=lay["pp"], etp=lay["etp"], order=tuple(lay["order"]))
    assert layout == result.layout(0) and layout.edp == lay["edp"]


def _pairwise_placements(orders, dp, tp, pp, ep, etp, cp):
    """distinct_placements as main @ b5fc318 had it: every pair of orders compared column by column."""
    from moesim.search.placement import _signature

    sizes = {"tp": tp, "cp": cp, "dp": dp, "pp": pp, "ep": ep, "etp": etp, "edp": (tp * cp * dp) // (etp * ep)}
    sigs, mismatches = zip(*(_signature(order, sizes) for order in orders))
    mismatch = np.array(mismatches)
    keep = np.ones((len(orders), len(dp)), dtype=bool)
    for o in range(len(orders)):
        for other in range(len(orders)):
            if other == o:
                continue
            same = np.all(sigs[o] == sigs[other], axis=0)  # _signature's (8, N) rows (session 25; (N, 8) before)
            keep[o] &= ~(same & mismatch[o] & ~mismatch[other])
            if other < o:
                keep[o] &= ~(same & (mismatch[o] == mismatch[other]))
    return keep, mismatch


@pytest.mark.parametrize("seed, largest, at_once", [(0, 4, 4096), (1, 64, 4096), (2, 2 ** 12, 4096), (3, 64, 7)])
def test_distinct_placements_as_the_pairwise_loop(seed, largest, at_once, monkeypatch):
    """searchspeed20: the orders compared all at once on packed keys keep exactly what the pairwise loop kept,
    with strides small enough to pack several columns per word and large enough for one word each (2^12: strides
    up to 2^48), in one pass or in passes of 7 combinations."""
    monkeypatch.setattr(placement_module, "COMBINATIONS_AT_ONCE", at_once)
    rng = np.random.default_rng(seed)
    n = 400
    powers = int(np.log2(largest)) + 1
    tp, cp, pp, ep = (2 ** rng.integers(0, powers, n) for _ in range(4))
    etp = np.minimum(tp, 2 ** rng.integers(0, powers, n))
    dp = ep * 2 ** rng.integers(0, powers, n)  # edp = tp·cp·dp / (etp·ep) stays whole
    orders = all_orders()
    got = distinct_placements(orders, dp, tp, pp, ep, etp, cp)
    want = _pairwise_placements(orders, dp, tp, pp, ep, etp, cp)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert 0 < got[0].sum() < got[0].size  # some orders dropped, some kept
