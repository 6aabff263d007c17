"""A tied model's last pipeline stage holds its own copy of the word embedding (Megatron-LM d98e8a6: gpt_model.py
allocates output_layer.weight unless `self.pre_process and self.share_embeddings_and_output_weights`;
language_module.py setup_embeddings_and_output_layer zeroes that copy and syncs it from the first stage): its
weight, gradient and optimizer states count on the last stage (moesim.workload.embedding_copy_params)."""

import dataclasses

import numpy as np
import pytest

from moesim.estimate import core, estimate
from moesim.estimate.device_state import stage_params
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario
from moesim.workload import build_workload

LAYOUT = Layout(dp=4, tp=2, ep=8, pp=2)
COPY_PARAMS = 32000 // 2 * 4096  # Mixtral's [V/tp, h] at tp 2: 65,536,000 parameters


def _mixtral(tied: bool, schedule: str = "gpipe"):
    """Mixtral 8x7B on 16 H100s at tp 2, ep 8, pp 2, 8 micro-batches, ZeRO 1 (bf16 weights, fp32 gradients, 12
    bytes of optimizer state per parameter sharded over dp 4). GPipe keeps m micro-batches on both stages, so the
    last (the logits, the final norm, the copy) is the fullest."""
    sc = load_scenario("mixtral-8x7b-h100", devices=16)
    return dataclasses.replace(
        sc, model=dataclasses.replace(sc.model, tied_embeddings=tied),
        training=dataclasses.replace(sc.training, global_batch_sequences=64, micro_batches=8,
                                     pipeline_schedule=schedule))


def test_the_copy_is_the_word_embedding_on_the_last_stage_only():
    sc = _mixtral(True)
    wl = build_workload(sc.model, 4096, 0)
    assert wl.embedding_copy_params == 32000 * 4096 and wl.lm_head_params == 0
    untied = build_workload(dataclasses.replace(sc.model, tied_embeddings=False), 4096, 0)
    assert untied.embedding_copy_params == 0 and untied.lm_head_params == 32000 * 4096
    counts = np.zeros((1, 2, len(wl.classes)))
    first, last = np.array([[True, False]]), np.array([[False, True]])
    one = np.ones(1)
    with_copy = stage_params(wl, counts, first, last, np.array(["1f1b"]), 2 * one, 8 * one, one)[0]
    without = stage_params(dataclasses.replace(wl, embedding_copy_params=0), counts, first, last,
                           np.array(["1f1b"]), 2 * one, 8 * one, one)[0]
    assert (with_copy - without).tolist() == [[0.0, COPY_PARAMS]]
    # pp 1: the one stage is first and last, the embedding is the head's weight, no copy.
    both = np.array([[True]])
    single = stage_params(wl, counts[:, :1], both, both, np.array(["1f1b"]), 2 * one, 8 * one, one)[0]
    assert single == stage_params(dataclasses.replace(wl, embedding_copy_params=0), counts[:, :1], both, both,
                                  np.array(["1f1b"]), 2 * one, 8 * one, one)[0]


def test_the_last_stage_memory_grows_by_the_copys_states(monkeypatch):
    """By hand, the copy's 65,536,000 parameters on the last stage: weights 2 bytes each (131,072,000 B), fp32
    gradients 4 (262,144,000 B, not sharded at ZeRO 1), optimizer states 12 / dp 4 (196,608,000 B): 589,824,000 B
    more than without it (main before session 19's leftovers19b), and exactly the untied model's last stage, whose
    lm head is the same [V/tp, h]."""
    sc = _mixtral(True)
    after = estimate(sc, LAYOUT).memory_bytes_per_device
    build = core.build_workload
    monkeypatch.setattr(core, "build_workload",
                        lambda *a: dataclasses.replace(build(*a), embedding_copy_params=0))
    before = estimate(sc, LAYOUT).memory_bytes_per_device
    monkeypatch.undo()
    assert after["weights"] - before["weights"] == COPY_PARAMS * 2
    assert after["gradients"] - before["gradients"] == COPY_PARAMS * 4
    assert after["optimizer_states"] - before["optimizer_states"] == pytest.approx(COPY_PARAMS * 12 / 4)
    assert after["total"] - before["total"] == pytest.approx(589_824_000)
    untied = estimate(_mixtral(False), LAYOUT).memory_bytes_per_device
    for part in ("weights", "gradients", "optimizer_states", "total"):
        assert after[part] == pytest.approx(untied[part])


def test_zb_v_holds_one_embedding_on_device_0():
    """ZB-V runs the embedding and the head on device 0: the head reads the embedding itself, no copy anywhere (the
    tied model's fullest device holds less than the untied one's, whose head has its own weight)."""
    tied, untied = (estimate(_mixtral(t, "zb-v"), LAYOUT).memory_bytes_per_device for t in (True, False))
    assert untied["weights"] - tied["weights"] == COPY_PARAMS * 2
