"""The gradient sync's buckets (moesim.estimate.grad_buckets): MCore's rule, one list for both engines."""

import numpy as np

import dataclasses
from pathlib import Path

import pytest

from moesim.collectives.select import model_for
from moesim.des import SimOptions
from moesim.des.costs import build_costs
from moesim.des.schedule import build_stage_program
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.des import simulate
from moesim.estimate.grad_buckets import (bucket_params, bucketed, chunk_buckets, earlier_end_s,
                                         first_stage_buckets, first_stage_exposed_s, interleaved_chunks_exposed_s,
                                         mcore_buckets, uniform_buckets)
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario


def test_a_bucket_closes_at_the_unit_that_fills_it():
    """MCore's rule (distrib_optimizer.py l.552-580 at d98e8a64): reverse order, a bucket closes at the unit that
    brings it to >= the size, the rest is one last bucket; size None: one bucket; zero units close nothing."""
    assert mcore_buckets([5, 1, 1, 1, 1, 2], 2) == ((0, 5.0), (2, 2.0), (4, 2.0), (5, 2.0))
    assert mcore_buckets([0, 1, 1, 1, 0], 2) == ((2, 2.0), (4, 1.0))
    assert mcore_buckets([3, 1, 1, 4], None) == ((3, 9.0),)
    assert mcore_buckets([0.0, 0.0], 2) == ()


@pytest.mark.parametrize("threshold", [1.0, 5.0, 10.0, 12.0, np.inf])
def test_the_estimate_s_closed_form_is_mcore_s_rule_on_equal_layers(threshold):
    """uniform_buckets (the estimate's, vectorised) gives mcore_buckets' list (the simulator's) for every head,
    layer size, layer count and embedding on a grid: (lead, middle × count, tail) expanded is the same list."""
    grid = np.array(np.meshgrid([0, 3, 7, 10, 25], [0, 1, 2, 3, 4, 9, 11], [0, 1, 2, 5, 6, 7, 16], [0, 2, 10, 30],
                                indexing="ij"), dtype=float).reshape(4, -1)
    sizes, counts = uniform_buckets(*grid, threshold)
    for i, (head, layer, layers, embedding) in enumerate(grid.T):
        want = [size for _, size in mcore_buckets([head] + [layer] * int(layers) + [embedding],
                                                  None if np.isinf(threshold) else threshold)]
        got = [s for g in range(3) for s in [float(sizes[i, g])] * int(counts[i, g]) if s > 0]
        assert got == want, (head, layer, layers, embedding)


@pytest.mark.parametrize("threshold", [5.0, np.inf, "rows"])
def test_first_stage_buckets_once_per_distinct_row_equal_row_by_row(threshold):
    """Session 23 (bucketspeed): first_stage_buckets buckets each distinct row once and reads it back; every figure
    equals uniform_buckets on that row alone (the layers at the stage's mean size), repeated rows in any order."""
    rng = np.random.default_rng(7)
    rows = np.array([(0, 0, 0, 0), (0, 12, 3, 2), (6, 30, 5, 2), (25, 30, 5, 2), (0, 40, 8, 0), (3, 9, 1, 4)], float)
    pick = rng.integers(0, len(rows), size=200)
    head, params, layers, embedding = (rows[pick, c][:, None] for c in range(4))
    size = np.where(pick % 2, 5.0, 11.0)[:, None] if threshold == "rows" else threshold
    sizes, counts, alone, layer_buckets = first_stage_buckets(head, params, layers, embedding, size)
    for i in range(len(pick)):
        h, p, n, e = rows[pick[i]]
        t = np.broadcast_to(size, (len(pick), 1))[i, 0]
        per_layer = max(p - h - e, 0.0) / n if n > 0 else 0.0
        want_s, want_c = uniform_buckets(h, per_layer, n, e, t)
        want_c = want_c * (p > 0)
        assert [s[i] for s in sizes] == want_s.tolist() and [c[i] for c in counts] == want_c.tolist()
        assert alone[i] == (h >= t and h > 0)
        assert layer_buckets[i] == (max(want_c.sum(), 1.0) - alone[i] if p > 0 else 1.0)
    assert any(c.any() for c in counts[:2]) == (threshold != np.inf)  # a lead or middle bucket unless one bucket


