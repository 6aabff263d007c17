"""Stage programs: pipeline order, MoE stage names and order, chunking, costs shared with the estimate."""

from __future__ import annotations

import dataclasses

import pytest

from des_helpers import tiny_scenario
from moesim.collectives.select import default_model
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.des.schedule import build_stage_program, pipeline_order
from moesim.estimate import estimate
from moesim.specs.layout import Layout


def test_pipeline_orders():
    assert pipeline_order("gpipe", 3, 2, 0) == [("F", 0), ("F", 1), ("F", 2), ("B", 0), ("B", 1), ("B", 2)]
    # 1F1B: pp − s − 1 warm-up forwards, then one forward / one backward, then the rest (Megatron).
    assert pipeline_order("1f1b", 4, 2, 0) == [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("F", 3),
                                               ("B", 2), ("B", 3)]
    assert pipeline_order("1f1b", 4, 2, 1) == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2),
                                               ("F", 3), ("B", 3)]
    assert pipeline_order("1f1b", 2, 4, 0) == [("F", 0), ("F", 1), ("B", 0), ("B", 1)]


def _costs(scenario, layout):
    model = default_model(scenario.hardware)
    return build_costs(scenario, layout, scenario.training, model, estimate(scenario, layout).optimizer_time_s)


def _layer_ops(program, layer, phase):
    return [(o.stream, o.name) for o in program.ops if o.layer == layer and o.phase == phase]


def test_moe_layer_runs_the_stages_in_order():
    scenario = tiny_scenario(8)
    costs = _costs(scenario, Layout(dp=8, ep=8))
    prog = build_stage_program(costs, 0)
    assert _layer_ops(prog, 0, "fwd") == [
        ("compute", "attention"), ("compute", "router"), ("compute", "permute"), ("comm", "dispatch all-to-all"),
        ("compute", "expert FFN"), ("comm", "combine all-to-all"), ("compute", "unpermute")]
    assert _layer_ops(prog, 0, "bwd") == [
        ("compute", "unpermute"), ("comm", "combine all-to-all"), ("compute", "expert FFN"),
        ("comm", "dispatch all-to-all"), ("compute", "permute"), ("compute", "router"), ("compute", "attention")]
    assert prog.ops[-1].name == "optimizer"
    assert set(prog.streams) == {"compute", "comm", "grad"}


def test_tensor_parallel_blocks_and_full_recompute():
    scenario = tiny_scenario(8, recompute="full")
    prog = build_stage_program(_costs(scenario, Layout(dp=4, tp=2, ep=4)), 0)
    assert _layer_ops(prog, 1, "fwd")[:3] == [("comm", "TP all-gather"), ("compute", "attention"),
                                              ("comm", "TP reduce-scatter")]
    assert _layer_ops(prog, 1, "recompute") == _layer_ops(prog, 1, "fwd")


def test_moe_recompute_module_reruns_the_layer_with_its_all_to_alls():
    """Megatron's "moe" recompute module (moesim/estimate/selective.py): the MoE layer's forward again in the
    recompute phase, dispatch and combine all-to-alls included, after the rest of the selective recompute; the
    stage parts' seconds are the estimate's recomputed operators."""
    scenario = tiny_scenario(8, recompute="selective", recompute_modules=("core_attn", "moe"))
    costs = _costs(scenario, Layout(dp=8, ep=8))
    prog = build_stage_program(costs, 0)
    assert _layer_ops(prog, 0, "recompute") == [
        ("compute", "attention recompute"), ("compute", "router"), ("compute", "permute"),
        ("comm", "dispatch all-to-all"), ("compute", "expert FFN"), ("comm", "combine all-to-all"),
        ("compute", "unpermute")]
    lc = costs.classes[0]
    assert lc.moe_recompute_s["router"] < lc.fwd_s["router"]  # its pre-MLP norm is outside the checkpoint
    core = [o for o in prog.ops if o.layer == 0 and o.phase == "recompute" and o.name == "attention recompute"]
    assert core[0].duration_s == pytest.approx(lc.recompute_s - sum(lc.moe_recompute_s.values()))
    plain = build_stage_program(_costs(tiny_scenario(8, recompute="selective"), Layout(dp=8, ep=8)), 0)
    assert _layer_ops(plain, 0, "recompute") == [("compute", "attention recompute")]


def test_chunks_queue_dispatches_ahead_of_combines():
    scenario = tiny_scenario(8)
    prog = build_stage_program(_costs(scenario, Layout(dp=8, ep=8)), 0, chunks=2)
    ops = [o for o in prog.ops if o.layer == 0 and o.phase == "fwd"]
    names = [o.name for o in ops]
    assert names == ["attention", "router", "permute", "dispatch all-to-all", "dispatch all-to-all", "expert FFN",
                     "expert FFN", "combine all-to-all", "combine all-to-all", "unpermute"]
    d0, d1, e0, e1, c0, c1, unpermute = (o.index for o in ops[3:])
    by_index = {o.index: o for o in ops}
    assert by_index[e0].deps == (d0,) and by_index[e1].deps == (d1,)
    assert by_index[c0].deps == (e0,) and by_index[c1].deps == (e1,)
    assert by_index[unpermute].deps == (c1,)
    whole = build_stage_program(_costs(scenario, Layout(dp=8, ep=8)), 0)
    half = by_index[d0].comm
    full = next(o.comm for o in whole.ops if o.name == "dispatch all-to-all")
    assert half.size_bytes == full.size_bytes / 2  # each chunk priced at its own size


