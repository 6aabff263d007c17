"""Every flag of `moesim collective` and `moesim calibrate`, as their --help states it (values, unit, default), for
docs/collectives.md ("Flags of `moesim collective` and `moesim calibrate`"): the page lists what the commands take,
and a test keeps the two the same.

Run: python scripts/cli_flags_table.py [--write]   (--write replaces the marked block of docs/collectives.md)
"""

from __future__ import annotations

import argparse

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.cli import build_parser  # noqa: E402
from scripts.docblock import run_check  # noqa: E402

DOC = ROOT / "docs" / "collectives.md"
BEGIN = "<!-- BEGIN cli_flags_table: python scripts/cli_flags_table.py --write -->"
END = "<!-- END cli_flags_table -->"
COMMANDS = ("collective", "calibrate")


def subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def flags(command: str) -> list[tuple[str, str, str]]:
    """(flag(s), value, help) of each option and positional of `command`, in --help's order; --help left out."""
    parser = subparser(command)
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.metavar or action.dest}`"
        if action.choices:
            value = " \\| ".join(str(c) for c in action.choices)
        elif action.nargs == 0:
            value = "(switch)"
        else:
            value = (action.metavar or action.dest.upper()).replace("|", "\\|")
        text = " ".join(formatter._expand_help(action).split()).replace("|", "\\|") if action.help else ""
        rows.append((names, value, text + (" (required)" if action.required else "")))
    return rows


def render() -> str:
    lines = []
    for command in COMMANDS:
        lines += [f"`moesim {command}`:", "", "| flag | value | what it does, its unit and default (as `--help`) |",
                  "|---|---|---|"]
        lines += [f"| {names} | {value} | {text} |" for names, value, text in flags(command)]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