def test_mcore_bucket_size_grows_with_the_dp_cp_group_above_40():
    # megatron/training/training.py resolve_ddp_bucket_size: max(40000000, 1000000 * dp_cp size).
    assert bucket_params(np.array([1, 8, 40, 41, 64, 2048])).tolist() == \
        [40_000_000, 40_000_000, 40_000_000, 41_000_000, 64_000_000, 2_048_000_000]


def _sim_buckets(program, axis: str) -> list[float]:
    return [op.comm.size_bytes for op in program.ops if op.stream == "grad" and op.name.endswith(f"({axis})")]


def _mixtral(dp: int, cp: int):
    sc = load_scenario("mixtral-8x7b-h100")
    sc = dataclasses.replace(sc, devices=dp * cp * 2, training=dataclasses.replace(
        sc.training, global_batch_sequences=dp * cp * 4, micro_batches=4, zero_stage=0))
    return sc, Layout(dp=dp, cp=cp, tp=2, ep=8, pp=1)


@pytest.mark.parametrize("dp, cp, buckets", [(8, 1, 18), (40, 1, 18), (64, 1, 10), (32, 2, 10)])
def test_both_engines_size_the_buckets_from_dp_cp(dp, cp, buckets):
    """Mixtral 8x7B at tp 2, ep 8, pp 1, ZeRO 0 (the same per-device gradients at every dp): the dense axis's
    buckets at dp·cp 8 and 40 (the 40e6 floor) and at dp·cp 64, as dp 64 or dp 32 × cp 2 (64e6 parameters: fewer,
    larger buckets), as many in both engines (grad_buckets.mcore_buckets; before session 23, buckets23, the
    estimate's equal buckets gave 16 / 11 against the simulator's 17 / 9): the head's alone, the layers', the
    embedding's alone (its layer's bucket closed before it). The expert axis (176e6 parameters a layer) closes a
    bucket per layer either way."""
    sc, layout = _mixtral(dp, cp)
    est = estimate(sc, layout)
    program = build_stage_program(build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s), 0)
    assert est.communication["dp_all_reduce"]["calls_per_step"] == len(_sim_buckets(program, "dp")) == buckets
    assert est.communication["edp_all_reduce"]["calls_per_step"] == len(_sim_buckets(program, "edp")) == 32
    threshold_bytes = bucket_params(dp * cp) * sc.training.bytes_of("grad")
    assert min(_sim_buckets(program, "dp")[:-1]) >= threshold_bytes  # a bucket closes once it holds the size


def test_an_explicit_bucket_size_overrides_the_rule():
    sc, layout = _mixtral(64, 1)
    est = estimate(sc, layout)
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    assert len(_sim_buckets(build_stage_program(costs, 0, bucket_params=40_000_000), "dp")) == 18
    assert SimOptions().grad_bucket_params is None  # MCore's rule
    with pytest.raises(SpecError):
        SimOptions(grad_bucket_params=0)


# Session 19 (leftovers19b): MCore buckets only the first chunk of pipeline rank 0 (NVIDIA/Megatron-LM d98e8a6,
# distributed_data_parallel.py DistributedDataParallel.__init__: `if disable_bucketing or pp_rank > 0:
# self.bucket_size = None`; training.py get_model: `chunk_idx > 0` sets disable_bucketing).


def test_only_the_first_chunk_of_pipeline_rank_0_is_bucketed():
    assert bucketed(0, 0)
    assert not any(bucketed(device, piece) for device, piece in ((0, 1), (0, 3), (1, 1), (1, 0), (3, 4)))


