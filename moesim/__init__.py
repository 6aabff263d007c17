"""moesim: a simulator and cost model for Mixture-of-Experts parallelism.

Public API (moesim.api; README "API"): load_scenario, estimate, search, simulate, sweep,
report_figures, with_layout, and SpecError for bad input.

The names are imported on first use (PEP 562 module `__getattr__`), so that `import moesim` and
`moesim --version` / `--help` do not import numpy, networkx and the cost model.
"""

import sys as _sys
import types as _types

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first use).
_LAZY = {"SpecError": "moesim.errors", **{name: "moesim.api" for name in (
    "SweepResult", "estimate", "load_scenario", "report_figures", "search", "simulate", "sweep", "with_layout")}}

__all__ = ["SpecError", "SweepResult", "__version__", "estimate", "load_scenario", "report_figures", "search",
           "simulate", "sweep", "with_layout"]


def __getattr__(name: str):
    """A public name, imported from its module the first time it is asked for (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'moesim' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    if name not in _Package.SHADOWED:
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _api_name(name: str) -> property:
    """A package attribute that stays the API function when the subpackage of the same name loads (the import
    system then sets the attribute to the module: ignored); any other value set (a test's monkeypatch) is kept."""

    def get(module):
        value = module.__dict__.get(name)
        return __getattr__(name) if value is None else value

    def put(module, value) -> None:
        if not isinstance(value, _types.ModuleType):
            module.__dict__[name] = value

    def drop(module) -> None:  # `del moesim.estimate`, unittest.mock.patch's exit: back to the API function
        module.__dict__.pop(name, None)

    return property(get, put, drop)


class _Package(_types.ModuleType):
    """`estimate` and `search` are API functions and also subpackages: importing a subpackage sets the
    package's attribute to it, which would hide the function. These properties keep `moesim.estimate` /
    `from moesim import search` the functions, as the eager imports did; the subpackages stay importable
    (`from moesim.estimate import ...` reads sys.modules)."""

    SHADOWED = ("estimate", "search")
    estimate = _api_name("estimate")
    search = _api_name("search")


_sys.modules[__name__].__class__ = _Package
