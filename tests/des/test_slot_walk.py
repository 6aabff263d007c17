"""The interleaved pipeline under Megatron's EP A2A overlap walked slot by slot in the estimate (session 23, slotwalk):
moesim.estimate.a2a_order.slot_walk_s, a max-plus walk over devices × slots of Megatron's order
(moesim.estimate.schedules.interleaved_order, the one both engines run), each FB slot waiting on the pipeline sends
of its two inputs as the simulator's does (its device's one p2p stream, the backward's send first)."""

import dataclasses
import importlib

import numpy as np
import pytest

from moesim.des import SimOptions, simulate
from moesim.des.orders import device_order
from moesim.estimate import estimate, pricing
from moesim.estimate.schedules import interleaved_order, interleaved_pairs
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

ao = importlib.import_module("moesim.estimate.a2a_order")  # moesim.estimate's `estimate` shadows the package name


def equal_chunks(m, p, v, f=1.0, b=2.0, saving=0.0, send=0.0, lead=0.0, tail=0.0):
    """slot_walk_s at every chunk alike: forward f, backward b, an FB slot saving `saving`."""
    full = lambda x: np.full((1, p, v), x)  # noqa: E731
    return ao.slot_walk_s(m, p, v, full(f), full(b), np.full((1, p), saving), np.full(1, send), full(lead),
                          full(tail))[0]


@pytest.mark.parametrize("m, p, v", [(8, 4, 2), (16, 4, 2), (16, 4, 4), (8, 2, 4), (32, 8, 2), (12, 3, 2)])
def test_equal_chunks_and_free_sends_give_narayanans_row(m, p, v):
    """Every chunk alike, the sends free, nothing hidden in a pair: m·t + (p − 1)·t/v (Narayanan et al. SC'21 §2.2.2),
    the table's row; a pair hiding s a chunk pair takes the last device's pairs' worth off it
    (schedules.interleaved_pairs, the count the order gives: its FB slots)."""
    t = 3.0 * v  # a micro-batch's F + B over the device's v chunks
    assert equal_chunks(m, p, v) == pytest.approx(m * t + (p - 1) * t / v)
    fb_last = sum(f is not None and b is not None for f, b in interleaved_order(m, p, v, p - 1, True))
    assert fb_last == pytest.approx(interleaved_pairs(m, p, v) * v)
    assert equal_chunks(m, p, v, saving=0.5) == pytest.approx(m * t + (p - 1) * t / v - 0.5 * fb_last)


@pytest.mark.parametrize("m, p, v, device", [(8, 4, 2, 0), (8, 4, 2, 3), (16, 2, 4, 1), (5, 4, 2, 2)])
def test_the_simulator_runs_the_order_the_estimate_walks(m, p, v, device):
    """One order for both engines: moesim.des.orders builds its slots from schedules.interleaved_order."""
    for overlap in (False, True):
        slots = device_order("interleaved", m, p, v, device, a2a_overlap=overlap)
        mine = [(s.mb, s.vs) if s.kind in ("F", "FB") else None for s in slots], \
            [s.pair[1:] if s.kind == "FB" else (s.mb, s.vs) if s.kind == "B" else None for s in slots]
        order = interleaved_order(m, p, v, device, overlap)
        assert mine == ([f for f, _ in order], [b for _, b in order])


def test_with_slack_the_fill_sends_alone_are_paid():
    """Every chunk alike and a slot's forward input needed only after its backward's first part: the steady FB slots
    absorb the sends, the fill's 2(p·v − 1) stay (what the table's row prices)."""
    for m, p, v in ((16, 4, 2), (16, 4, 4), (32, 8, 2)):
        slope = (equal_chunks(m, p, v, send=2e-3, lead=0.2, tail=0.5)
                 - equal_chunks(m, p, v, send=1e-3, lead=0.2, tail=0.5)) / 1e-3
        assert slope == pytest.approx(2 * (p * v - 1))


def mixtral(dp=8, pp=4, vp=2, m=16, sp=False):
    sc = load_scenario("mixtral-8x7b-h100")
    tr = dataclasses.replace(sc.training, pipeline_schedule="interleaved", moe_a2a_overlap=True,
                             global_batch_sequences=dp * m, micro_batches=m, sequence_parallel=sp)
    return dataclasses.replace(sc, training=tr), Layout(dp=dp, tp=2, ep=8, pp=pp, vp=vp)


def walk_args(sc, layout):
    """The arguments the estimate walks `layout` with (slot_walk_s' own)."""
    seen = []

    def spy(*args):
        seen.append(args)
        return walk(*args)

    walk = ao.slot_walk_s
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ao, "slot_walk_s", spy)
        estimate(sc, layout)
    return seen[-1]


def sends_slope(step, h):
    """The step's growth per send between send costs k·h (k 1 -> 2 and 2 -> 3), in sends."""
    return [(step(b) - step(a)) / ((b - a) * h) for a, b in ((1.0, 2.0), (2.0, 3.0))]


