"""`import moesim`, `moesim --version` and `moesim --help` import none of the cost model (session 16, jsonkeys:
`moesim/__init__.py` imported everything, networkx included: ~1-2 s before `--version` printed), and every public
name stays importable from `moesim` as before (PEP 562 `__getattr__`). Timings: benchmarks/RESULTS.md
"Session 16 (jsonkeys): CLI start"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("networkx", "simpy", "scipy", "numpy")
PUBLIC = ["SpecError", "SweepResult", "__version__", "estimate", "load_scenario", "report_figures", "search",
          "simulate", "sweep", "with_layout"]  # moesim.__all__ on main at session 16's start


def loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running `code` (its stdout discarded)."""
    probe = (f"import sys, io, contextlib\nwith contextlib.redirect_stdout(io.StringIO()):\n"
             + "".join(f"    {line}\n" for line in code.splitlines())
             + f"print(__import__('json').dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_moesim_imports_no_heavy_module():
    assert loaded_after("import moesim") == []


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_import_no_heavy_module(argv):
    assert loaded_after(f"from moesim.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass") == []


def test_every_public_name_is_importable_as_before():
    code = ("import moesim, moesim.api, moesim.errors\n"
            f"from moesim import {', '.join(PUBLIC)}\n"
            "import moesim.estimate.core, moesim.search.rank  # the subpackages named like two API functions\n"
            "from moesim import estimate as e2, search as s2\n"
            "api = [moesim.errors.SpecError] + [getattr(moesim.api, n) for n in "
            f"{[n for n in PUBLIC if n not in ('SpecError', '__version__')]!r}]\n"
            f"got = [{', '.join(n for n in PUBLIC if n != '__version__')}]\n"
            "assert [a is b for a, b in zip(api, got)] == [True] * len(api), got\n"
            "assert e2 is moesim.api.estimate and s2 is moesim.api.search and moesim.estimate is e2\n"
            "assert sorted(moesim.__all__) == sorted(" + repr(PUBLIC) + ")\n"
            "assert set(moesim.__all__) <= set(dir(moesim))\n"
            "print(__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0.1.0"


def test_unknown_attribute_is_an_attribute_error():
    import moesim

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        moesim.nope  # noqa: B018


def test_collective_help_default_is_the_pricings():
    from moesim.cli.collective_cmd import DEFAULT_A2A_ALGORITHM
    from moesim.collectives.sweep import DEFAULT_A2A_ALGORITHM as PRICED

    assert DEFAULT_A2A_ALGORITHM == PRICED


def test_an_api_name_set_by_hand_is_kept(monkeypatch):
    """The properties that keep `estimate` / `search` the functions ignore only the subpackage module."""
    import moesim
    import moesim.api

    monkeypatch.setattr(moesim, "estimate", "patched")
    assert moesim.estimate == "patched"
    monkeypatch.undo()
    assert moesim.estimate is moesim.api.estimate


def test_mock_patch_of_an_api_name_restores_it():
    """unittest.mock.patch restores an attribute it did not find in the module's __dict__ by deleting it: the
    properties keeping `estimate` / `search` the functions had no deleter, so the patch's exit raised AttributeError
    and left the fake in place (session 16 review)."""
    from unittest import mock

    import moesim
    import moesim.api

    for name in ("estimate", "search"):
        with mock.patch(f"moesim.{name}", lambda *a, **k: "fake"):
            assert getattr(moesim, name)() == "fake"
        assert getattr(moesim, name) is getattr(moesim.api, name)
        delattr(moesim, name)  # `del moesim.search`: nothing set by hand, still the function
        assert getattr(moesim, name) is getattr(moesim.api, name)
