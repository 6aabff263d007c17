"""The public Python API (issue #14 item 7): exported names, readable results, the README example."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

import moesim

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The python block of the README's "API" section."""
    section = README.read_text(encoding="utf-8").split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_is_ten_lines_and_runs():
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) == 10
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
    text = out.getvalue()
    assert text.startswith("SearchResult: switch-base-128-tpu-v3 on 32 x tpu-v3, by step_time:")
    assert "\nTrue MFU " in text  # estimate --layout of search's best gives the same step time
    assert "SweepResult: switch-base-128-tpu-v3" in text and "model.moe.top_k=2" in text
    ratio = float(re.search(r"simulated / analytical: ([0-9.]+)", text).group(1))
    assert 0.8 < ratio < 1.5


def test_names_are_exported():
    for name in ("load_scenario", "estimate", "search", "simulate", "sweep", "report_figures", "SpecError"):
        assert name in moesim.__all__ and callable(getattr(moesim, name))
    importlib.import_module("moesim.estimate.core")  # importing the subpackages later keeps the API names bound
    importlib.import_module("moesim.search.rank")

    assert callable(moesim.estimate) and callable(moesim.search) and moesim.estimate.__module__ == "moesim.api"


def test_results_have_short_reprs_html_tables_and_dicts():
    est = moesim.estimate("switch-base-128-tpu-v3")
    text = repr(est)
    assert text.startswith("StepEstimate: switch-base-128-tpu-v3 on 32 x tpu-v3") and len(text) < 1500
    assert "layout" in text and est.layout_arg in text
    html = est._repr_html_()
    assert html.startswith("<table>") and "MFU / HFU" in html and "<script" not in html
    d = est.to_dict()
    assert d == est.as_dict() and d["layout_arg"] == est.layout_arg
    found = moesim.search("switch-base-128-tpu-v3")
    assert repr(found).count("\n") == 2 + 5 and "<td>1</td>" in found._repr_html_()
    assert found.to_dict(top=1)["results"][0]["layout_arg"] == found.best_layout_arg


def test_layout_text_and_bad_input():
    est = moesim.estimate("switch-base-128-tpu-v3", layout="dp=16,tp=2,ep=32,mb=4,zero=1,recompute=full")
    assert (est.layout.tp, est.training.micro_batches, est.training.zero_stage, est.training.recompute) == \
        (2, 4, 1, "full")
    with pytest.raises(moesim.SpecError, match="not KEY=VALUE with a known key"):
        moesim.estimate("switch-base-128-tpu-v3", layout="dp=16,pipes=2")
    with pytest.raises(moesim.SpecError, match="unknown scenario"):
        moesim.load_scenario("no-such-scenario")
