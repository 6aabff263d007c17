"""The `moesim` command: a thin shell that parses, calls one library function and prints.

Every subcommand lives in its own module with `register(subparsers)`; bad input (a SpecError)
ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moesim",
        description="Cost model and simulator for Mixture-of-Experts parallelism. Units: seconds, bytes, "
                    "FLOP; bandwidths in decimal GB/s.",
    )
    parser.add_argument("--version", action="version", version=f"moesim {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue  # a subcommand not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args) or 0
    except SpecError as err:
        print(f"moesim: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("moesim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