def _pipelined(pp: int, vp: int = 1, schedule: str = "1f1b"):
    sc = load_scenario("mixtral-8x7b-h100")
    layout = Layout(dp=8, tp=2, ep=8, pp=pp, vp=vp)
    sc = dataclasses.replace(sc, devices=8 * 2 * pp, training=dataclasses.replace(
        sc.training, global_batch_sequences=8 * 4, micro_batches=4, zero_stage=0, pipeline_schedule=schedule))
    est = estimate(sc, layout)
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    return costs, [build_stage_program(costs, s) for s in range(pp)]


def test_a_later_stage_syncs_its_whole_gradient_in_one_bucket():
    """Mixtral 8x7B at tp 2, ep 8, pp 2, ZeRO 0: stage 0 closes a bucket per 40e6 parameters (many per axis), stage 1
    reduces each axis once, the whole stage's gradient in that one collective."""
    costs, (first, second) = _pipelined(2)
    for axis in ("dp", "edp"):
        assert len(_sim_buckets(first, axis)) > 1
        assert len(_sim_buckets(second, axis)) == 1
    piece = costs.stages[1]
    layers = [costs.classes[costs.workload.layer_class_index[layer]] for layer in piece.layers]
    dense = sum(lc.dense_grad_bytes for lc in layers) + piece.head_grad_bytes + piece.embedding_grad_bytes
    assert _sim_buckets(second, "dp") == [pytest.approx(dense)]
    assert _sim_buckets(second, "edp") == [pytest.approx(sum(lc.expert_grad_bytes for lc in layers))]


def test_interleaved_chunks_after_the_first_sync_in_one_bucket_each():
    """Interleaved at pp 2, vp 2: device 0 buckets its first chunk (piece 0) and reduces its second (piece 2) in one
    bucket per axis; device 1 reduces each of its two chunks (pieces 1 and 3) in one bucket per axis."""
    _, (device0, device1) = _pipelined(2, vp=2, schedule="interleaved")
    assert len(_sim_buckets(device1, "edp")) == 2
    assert len(_sim_buckets(device0, "edp")) > 2
    pieces = [op.vs for op in device0.ops if op.stream == "grad" and op.name.endswith("(edp)")]
    assert pieces.count(2) == 1 and pieces.count(0) == len(pieces) - 1


def test_a_later_stage_ends_its_backward_earlier_by_the_stages_before_it():
    """earlier_end_s by hand: representatives at stages 0, 1 and 3 of 4 (stage 2 of stage 1's kind), backward per
    micro-batch 3, 2 and 4 s, a 1 s hop. 1F1B / GPipe: stage 1 ends (3 + 1) = 4 s before stage 0, stage 3 (3 + 1) +
    2 × (2 + 1) = 10 s; interleaved at v 2 the chunks' backward halves: 2.5 and 6.5 s; ZB-H1 credits nothing."""
    index, exists = np.array([[0, 1, 3]] * 4), np.ones((4, 3), dtype=bool)
    bwd = np.array([[3.0, 2.0, 4.0]] * 4)
    schedule = np.array(["1f1b", "gpipe", "interleaved", "zb-h1"])
    early = earlier_end_s(schedule, np.array([1, 1, 2, 1]), index, exists, bwd, np.ones(4))
    assert early.tolist() == [[0.0, 4.0, 10.0], [0.0, 4.0, 10.0], [0.0, 2.5, 6.5], [0.0, 0.0, 0.0]]


def test_interleaved_later_stages_hide_their_sync_as_v_chunk_buckets():
    """chunk_buckets: interleaved at v 4, the stage after the first is 4 buckets of a quarter of its 8 s sync; the
    first stage and every stage of 1F1B keep their own count and last bucket."""
    schedule, first = np.array(["interleaved", "1f1b"]), np.array([[True, False], [True, False]])
    most, last = np.array([[5.0, 1.0], [5.0, 1.0]]), np.array([[0.5, 8.0], [0.5, 8.0]])
    buckets, last_s = chunk_buckets(schedule, np.array([4, 1]), first, most, last, np.full((2, 2), 8.0))
    assert buckets.tolist() == [[5.0, 4.0], [5.0, 1.0]]
    assert last_s.tolist() == [[0.5, 2.0], [0.5, 8.0]]


