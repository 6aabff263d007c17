"""Which all-to-all `moesim collective` prices (`--a2a-algorithm`; sweep.all_to_all_cost prices it). A module of names
only, so that `moesim --help` reads them without importing the pricing.

"nccl-tests": what alltoall_perf runs, the flat pairwise exchange (calibrate/bench_cost.py, the per-log error's
pricing); "pairwise" / "hierarchical": that candidate (training.dispatch_backend's names); "auto": the fastest of them
(training's `nccl` backend's rule).
"""

A2A_ALGORITHMS = ("nccl-tests", "pairwise", "hierarchical", "auto")
DEFAULT_A2A_ALGORITHM = "nccl-tests"
