"""TopologyModel.cost's fast path (memoised layouts and NCCL tuner plans, no Candidate for the losers) answers
exactly what the reference path does: a fresh model's `candidates`, the first fastest one.

benchmarks/collective_grid.py runs the same comparison on a broad grid across two trees (before / after a speed
change); this is its small, in-tree form.
"""

from __future__ import annotations

import random

import pytest

from moesim.collectives.base import OPS, Group
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

SIZES = (0, 8, 3 * 2**10, 2**16, 2**20 + 1, 2**27, 2**34)
# (profile, NCCL_ALGO, CollNet): NCCL multi-node with SHARP, no NVLS, a 72-GPU NVLink domain, a torus,
# cores sharing a chip, gloo on a CPU
VARIANTS = (("h100-sxm", "", False), ("h100-sxm", "", True), ("h100-sxm", "ring", False),
            ("h100-sxm", "^nvls,nvlstree", True), ("h100-sxm", "pat", False), ("a100-80gb", "", False),
            ("gb200-nvl72", "", False), ("tpu-v4", "", False), ("tpu-v3", "", False), ("cpu-localhost", "", False))


def groups(max_devices: int) -> list[Group]:
    out = []
    for n, stride in ((2, 1), (8, 1), (16, 8), (64, 1), (3, 4), (512, 2)):
        if n * stride <= max_devices:
            job = max_devices // (n * stride) * n * stride
            out += [Group(size=n, stride=stride), Group(size=n, stride=stride, concurrent=job // n, devices=job)]
    return out


def reference(hw, algo: str, collnet: bool, op: str, size: int, group: Group):
    """The first fastest of a fresh model's candidates (nothing memoised), as (time_s, label, bottleneck)."""
    found = TopologyModel(hw, nccl_algo=algo, collnet=collnet).candidates(op, size, group)
    if not found:
        return "no algorithm"
    best = min(found, key=lambda c: c.time_s + c.tuner_offset_s)  # NCCL's pick by its own model
    return best.time_s, best.label, best.bottleneck


def fast(model: TopologyModel, op: str, size: int, group: Group):
    try:
        cost = model.cost(op, size, group)
    except SpecError as err:
        assert "leaves no algorithm" in str(err)
        return "no algorithm"
    return cost.time_s, cost.algorithm, cost.bottleneck


@pytest.mark.parametrize("name,algo,collnet", VARIANTS)
def test_cost_equals_the_fresh_models_fastest_candidate(name, algo, collnet):
    hw = load_hardware(name)
    calls = [(op, size, group) for group in groups(hw.max_devices) for op in OPS for size in SIZES]
    random.Random(11).shuffle(calls)  # one warm model, the groups, ops and sizes interleaved
    model = TopologyModel(hw, nccl_algo=algo, collnet=collnet)
    for op, size, group in calls:
        if group.size == 1:
            continue
        assert fast(model, op, size, group) == reference(hw, algo, collnet, op, size, group), (op, size, group)


def test_warm_model_answers_do_not_depend_on_call_order():
    hw = load_hardware("h100-sxm")
    calls = [(op, size, group) for group in groups(hw.max_devices) for op in OPS for size in SIZES]
    forward, backward = TopologyModel(hw), TopologyModel(hw)
    first = {c: fast(forward, *c) for c in calls}
    second = {c: fast(backward, *c) for c in reversed(calls)}
    assert first == second
    assert len({v[1] for v in first.values()}) > 5  # the grid reaches many algorithm/protocol winners