def test_an_interleaved_stage_syncs_its_later_chunks_in_the_cool_down():
    """interleaved_chunks_exposed_s by hand (session 22, spoverlap), 0.1 s of sync, backward 0.04 s a micro-batch:
    v 2, p 4, 8 buckets: chunk 0's 0.05 s in 4 buckets over its 0.02 s backward leaves 0.05 − 0.015 = 0.035 s; chunk
    1's 0.05 s starts 4 × 0.02 = 0.08 s before the end and is done before chunk 0's first bucket. One bucket (a later
    stage) leaves chunk 0's whole 0.05 s. A later chunk too long for the cool-down pushes chunk 0 back: 0.4 s at
    v 2 ends 0.2 − 0.08 + 0.2 = 0.32 s after the end. Below p micro-batches the lead is m chunks (m 2: 0.04 s)."""
    v, p, m = np.array([2, 2, 2, 2]), np.array([4, 4, 4, 4]), np.array([16, 16, 16, 2])
    chunk = np.array([[0.05], [0.05], [0.2], [0.09]])  # each chunk's sync: half the stage's
    first_buckets = np.array([[4.0], [1.0], [1.0], [1.0]])
    left = interleaved_chunks_exposed_s(chunk, chunk, first_buckets, np.full((4, 1), 0.04), v, p, m)
    assert left[:, 0] == pytest.approx([0.035, 0.05, 0.32, 0.09 - 0.04 + 0.09])
    # v 4 (p 2, chunk backwards of 0.01 s): chunks 3, 2, 1 of 0.025 s each, ready 0.06, 0.04, 0.02 s before the
    # end, end the grad stream at −0.06 + 3 × 0.025 = +0.015 s; chunk 0 (one bucket) after them: 0.04 s.
    one = np.array([[0.025]])
    left = interleaved_chunks_exposed_s(one, one, np.array([[1.0]]), np.array([[0.04]]), np.array([4]),
                                        np.array([2]), np.array([8]))
    assert left[0, 0] == pytest.approx(0.015 + 0.025)
    # Session 23 (pp2tail): each chunk at its own price. The later chunks in one bucket each, 0.02 s (cheaper than
    # 1/v of the stage's buckets), end the stream at −0.06 + 3 × 0.02 = 0.0 s; chunk 0's 0.03 s in its 4 buckets
    # over its 0.01 s backward would leave 0.03 − 0.0075 s alone but waits for them: 0.03 s.
    left = interleaved_chunks_exposed_s(np.array([[0.03]]), np.array([[0.02]]), np.array([[4.0]]),
                                        np.array([[0.04]]), np.array([4]), np.array([2]), np.array([8]))
    assert left[0, 0] == pytest.approx(0.03)
    # v 1: the one-window rule, max(S / n, S − W·(1 − 1/n))
    left = interleaved_chunks_exposed_s(np.array([[0.1]]), np.array([[0.0]]), np.array([[4.0]]), np.array([[0.04]]),
                                        np.array([1]), np.array([4]), np.array([16]))
    assert left[0, 0] == pytest.approx(0.1 - 0.03)


def test_the_interleaved_gradient_sync_agrees_with_the_simulator():
    """Mixtral 8x7B's Megatron reference mapping at pp 2 vp 8 (dp 32, 8 micro-batches): the first stage's later
    chunks synced as one whole-device window left the estimate 5.85 % over the simulator (2.2279 s against 2.0975 s);
    chunk by chunk, within 0.5 % (session 22, spoverlap: the vp8 search's best moved here)."""
    sc = load_scenario("mixtral-8x7b-h100-vp8")
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, micro_batches=8, zero_stage=2,
                                                              recompute="none"))
    result = simulate(sc, Layout(dp=32, tp=1, ep=8, pp=2, vp=8),
                      SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.005)


