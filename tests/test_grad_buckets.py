"""The gradient sync's bucket count (moesim.estimate.grad_buckets), as the simulator closes buckets at layer ends."""

import numpy as np

import dataclasses

import pytest

from moesim.collectives.select import model_for
from moesim.des import SimOptions
from moesim.des.costs import build_costs
from moesim.des.schedule import build_stage_program
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.estimate.grad_buckets import bucket_count, bucket_params
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario


def test_a_bucket_closes_at_the_layer_that_fills_it():
    layers = np.array([[16.0, 16.0, 16.0, 4.0]])
    # 16 layers of 1.5, 0.5 and 0.3 thresholds each: a bucket per layer, per 2 layers, per 4 layers (the 4th
    # closes at the stage's end); 4 layers of 0.3: one bucket, flushed at the end.
    grad = np.array([[16 * 1.5, 16 * 0.5, 16 * 0.3, 4 * 0.3]])
    assert bucket_count(grad, layers, 1.0, overlap=True).tolist() == [[16.0, 8.0, 4.0, 1.0]]


def test_one_bucket_without_overlap_or_gradients():
    grad, layers = np.array([[64.0, 0.0, 5.0]]), np.array([[16.0, 16.0, 0.0]])
    assert bucket_count(grad, layers, 1.0, overlap=False).tolist() == [[1.0, 1.0, 1.0]]
    assert bucket_count(grad, layers, 1.0, overlap=True).tolist() == [[16.0, 1.0, 1.0]]


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


@pytest.mark.parametrize("dp, cp, est_buckets, sim_buckets", [(8, 1, 16, 17), (40, 1, 16, 17), (64, 1, 11, 9),
                                                              (32, 2, 11, 9)])
def test_both_engines_size_the_buckets_from_dp_cp(dp, cp, est_buckets, sim_buckets):
    """Mixtral 8x7B at tp 2, ep 8, pp 1, ZeRO 0 (the same per-device gradients at every dp): the dense axis's
    buckets at dp·cp 8 and 40 (the 40e6 floor: 16 in the estimate, 17 in the simulator, whose first and last
    buckets also hold the head and the embedding) and at dp·cp 64, as dp 64 or dp 32 × cp 2 (64e6 parameters:
    fewer, larger buckets in both engines). The expert axis (176e6 parameters a layer) closes a bucket per layer
    either way."""
    sc, layout = _mixtral(dp, cp)
    est = estimate(sc, layout)
    program = build_stage_program(build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s), 0)
    assert est.communication["dp_all_reduce"]["calls_per_step"] == est_buckets
    assert len(_sim_buckets(program, "dp")) == sim_buckets
    assert est.communication["edp_all_reduce"]["calls_per_step"] == len(_sim_buckets(program, "edp")) == 32
    threshold_bytes = bucket_params(dp * cp) * sc.training.bytes_of("grad")
    assert min(_sim_buckets(program, "dp")[:-1]) >= threshold_bytes  # a bucket closes once it holds the size


def test_an_explicit_bucket_size_overrides_the_rule():
    sc, layout = _mixtral(64, 1)
    est = estimate(sc, layout)
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    assert len(_sim_buckets(build_stage_program(costs, 0, bucket_params=40_000_000), "dp")) == 17
    assert SimOptions().grad_bucket_params is None  # MCore's rule
    with pytest.raises(SpecError):
        SimOptions(grad_bucket_params=0)
