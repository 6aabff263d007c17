"""Speed of pricing the expert all-to-all with the DeepEP backends (collectives/dispatch.py).

Run: python benchmarks/bench_dispatch.py [DISPATCH_PY]   (DISPATCH_PY: another dispatch.py to time side by side,
e.g. a parent commit's, exported with `git show REV:moesim/collectives/dispatch.py > /tmp/old.py`).
Per distinct call: a fresh size each time, EP 8/16/32/64 on the H800 profile, best of REPEATS (a tree that prices
DeepEP's per-token records: the dispatch direction's model, FP8 tokens of hidden 7168). No test asserts on it.
"""

from __future__ import annotations

import importlib.util
import sys
import time

from moesim.collectives import dispatch
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.specs.load import load_hardware

REPEATS = 5
CALLS = 5000


def per_call_s(module, base, backend: str) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        model = module.DispatchModel(base, backend, 256, 8, 4)
        if hasattr(module, "for_call"):  # a tree that prices the kernels' records: the dispatch direction's
            model = module.DispatchModel(base, backend, 256, 8, 4, (7392.0, 14336.0)).directed("dispatch")
        start = time.perf_counter()
        for i in range(CALLS):
            ep = (8, 16, 32, 64)[i % 4]
            model.cost("all_to_all", 1e6 + i, Group(size=ep, devices=ep))
        best = min(best, (time.perf_counter() - start) / CALLS)
    return best


def load(path: str):
    spec = importlib.util.spec_from_file_location("dispatch_other", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["dispatch_other"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    base = default_model(load_hardware("h800"))
    modules = [("this tree", dispatch)] + ([(sys.argv[1], load(sys.argv[1]))] if len(sys.argv) > 1 else [])
    for backend in ("deepep", "deepep_ll"):
        for name, module in modules:
            print(f"{backend:9s} {name}: {per_call_s(module, base, backend) * 1e6:.2f} us per distinct call")


if __name__ == "__main__":
    main()
