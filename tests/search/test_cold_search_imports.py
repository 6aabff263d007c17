"""A cold `moesim search` imports only what it uses (session 18, coldsearch): scipy.interpolate (with scipy.optimize)
and networkx were ~0.9 G instructions of DeepSeek-V3's cold command and a search used neither; scipy.stats, simpy and
plotly are held out too (benchmarks/RESULTS.md "Session 18 (coldsearch)"). The nearest-shape lookup that replaced
scipy.interpolate.NearestNDInterpolator answers as it did, ties and far points included. Session 19 (coldsearch2):
the package scipy.spatial (with scipy.sparse, scipy.linalg, scipy.special's array-API layer) is not imported either;
the triangulation is qhull's own extension loaded by moesim/ops/qhull.py, and the nearest shape numpy's search,
both tested here against scipy.spatial, bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from moesim.ops import tables

UNUSED = ("scipy.interpolate", "scipy.optimize", "scipy.stats", "networkx", "simpy", "plotly",
          "scipy.spatial", "scipy.sparse", "scipy.linalg", "scipy._lib._util")  # the last four: session 19


# Session 22 (coldsearch22): moesim modules a search of these scenarios never calls, imported where their branch
# runs (NCCL_ALGO / NCCL_PROTO leaving no algorithm, an empty collective, the pick on a profile's pick_interconnect,
# Megatron's EP all-to-all overlap, CUDA graphs), so a cold search does not compile them.
LAZY = ("moesim.collectives.nccl_pick", "moesim.collectives.nccl_no_pick", "moesim.estimate.a2a_order",
        "moesim.ops.graphs")


def loaded_after_search(scenario: str, *flags: str, modules: tuple[str, ...] = UNUSED) -> list[str]:
    """Which of `modules` a fresh interpreter holds after `moesim search SCENARIO FLAGS` (its stdout discarded)."""
    probe = ("import contextlib, io, json, sys\nfrom moesim.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    assert main(['search', {scenario!r}, '-q', *{list(flags)!r}]) == 0\n"
             f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario, flags", [
    ("mixtral-8x7b-h100", ()),  # a GPU fabric; tables interpolated in 3-4 coordinates (the nearest-shape lookup)
    ("switch-base-128-tpu-v3", ("--devices", "8")),  # a TPU torus
])
def test_a_search_imports_no_module_it_does_not_use(scenario, flags):
    assert loaded_after_search(scenario, *flags) == []


@pytest.mark.parametrize("scenario, flags", [
    ("mixtral-8x7b-h100", ()), ("switch-base-128-tpu-v3", ("--devices", "8")),
])
def test_a_search_leaves_the_branch_only_modules_unloaded(scenario, flags):
    assert loaded_after_search(scenario, *flags, modules=LAZY) == []


def test_the_branch_only_modules_load_where_their_branch_runs():
    """A lazily imported module is still reached where its branch runs: CUDA graphs price through moesim.ops.graphs
    (Megatron's EP overlap through a2a_order: tests/des/test_a2a_overlap_order.py prices it in both engines)."""
    probe = ("import sys, dataclasses\nfrom moesim.specs.load import load_scenario\n"
             "from moesim.estimate import estimate\n"
             "s = load_scenario('mixtral-8x7b-h100')\n"
             "s = dataclasses.replace(s, training=dataclasses.replace(s.training, cuda_graph_scope=('attn',)))\n"
             "estimate(s)\n"
             "print(sorted(m for m in sys.modules if m in ('moesim.ops.graphs', 'moesim.estimate.a2a_order')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['moesim.ops.graphs']"


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


def _nearest_cases(rng: np.random.Generator, dim: int):
    """(points, queries) with many ties: tables of 3 to 250 points (one leaf of the tree up to 16, split above),
    coordinates rounded to integers or tenths, grids, queries on and between the points, far out, on the grid's
    half steps and rounded (equidistant from several points)."""
    for n in (3, 9, 16, 17, 40, 125, 250):
        yield np.unique(np.round(rng.uniform(0, 10, size=(n, dim)), int(rng.integers(0, 2))), axis=0)
    step = 3 if dim < 4 else 2
    yield np.stack(np.meshgrid(*[np.arange(float(step))] * dim, indexing="ij"), axis=-1).reshape(-1, dim)


@pytest.mark.parametrize("seed", range(6))
def test_nearest_shape_is_the_trees_answer_ties_included(seed):
    """Session 19: `tables._Nearest` (numpy over all points, the tree only for near ties above one leaf) against
    scipy.spatial.cKDTree's query as NearestNDInterpolator reads it, bit for bit, over seeds, ties and grids."""
    from scipy.interpolate import NearestNDInterpolator

    rng = np.random.default_rng(seed)
    for dim in (2, 3, 4):
        for pts in _nearest_cases(rng, dim):
            values = rng.uniform(0.1, 0.9, size=len(pts))
            half = pts[rng.integers(0, len(pts), 30)] + 0.5
            queries = np.concatenate([pts, (pts[:-1] + pts[1:]) / 2, rng.uniform(-50, 60, size=(40, dim)), half,
                                      np.round(rng.uniform(-2, 12, size=(60, dim)))])
            ours = tables._Nearest(pts, values)(queries)
            theirs = NearestNDInterpolator(pts, values)(queries)
            np.testing.assert_array_equal(ours.view(np.uint64), theirs.view(np.uint64))
            for bad in (np.nan, np.inf):  # the tree refuses a query that is not finite; so does the lookup
                query = np.vstack([pts[:1], np.full((1, dim), bad)])
                with pytest.raises(ValueError, match="must be finite"):
                    NearestNDInterpolator(pts, values)(query)
                with pytest.raises(ValueError, match="must be finite"):
                    tables._Nearest(pts, values)(query)


def test_nearest_shape_sends_only_near_ties_of_a_split_tree_to_the_tree():
    """One leaf (16 points): numpy answers every finite query, ties too; 17 points: an exact tie goes to the tree."""
    pts = np.array([[float(i), 0.0] for i in range(16)])
    small = tables._Nearest(pts, np.arange(16.0))
    assert small(np.array([[0.5, 0.0], [3.0, 1.0]])).tolist() == [0.0, 3.0] and small.tree is None
    from scipy.spatial import cKDTree

    pts17 = np.vstack([pts, [[16.0, 0.0]]])
    large = tables._Nearest(pts17, np.arange(17.0))
    assert large(np.array([[3.2, 0.0]])).tolist() == [3.0] and large.tree is None
    tie = np.array([[2.5, 0.0]])
    assert large(tie).tolist() == [float(cKDTree(pts17).query(tie)[1][0])] and large.tree is not None


def test_qhull_by_path_is_scipy_spatials_extension():
    """moesim/ops/qhull.py in a fresh interpreter: Delaunay without scipy.spatial or scipy.linalg imported, the same
    simplices as scipy.spatial.Delaunay; a later `import scipy.spatial` returns the same extension module and class,
    and scipy.linalg.cython_lapack is its package's attribute as usual."""
    code = ("import json, sys\nimport numpy as np\nfrom moesim.ops.qhull import qhull_module\n"
            "pts = np.random.default_rng(0).uniform(size=(40, 3))\n"
            "tri = qhull_module().Delaunay(pts)\n"
            "before = [m for m in ('scipy.spatial', 'scipy.linalg', 'scipy.sparse') if m in sys.modules]\n"
            "import scipy.spatial, scipy.linalg.cython_lapack\n"
            "same = [scipy.spatial.Delaunay is qhull_module().Delaunay, scipy.spatial._qhull is qhull_module(),\n"
            "        scipy.spatial.QhullError is qhull_module().QhullError,\n"
            "        np.array_equal(scipy.spatial.Delaunay(pts).simplices, tri.simplices),\n"
            "        hasattr(scipy.linalg.cython_lapack, '__pyx_capi__')]\n"
            "print(json.dumps([before, same]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [[], [True, True, True, True, True]]


def test_qhull_after_scipy_spatial_is_the_ordinary_import():
    import scipy.spatial

    from moesim.ops import qhull

    assert qhull.qhull_module().Delaunay is scipy.spatial.Delaunay
