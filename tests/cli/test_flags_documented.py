"""Every flag `moesim collective` / `moesim calibrate --help` shows is in docs/collectives.md (session 15, newuser:
`--bytes` and `--infer-facts` were in no doc), through the flag table generated from the commands' own parsers
(scripts/cli_flags_table.py), and each help states its default as a value ('--per-channel-caps' said "the shipped
pricing's")."""

from __future__ import annotations

import argparse
import re

import pytest

from moesim.cli import build_parser
from moesim.collectives import nccl_channel_caps

DOC = "docs/collectives.md"


def subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def help_text(command: str) -> str:
    return subparser(command).format_help()


def test_the_flag_table_is_current(load_script, doc_block):
    assert doc_block("cli_flags_table", DOC) == load_script("scripts/cli_flags_table.py").render().strip()


@pytest.mark.parametrize("command", ["collective", "calibrate"])
def test_every_flag_in_help_is_in_the_docs(command, doc_block):
    table = doc_block("cli_flags_table", DOC)
    section = table.split(f"`moesim {command}`:\n", 1)[1].split("\n`moesim ", 1)[0]
    documented = set(re.findall(r"^\| ([^|]*) \|", section, flags=re.M))
    documented = {flag for cell in documented for flag in re.findall(r"`(-[^`]+)`", cell)}
    flags = {s for a in subparser(command)._actions for s in a.option_strings} - {"-h", "--help"}
    assert flags == documented
    assert all(flag in help_text(command) for flag in flags)
    assert ("--bytes" in documented) if command == "collective" else ("--infer-facts" in documented)


def test_per_channel_caps_states_its_default_value():
    text = " ".join(help_text("collective").split())
    state = "on" if nccl_channel_caps.DEFAULT else "off"
    assert f"default {state} (the shipped pricing)" in text
