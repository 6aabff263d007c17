"""The model's ends in every pipeline schedule of the simulator (session 18 review, a second reading of b200val;
docs/collectives-history.md "Session 18 (review)"): per micro-batch the input embedding (moesim.ops.vocab) runs once
on the first piece and the output head once on the last, with their tensor-parallel collectives, whatever the schedule
places the pieces on (interleaved: v pieces a device; zb-v: pieces d and 2p-1-d; DualPipe: half the micro-batches
through the mirrored devices)."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from des_helpers import tiny_scenario
from moesim.collectives.select import model_for
from moesim.des.costs import build_costs
from moesim.des.schedule import build_stage_program
from moesim.specs.layout import Layout

P, M = 4, 8
SCHEDULES = [("1f1b", 1), ("gpipe", 1), ("interleaved", 2), ("zb-h1", 1), ("zb-v", 1), ("dualpipe", 1)]


def _programs(schedule: str, vp: int, sequence_parallel: bool):
    sc = tiny_scenario(2 * P, micro_batches=M, pipeline_schedule=schedule, global_batch_sequences=M,
                       sequence_parallel=sequence_parallel)
    sc = dataclasses.replace(sc, model=dataclasses.replace(sc.model, decoder_layers=16))
    costs = build_costs(sc, Layout(dp=1, tp=2, pp=P, vp=vp), sc.training, model_for(sc), 0.0)
    return costs, [build_stage_program(costs, s) for s in range(P)]


@pytest.mark.parametrize("sequence_parallel", [True, False], ids=["sp", "no-sp"])
@pytest.mark.parametrize("schedule, vp", SCHEDULES, ids=[s for s, _ in SCHEDULES])
def test_each_end_runs_once_per_micro_batch(schedule, vp, sequence_parallel):
    costs, programs = _programs(schedule, vp, sequence_parallel)
    last = len(costs.stages) - 1
    seen = collections.Counter()
    for program in programs:
        for op in program.ops:
            seen[(op.name, op.phase, op.vs)] += 1
            if op.name in ("embedding", "logits") or "embedding TP" in op.name or "head TP" in op.name:
                # the embedding only on the first piece, the head only on the last
                assert op.vs == (0 if "embedding" in op.name else last), (op.name, op.vs)
    mbs = {op.mb for program in programs for op in program.ops if op.name == "embedding" and op.phase == "fwd"}
    assert mbs == set(range(M))
    assert seen[("embedding", "fwd", 0)] == M
    # the embedding's backward operators: in a full backward (B), else in the first piece's W
    assert seen[("embedding", "bwd", 0)] + seen[("weight gradients", "bwd", 0)] == M
    assert seen[("logits", "fwd", last)] == seen[("logits", "bwd", last)] == M
    assert seen[("cross-entropy TP all-reduce", "fwd", last)] == 3 * M  # unfused: three [t] all-reduces
    if sequence_parallel:
        names = ["embedding TP reduce-scatter", "embedding TP all-gather", "head TP all-gather",
                 "head TP all-gather (wgrad input)", "head TP reduce-scatter"]
    else:
        names = ["embedding TP all-reduce", "head TP all-reduce"]
    assert {n: sum(v for k, v in seen.items() if k[0] == n) for n in names} == dict.fromkeys(names, M)
