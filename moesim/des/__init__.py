"""Discrete-event simulator: one training step as it runs, with the analytical model's
own per-operation costs plus what averages hide - contention on links, routing imbalance and
dropped tokens, compute/communication overlap, pipeline schedules, stragglers and kernel noise.

    result = simulate(scenario, layout, SimOptions(routing="zipf:1.2", steps=10, seed=0))
    result.step_time_stats, result.analytical_step_time_s, result.chrome_trace()

Engines: kernel.py (default; compute as a dataflow, the network in time order, devices with
identical timelines folded into one, fold.py) and engine.py (simpy, every device: the reference).
"""

from moesim.des.run import MODES, SimOptions, SimResult, simulate, step_time

__all__ = ["MODES", "SimOptions", "SimResult", "simulate", "step_time"]
