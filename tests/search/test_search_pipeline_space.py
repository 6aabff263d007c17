"""The search over schedules, virtual stages and context parallelism: rejection counts against plain loops,
and ranking with the new choices."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from moesim.search import REASONS, enumerate_layouts, search
from moesim.specs.layout import Layout
from moesim.specs.scenario import SearchSpace
from moesim.specs.training import PIPELINE_SCHEDULES
from brute_force import first_reason
from search_fixtures import ODD_MOE, TINY_MOE, build

ONE_ORDER = (("tp", "ep", "dp", "pp"),)
PIPE = SearchSpace(zero_stages=(1,), recompute_modes=("selective",), max_micro_batches=8, orders=ONE_ORDER,
                   pipeline_schedules=PIPELINE_SCHEDULES, virtual_stages=(2, 3), context_parallel=(1, 2, 4),
                   cp_comms=("p2p", "a2a"))
# First words of the new Scenario.problems messages (and the older ones these spaces meet).
PREFIX = {
    "num_experts = ": "experts_not_divisible_by_ep", "num_heads = ": "heads_not_divisible_by_tp",
    "num_kv_heads = ": "kv_heads_incompatible_with_tp", "d_ff = ": "d_ff_not_divisible_by_tp",
    "expert_d_ff = ": "expert_d_ff_not_divisible_by_etp", "layers = ": "more_stages_than_layers",
    "cp = ": "sequence_not_divisible_by_2cp", "global batch = ": "batch_not_divisible_by_dp_micro_batches",
    "vp = ": "interleaved_layers_not_divisible_by_pp_vp",
    "the interleaved schedule needs micro_batches": "interleaved_micro_batches_not_divisible_by_pp",
    "the interleaved schedule needs pp": "interleaved_needs_pp_2", "zb-v needs": "zb_v_needs_two_layers_per_stage",
    "dualpipe needs": "dualpipe_needs_even_pp_and_micro_batches", "cp_comm = a2a": "cp_a2a_heads_not_divisible",
}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _brute(scenario) -> Counter:
    """The first problem of every (layout, m, schedule, vp, cp variant) by plain loops and Scenario.problems."""
    space, moe, out = scenario.search, scenario.model.moe, Counter()
    batch, devices = scenario.training.global_batch_sequences, scenario.devices
    for schedule in space.pipeline_schedules:
        sc = dataclasses.replace(scenario, training=dataclasses.replace(scenario.training, pipeline_schedule=schedule))
        for vp in (space.virtual_stages if schedule == "interleaved" else (1,)):
            for pp in _divisors(devices):
                for cp in [c for c in space.context_parallel if (devices // pp) % c == 0]:
                    for comm in (space.cp_comms if cp > 1 else space.cp_comms[:1]):
                        for tp in _divisors(devices // (pp * cp)):
                            dp = devices // (pp * cp * tp)
                            for ep in _divisors(tp * cp * dp) if moe else [1]:
                                for etp in _divisors(tp * cp * dp // ep) if moe else [1]:
                                    mbs = [m for m in _divisors(batch // dp) if m <= space.max_micro_batches] \
                                        if batch % dp == 0 else [1]
                                    layout = Layout(dp=dp, tp=tp, ep=ep, pp=pp, etp=etp, cp=cp, vp=vp, cp_comm=comm)
                                    for m in mbs:
                                        problems = sc.problems(layout, m)
                                        first = _reason(problems[0]) if problems else None
                                        out[first_reason(first, sc, layout)] += 1
    return out


def _reason(problem: str) -> str:
    return next(r for prefix, r in PREFIX.items() if problem.startswith(prefix))


@pytest.mark.parametrize("model, devices, batch, seq", [(ODD_MOE, 12, 24, 500), (TINY_MOE, 8, 16, 1024)],
                         ids=["odd-moe-12", "tiny-moe-8"])
def test_pipeline_rejections_match_brute_force(model, devices, batch, seq):
    scenario = build(model, devices=devices, batch=batch, seq_len=seq, search=PIPE)
    found, expected = enumerate_layouts(scenario), _brute(scenario)
    assert len(found.candidates) == expected.pop(None, 0)
    assert found.considered == len(found.candidates) + sum(expected.values())
    for reason in REASONS:
        if reason != "out_of_memory":
            assert found.rejected[reason] == expected.get(reason, 0), reason
    assert sum(found.rejected[r] > 0 for r in tuple(REASONS)[6:18]) >= 5  # the new rules bite


def test_search_ranks_schedules_vp_and_cp():
    scenario = build(TINY_MOE, devices=8, batch=16, seq_len=8192, search=PIPE)
    result = search(scenario)
    chosen = {(result.layout_dict(i)["pipeline_schedule"], result.layout(i).vp, result.layout(i).cp)
              for i in range(result.ranked)}
    assert {s for s, _, _ in chosen} == set(PIPELINE_SCHEDULES)
    assert {v for _, v, _ in chosen} >= {1, 2} and {c for _, _, c in chosen} == {1, 2, 4}
    # The best layout's estimate is the estimate of that layout on its own.
    from moesim.estimate import estimate
    best, training = result.layout(0), result.training(0)
    assert result.step_time_s[0] == pytest.approx(estimate(scenario, best, training).step_time_s)