def test_kernels_and_collectives_are_the_estimates():
    scenario = tiny_scenario(8)
    layout = Layout(dp=8, ep=4)  # edp = 2: both gradient syncs
    est = estimate(scenario, layout)
    prog = build_stage_program(_costs(scenario, layout), 0)
    compute = sum(o.duration_s for o in prog.ops if o.kind == "compute" and o.name != "optimizer")
    assert compute == pytest.approx(est.compute_time_s, rel=1e-12)
    per_mb = sum(o.comm.time_s for o in prog.ops if o.stream == "comm")
    comm_names = [n for n, c in est.communication.items() if not c["overlapped_with_backward"]]
    assert per_mb == pytest.approx(sum(est.communication[n]["time_s"] for n in comm_names), rel=1e-12)
    grads = [o for o in prog.ops if o.stream == "grad"]
    for axis in ("dp", "edp"):
        sent = sum(o.comm.size_bytes for o in grads if o.comm.axis == axis)
        assert sent == pytest.approx(est.communication[f"{axis}_all_reduce"]["size_bytes"], rel=1e-12)


def test_pipeline_sends_and_receives_pair_up():
    scenario = tiny_scenario(8, micro_batches=4)
    costs = _costs(scenario, Layout(dp=4, ep=4, pp=2))
    first, last = build_stage_program(costs, 0), build_stage_program(costs, 1)
    sends = [(o.mb, o.peer) for o in first.ops if o.name == "pipeline send"]
    assert sends == [(0, 1), (1, 1), (2, 1), (3, 1)]
    receives = [o.recv for o in last.ops if o.recv is not None]
    assert receives == [("act", 0, 1), ("act", 1, 1), ("act", 2, 1), ("act", 3, 1)]  # (kind, mb, piece)
    assert [o.recv for o in first.ops if o.recv is not None] == [("grad", 0, 0), ("grad", 1, 0), ("grad", 2, 0),
                                                                 ("grad", 3, 0)]


def _overhead(scenario, overhead_s):
    hw = scenario.hardware
    eff = dataclasses.replace(hw.efficiency, layer_overhead_s=overhead_s)
    return dataclasses.replace(scenario, hardware=dataclasses.replace(hw, efficiency=eff))


def test_layer_overhead_opens_every_pass_and_matches_the_estimate():
    scenario = _overhead(tiny_scenario(8, recompute="full"), 40e-6)
    layout = Layout(dp=8, ep=4)
    prog = build_stage_program(_costs(scenario, layout), 0)
    for phase in ("fwd", "recompute", "bwd"):
        ops = [o for o in prog.ops if o.layer == 0 and o.phase == phase]
        assert (ops[0].name, ops[0].duration_s) == ("layer overhead", 40e-6), phase
        assert [o.name for o in ops].count("layer overhead") == 1
    est = estimate(scenario, layout)
    compute = sum(o.duration_s for o in prog.ops if o.kind == "compute" and o.name != "optimizer")
    assert compute == pytest.approx(est.compute_time_s, rel=1e-12)
    overheads = [o for o in prog.ops if o.name == "layer overhead"]
    assert len(overheads) == 3 * scenario.model.num_layers * scenario.training.micro_batches


def test_no_overhead_ops_when_the_profile_has_none():
    prog = build_stage_program(_costs(tiny_scenario(8), Layout(dp=8, ep=8)), 0)
    assert not [o for o in prog.ops if o.name == "layer overhead"]


def test_uneven_stage_programs_hold_their_layers():
    """Each stage's program runs exactly its layers (specs.layout.stage_layers), first to last; routing of
    sampled dropless loads uses the expert groups of the stage that holds each MoE layer."""
    sc = tiny_scenario(devices=6, dropless=True, micro_batches=4, global_batch_sequences=8)
    layout = Layout(dp=2, ep=2, pp=3)
    costs = build_costs(sc, layout, sc.training, default_model(sc.hardware), 0.0)
    assert [st.layers for st in costs.stages] == [(0, 1, 2), (3, 4, 5), (6, 7)]
    assert costs.stages[-1].send_forward is None and costs.stages[0].send_backward is None
    for st in costs.stages:
        program = build_stage_program(costs, st.index)
        assert sorted({op.layer for op in program.ops if op.layer >= 0}) == list(st.layers)
    result = simulate(sc, layout, SimOptions(steps=1, seed=1, trace=False))
    assert result.mode == "full" and 0 < result.step_times_s[0] < float("inf")
