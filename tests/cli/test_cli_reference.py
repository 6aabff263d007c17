"""docs/cli.md: every flag of every command outside docs/collectives.md's table, generated from the commands' own
parsers (scripts/cli_flags_table.py), and linked from the README (session 16, newcomer2: `moesim simulate`'s flags
were in no doc)."""

from __future__ import annotations

import argparse
import re

import pytest

from moesim.cli import build_parser

DOC = "docs/cli.md"


def commands() -> dict[str, argparse.ArgumentParser]:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def section(table: str, command: str) -> str:
    return table.split(f"`moesim {command}`:\n", 1)[1].split("\n`moesim ", 1)[0]


def test_the_cli_reference_is_current(load_script, doc_block):
    assert doc_block("cli_flags_table", DOC) == load_script("scripts/cli_flags_table.py").render_cli().strip()


def test_every_command_has_its_table_in_one_of_the_two_pages(doc_block):
    tables = doc_block("cli_flags_table", DOC) + "\n" + doc_block("cli_flags_table", "docs/collectives.md")
    listed = re.findall(r"^`moesim ([a-z-]+)`:$", tables, flags=re.M)
    assert sorted(listed) == sorted(commands())  # each once: no command in both pages, none in neither


@pytest.mark.parametrize("command", ["model", "estimate", "profiles", "search", "sweep", "simulate",
                                     "validate-report", "report"])
def test_every_flag_in_help_is_in_the_reference(command, doc_block):
    rows = re.findall(r"^\| ([^|]*) \|", section(doc_block("cli_flags_table", DOC), command), flags=re.M)
    documented = {flag for cell in rows for flag in re.findall(r"`(-[^`]+)`", cell)}
    parser = commands()[command]
    flags = {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}
    assert flags == documented
    assert all(flag in parser.format_help() for flag in flags)


def test_simulate_flags_with_their_defaults(doc_block):
    table = section(doc_block("cli_flags_table", DOC), "simulate")
    for row in ("| `--steps` | STEPS | training steps to simulate (default 5) |",
                "| `--straggler-fraction` | STRAGGLER_FRACTION | fraction of devices slowed, per step (0 to 1; "
                "default 0: none) |", "| `--trace` | FILE |"):
        assert row in table


def test_the_readme_links_the_reference():
    readme = open("README.md", encoding="utf-8").read()
    assert "](docs/cli.md)" in readme
