"""When no layout fits: the closest misses and which lever would make one fit.

A search that ranks nothing still evaluated every valid layout; the ones needing the least memory
per device are the closest misses. For the closest one this module tries each lever a user can
pull, by evaluating it again with the lever changed (the same analytical model, nothing scaled):
  ZeRO stage / recompute   every stage and mode (the search may have been limited by [search])
  micro-batch tokens       fewer sequences per micro-batch (more micro-batches per step, or a
                           smaller global batch): halving until one sequence
  more devices             the same scenario searched on 2x, 4x, ... devices, up to the profile's
                           max_devices (MAX_DOUBLINGS searches at most)
and reports, for each, whether it fits and the memory it reaches. Memory that does not scale with
tokens (weights, gradients, optimizer states, framework buffers, reserved) bounds what the token
levers can do.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from moesim.specs.param_overlap import row_overrides
from moesim.specs.training import RECOMPUTE_MODES, ZERO_STAGES

MAX_DOUBLINGS = 3  # device counts tried: 2x, 4x, 8x the scenario's (each is one more search)
STATIC_PARTS = ("weights", "gradients", "optimizer_states", "framework_buffers", "reserved")


def _evaluate(scenario, layout, training):
    from moesim.estimate import estimate

    return estimate(scenario, layout, training)


def _zero_recompute(scenario, est, capacity: float) -> dict:
    """The closest layout at every ZeRO stage and recompute mode: the least memory, and whether it fits."""
    best = None
    refused = est.training.refused_recompute_modes()  # not a lever Megatron-LM takes with these options
    for zero in ZERO_STAGES:
        for mode in (m for m in RECOMPUTE_MODES if m not in refused):
            training = dataclasses.replace(est.training, zero_stage=zero, recompute=mode,  # a refused key off
                                           **row_overrides(est.training, est.training.pipeline_schedule, zero))
            mem = _evaluate(scenario, est.layout, training).memory_bytes_per_device["total"]
            if best is None or mem < best[0]:
                best = (mem, zero, mode)
    mem, zero, mode = best
    searched = set(scenario.search.zero_stages) >= {zero} and mode in scenario.search.recompute_modes
    return {"lever": "ZeRO stage / recompute", "fits": bool(mem <= capacity), "memory_bytes_per_device": mem,
            "detail": f"least memory at ZeRO-{zero}, recompute {mode}: {mem / 2**30:.2f} GiB"
                      + ("" if searched else " (outside the scenario's [search] space)")}


def _micro_batch_tokens(scenario, est, capacity: float) -> dict:
    """Fewer sequences per micro-batch on the closest layout: the most that fits, if any."""
    lay, tr = est.layout, est.training
    seqs = tr.global_batch_sequences // (lay.dp * tr.micro_batches)
    seq_tokens = sum(scenario.seq_lens)
    static = sum(est.memory_bytes_per_device[k] for k in STATIC_PARTS)
    tried = []
    b = seqs
    while b > 1:
        b //= 2
        training = dataclasses.replace(tr, global_batch_sequences=b * lay.dp * tr.micro_batches)
        smaller = dataclasses.replace(scenario, training=training)  # the batch is the scenario's, not the layout's
        mem = _evaluate(smaller, lay, training).memory_bytes_per_device["total"]
        tried.append((b, mem))
        if mem <= capacity:
            return {"lever": "fewer micro-batch tokens", "fits": True, "memory_bytes_per_device": mem,
                    "detail": f"micro-batches of {b} sequences ({b * seq_tokens} tokens) instead of {seqs} fit "
                              f"({mem / 2**30:.2f} GiB): {tr.micro_batches * seqs // b} micro-batches per step, or a "
                              f"global batch of {b * lay.dp * tr.micro_batches} sequences"}
    mem = tried[-1][1] if tried else est.memory_bytes_per_device["total"]
    return {"lever": "fewer micro-batch tokens", "fits": False, "memory_bytes_per_device": mem,
            "detail": f"even 1 sequence per micro-batch needs {mem / 2**30:.2f} GiB; weights, gradients, optimizer "
                      f"states, framework buffers and reserved memory alone take {static / 2**30:.2f} GiB"}


def _more_devices(scenario, capacity: float) -> dict:
    """The scenario searched on more devices: the first count at which a layout fits."""
    from moesim.search.rank import search

    devices = scenario.devices
    tried = []
    for _ in range(MAX_DOUBLINGS):
        devices *= 2
        if devices > scenario.hardware.max_devices:
            break
        result = search(dataclasses.replace(scenario, devices=devices, layout_given={}))
        tried.append(devices)
        if result.ranked:
            i = int(np.argmin(result.memory_bytes_per_device))
            return {"lever": "more devices", "fits": True, "devices": devices,
                    "memory_bytes_per_device": float(result.memory_bytes_per_device[0]),
                    "detail": f"{devices} devices fit: best {result.step_time_s[0]:.4g} s/step at "
                              f"{result.memory_bytes_per_device[0] / 2**30:.2f} GiB "
                              f"({result.layout_arg(0)}); least memory "
                              f"{result.memory_bytes_per_device[i] / 2**30:.2f} GiB"}
    limit = f"the profile's max_devices = {scenario.hardware.max_devices}"
    if not tried:
        return {"lever": "more devices", "fits": False, "detail": f"{2 * scenario.devices} devices exceed {limit}"}
    return {"lever": "more devices", "fits": False,
            "detail": f"nothing fits on {', '.join(map(str, tried))} devices either"
                      + (f" ({limit})" if devices > scenario.hardware.max_devices else "")}


def closest_miss(result, *, top: int = 5) -> dict:
    """The answer when nothing fits: the closest layouts (least memory first), the smallest memory
    found, the capacity, and each lever tried on the closest (module docstring)."""
    scenario, capacity = result.scenario, result.memory_capacity_bytes
    if result.misses is None or not len(result.misses):
        return {"closest": [], "smallest_memory_bytes": None, "levers": []}
    from moesim.collectives.select import default_model
    from moesim.estimate import evaluate, step_estimate

    n = min(top, len(result.misses))
    model = result.collective_model or default_model(scenario.hardware)
    ev = evaluate(scenario, result.misses.take(np.arange(n)), model)
    estimates = [step_estimate(scenario, ev, j) for j in range(n)]
    closest = []
    for est in estimates:
        mem = est.memory_bytes_per_device
        closest.append({"layout": est.layout_dict(), "layout_arg": est.layout_arg, "step_time_s": est.step_time_s,
                        "memory_bytes_per_device": mem["total"], "over_capacity_bytes": mem["total"] - capacity,
                        "memory_breakdown_bytes": {k: v for k, v in mem.items() if k != "total"}})
    first = estimates[0]
    levers = [_zero_recompute(scenario, first, capacity), _micro_batch_tokens(scenario, first, capacity),
              _more_devices(scenario, capacity)]
    return {"closest": closest, "smallest_memory_bytes": closest[0]["memory_bytes_per_device"],
            "memory_capacity_bytes": capacity, "levers": levers}
