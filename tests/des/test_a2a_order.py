"""Megatron-Core's EP A2A overlap in Megatron's own per-layer order (session 21, a2aorder): the estimate's walk of
the two streams (moesim.estimate.a2a_order.layer_pairs_s) and the simulator's FB slot (moesim.des.pieces.overlapped),
Megatron-LM d98e8a64 model_chunk_schedule_plan.py TransformerLayerSchedulePlan.run."""

import dataclasses
import importlib

import numpy as np
import pytest

from moesim.collectives.select import model_for
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.des.orders import device_order
from moesim.des.schedule import COLLECTIVE, build_stage_program
from moesim.estimate import estimate
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

ao = importlib.import_module("moesim.estimate.a2a_order")  # moesim.estimate's `estimate` shadows the package name


def pair(fwd, bwd, d, c, w=(0.0, 0.0)):
    """One forward and one backward MoE layer: fwd = (F0, F1, F2), bwd = (B0, B1, B2), w its delayed W1, W2."""
    return ao.layer_pairs_s([(*fwd, d, c)], [(*bwd, d, c, *w)], [1.0])


def test_a_comm_bound_pair_waits_on_the_two_dispatches_in_the_middle():
    paired, serial = pair((1.0, 2.0, 0.0), (0.0, 4.0, 3.0), 5.0, 0.5)
    # c_b beside F0 (1 s), d_f and d_b back to back (10 s) with B1 + F1 (6 s) beside them, then B2 (3 s)
    assert paired == pytest.approx(1.0 + 10.0 + 3.0)
    assert serial == pytest.approx(1.0 + 2.0 + 4.0 + 3.0 + 2 * 5.0 + 2 * 0.5)


def test_a_compute_bound_pair_hides_every_all_to_all():
    paired, serial = pair((1.0, 2.0, 0.0), (0.0, 4.0, 3.0), 0.1, 0.1)
    assert paired == pytest.approx(10.0) and serial == pytest.approx(10.4)


def test_the_delayed_weight_gradients_run_beside_the_backwards_dispatch():
    """delay_wgrad_compute: mlp_bwd_dw runs on the compute stream while dispatch_bwd goes (it does not wait for it),
    the attention's after pre_dispatch_bwd; on the chain instead (moesim's plain backward) the dispatch waits."""
    split, serial = pair((1.0, 2.0, 0.0), (0.0, 3.0, 2.0), 5.0, 0.5, w=(1.0, 1.0))
    whole, serial_whole = pair((1.0, 2.0, 0.0), (0.0, 4.0, 3.0), 5.0, 0.5)
    assert serial == pytest.approx(serial_whole) == pytest.approx(21.0)
    # c_b beside F0 (1), d_f (5) beside B1 + W1 (4), d_b (5) beside F1 (2), then B2 (2) and W2 (1): 1 + 10 + 3
    assert split == pytest.approx(14.0) and whole == pytest.approx(14.0)
    # compute-bound: the W beside the dispatch shortens nothing, the sum of compute stays
    split, _ = pair((1.0, 2.0, 0.0), (0.0, 3.0, 2.0), 0.1, 0.1, w=(1.0, 1.0))
    assert split == pytest.approx(10.0)
    # a dispatch as long as B1's dX: with W on the chain it waits for W1 too
    split, _ = pair((1.0, 0.5, 0.0), (0.0, 3.0, 2.0), 3.5, 0.0, w=(2.0, 0.0))
    whole, _ = pair((1.0, 0.5, 0.0), (0.0, 5.0, 2.0), 3.5, 0.0)
    assert split < whole


def test_a_dense_forward_beside_a_moe_backward_hides_its_combine_only():
    """Layers stay aligned: the backward's dispatch has no forward MLP beside it (a dense layer runs in F0)."""
    paired, serial = ao.layer_pairs_s([(2.8, 0.0, 0.0, 0.0, 0.0)], [(0.0, 3.0, 2.0, 0.5, 0.5, 0.0, 0.0)], [1.0])
    assert serial - paired == pytest.approx(0.5)


def test_layers_chain_and_a_fraction_counts_its_share():
    one = (1.0, 2.0, 0.0, 5.0, 0.5), (0.0, 4.0, 3.0, 5.0, 0.5, 0.0, 0.0)
    paired, serial = ao.layer_pairs_s([one[0]] * 2, [one[1]] * 2, [1.0, 0.5])
    assert serial == pytest.approx(1.5 * 21.0)
    assert 14.0 < paired < 1.5 * 21.0
    nothing, none = ao.layer_pairs_s([one[0]], [one[1]], [np.zeros(3)])
    assert np.all(nothing == 0) and np.all(none == 0)


