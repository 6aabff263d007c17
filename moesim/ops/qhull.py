"""scipy's qhull extension (Delaunay, QhullError) without importing the scipy.spatial package.

`from scipy.spatial import Delaunay` runs scipy/spatial/__init__.py, which imports cKDTree (scipy.sparse and scipy's
array-API layer), scipy.spatial.distance and .transform (scipy.special, scipy.constants) and, through the extension's
`cimport scipy.linalg.cython_lapack`, the whole scipy.linalg package: ~1,150 M instructions, an eighth of a cold
DeepSeek-V3 `moesim search`, of which the search uses qhull's triangulation only (session 19, coldsearch2;
benchmarks/RESULTS.md). `qhull_module` loads the two extension files it needs, scipy/linalg/cython_lapack and
scipy/spatial/_qhull (scipy 1.17 spatial/_qhull.pyx's imports), by their paths: the same compiled code, so the
same triangulation bit for bit. Both are removed from sys.modules afterwards, so a later `import scipy.spatial` (or
scipy.linalg) runs its package as usual; the extensions keep one module object each (Cython's module init returns the
one it made, tests/search/test_cold_search_imports.py). Where scipy.spatial is loaded already, or its files are not
where scipy 1.17 keeps them, the ordinary import answers.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType

_EXTENSIONS = ("linalg.cython_lapack", "spatial._qhull")  # in load order: _qhull cimports cython_lapack
_lock = threading.Lock()


def _extension_path(package_dir: Path, name: str) -> Path | None:
    """The compiled extension `name` in `package_dir` under this interpreter's suffixes, or None."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package_dir / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _load_by_path() -> ModuleType | None:
    """scipy.spatial._qhull loaded from its file (cython_lapack first), or None where a file is not found or does
    not load so (another scipy's layout: the caller then imports scipy.spatial)."""
    import scipy

    root = Path(scipy.__file__).parent
    paths = {}
    for dotted in _EXTENSIONS:
        package, name = dotted.split(".")
        path = _extension_path(root / package, name)
        if path is None:
            return None
        paths[f"scipy.{dotted}"] = path
    added = []
    try:
        for full, path in paths.items():
            if full in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(full, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[full] = module  # where _qhull's cimport finds it, without running scipy.linalg's package
            added.append(full)
            spec.loader.exec_module(module)
        return sys.modules["scipy.spatial._qhull"]
    except ImportError:
        return None
    finally:
        for full in added:
            sys.modules.pop(full, None)


_loaded: dict[str, ModuleType] = {}


def qhull_module() -> ModuleType:
    """scipy.spatial._qhull: `.Delaunay` and `.QhullError` as scipy.spatial exports them (loaded once)."""
    with _lock:
        if "qhull" not in _loaded:
            module = _load_by_path() if "scipy.spatial" not in sys.modules else None
            if module is None:
                from scipy.spatial import _qhull as module
            _loaded["qhull"] = module
        return _loaded["qhull"]
