"""The pricing's hot path (session 13 speed) answers bit for bit what the general formulas do.

- nccl_plan._ramped (the ring / tree transfer from the plan's transfer_shape, ramp on the bottleneck) against
  nccl_plan._transfer (hierarchy.ring_transfer_s / double_binary_tree_transfer_s) then nccl._scaled_transfer;
- TopologyModel.cost, which enters the model's NCCL release itself (no at_release wrapper), against the pick of
  `candidates` (still wrapped), for every NCCL-version scope, and inside another release's at_version;
- no memo leaks across TopologyModel settings: models of different settings priced interleaved answer what each
  answers alone, on a fresh model.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from moesim.collectives import nccl_tuning
from moesim.collectives.base import Group
from moesim.collectives.nccl import PROTOCOLS, _scaled_transfer
from moesim.collectives.nccl_plan import _ramped, _transfer, transfer_shape
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware


def _bits(values) -> list[str]:
    return [float(v).hex() for v in values]


def _random_counts(rng: random.Random) -> tuple[int, ...]:
    counts = [rng.choice((1, 2, 3, 4, 8))]
    for _ in range(rng.randrange(0, 3)):
        counts.append(counts[-1] * rng.choice((1, 2, 3, 4, 16)))  # x1: a tier the group does not cross
    return tuple(counts)


def test_ramped_equals_the_general_transfer_bit_for_bit():
    rng = random.Random(13)
    checked = 0
    for _ in range(4000):
        counts = _random_counts(rng)
        n, passes = counts[-1], rng.choice((1, 2))
        plan = SimpleNamespace(passes=passes, n=n, counts=counts)
        shape = transfer_shape(passes, n, counts)
        port = tuple(rng.uniform(1e9, 5e11) for _ in counts)
        caps = None if rng.random() < 0.4 else tuple(rng.uniform(1e9, 5e11) for _ in counts)
        factor = rng.choice((0.5, 0.92, 1.0, 0.263, rng.uniform(0.01, 1.0)))
        size = rng.choice((rng.randrange(0, 2**34), float(rng.randrange(1, 2**40)), rng.uniform(0, 1e6), 2**20))
        ramp = rng.uniform(1.0, 2.0)
        algo, proto = rng.choice(("ring", "tree")), rng.choice(PROTOCOLS)
        if n == 1 and algo == "ring":
            continue  # a ring of one rank: no collective (TopologyModel answers group.size == 1 itself)
        want = _scaled_transfer(_transfer(plan, algo, proto, size, port, factor, caps), ramp)
        got = _ramped(shape, algo, proto, size, port, factor, caps, ramp)
        assert type(got) is tuple and _bits(got) == _bits(want), (counts, passes, algo, proto, size, factor, caps)
        checked += 1
    assert checked > 3000


GROUPS = (Group(size=8), Group(size=64, concurrent=16, devices=1024), Group(size=16, stride=8, concurrent=8,
                                                                              devices=1024), Group(size=2))
SIZES = (1024, 3 * 2**16 + 5, 2**20, 2**26, 2**33)
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv")


def _answer(cost) -> tuple:
    return cost.time_s.hex(), cost.algorithm, cost.bottleneck


def _pick(model: TopologyModel, op: str, size: float, group: Group) -> tuple:
    best = min(model.candidates(op, size, group), key=lambda c: c.time_s + c.tuner_offset_s)
    return best.time_s.hex(), best.label, best.bottleneck


@pytest.mark.parametrize("scope", ("all", "pick"))
def test_cost_at_a_release_equals_the_wrapped_candidates_pick(scope):
    hw = load_hardware("h100-sxm")
    model = TopologyModel(hw, nccl_version="2.18.1", nccl_version_scope=scope)
    today = TopologyModel(hw)
    moved = 0
    for group in GROUPS:
        for op in OPS:
            for size in SIZES:
                want = _pick(model, op, size, group)
                assert _answer(model.cost(op, size, group)) == want
                with nccl_tuning.at_version("2.30.7"):  # another release in force outside: the model's own wins
                    assert _answer(model.cost(op, size, group)) == want
                moved += _answer(today.cost(op, size, group)) != want
    assert moved > 0  # the release does move some answers here (the check above could fail)


SETTINGS = ({}, {"nccl_version": "2.18.1"}, {"nccl_version": "2.18.1", "nccl_version_scope": "pick"},
            {"p2p_net_model": "summed"}, {"p2p_net_model": "concurrent"}, {"nccl_algo": "ring"},
            {"nccl_proto": "^LL128"}, {"nccl_proto": "Simple"}, {"per_channel_caps": False},
            {"nccl_max_nchannels": 4}, {"ring_net_channel_gbps": 20.0}, {"broadcast_model": "plain"},
            {"p2p_net_nchannels": 4})


def test_no_memo_leaks_across_model_settings():
    hw = load_hardware("h100-sxm")
    calls = [(op, size, group) for group in GROUPS for op in OPS for size in SIZES]
    alone = []
    for kw in SETTINGS:  # each setting on its own fresh model, one at a time
        model = TopologyModel(hw, **kw)
        alone.append([_answer(model.cost(*c)) for c in calls])
    models = [TopologyModel(hw, **kw) for kw in SETTINGS]
    rng = random.Random(5)
    order = [(i, j) for i in range(len(SETTINGS)) for j in range(len(calls))]
    rng.shuffle(order)  # every setting's models priced interleaved
    for i, j in order:
        assert _answer(models[i].cost(*calls[j])) == alone[i][j], (SETTINGS[i], calls[j])
    distinct = {tuple(a) for a in alone}
    assert len(distinct) == len(SETTINGS)  # every setting moves something: a leak would show
