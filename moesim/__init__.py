"""moesim: a simulator and cost model for Mixture-of-Experts parallelism.

Public API (moesim.api; README "API"): load_scenario, estimate, search, simulate, sweep,
report_figures, with_layout, and SpecError for bad input.
"""

__version__ = "0.1.0"

# The subpackages `moesim.estimate` and `moesim.search` are imported first so that the names below
# stay bound to the API functions (importing a subpackage later would otherwise rebind them).
import moesim.estimate  # noqa: E402,F401
import moesim.search  # noqa: E402,F401
from moesim.api import (  # noqa: E402
    SweepResult, estimate, load_scenario, report_figures, search, simulate, sweep, with_layout,
)
from moesim.errors import SpecError  # noqa: E402

__all__ = ["SpecError", "SweepResult", "__version__", "estimate", "load_scenario", "report_figures", "search",
           "simulate", "sweep", "with_layout"]
