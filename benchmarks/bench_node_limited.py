"""Cost of node-limited routing (routing.sample_node_limited_top_k) in the simulator at DeepSeek-V3 scale.

Run: python benchmarks/bench_node_limited.py [--scenario deepseek-v3-h800] [--calls 2]
Builds the simulator's router for the scenario exactly as `moesim simulate` does (des/run.py: costs, EP
groups of one stage, node limit), times `--calls` route_layer calls (one MoE layer and micro-batch of one
stage) under uniform popularity (the scenario's default; fast order-statistics sampler) and under Zipf(1)
popularity (the general sampler, all E keys per token, which uniform popularity also used before), and
multiplies by the calls a step makes (MoE layers x micro-batches) for the routing time of one step; then the
moment-matched sampler that `auto` picks at this size (des/moments.py): one pool per layer and one draw.
Timings are CPU time of this one process (single-threaded numpy).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from moesim.collectives.select import model_for
from moesim.des.costs import build_costs
from moesim.des.run import SimOptions, _Router, _stage_of
from moesim.des.moments import sample_rank_counts
from moesim.des.routing import layer_moments, route_layer
from moesim.estimate import estimate
from moesim.specs import load_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="deepseek-v3-h800")
    ap.add_argument("--calls", type=int, default=2)
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    layout = sc.resolve()
    model = model_for(sc)
    est = estimate(sc, layout, sc.training, model)
    costs = build_costs(sc, layout, sc.training, model, est.optimizer_time_s)
    router = _Router(costs, SimOptions(), np.random.default_rng(0), keep=False)
    moe = sc.model.moe
    layer = router.layers[0]
    lc = costs.classes[costs.workload.layer_class_index[layer]]
    groups = router.groups[router.stage_of_layer[layer]]
    calls_per_step = len(router.layers) * costs.micro_batches
    print(f"{sc.name}: {len(_stage_of(costs))} devices, node limit (nodes, M) = {router.node_limit}, "
          f"E = {moe.num_experts}, k = {moe.top_k}, {lc.tokens} tokens per device per micro-batch, "
          f"{groups.size} devices per stage in EP groups {groups.shape}, dropless = {costs.dropless}")
    zipf = np.arange(1, moe.num_experts + 1, dtype=float) ** -1.0
    cases = (("uniform popularity (order-statistics sampler)", router.p[0]),
             ("zipf:1 popularity (all E keys per token; uniform took this path before)", zipf / zipf.sum()))
    for label, p in cases:
        times = []
        for i in range(args.calls):
            t = time.process_time()
            route_layer(p, groups, lc.tokens, moe.group_size_tokens, moe.top_k, None, np.random.default_rng(i),
                        node_limit=router.node_limit, sampler="gumbel")  # the exact per-token sampler
            times.append(time.process_time() - t)
        best = min(times)
        print(f"{label}: route_layer per call {', '.join(f'{x:.2f}' for x in times)} s CPU; "
              f"x {calls_per_step} calls ({len(router.layers)} MoE layers x {costs.micro_batches} micro-batches) "
              f"= ~{best * calls_per_step / 60:.0f} min of routing per step")
    # what `auto` runs at this size: moments (des/moments.py), a pool per layer, then one draw per layer for all
    # micro-batches at once (as run._Router does)
    p = cases[1][1]
    t = time.process_time()
    m = layer_moments(p, groups.shape[1], moe.top_k, np.random.default_rng(0), router.node_limit)
    pool_s = time.process_time() - t
    t = time.process_time()
    sample_rank_counts(lc.tokens, m, np.random.default_rng(1), groups.size * costs.micro_batches)
    draw_s = time.process_time() - t
    print(f"moments (auto at this size), zipf:1: pool of {m.pool_tokens:,} tokens {pool_s:.3f} s + one layer's "
          f"{costs.micro_batches} micro-batches drawn at once {draw_s:.3f} s CPU; x {len(router.layers)} MoE layers "
          f"= ~{(pool_s + draw_s) * len(router.layers):.1f} s of routing per step")

if __name__ == "__main__":
    main()
