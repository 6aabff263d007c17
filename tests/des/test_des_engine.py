"""Exact event timelines of the engine on hand-made programs (simpy-style: the full list of
(start, end, device, operation))."""

from __future__ import annotations

from des_helpers import ToyFabric, comm, op, program, run_toy


def test_collective_waits_for_the_last_member_then_takes_its_model_time():
    # a: 1 s on device 0, 2 s on device 1; all-reduce alone 0.5 s (0.1 s latency + 40 B at 100 B/s).
    ar = comm("dp", time_s=0.5, latency_s=0.1, wire_bytes=40)
    prog = program([op(0, "compute", "a", duration_s=1.0), op(1, "comm", "ar", (0,), spec=ar),
                    op(2, "compute", "b", (1,), duration_s=1.0)])
    timeline, end = run_toy(prog, {0: {}, 1: {"durations": {0: 2.0}}}, sizes={"dp": 2})
    assert timeline == [(0.0, 1.0, 0, "a"), (0.0, 2.0, 1, "a"), (1.0, 2.5, 0, "ar"), (2.0, 2.5, 1, "ar"),
                        (2.5, 3.5, 0, "b"), (2.5, 3.5, 1, "b")]
    assert end == 3.5


def _overlap(bucket_s: float):
    """Three 1 s backward kernels; after each, its gradient bucket on the grad stream; then the optimizer."""
    g = comm("x", time_s=bucket_s, size=1)
    ops = []
    for i in range(3):
        ops.append(op(2 * i, "compute", f"bwd{i}", duration_s=1.0))
        ops.append(op(2 * i + 1, "grad", f"grad{i}", (2 * i,), spec=g))
    ops.append(op(6, "compute", "optimizer", (5,), duration_s=1.0))
    return run_toy(program(ops), {0: {}}, sizes={"x": 1})


def test_overlap_hides_gradient_sync_up_to_the_backward_time():
    timeline, end = _overlap(0.5)
    assert timeline == [(0.0, 1.0, 0, "bwd0"), (1.0, 1.5, 0, "grad0"), (1.0, 2.0, 0, "bwd1"),
                        (2.0, 2.5, 0, "grad1"), (2.0, 3.0, 0, "bwd2"), (3.0, 3.5, 0, "grad2"),
                        (3.5, 4.5, 0, "optimizer")]
    assert end == 4.5  # 3 s compute + the last bucket, which nothing can hide


def test_overlap_hides_no_more_than_the_compute_time():
    timeline, end = _overlap(2.0)
    assert [t for t in timeline if t[3].startswith("grad")] == [(1.0, 3.0, 0, "grad0"), (3.0, 5.0, 0, "grad1"),
                                                                (5.0, 7.0, 0, "grad2")]
    assert end == 8.0  # 1 s until the first bucket + 3 × 2 s of sync + optimizer


def test_independent_streams_overlap_to_the_longer_one():
    for comm_s, expected in ((0.5, 3.0), (2.0, 3.0), (3.5, 4.5)):
        prog = program([op(0, "compute", "c", duration_s=2.0), op(1, "comm", "m", spec=comm("x", comm_s, size=1)),
                        op(2, "compute", "after", (1,), duration_s=1.0)])
        _, end = run_toy(prog, {0: {}}, sizes={"x": 1})
        assert end == expected  # max(compute, comm) + 1


def test_chunked_dispatch_overlaps_expert_compute():
    # Tutel-style, 2 chunks: dispatch 1 s, expert 1.5 s, combine 1 s per chunk; dispatches queue
    # ahead of combines on the comm stream (the order schedule.py builds).
    d, c = comm("x", 1.0, size=1), comm("x", 1.0, size=1)
    ops = [op(0, "comm", "dispatch0", spec=d), op(1, "comm", "dispatch1", spec=d),
           op(2, "compute", "expert0", (0,), duration_s=1.5), op(3, "compute", "expert1", (1,), duration_s=1.5),
           op(4, "comm", "combine0", (2,), spec=c), op(5, "comm", "combine1", (3,), spec=c),
           op(6, "compute", "unpermute", (5,), duration_s=0.5)]
    timeline, end = run_toy(program(ops), {0: {}}, sizes={"x": 1})
    assert timeline == [(0.0, 1.0, 0, "dispatch0"), (1.0, 2.0, 0, "dispatch1"), (1.0, 2.5, 0, "expert0"),
                        (2.5, 3.5, 0, "combine0"), (2.5, 4.0, 0, "expert1"), (4.0, 5.0, 0, "combine1"),
                        (5.0, 5.5, 0, "unpermute")]
    assert end == 5.5  # unchunked: 2 + 3 + 2 + 0.5 = 7.5


def _two_transfers(contention: bool):
    # Two devices, each its own collective (group of one) of 100 B and 300 B, paced at 1000 B/s,
    # both through one shared 100 B/s egress link.
    prog = program([op(0, "comm", "send", spec=comm("x", 0.1, wire_bytes=100, size=1))])
    return run_toy(prog, {0: {}, 1: {"egress": {0: 300}}}, sizes={"x": 1}, contention=contention,
                   fabric=ToyFabric(capacity=100.0, shared=True))


def test_contention_on_a_shared_link_slows_both_flows():
    timeline, end = _two_transfers(contention=True)
    # 50 B/s each until device 0's 100 B are through at 2 s; device 1's last 200 B at 100 B/s.
    assert timeline == [(0.0, 2.0, 0, "send"), (0.0, 4.0, 1, "send")]
    timeline, end = _two_transfers(contention=False)
    assert timeline == [(0.0, 0.1, 0, "send"), (0.0, 0.3, 1, "send")]


def test_pipeline_timeline_follows_sends_and_the_1f1b_order():
    from des_helpers import tiny_scenario
    from moesim.des import SimOptions, simulate
    from moesim.specs.layout import Layout

    scenario = tiny_scenario(4, micro_batches=3, global_batch_sequences=12)
    result = simulate(scenario, Layout(dp=2, ep=2, pp=2), SimOptions(expected_loads=True, contention=False))
    rec = result.trace_records
    stage_dev = {0: 0, 1: 2}  # representatives: the pipeline group of device 0
    sends = {(r[0], r[3], r[5]): r for r in rec if r[2] == "pipeline send"}
    first_op = {}
    for r in rec:
        if r[1] in ("compute", "comm") and r[5] >= 0:
            first_op.setdefault((r[0], r[3], r[5]), r)
    for mb in range(3):
        # stage 1's forward of micro-batch mb starts the moment stage 0's activations arrive
        assert first_op[(2, "fwd", mb)][6] >= sends[(0, "fwd", mb)][7]
        # stage 0's backward waits for stage 1's input gradient
        assert first_op[(0, "bwd", mb)][6] >= sends[(2, "bwd", mb)][7]
    assert first_op[(2, "fwd", 0)][6] == sends[(0, "fwd", 0)][7]  # nothing else to wait for
    order = {}
    for dev in stage_dev.values():
        seen = []
        for r in rec:
            if r[0] == dev and r[1] == "compute" and r[5] >= 0 and (r[3], r[5]) not in seen:
                seen.append((r[3], r[5]))
        order[dev] = [("F" if p == "fwd" else "B", mb) for p, mb in seen]
    assert order[0] == [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)]
    assert order[2] == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)]
