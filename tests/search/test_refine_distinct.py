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
                             layout=lambda i: layouts[i], training=lambda i: training)
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
