"""What a new user met running the commands on the shipped scenarios (session 16, newcomer2): `search --top 0`
said "no layout is valid and fits in memory" over 46,650 ranked layouts; a flag the command does not take ended
"moesim: error: moesim: unrecognized arguments: -q", naming neither the command nor the flags it takes; simulate's
head said "1 micro-batches" and "1 steps"."""

from __future__ import annotations

import pytest

from moesim.cli import main


def test_search_top_zero_does_not_say_nothing_fits(capsys):
    assert main(["search", "switch-base-128-tpu-v3", "--top", "0", "-q"]) == 0
    out = capsys.readouterr().out
    assert "no layout is valid and fits in memory" not in out
    assert "ranked" in out and "Pareto front" in out and "#1 breakdown" not in out
    # nothing fitting still says so: tests/search/test_closest_miss.py::test_cli_prints_the_closest_miss


@pytest.mark.parametrize("argv, prog, extra, flag", [
    (["estimate", "switch-base-128-tpu-v3", "-q"], "moesim estimate", "-q", "--ops"),
    (["simulate", "switch-base-128-tpu-v3", "-o", "x.json"], "moesim simulate", "-o x.json", "--trace"),
    (["model", "switch-c-2048", "--json", "--layout", "dp=1"], "moesim model", "--layout dp=1", "--seq-len"),
])
def test_an_unknown_flag_names_the_command_and_its_flags(capsys, argv, prog, extra, flag):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"moesim: error: {prog}: unrecognized arguments: {extra}; see `{prog} --help` (allowed: ")
    assert flag in err.split("(allowed: ", 1)[1] and "--help" not in err.split("(allowed: ", 1)[1]


def test_an_unknown_flag_before_any_command_lists_the_commands(capsys):
    assert main(["--foo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moesim: error: moesim: unrecognized arguments: --foo") and "simulate" in err


def test_simulate_head_says_micro_batches_and_steps_as_estimate_does(capsys):
    assert main(["simulate", "switch-base-128-tpu-v3", "--steps", "1", "-q"]) == 0
    head = capsys.readouterr().out.splitlines()[:2]
    assert head[0].endswith(", micro-batches 1 (1f1b)") and "1 micro-batches" not in head[0]  # was "1 micro-batches"
    assert ", steps 1, seed 0," in head[1] and "1 steps" not in head[1]


def test_a_capacity_factor_that_is_no_number_names_the_allowed_values(capsys):
    assert main(["estimate", "switch-base-128-tpu-v3", "--layout", "dp=32,cf=abc"]) == 2
    err = capsys.readouterr().err.strip()
    # the key as typed (`cf`; it said capacity_factor, the TrainingSpec field, until the session 16 review)
    assert "field '--layout': 'cf=abc' is not a number or 'dropless'" in err  # was all it said
    assert err.endswith("(allowed: cf=NUMBER, cf=dropless; KEY=VALUE pairs separated by commas or spaces)")


@pytest.mark.parametrize("layout, said", [
    ("dp=32,zero=2.5", "'zero=2.5': zero is not an integer (allowed: zero=INTEGER;"),  # said zero_stage=2.5
    ("dp=32,mb=two", "'mb=two': mb is not an integer (allowed: mb=INTEGER;"),  # said micro_batches=two
    ("dp=32,capacity_factor=x", "'capacity_factor=x' is not a number or 'dropless' (allowed: capacity_factor=NUMBER"),
])
def test_a_layout_value_error_names_the_key_as_typed(capsys, layout, said):
    assert main(["estimate", "switch-base-128-tpu-v3", "--layout", layout]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and err.count("\n") == 0, err


@pytest.mark.parametrize("argv, prog, early", [
    (["-q", "search", "switch-base-128-tpu-v3"], "moesim search", "-q"),
    (["--json", "estimate", "switch-base-128-tpu-v3"], "moesim estimate", "--json"),
])
def test_a_flag_before_its_command_says_where_it_goes(capsys, argv, prog, early):
    # argparse's line called a flag the command takes unrecognized: "moesim: unrecognized arguments: -q"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"moesim: error: {prog}: {early} given before the command; options go after it: "
                          f"`{prog} ... {early}`") and "unrecognized" not in err
