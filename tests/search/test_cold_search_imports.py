"""A cold `moesim search` imports only what it uses (session 18, coldsearch): scipy.interpolate (with scipy.optimize)
and networkx were ~0.9 G instructions of DeepSeek-V3's cold command and a search used neither; scipy.stats, simpy and
plotly are held out too (benchmarks/RESULTS.md "Session 18 (coldsearch)"). The nearest-shape lookup that replaced
scipy.interpolate.NearestNDInterpolator answers as it did, ties and far points included."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from moesim.ops import tables

UNUSED = ("scipy.interpolate", "scipy.optimize", "scipy.stats", "networkx", "simpy", "plotly")


def loaded_after_search(scenario: str, *flags: str) -> list[str]:
    """Which of UNUSED a fresh interpreter holds after `moesim search SCENARIO FLAGS` (its stdout discarded)."""
    probe = ("import contextlib, io, json, sys\nfrom moesim.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    assert main(['search', {scenario!r}, '-q', *{list(flags)!r}]) == 0\n"
             f"print(json.dumps([m for m in {list(UNUSED)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario, flags", [
    ("mixtral-8x7b-h100", ()),  # a GPU fabric; tables interpolated in 3-4 coordinates (the nearest-shape lookup)
    ("switch-base-128-tpu-v3", ("--devices", "8")),  # a TPU torus
])
def test_a_search_imports_no_module_it_does_not_use(scenario, flags):
    assert loaded_after_search(scenario, *flags) == []


def test_the_cli_module_imports_none_of_them_at_load():
    code = f"import sys, moesim.cli, moesim.cli.search_cmd\nprint([m for m in {list(UNUSED)!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_shape_is_scipy_interpolates_answer(seed):
    """`tables._Nearest` against scipy.interpolate.NearestNDInterpolator, bit for bit: random points, queries on
    the points, between two points (ties), far outside, and a grid of points (many ties)."""
    from scipy.interpolate import NearestNDInterpolator

    rng = np.random.default_rng(seed)
    for dim in (2, 3, 4):
        points = np.round(rng.uniform(0, 10, size=(12, dim)), 1)
        grid = np.stack(np.meshgrid(*[np.arange(3.0)] * dim, indexing="ij"), axis=-1).reshape(-1, dim)
        for pts in (points, grid):
            values = rng.uniform(0.1, 0.9, size=len(pts))
            queries = np.concatenate([pts, (pts[:-1] + pts[1:]) / 2, rng.uniform(-50, 60, size=(40, dim)),
                                      grid + 0.5])
            ours = tables._Nearest(pts, values)(queries)
            theirs = NearestNDInterpolator(pts, values)(queries)
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
            np.testing.assert_array_equal(ours.view(np.uint64), theirs.view(np.uint64))
