"""The moment-matched routing sampler against the exact per-token one, end to end at DeepSeek-V3 scale.

Run: python benchmarks/bench_moments_step.py [--micro-batches 2] [--seeds 0 1] [--samplers moments gumbel]
DeepSeek-V3 on 2048 H800 (scenarios/deepseek-v3-h800.toml) with fewer micro-batches (the exact sampler needs
~2 s per layer and micro-batch), zipf:1.2 routing and 2 % stragglers x1.3: one simulated step per sampler and
seed. The seed draws the per-layer popularity first, so equal seeds compare the samplers under the same
popularity. Prints step time and CPU time (one process, single-threaded) per run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from moesim.des import SimOptions, simulate
from moesim.specs.load import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "deepseek-v3-h800.toml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micro-batches", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--samplers", nargs="+", default=["moments", "gumbel"], choices=["moments", "gumbel"])
    args = ap.parse_args()
    sc = load_scenario(SCENARIO)
    mb = args.micro_batches
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, micro_batches=mb,
                                                              global_batch_sequences=128 * mb))
    for sampler in args.samplers:
        for seed in args.seeds:
            started = time.process_time()
            r = simulate(sc, None, SimOptions(steps=1, routing="zipf:1.2", straggler_fraction=0.02,
                                              straggler_slowdown=1.3, trace=False, sampler=sampler, seed=seed))
            print(json.dumps({"sampler": sampler, "seed": seed, "micro_batches": mb, "step_s": r.step_times_s[0],
                              "cpu_s": time.process_time() - started}), flush=True)


if __name__ == "__main__":
    main()
