"""--refine-des simulates each distinct (layout, training) once; progress is reported."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from moesim.search.refine import refine
from moesim.specs.layout import Layout
from moesim.specs.training import TrainingSpec


def test_identical_layouts_are_simulated_once():
    same, other = Layout(dp=4, ep=4), Layout(dp=2, tp=2, ep=2)
    training = TrainingSpec(global_batch_sequences=16, seq_len=512)
    layouts = [same, other, same, same]
    result = SimpleNamespace(ranked=4, scenario="sc", step_time_s=np.array([1.0, 1.1, 1.2, 1.3]),
                             layout=lambda i: layouts[i], training=lambda i: training,
                             distinct=lambda k: np.arange(4)[:k])  # no mesh-order twins
    calls = []

    def hook(scenario, layout, train):
        calls.append(layout)
        return 2.0 if layout == same else 1.5

    seen = []
    refined = refine(result, 4, hook, progress=seen.append)
    assert calls == [same, other]  # ranks 0 and 2, 3 share one simulation
    assert [(r.rank, r.simulated_step_time_s, r.same_as) for r in refined] == \
        [(1, 1.5, None), (0, 2.0, None), (2, 2.0, 0), (3, 2.0, 0)]
    assert refined[2].as_dict()["same_simulation_as_rank"] == 1
    assert seen == [0.5, 1.0]


def test_search_reports_progress_to_the_end():
    from moesim.search.rank import search
    from moesim.specs.load import load_scenario

    seen = []
    result = search(load_scenario("switch-base-128-tpu-v3"), progress=seen.append)
    assert result.ranked > 0 and seen[-1] == 1.0
    assert all(0 < a <= b for a, b in zip(seen, seen[1:]))


def test_refine_simulates_the_rows_shown_not_their_mesh_order_twins():
    """--refine-des K simulates the top K rows the search shows: a layout folded into a better-ranked one of
    another mesh order (same analytical figures) is not simulated in its place (on main before session 17 it
    was: ranks 1..K of the full ranking, twins included, fewer distinct rows than asked for)."""
    from moesim.cli.search_cmd import render
    from moesim.search.rank import search
    from moesim.search.report import describe_search
    from moesim.specs.load import load_scenario

    # A scenario with mesh-order twins among its first ranks (DeepSeek-V2's slice had them until session 19's opsfix
    # priced MLA's duplicated down-projections, which moved its tp 2 layouts below the tp 1 ones).
    result = search(load_scenario("llama3-70b-l12-b200-tp8"))
    shown = result.distinct(3).tolist()
    assert shown != [0, 1, 2]  # the scenario has a mesh-order twin among its first three ranks
    calls = []

    def hook(scenario, layout, training):
        calls.append(layout)
        return 1.0 + len(calls)

    report = describe_search(result, top=3, refine_des=3, step_time=hook)
    assert calls == [result.layout(i) for i in shown]
    assert sorted(x["rank"] for x in report["refined"]) == [x["rank"] for x in report["results"]] == \
        [i + 1 for i in shown]
    folded = {x["rank"]: x.get("equivalent_orders", 1) - 1 for x in report["results"]}  # the class, itself included
    assert {x["rank"]: x["equivalent_orders_not_simulated"] for x in report["refined"]} == folded
    assert sum(folded.values()) > 0
    assert f"{sum(folded.values())} layouts in another mesh order folded into these rows were not simulated" \
        in render(report)
