"""The `moesim` command: a thin shell that parses, calls one library function and prints.

Every subcommand lives in its own module with `register(subparsers)`; bad input (a SpecError)
ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from moesim import __version__
from moesim.errors import SpecError

EXIT_BAD_INPUT = 2
# Subcommand modules, in the order `moesim --help` lists them.
COMMAND_MODULES = (
    "moesim.cli.model_cmd",
    "moesim.cli.estimate_cmd",
    "moesim.cli.profiles_cmd",
    "moesim.cli.collective_cmd",
    "moesim.cli.search_cmd",
    "moesim.cli.sweep_cmd",
    "moesim.cli.simulate_cmd",
    "moesim.cli.calibrate_cmd",
    "moesim.cli.report_cmd",
)
# The command names each module registers (tests/cli/test_cli_one_command.py checks them against the full parser):
# `moesim NAME ...` imports that module only, not the other subcommands' (session 23, coldsearch23).
COMMAND_NAMES = {"model": "moesim.cli.model_cmd", "estimate": "moesim.cli.estimate_cmd",
                 "profiles": "moesim.cli.profiles_cmd", "collective": "moesim.cli.collective_cmd",
                 "search": "moesim.cli.search_cmd", "sweep": "moesim.cli.sweep_cmd",
                 "simulate": "moesim.cli.simulate_cmd", "calibrate": "moesim.cli.calibrate_cmd",
                 "validate-report": "moesim.cli.calibrate_cmd", "report": "moesim.cli.report_cmd"}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning (e.g. a skipped results line) as one `moesim: warning:` line on stderr."""
    print(f"moesim: warning: {one_line(str(message))}", file=sys.stderr)


def one_line(text: str) -> str:
    """`text` with control characters (newlines, carriage returns, escapes) shown as escapes: one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`moesim: error: ...`) and exit status 2."""

    def error(self, message: str):  # argparse's hook; main() prints the SpecError as one line
        raise SpecError(f"{self.prog}: {' '.join(message.split())}")


# Command-line values that, when given, name something and may not be empty.
NON_EMPTY_ARGS = ("scenario", "model", "hardware", "layout", "routing", "results", "results_hardware", "name",
                  "dask", "sweep", "bytes")
# Command-line values that name a file moesim writes.
OUTPUT_ARGS = ("output", "trace")
# Command-line values that name a file moesim reads and must not write over; calibrate checks its own inputs (its
# messages name the measurements and the prior), so none of these are checked for it.
INPUT_ARGS = ("scenario", "hardware", "results_hardware", "routing", "results")
SELF_CHECKED_COMMANDS = ("calibrate",)


def check_args(args: argparse.Namespace) -> None:
    """Every numeric value within its range (ARG_RANGES), no empty names, output paths writable; else a SpecError."""
    from moesim.paths import check_output_path
    from moesim.specs.ranges import ARG_RANGES

    for dest, rng in ARG_RANGES.items():
        value = getattr(args, dest, None)
        if value is not None:
            rng.check(value, field="--" + dest.replace("_", "-"))
    for dest in NON_EMPTY_ARGS:
        value = getattr(args, dest, None)
        if isinstance(value, str) and not value.strip():
            raise SpecError("must not be empty", field="--" + dest.replace("_", "-"), value=value)
    for dest in OUTPUT_ARGS:
        value = getattr(args, dest, None)
        if isinstance(value, str):
            check_output_path(value, field="--" + dest)
            _check_not_an_input(args, value, "--" + dest)


