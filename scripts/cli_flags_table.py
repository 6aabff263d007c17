"""Every flag of every `moesim` command, as its --help states it (values, unit, default): `collective` and `calibrate`
in docs/collectives.md ("Flags of `moesim collective` and `moesim calibrate`"), the other commands in docs/cli.md
(session 16: `simulate`'s flags were in no doc); the pages list what the commands take, and tests keep them the same.

Run: python scripts/cli_flags_table.py [--write]   (--write replaces the marked blocks of both pages)
"""

from __future__ import annotations

import argparse

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.cli import build_parser  # noqa: E402
from scripts.docblock import replace_block  # noqa: E402

DOC = ROOT / "docs" / "collectives.md"
CLI_DOC = ROOT / "docs" / "cli.md"
BEGIN = "<!-- BEGIN cli_flags_table: python scripts/cli_flags_table.py --write -->"
END = "<!-- END cli_flags_table -->"
COMMANDS = ("collective", "calibrate")


def other_commands() -> tuple[str, ...]:
    """Every command but COMMANDS, in `moesim --help`'s order: docs/cli.md's tables."""
    return tuple(name for name in subparsers().choices if name not in COMMANDS)


def subparsers() -> argparse._SubParsersAction:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))


def subparser(name: str) -> argparse.ArgumentParser:
    return subparsers().choices[name]


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


def render(commands: tuple[str, ...] = COMMANDS) -> str:
    """The flag tables of `commands` (docs/collectives.md's block by default; docs/cli.md's: other_commands())."""
    lines = []
    for command in commands:
        lines += [f"`moesim {command}`:", "", "| flag | value | what it does, its unit and default (as `--help`) |",
                  "|---|---|---|"]
        lines += [f"| {names} | {value} | {text} |" for names, value, text in flags(command)]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def render_cli() -> str:
    """docs/cli.md's block: the tables of every command docs/collectives.md's block leaves out."""
    return render(other_commands())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the marked blocks of docs/collectives.md and "
                                                             "docs/cli.md")
    blocks = ((DOC, render()), (CLI_DOC, render_cli()))
    if parser.parse_args().write:
        for doc, block in blocks:
            replace_block(doc, BEGIN, END, block)
    print("\n\n".join(block for _, block in blocks))
