"""Progress: simulate() reports fractions of its work; the CLI draws a bar only on a terminal,
never with --quiet or --json."""

from __future__ import annotations

import argparse
import io

from des_helpers import tiny_scenario
from moesim.cli import progress as P
from moesim.des import SimOptions, simulate
from moesim.specs.layout import Layout


def test_simulate_reports_progress_up_to_one():
    seen = []
    simulate(tiny_scenario(8, dropless=True), Layout(dp=8, ep=8), SimOptions(steps=2), progress=seen.append)
    assert seen and seen[-1] == 1.0
    assert all(0 <= a <= b <= 1 for a, b in zip(seen, seen[1:]))
    assert 0.5 in seen  # the first of two steps done


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_only_on_a_terminal_and_not_quiet_or_json(monkeypatch):
    args = argparse.Namespace(quiet=False, json=False)
    monkeypatch.setattr(P.sys, "stderr", io.StringIO())
    assert not P.wanted(args)
    tty = _Tty()
    monkeypatch.setattr(P.sys, "stderr", tty)
    assert P.wanted(args)
    assert not P.wanted(argparse.Namespace(quiet=True, json=False))
    assert not P.wanted(argparse.Namespace(quiet=False, json=True))
    with P.progress_bar(args, "simulating") as progress:
        progress(0.5)
        progress(1.0)
    assert "simulating:" in tty.getvalue() and "<" in tty.getvalue()  # elapsed<remaining (ETA)
    with P.progress_bar(args, "nothing", when=False) as progress:
        assert progress is None
