"""Progress bars for long commands: tqdm on stderr, only on a terminal, off with --quiet and --json.

Library functions take a plain `progress(fraction)` callable (0..1, called now and then); the CLI
turns it into a bar with the time elapsed and an estimate of the time left.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

STEPS = 1000  # the bar's resolution: fractions are shown in steps of 1/STEPS
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """`--quiet`: no progress bar (also off with --json, and when stderr is not a terminal)."""
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar on stderr")


def wanted(args: argparse.Namespace) -> bool:
    """A bar only for a person watching: stderr is a terminal, and neither --quiet nor --json."""
    return not getattr(args, "quiet", False) and not getattr(args, "json", False) and sys.stderr.isatty()


@contextmanager
def progress_bar(args: argparse.Namespace, label: str, *,
                 when: bool = True) -> Iterator[Callable[[float], None] | None]:
    """Yields `progress(fraction)` drawing a tqdm bar on stderr, or None when no bar is wanted (or not `when`)."""
    if not when or not wanted(args):
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=STEPS, desc=label, file=sys.stderr, bar_format=BAR_FORMAT, leave=False, mininterval=0.5)
    shown = [0]

    def progress(fraction: float) -> None:
        target = max(0, min(STEPS, int(fraction * STEPS)))
        if target > shown[0]:
            bar.update(target - shown[0])
            shown[0] = target

    try:
        yield progress
    finally:
        bar.close()


__all__ = ["add_quiet", "progress_bar", "wanted"]
