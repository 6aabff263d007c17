"""review22: `moesim sweep` varies model.attention.layer_pattern (session 22 gptoss's list key) as it varies the
training lists (newuser5): entries joined by '+', `none` for no pattern; before, "cannot vary" it."""

from __future__ import annotations

import dataclasses

import pytest

from moesim.errors import SpecError
from moesim.search.overrides import apply_point, value_text
from moesim.search.sweep import parse_vary, run_sweep
from moesim.workload import build_workload
from search_fixtures import TINY_MOE, build


def _windowed():
    """The tiny MoE decoder with a 64-token window for the pattern's sliding_window layers."""
    sc = build(TINY_MOE, devices=8, batch=16)
    att = dataclasses.replace(sc.model.attention, window_tokens=64)
    return dataclasses.replace(sc, model=dataclasses.replace(sc.model, attention=att))


def test_the_pattern_parses_and_prints():
    axis = parse_vary("model.attention.layer_pattern=none,sliding_window+causal")
    assert axis.values == ((), ("sliding_window", "causal"))
    assert [value_text(v) for v in axis.values] == ["none", "sliding_window+causal"]
    with pytest.raises(SpecError, match="'sliding' is not allowed") as err:
        parse_vary("model.attention.layer_pattern=sliding+causal")
    assert "sliding_window" in str(err.value) and err.value.field == "--vary model.attention.layer_pattern"


def test_a_point_gives_each_layer_its_mask():
    sc = _windowed()
    patterned = apply_point(sc, {"model.attention.layer_pattern": ("sliding_window", "causal")})
    masks = [c.mask for c in build_workload(patterned.model, *patterned.seq_lens).classes]
    assert sorted(set(masks)) == ["causal", "sliding_window"]
    plain = apply_point(patterned, {"model.attention.layer_pattern": ()})
    assert {c.mask for c in build_workload(plain.model, *plain.seq_lens).classes} == {""}


def test_a_sweep_over_the_pattern_ranks_each_point():
    sweep = run_sweep(_windowed(), [parse_vary("model.attention.layer_pattern=none,sliding_window")], workers=1)
    assert [p["status"] for p in sweep["points"]] == ["ok", "ok"]
    every, windowed = (p["step_time_s"] for p in sweep["points"])
    assert windowed < every  # 64-token windows on 512-token sequences: fewer attention tiles


def test_a_pattern_and_the_window_it_needs_vary_together_in_either_order():
    """The point's fields of one model table are replaced at once: a sliding_window pattern on a model without
    window_tokens and the window varied beside it apply whichever --vary comes first (it failed with the pattern first,
    checked before the window was set)."""
    sc = build(TINY_MOE, devices=8, batch=16)
    assert sc.model.attention.window_tokens == 0
    pattern, window = ("model.attention.layer_pattern", ("sliding_window",)), ("model.attention.window_tokens", 64)
    for point in (dict([pattern, window]), dict([window, pattern])):
        att = apply_point(sc, point).model.attention
        assert (att.layer_pattern, att.window_tokens) == (("sliding_window",), 64)
    with pytest.raises(SpecError, match="window_tokens >= 1") as err:
        apply_point(sc, dict([pattern]))
    assert err.value.field == "--vary model.attention.layer_pattern"
