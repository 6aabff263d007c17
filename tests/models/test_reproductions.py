"""Golden tests: moesim against published figures, each with its citation and an asserted tolerance.

The figures (value, source, tolerance) live in moesim/models/published.py, one row each with its
citation beside the number; docs/reproductions.md is rendered from the same rows, and the last
test fails when the committed doc is stale (regenerate: python docs/make_reproductions.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from moesim.models.published import FIGURES, Published
from moesim.models.reproductions import render_markdown, reproduce
from moesim.paths import builtin_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "reproductions.md"


@pytest.mark.parametrize("fig", FIGURES, ids=lambda f: f"{f.model}:{f.quantity}"
                         + (f":cf{f.capacity_factor:g}" if f.capacity_factor else ""))
def test_published_figure_within_tolerance(fig: Published):
    r = reproduce(fig)
    assert abs(r.error) <= fig.tolerance, (fig.model, fig.quantity, r.value, fig.value, f"{r.error:+.2%}", fig.source)


def test_every_figure_cites_a_source():
    assert all(len(f.source) > 10 for f in FIGURES)


def test_every_new_library_model_has_published_params():
    """Every library model has a published total (Switch-Base-8 excepted: the paper prints none)."""
    with_total = {f.model for f in FIGURES if f.quantity == "total_params"}
    assert set(builtin_names("models")) - with_total == {"switch-base-8"}


@pytest.mark.parametrize("name,total,active", [
    ("mixtral-8x7b", 46.7e9, 12.9e9),  # mistral.ai/news/mixtral-of-experts
    ("deepseek-v3", 671e9, 37e9),  # DeepSeek-V3 abstract (37B: active incl. embedding 37.55B rounds to 38, see doc)
])
def test_headline_figures(name, total, active):
    from moesim.arithmetic import param_counts
    from moesim.specs.load import load_model

    c = param_counts(load_model(name))
    assert abs(c.total - total) / total < 0.005
    assert abs(c.active - active) / active < 0.02


def test_st_moe_capacity_factor_cost_direction():
    """ST-MoE Table 9: CF 1.25 -> 2.0 costs +14% step time (4.244 -> 4.819 s); moesim must agree in sign
    and stay within a factor of two of the published increase."""
    base, high = (reproduce(f).value for f in FIGURES if f.model == "st-moe-32b" and f.quantity == "step_time_s")
    increase = high / base - 1
    assert 0.5 * 0.135 < increase < 2 * 0.135, increase


def test_reproductions_doc_is_current():
    assert DOC.read_text(encoding="utf-8") == render_markdown(), "run: python docs/make_reproductions.py"