@pytest.mark.parametrize("dp, pp, vp, m, sends", [(8, 4, 2, 16, 38), (8, 4, 4, 16, 102)])
def test_the_walk_waits_on_the_sends_as_the_simulator_does(dp, pp, vp, m, sends):
    """Session 22 (sendsoverlap) measured the simulator's overlapped step growing by 2(p·v − 1) + m·v − 8 sends once
    the FB slots' slack is gone (38 at p 4, v 2, m 16), and left whether 8 is 2p or p·v. The walk gives the count
    from the order and the chunks' own times: at p 4, v 4 it is 102 = 30 + 72 (neither m·v − 2p = 56 nor m·v − p·v =
    48: the two sends of a slot chain through the devices), the simulator's too. Both engines' sends scaled by k."""
    from moesim.des import run as des_run

    sc, layout = mixtral(dp, pp, vp, m)
    m_, p, v, f, b, saving, h, lead, tail = walk_args(sc, layout)
    walked = sends_slope(lambda k: ao.slot_walk_s(m_, p, v, f, b, saving, h * k, lead, tail)[0], h[0])
    build, scale = des_run.build_costs, [1.0]

    def scaled(*args, **kwargs):
        costs = build(*args, **kwargs)
        more = lambda s: None if s is None else dataclasses.replace(  # noqa: E731
            s, time_s=scale[0] * s.time_s, latency_s=scale[0] * s.latency_s)
        costs.stages = [dataclasses.replace(st, send_forward=more(st.send_forward),
                                            send_backward=more(st.send_backward)) for st in costs.stages]
        return costs

    options = SimOptions(contention=False, expected_loads=True, trace=False)
    steps = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(des_run, "build_costs", scaled)
        for k in (1.0, 2.0, 3.0):
            scale[0] = k
            steps[k] = simulate(sc, layout, options).step_times_s[0]
    simulated = sends_slope(steps.get, h[0])
    assert walked == pytest.approx([sends, sends], abs=1e-6)
    assert simulated == pytest.approx([sends, sends], abs=1e-3)


@pytest.mark.parametrize("dp, pp, vp, m", [(16, 2, 4, 8), (8, 4, 2, 16)])
def test_the_walk_ends_where_the_simulators_pipeline_ends(dp, pp, vp, m):
    """The walk's T_pipe against the simulator's last forward or backward operation (the trace), 0.1 % apart at the
    shipped sends; the step beyond it (gradient sync, optimizer) is priced apart (at p 2 the estimate's stood
    22 ms over the simulator's there, the first stage's later chunks' sync mispriced: session 23, pp2tail)."""
    sc, layout = mixtral(dp, pp, vp, m)
    m_, p, v, f, b, saving, h, lead, tail = walk_args(sc, layout)
    walked = ao.slot_walk_s(m_, p, v, f, b, saving, h, lead, tail)[0]
    run = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=True))
    passes = [r[7] for r in run.trace_records if r[1] == "compute" and r[3] in ("fwd", "bwd", "recompute")]
    assert walked == pytest.approx(max(passes), rel=1e-3)


def test_distinct_rows_are_bit_for_bit_and_fall_back_on_a_collision(monkeypatch):
    """The walk's candidates alike in every input walk once (session 23, walkspeed): `distinct_rows` keeps rows that
    differ in one bit apart (0.0 and −0.0 too), maps each row back to its own, and where two different rows hash
    alike (every hash 0 here) still finds the distinct rows (np.unique's)."""
    rng = np.random.default_rng(3)
    a = rng.uniform(0.0, 1.0, (6, 5))
    a = np.concatenate([a, a[[4, 1, 4]], a[:1]])
    a[-1, 2] = np.nextafter(a[0, 2], 2.0)  # one bit from row 0
    a[1, 3], a[7, 3] = 0.0, -0.0  # row 7 was row 1
    rows, again = ao.distinct_rows(a)
    assert np.array_equal(rows[again].view(np.uint64), a.view(np.uint64))
    assert len(rows) == 8 and len({r.tobytes() for r in rows}) == 8  # rows 6 and 8 are row 4
    assert again[6] == again[8] == again[4] and again[7] != again[1] and again[9] != again[0]
    monkeypatch.setattr(pricing, "_mix64", np.zeros_like)  # every row's hash 0: a collision on every pair
    rows, again = ao.distinct_rows(a)
    # bit for bit on a collision too (the walk's own hash fell back to np.unique's values, joining 0.0 and −0.0)
    assert np.array_equal(rows[again].view(np.uint64), a.view(np.uint64)) and len(rows) == 8
    b = a.copy()
    b[7, 3] = 0.0  # without the sign of zero, np.unique's distinct rows are these
    rows, again = ao.distinct_rows(b)
    assert np.array_equal(rows[again], b) and len(rows) == len(np.unique(b, axis=0))


@pytest.mark.parametrize("m, p, v", [(8, 4, 2), (16, 4, 4), (12, 3, 2)])
def test_the_walk_of_many_candidates_is_each_ones_own(m, p, v):
    """Candidates walked together, repeated ones among them, end each where it ends walked alone, bit for bit: the
    walk's slot kinds, shared rows and distinct candidates change no figure."""
    rng = np.random.default_rng(m * p * v)
    n = 12
    f = rng.uniform(1.0, 2.0, (n, p, v))
    b = 2 * f * rng.uniform(0.9, 1.1, (n, p, v))
    saving, send = rng.uniform(0.0, 0.5, (n, p)), rng.uniform(0.0, 0.3, n)
    lead, tail = rng.uniform(0.0, 0.2, (n, p, v)), rng.uniform(0.0, 0.2, (n, p, v))
    args = [x[np.r_[:n, 3, 7, 3]] for x in (f, b, saving, send, lead, tail)]
    together = ao.slot_walk_s(m, p, v, *args)
    alone = [ao.slot_walk_s(m, p, v, *(x[i:i + 1] for x in args))[0] for i in range(n + 3)]
    assert together.tobytes() == np.array(alone).tobytes()
    assert together[n:].tobytes() == together[[3, 7, 3]].tobytes()
    assert len(set(together[:n])) == n  # the candidates' inputs differ, so do their ends
