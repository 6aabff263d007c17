"""When nothing fits, search names the closest layouts and the lever that would make one fit (issue #14
item 5); equivalent mesh orders are folded, not ranked twice."""

from __future__ import annotations

import dataclasses

import numpy as np

from moesim.cli import main
from moesim.search.closest import STATIC_PARTS
from moesim.search.rank import search
from moesim.search.report import search_report
from moesim.specs.load import load_scenario

from tests.search.search_fixtures import ODD_MOE, build, with_hbm


def _tight(hbm_gib: float, devices: int = 4):
    scenario = with_hbm(build(ODD_MOE, devices=devices, batch=24), hbm_gib * 2**30)
    return dataclasses.replace(scenario, hardware=dataclasses.replace(scenario.hardware, max_devices=64))


def test_closest_miss_reports_the_smallest_memory_and_a_lever_that_fits():
    scenario = _tight(0.02)
    report = search_report(scenario, top=3)
    assert report["results"] == []
    miss = report["closest_miss"]
    everything = search(dataclasses.replace(scenario, hardware=with_hbm(scenario, 1e15).hardware))
    # The least memory of any valid layout, as an unconstrained search finds it.
    assert miss["smallest_memory_bytes"] == float(np.min(everything.memory_bytes_per_device))
    memories = [c["memory_bytes_per_device"] for c in miss["closest"]]
    assert memories == sorted(memories) and all(c["over_capacity_bytes"] > 0 for c in miss["closest"])
    assert len({c["layout_arg"].replace(c["layout_arg"].split("order=")[1].split(",")[0], "") for c in
                miss["closest"]}) == len(miss["closest"])  # one order per layout
    levers = {lv["lever"]: lv for lv in miss["levers"]}
    assert set(levers) == {"ZeRO stage / recompute", "fewer micro-batch tokens", "more devices"}
    more = levers["more devices"]
    if more["fits"]:  # the answer is checked: that device count does rank a layout
        assert search(dataclasses.replace(scenario, devices=more["devices"])).ranked > 0
    assert any(lv["fits"] for lv in miss["levers"]) or "alone take" in levers["fewer micro-batch tokens"]["detail"]


def test_micro_batch_lever_when_activations_are_the_excess():
    scenario = build(ODD_MOE, devices=4, batch=24)
    scenario = dataclasses.replace(scenario, search=dataclasses.replace(scenario.search, max_micro_batches=1))
    full = search(with_hbm(scenario, 1e15))
    i = int(np.argmin(full.memory_bytes_per_device))
    est = full.estimates([i])[0]
    static = sum(est.memory_bytes_per_device[k] for k in STATIC_PARTS)
    # Capacity between the static memory and the least total: only fewer tokens per micro-batch can help.
    cap = (static + est.memory_bytes_per_device["total"]) / 2
    report = search_report(with_hbm(scenario, cap / (1 - scenario.training.memory_headroom_fraction)), top=1)
    assert report["results"] == []
    lever = {lv["lever"]: lv for lv in report["closest_miss"]["levers"]}["fewer micro-batch tokens"]
    assert lever["fits"] and lever["memory_bytes_per_device"] <= report["memory_capacity_bytes"]
    assert "micro-batches of 12 sequences (6144 tokens) instead of 24 fit" in lever["detail"]


def test_cli_prints_the_closest_miss(capsys):
    assert main(["search", "mixtral-8x7b-h100", "--devices", "8", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "no layout is valid and fits in memory" in out
    assert "is the least any valid layout needs" in out and "what would make it fit" in out
    assert "yes  more devices: 16 devices fit" in out


def test_equivalent_orders_are_folded():
    result = search(build(ODD_MOE, devices=12, batch=24))
    shown = result.distinct()
    keys = [(tuple(np.asarray(getattr(result.candidates, k))[i] for k in
                   ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute")),
             float(result.step_time_s[i]), float(result.memory_bytes_per_device[i])) for i in shown]
    assert len(keys) == len(set(keys))  # no two shown layouts differ only in an order that changes nothing
    assert int(result.equivalent_orders.sum()) == result.ranked > len(shown)  # every ranked layout in one class
    assert shown[0] == 0
    report = search_report(build(ODD_MOE, devices=12, batch=24), top=5)
    assert report["equivalent_orders_folded"] == result.ranked - len(shown)
    ranks = [r["rank"] for r in report["results"]]
    assert ranks == [int(i) + 1 for i in shown[:5]]
    assert all(r.get("equivalent_orders", 1) >= 1 for r in report["results"])


def test_issue_case_tp1_orders_are_not_listed_twice():
    """Mixtral-8x7B on 64 H100s: tp = 1 made tp-ep-dp-pp and ep-tp-dp-pp #1 and #2 with the same figures. Since
    session 24 (zero1ag) its #1 has etp 1 and no twin; no two of its top 10 differ in the order alone."""
    report = search_report(load_scenario("mixtral-8x7b-h100"), top=10)
    rows = report["results"]
    assert all(r["layout"]["tp"] == 1 for r in rows[:2])
    seen = {(r["step_time_s"], r["memory_bytes_per_device"],
             tuple(sorted((k, str(v)) for k, v in r["layout"].items() if k != "order"))) for r in rows}
    assert len(seen) == len(rows)


def test_equivalence_classes_match_an_exact_row_unique():
    from moesim.search.enumerate import enumerate_layouts
    from moesim.search.rank import _equivalent_orders

    cands = enumerate_layouts(build(ODD_MOE, devices=12, batch=24)).candidates
    rng = np.random.default_rng(7)
    step, memory = rng.integers(0, 3, len(cands)).astype(float), rng.integers(0, 2, len(cands)).astype(float)
    order = rng.permutation(len(cands))
    first, counts = _equivalent_orders(cands, order, step, memory)
    columns = [np.asarray(getattr(cands, n), dtype=float)[order] for n in
               ("dp", "tp", "pp", "ep", "etp", "micro_batches", "zero_stage", "recompute", "first_stage_layers",
                "last_stage_layers")]
    columns += [np.nan_to_num(np.asarray(cands.capacity_factor, dtype=float)[order], nan=-1.0), step[order],
                memory[order]]
    _, f, inv, cnt = np.unique(np.stack(columns, axis=1), axis=0, return_index=True, return_inverse=True,
                               return_counts=True)
    expected = np.zeros(len(order), dtype=bool)
    expected[f] = True
    assert np.array_equal(first, expected) and np.array_equal(counts, cnt[inv.reshape(-1)])
    assert 0 < first.sum() < len(order)
