"""`moesim COMMAND ...` builds its parser from that command's module only (session 23, coldsearch23): a cold
`moesim search` no longer compiles and runs the seven other subcommand modules (calibrate, collective, simulate, ...)
and what they import. The parser a command gets is the one the full parser holds for it, flag for flag and help
text for help text; `moesim --help`, no command, an unknown one and options before the command build every
subcommand as before."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from moesim.cli import COMMAND_MODULES, COMMAND_NAMES, build_parser, main


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _described(parser: argparse.ArgumentParser) -> list[tuple]:
    """Every action of `parser` as what argparse reads of it."""
    return [(type(a).__name__, a.dest, tuple(a.option_strings), repr(a.default), a.nargs, repr(a.choices), a.required,
             a.help, a.metavar, repr(a.type), repr(a.const)) for a in parser._actions]


def test_the_names_are_those_the_modules_register():
    full = _subcommands(build_parser())
    assert set(COMMAND_NAMES) == set(full)
    assert set(COMMAND_NAMES.values()) == set(COMMAND_MODULES)
    for name, module in COMMAND_NAMES.items():  # the module registers exactly the names mapped to it
        assert set(_subcommands(build_parser(name))) == {n for n, m in COMMAND_NAMES.items() if m == module}


@pytest.mark.parametrize("name", sorted(COMMAND_NAMES))
def test_a_commands_own_parser_is_the_full_parsers(name):
    full, own = _subcommands(build_parser())[name], _subcommands(build_parser(name))[name]
    assert own.format_help() == full.format_help()
    assert own.prog == full.prog
    assert _described(own) == _described(full)
    assert repr(own._defaults) == repr(full._defaults)


@pytest.mark.parametrize("first", [None, "--help", "-h", "--version", "bogus", "SEARCH"])
def test_no_command_first_builds_every_subcommand(first):
    assert list(_subcommands(build_parser(first))) == list(_subcommands(build_parser()))


def test_an_unknown_command_is_refused_with_every_choice(capsys):
    assert main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    assert all(f"'{name}'" in err for name in COMMAND_NAMES)


def test_an_unrecognized_flag_after_a_command_names_that_commands_flags(capsys):
    assert main(["search", "deepseek-v3-h800", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "moesim search: unrecognized arguments: --bogus" in err and "--objective" in err


OTHERS = tuple(m for m in COMMAND_MODULES if m not in ("moesim.cli.search_cmd", "moesim.cli.estimate_cmd"))


def test_a_search_loads_no_other_commands_module():
    """A TPU search (moesim search imports estimate_cmd for the scenario flags): none of the other seven subcommand
    modules, nor nccl_p2p_schedule (NCCL's all-to-all channels, imported by ops.sm_share where it counts them)."""
    modules = [*OTHERS, "moesim.collectives.nccl_p2p_schedule"]
    probe = ("import contextlib, io, json, sys\nfrom moesim.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    assert main(['search', 'switch-base-128-tpu-v3', '--devices', '8', '-q']) == 0\n"
             f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
