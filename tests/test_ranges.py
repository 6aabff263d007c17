"""Every numeric field of every spec has a declared valid range (moesim/specs/ranges.py), and the
ranges admit every shipped file while refusing NaN, infinities, wrong signs and unreal sizes."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from moesim.des.run import SimOptions
from moesim.errors import SpecError
from moesim.paths import builtin_names
from moesim.specs.hardware import ChipSpec, ComputeEfficiency, HardwareProfile, InterconnectLevel
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware, load_model, load_scenario
from moesim.specs.model import AttentionSpec, ModelSpec, MoESpec
from moesim.specs.ranges import RANGES, Range
from moesim.specs.scenario import Scenario, SearchSpace
from moesim.specs.training import TrainingSpec

SPECS = (AttentionSpec, MoESpec, ModelSpec, TrainingSpec, ChipSpec, ComputeEfficiency, InterconnectLevel,
         HardwareProfile, SearchSpace, Layout, Scenario, SimOptions)


def _numeric(tp) -> bool:
    """An int or float field, possibly optional, a tuple or a mapping of them (not bool)."""
    if tp in (int, float):
        return True
    args = typing.get_args(tp)
    return bool(args) and any(_numeric(a) for a in args if a is not type(None) and a is not bool)


@pytest.mark.parametrize("cls", SPECS, ids=lambda c: c.__name__)
def test_every_numeric_field_has_a_range(cls):
    hints = typing.get_type_hints(cls)
    numeric = {f.name for f in dataclasses.fields(cls) if _numeric(hints[f.name])}
    missing = numeric - set(RANGES[cls.__name__])
    assert not missing, f"declare a range in moesim/specs/ranges.py for {cls.__name__}: {sorted(missing)}"
    assert set(RANGES[cls.__name__]) <= {f.name for f in dataclasses.fields(cls)}  # no stale entries


def test_every_shipped_file_is_inside_the_ranges():
    for name in builtin_names("models"):
        load_model(name)
    for name in builtin_names("hardware_profiles"):
        load_hardware(name)
    for name in builtin_names("scenarios"):
        load_scenario(name)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1, 0, 2**64, 1e308, 0.5, "x", True])
def test_range_refuses_what_is_not_a_layer_count(value):
    rng = RANGES["ModelSpec"]["decoder_layers"]
    assert rng.problem(value) is not None
    with pytest.raises(SpecError, match="decoder_layers.*allowed: an integer >= 1 and <= 4096"):
        rng.check(value, field="decoder_layers")


def test_range_text_and_bounds():
    rng = Range(0, 1024, lo_open=True, unit="x")
    assert rng.describe() == "a finite number > 0 and <= 1024 x"
    assert rng.problem(1024) is None and rng.problem(1e-9) is None
    assert "out of range" in rng.problem(0) and "out of range" in rng.problem(1024.5)
    assert "not a finite number" in rng.problem(math.nan)


def test_replace_is_checked_too():
    moe = load_model("switch-base-8").moe
    with pytest.raises(SpecError, match="moe.capacity_factor_train.*not a finite number"):
        dataclasses.replace(moe, capacity_factor_train=math.nan)
    with pytest.raises(SpecError, match="noise_sigma.*not a finite number"):
        SimOptions(noise_sigma=math.inf)


def test_every_numeric_command_line_option_has_a_range():
    import argparse

    from moesim.cli import build_parser
    from moesim.specs.ranges import ARG_RANGES

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = set()
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.type in (int, float) and action.dest not in ARG_RANGES:
                missing.add(f"{name} {action.option_strings[0] if action.option_strings else action.dest}")
    assert not missing, f"declare a range in moesim/specs/ranges.py ARG_RANGES for: {sorted(missing)}"