def test_without_the_model_s_ends_the_first_stage_keeps_the_window_rule():
    """No embedding or head on the stage: max(last bucket, S − W·(1 − 1/n)), core.py's rule before session 22."""
    sync, last, n, window = np.array([[6.0, 6.0]]), np.array([[1.0, 6.0]]), np.array([[6.0, 1.0]]), 3.0
    got = first_stage_exposed_s(sync, last, n, window, 0.0, 0.0)
    assert got.tolist() == [[max(1.0, 6.0 - 3.0 * 5 / 6), 6.0]]


def test_the_embedding_bucket_is_never_hidden_and_the_head_bucket_waits_for_the_head():
    """S = 10 s of sync; the last bucket (with the embedding, as priced) 4 s is exposed even under an endless window;
    the head's bucket 2 s, n = 4 layers' buckets ready over the window less the head's backward: W = 6, t_h = 4,
    W_L = 2: S − W_L = 8 s exposed (the old rule: max(4, 10 − 6·3/4) = 5.5)."""
    sync, last, n = np.array([[10.0]]), np.array([[4.0]]), np.array([[4.0]])
    assert first_stage_exposed_s(sync, last, n, 1e9, 2.0, 0.0).item() == pytest.approx(4.0)
    assert first_stage_exposed_s(sync, last, n, 6.0, 2.0, 4.0).item() == pytest.approx(8.0)
    # the head's bucket first: ready at t_h, the rest after it (S − S_head − W_L·(1 − 1/n) = 8 − 20·0.75 < 0)
    assert first_stage_exposed_s(sync, last, n, 24.0, 2.0, 4.0).item() == pytest.approx(4.0)


def test_at_pp_1_the_head_bucket_is_launched_after_the_head_backward():
    """GPT-OSS's slice at pp 1 (dp 16, ep 8): the output layer's 579 M parameters fill a 40 M bucket alone, launched
    once the head's backward ends (MCore's hook on the output weight, distributed_data_parallel.py l.553-582), not
    after the last layer's backward with it (before session 22, pp1gap)."""
    sc = load_scenario(str(Path(__file__).parent / "des" / "data" / "gpt-oss-l6-h100.toml"))
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, micro_batches=4))
    layout = Layout(dp=16, ep=8)
    est = estimate(sc, layout)
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    program = build_stage_program(costs, 0)
    first = next(op for op in program.ops if op.stream == "grad")
    assert program.ops[first.deps[0]].name == "logits"
    assert first.comm.size_bytes == pytest.approx(costs.stages[0].head_grad_bytes)


def test_the_pp_1_gradient_sync_agrees_with_the_simulator():
    """The same slice: the estimate spread the model's ends over the buckets and hid the sync under the whole last
    backward, head included: the simulator stood 5.13 % over it (0.37579 s against 0.35745 s); with the head's
    bucket first, the embedding's last and the layers' window after the head, within 0.5 % (session 22, pp1gap).
    Session 23 (buckets23): both engines on MCore's buckets (grad_buckets.mcore_buckets: 5 dense, the embedding's
    alone; 6 equal ones in the estimate before), the first layer's launched beside the embedding's backward:
    -0.12 / -0.12 / -0.28 % -> -0.000 / +0.000 / -0.000 % at 1 / 2 / 4 micro-batches, held to 0.1 %."""
    sc = load_scenario(str(Path(__file__).parent / "des" / "data" / "gpt-oss-l6-h100.toml"))
    for m in (1, 2, 4):
        s = dataclasses.replace(sc, training=dataclasses.replace(sc.training, micro_batches=m))
        result = simulate(s, Layout(dp=16, ep=8), SimOptions(contention=False, expected_loads=True, trace=False))
        assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.001), m