def _check_not_an_input(args: argparse.Namespace, out: str, field: str) -> None:
    """A SpecError where the output path `out` is one of the command's input files (`simulate s.toml --trace s.toml`
    wrote the trace over the scenario): those INPUT_ARGS name and the model and hardware files the scenario names."""
    import os

    if not os.path.isfile(out) or getattr(args, "command", None) in SELF_CHECKED_COMMANDS:
        return
    inputs = []  # (what the message calls the file, its path)
    for dest in INPUT_ARGS:
        given = getattr(args, dest, None)
        inputs += [(f"the {dest.replace('_', ' ')} file given", path)
                   for path in (given if isinstance(given, list) else [given]) if isinstance(path, str)]
    inputs += [(f"the scenario's {key} file", path) for key, path in _scenario_files(args)]
    for what, path in inputs:
        if os.path.isfile(path) and os.path.samefile(path, out):
            raise SpecError(f"is {what} ({path}): writing there would overwrite it", file=out, field=field,
                            allowed="a path that is not one of the command's input files")


def _scenario_files(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(key, path) of the model and hardware files the command's scenario file names, resolved as its load resolves
    them (moesim.specs.scenario_file.scenario_from_table); the hardware only where no --hardware replaces it. None
    that cannot be resolved: the load says why."""
    from moesim.specs.data_files import read_data_file, resolve_ref

    scenario = getattr(args, "scenario", None)
    if not isinstance(scenario, str):
        return []
    try:
        path = resolve_ref(scenario, "scenarios")
        table = read_data_file(path)
    except (SpecError, OSError):
        return []
    kinds = {"model": "models", "hardware": "hardware_profiles"}
    if getattr(args, "hardware", None):  # --hardware replaces the scenario's profile: that file is not read
        del kinds["hardware"]
    out = []
    for key, kind in kinds.items():
        if isinstance(table.get(key), str):
            try:
                out.append((key, str(resolve_ref(table[key], kind, relative_to=path.parent))))
            except (SpecError, OSError):
                continue
    return out


def _unrecognized(parser: argparse.ArgumentParser, command: str | None, extras: list[str]) -> SpecError:
    """Arguments no parser took, named with the command they were given to and the flags it takes (argparse's
    own line named neither: "moesim: error: moesim: unrecognized arguments: -q")."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    target = sub.choices.get(command, parser) if command else parser
    flags = [s for a in target._actions for s in a.option_strings if s not in ("-h", "--help")]
    flags += [] if command else list(sub.choices)  # no command given: the commands too
    early = [e for e in extras if command and e.split("=", 1)[0] in flags]  # `moesim -q search ...`: before the command
    if early:
        return SpecError(f"{target.prog}: {' '.join(early)} given before the command; options go after it: "
                         f"`{target.prog} ... {' '.join(early)}`", allowed=", ".join(flags))
    return SpecError(f"{target.prog}: unrecognized arguments: {' '.join(extras)}; see `{target.prog} --help`",
                     allowed=", ".join(flags))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `moesim` parser with every subcommand; with `command` one of COMMAND_NAMES, with that name's module
    only (the parser `moesim COMMAND ...` needs: argparse hands every argument after the command to its parser)."""
    parser = _Parser(
        prog="moesim",
        description="Cost model and simulator for Mixture-of-Experts parallelism. Units: seconds, bytes, "
                    "FLOP; bandwidths in decimal GB/s.",
    )
    parser.add_argument("--version", action="version", version=f"moesim {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (COMMAND_NAMES[command],) if command in COMMAND_NAMES else COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue  # a subcommand not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)  # a command first: only its module (options first: all)
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            raise _unrecognized(parser, getattr(args, "command", None), extras)
    except SpecError as err:
        print(f"moesim: error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        check_args(args)
        with warnings.catch_warnings(record=True) as caught:  # said once the run succeeds: an error stays one line
            code = args.run(args) or 0
        for said in caught:
            _show_warning(said.message, said.category, said.filename, said.lineno)
        return code
    except SpecError as err:
        print(f"moesim: error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    except OSError as err:  # the file system refused a read or write (full disk, permissions): bad input too
        from moesim.paths import short

        where = f"{short(err.filename)}: " if err.filename else ""
        print(f"moesim: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("moesim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
