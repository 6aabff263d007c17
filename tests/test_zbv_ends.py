"""ZB-V's ends in the estimate: the simulator runs the model's last piece (the head) on device 0 beside the
embedding (moesim.des.orders: pieces d and 2p − 1 − d on device d); the estimate charges the head's compute, its tp
collectives, its parameters and its logits there too (session 19, leftovers19)."""

import dataclasses

import pytest

from moesim.estimate import estimate
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

LAYOUT = Layout(dp=1, tp=2, pp=4)


def _llama(schedule: str):
    """Llama-3-70B's 12-layer slice at tp 2, pp 4 (3 layers a stage), 8 micro-batches of one sequence."""
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    return dataclasses.replace(sc, training=dataclasses.replace(
        sc.training, global_batch_sequences=8, micro_batches=8, pipeline_schedule=schedule))


def test_zb_v_prices_the_head_on_the_first_stage():
    zbv, zbh1 = estimate(_llama("zb-v"), LAYOUT), estimate(_llama("zb-h1"), LAYOUT)
    # The slowest stage is the first: its embedding's and head's tp collectives both (ZB-H1: the head's alone, on
    # the last stage), once per micro-batch.
    for name in ("tp_embedding_all_gather", "tp_head_all_gather", "tp_head_reduce_scatter"):
        assert zbv.communication[name]["calls_per_step"] == 8
    assert "tp_embedding_all_gather" not in zbh1.communication
    # The first stage holds the embedding and the head [V/tp, h] (untied: 128256 x 8192 / 2 parameters each), so
    # the longest optimizer pass and the fullest device are there and larger than any ZB-H1 stage's.
    assert zbv.optimizer_time_s > 1.2 * zbh1.optimizer_time_s
    head_bytes = 128256 * 8192 / 2 * 16  # bf16 weight + fp32 gradient, master and two Adam moments: 2 + 4 + 12
    # 10.5e9 bytes more (the head's model state and its logits beside ZB-V's own in-flight micro-batches; 1.05e9
    # when the estimate charged the head to the last stage)
    assert zbv.memory_bytes_per_device["total"] - zbh1.memory_bytes_per_device["total"] > head_bytes


@pytest.mark.parametrize("schedule", ["1f1b", "zb-h1", "interleaved"])
def test_other_schedules_keep_the_head_on_the_last_stage(schedule):
    layout = Layout(dp=1, tp=4, pp=2, vp=2) if schedule == "interleaved" else LAYOUT
    est = estimate(_llama(schedule), layout)
    assert "tp_embedding_all_gather" not in est.communication  # the slowest stage is the last, with the head
    assert est.communication["tp_head_all_gather"]["calls_per_step"] > 0
