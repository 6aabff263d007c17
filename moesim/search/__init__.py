"""Layout search and what-if sweeps over the analytical model (vectorised; workers or Dask for sweeps)."""

from moesim.search.enumerate import REASONS, enumerate_layouts
from moesim.search.pareto import pareto_front
from moesim.search.rank import OBJECTIVES, SearchResult, release_kept, search

__all__ = ["OBJECTIVES", "REASONS", "SearchResult", "enumerate_layouts", "pareto_front", "release_kept", "search"]