def mixtral(tp=2, backend="nccl", sp=False):
    sc = load_scenario("mixtral-8x7b-h100")
    # sequence parallelism off by default (the scenario's setting when this lane was written): the attention's tp
    # collective is one all-reduce, as the issue-order test below spells out
    tr = dataclasses.replace(sc.training, pipeline_schedule="interleaved", moe_a2a_overlap=True,
                             global_batch_sequences=128, dispatch_backend=backend, sequence_parallel=sp)
    return dataclasses.replace(sc, training=tr), Layout(dp=16 // tp, tp=tp, ep=8, pp=4, vp=2)


def test_the_simulators_pair_runs_megatrons_issue_order():
    """In an FB slot each stream runs its operations in Megatron's issue order, layer pair by layer pair: compute
    B0 F0 B1 W1 F1 B2 W2 F2, comm c_b d_f d_b c_f; the attention's tp collectives on the compute stream."""
    sc, layout = mixtral()
    est = estimate(sc, layout)
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    program = build_stage_program(costs, 0)
    slots = device_order("interleaved", costs.micro_batches, 4, 2, 0, None, True)
    first_fb = next(s for s in slots if s.kind == "FB")
    layer_f, layer_b = costs.stages[first_fb.vs].layers[0], costs.stages[first_fb.pair[2]].layers[-1]
    ops = program.ops

    def in_pair(i):
        o = ops[i]
        return (o.phase, o.mb, o.layer) in (("fwd", first_fb.mb, layer_f), ("bwd", first_fb.pair[1], layer_b))

    comm = [ops[i] for i in program.streams["comm"] if in_pair(i)]
    assert [(o.phase, o.name) for o in comm] == [("bwd", "combine all-to-all"), ("fwd", "dispatch all-to-all"),
                                                 ("bwd", "dispatch all-to-all"), ("fwd", "combine all-to-all")]
    compute = [(ops[i].phase, ops[i].name) for i in program.streams["compute"] if in_pair(i)]
    assert compute == [("bwd", "unpermute"),  # B0
                       ("fwd", "attention"), ("fwd", "TP all-reduce"), ("fwd", "router"), ("fwd", "permute"),  # F0
                       ("bwd", "expert FFN"), ("bwd", "expert FFN weight gradients"),  # B1: mlp_bwd -> mlp_bwd_dw
                       ("fwd", "expert FFN"),  # F1: mlp_fwd
                       ("bwd", "permute"), ("bwd", "router"), ("bwd", "attention"), ("bwd", "TP all-reduce"),  # B2
                       ("bwd", "weight gradients (delayed)"),  # pre_dispatch_computation.backward_dw
                       ("fwd", "unpermute")]  # F2
    # delay_wgrad_compute: the backward's dispatch waits for the experts' dX, not their W
    by_name = {(ops[i].phase, ops[i].name): ops[i] for i in program.streams["compute"] + program.streams["comm"]
               if in_pair(i)}
    w_index = by_name[("bwd", "expert FFN weight gradients")].index
    assert w_index not in by_name[("bwd", "dispatch all-to-all")].deps
    # only tp collectives (the layers', the embedding's in Megatron's pre_process node) leave the comm stream
    assert {o.name for o in ops if o.kind == COLLECTIVE and o.stream == "compute"} == \
        {"TP all-reduce", "embedding TP all-reduce"}


@pytest.mark.parametrize("sp", [False, True])
def test_both_engines_price_what_the_order_hides_alike(sp):
    """The EP group across two nodes (tp 2): the overlap's saving in the simulator against the estimate's, both engines'
    steps within 0.5 % (+0.08 % SP off, +0.13 % SP on; 1 % before session 23's slot walk, 3.5 % before session 22's
    interleaved gradient sync chunk by chunk, grad_buckets.interleaved_chunks_exposed_s). Session 22 (spoverlap),
    the estimate counting the last device's pairs (schedules.interleaved_pairs): 0.0483 s estimated against 0.0390 s
    simulated with SP off (−19 %), 0.0454 s with SP on (−6 %), the simulator's shortfall its FB slots' waits on the
    pipeline sends. Session 23 (slotwalk): the estimate walks the slots, those waits and the head's chunk priced
    (a2a_order.slot_walk_s): 0.0442 / 0.0515 s; what is left of the difference is the plain twin's own error (its
    bubble charges the head's time to every chunk, (p − 1)·t/v: −0.33 / −0.36 %), to 5 % of the saving."""
    options = SimOptions(contention=False, expected_loads=True, trace=False)
    sc, layout = mixtral(sp=sp)
    off = dataclasses.replace(sc, training=dataclasses.replace(sc.training, moe_a2a_overlap=False))
    on, plain = simulate(sc, layout, options), simulate(off, layout, options)
    sim_saved = plain.step_times_s[0] - on.step_times_s[0]
    est_saved = plain.analytical_step_time_s - on.analytical_step_time_s
    plain_over = plain.analytical_step_time_s - plain.step_times_s[0]
    assert sim_saved > 0 and est_saved > 0 and plain_over > 0
    assert sim_saved == pytest.approx(est_saved - plain_over, rel=0.05)
    assert sim_saved <= est_saved
    assert on.step_times_s[0] == pytest.approx(on.analytical_step_time_s, rel=0.005)


def test_the_pair_costs_agree_and_the_sends_are_what_is_left():
    """With the pipeline sends free in both engines (the simulator's p2p operations cost nothing, the estimate's slot
    walk sends in no time), the estimate's T_pipe is where the simulator's last pass ends to 0.1 %, SP on and off: the
    pair itself (a2a_order's walk of a pair against the FB slot, SP's all-gather / reduce-scatter inside the compute
    nodes in both), the chunks' own times (the head's on the last device's last chunk) and the order are the same in
    both engines; with the sends priced, test_slot_walk.py."""
    from moesim.des import run as des_run

    options = SimOptions(contention=False, expected_loads=True, trace=True)
    build, walk = des_run.build_costs, ao.slot_walk_s
    walked = []

    def free_sends(*args, **kwargs):
        costs = build(*args, **kwargs)
        free = lambda s: None if s is None else dataclasses.replace(s, time_s=0.0, latency_s=0.0)  # noqa: E731
        costs.stages = [dataclasses.replace(st, send_forward=free(st.send_forward),
                                            send_backward=free(st.send_backward)) for st in costs.stages]
        return costs

    def free_walk(m, p, v, f, b, saving, send_s, *rest):
        walked.append(walk(m, p, v, f, b, saving, 0.0 * send_s, *rest)[0])
        return walk(m, p, v, f, b, saving, send_s, *rest)

    for sp in (False, True):
        sc, layout = mixtral(sp=sp)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(des_run, "build_costs", free_sends)
            mp.setattr(ao, "slot_walk_s", free_walk)
            on = simulate(sc, layout, options)
        passes = [r[7] for r in on.trace_records if r[1] == "compute" and r[3] in ("fwd", "bwd", "recompute")]
        assert walked[-1] == pytest.approx(max(passes), rel=1e-3)


def test_the_overlapped_slots_wait_on_the_sends():
    """Session 22 (sendsoverlap): the simulator's step against the pipeline send's cost h (both directions scaled by
    k, SP off). Without the overlap it grows by exactly the fill's 2(p·v − 1) sends per h, what the estimate prices
    (schedules.pipeline_time_s, Narayanan §2.2.2). With it, once the slack of the FB slots is gone (k 2 -> 3), by 38
    sends: m·v − 8 steady FB slots on the path wait one more send each (measured at p 4, v 2 for m 16, 24, 32: 38,
    54, 70). Session 23 (slotwalk) prices them (a2a_order.slot_walk_s, the estimate's walk of the order) and derives
    the count from the order and the chunks' times: m·v − 2p at v 2, more at v 4 (test_slot_walk.py; docs/collectives-
    history.md, Session 23 (slotwalk))."""
    from moesim.des import run as des_run

    options = SimOptions(contention=False, expected_loads=True, trace=False)
    build, scale, send_s = des_run.build_costs, [1.0], []

    def scaled(*args, **kwargs):
        costs = build(*args, **kwargs)
        send_s.append(costs.stages[0].send_forward.time_s)
        k = scale[0]
        more = lambda s: None if s is None else dataclasses.replace(s, time_s=k * s.time_s,  # noqa: E731
                                                                   latency_s=k * s.latency_s)
        costs.stages = [dataclasses.replace(st, send_forward=more(st.send_forward),
                                            send_backward=more(st.send_backward)) for st in costs.stages]
        return costs

    sc, layout = mixtral(sp=False)
    off = dataclasses.replace(sc, training=dataclasses.replace(sc.training, moe_a2a_overlap=False))
    steps = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(des_run, "build_costs", scaled)
        for k in (2.0, 3.0):
            scale[0] = k
            steps[k] = (simulate(sc, layout, options).step_times_s[0], simulate(off, layout, options).step_times_s[0])
    h = send_s[0]
    p, v, m = layout.pp, layout.vp, sc.training.micro_batches
    on_sends, plain_sends = ((steps[3.0][i] - steps[2.0][i]) / h for i in (0, 1))
    assert plain_sends == pytest.approx(2 * (p * v - 1), abs=1e-6)
    assert on_sends == pytest.approx(2 * (p * v - 1) + m * v - 2 * p, abs=1e-6)
