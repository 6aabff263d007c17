"""FP8 casts on the sequence shard and FP8 SP all-gathers under Megatron-LM + TransformerEngine (session 25, spcasts).

TE v2.14 (f031cf87) module/layernorm_linear.py l.149 / l.209-225 / l.255-275: a column-parallel LayerNormLinear under
sequence parallelism runs its norm on the sequence shard, the norm writes FP8 (the quantized norm) and the shard is
all-gathered in FP8; base.py l.1228-1233: a row-parallel Linear's grad output is cast on its shard and gathered in FP8;
the wgrad re-gather reuses the saved FP8 shard (layernorm_linear.py l.412 / l.669-688). So each such cast is tokens · h
/ t on a rank and the gathers move 1 + s bytes an element (s the recipe's scales: 0 per tensor, 1/32 MXFP8)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.estimate.precision_terms import quantised_elements, sp_gather_element_bytes, te_shard_casts
from moesim.estimate.terms import TermBuilder
from moesim.specs.load import load_hardware, load_scenario
from moesim.specs.training import TrainingSpec
from moesim.workload import build_workload

KEEP = ("global_batch_sequences", "seq_len", "micro_batches", "zero_stage", "recompute")


def with_recipe(sc, recipe: str, **keys):
    base = {k: getattr(sc.training, k) for k in KEEP}
    hardware = load_hardware("b200") if recipe == "mxfp8-blackwell" else sc.hardware
    return dataclasses.replace(sc, hardware=hardware,
                               training=TrainingSpec.with_recipe(**base, precision_recipe=recipe, **keys))


@pytest.fixture(scope="module")
def mixtral():
    return load_scenario("mixtral-8x7b-h100")


def gathers(sc, tp: int) -> dict[str, float]:
    """CommCall name -> bytes a call of one Mixtral MoE layer at the given tp (b 1, ep 1)."""
    one = lambda v: np.array([float(v)])  # noqa: E731
    tb = TermBuilder(sc.model, sc.hardware, sc.training, one(1), one(tp), one(1), one(1), np.array([0]), one(np.nan))
    terms = tb.build(build_workload(sc.model, 4096, 0).classes[0])
    return {c.name: float(np.ravel(c.size_bytes)[0]) for c in terms.comms}


@pytest.mark.parametrize("recipe, q", [("te-delayed-scaling", 1.0), ("te-current-scaling", 1.0),
                                       ("mxfp8-blackwell", 1.0 + 1 / 32)])
def test_sp_gathers_carry_fp8_shards(mixtral, recipe, q):
    """The forward, backward and wgrad gathers at 1 + s bytes an element; the reduce-scatters stay BF16."""
    sc = with_recipe(mixtral, recipe)
    assert te_shard_casts(sc.training, True)
    size = gathers(sc, 2)
    elements = 4096 * mixtral.model.d_model
    assert size["tp_all_gather"] == pytest.approx(elements * q)
    assert size["tp_all_gather_wgrad"] == pytest.approx(elements * q)
    assert size["tp_reduce_scatter"] == pytest.approx(elements * 2.0)


def test_bf16_and_other_frameworks_gather_bf16(mixtral):
    """BF16 GEMMs, or a framework that is not Megatron-LM + TE, or SP off: the gathers as before (2 bytes)."""
    bf16 = with_recipe(mixtral, "bf16")
    assert sp_gather_element_bytes(bf16.training, True) == 2.0
    assert gathers(bf16, 2)["tp_all_gather"] == pytest.approx(4096 * mixtral.model.d_model * 2.0)
    fp8 = with_recipe(mixtral, "te-current-scaling")
    assert sp_gather_element_bytes(fp8.training, False) == 2.0  # not TE (e.g. DeepSeek's framework)
    no_sp = dataclasses.replace(fp8.training, sequence_parallel=False)
    assert not te_shard_casts(no_sp, True) and sp_gather_element_bytes(no_sp, True) == 2.0


def test_gathered_casts_read_the_shard(mixtral):
    """linear_qkv's input and linear_proj's output gradient cast on the shard: h / t a token each, not h; the inner
    widths (already split by t) and the routed experts do not move."""
    cls = build_workload(mixtral.model, 4096, 0).classes[0]
    h, slots, tp = mixtral.model.d_model, 4096 * mixtral.model.moe.top_k, 2
    whole = quantised_elements(mixtral.model, cls, 1, tp, 1, slots, te_casts=True, sequence_parallel=True)
    shard = quantised_elements(mixtral.model, cls, 1, tp, 1, slots, te_casts=True, sequence_parallel=True,
                               shard_casts=True)
    assert whole["attention"][0] - shard["attention"][0] == 4096 * h / tp
    assert whole["attention"][1] - shard["attention"][1] == 4096 * h / tp
    assert whole["permute"] == shard["permute"]
    # tp 1: the shard is the whole input
    assert quantised_elements(mixtral.model, cls, 1, 1, 1, slots, shard_casts=True) == \
        quantised_elements(mixtral.model, cls, 1, 1, 1, slots)


def test_dense_mlp_fc1_and_fc2_cast_the_shard():
    """A dense layer's fc1 input (a LayerNormLinear) and fc2 output gradient: h / t a token each."""
    sc = load_scenario("llama3-70b-l12-b200-tp8")
    cls = build_workload(sc.model, 4096, 0).classes[0]
    h, tp = sc.model.d_model, 8
    whole = quantised_elements(sc.model, cls, 1, tp, 1, 0.0)
    shard = quantised_elements(sc.model, cls, 1, tp, 1, 0.0, shard_casts=True)
    assert whole["dense_ffn"][0] - shard["dense_ffn"][0] == pytest.approx(4096 * h * (1 - 1 / tp))
    assert whole["dense_ffn"][1] - shard["dense_ffn"][1] == pytest.approx(4096 * h * (1 - 1 / tp))


@pytest.mark.parametrize("recipe", ["te-current-scaling", "mxfp8-blackwell"])
def test_the_simulator_reads_the_fp8_gathers(recipe):
    """Mixtral at tp 2 with SP, no pipeline, no contention: the simulator's TP all-gathers are the estimate's FP8
    CommCalls (one spec by name, both engines), and the step times agree within 2 % (as
    tests/test_current_scaling_casts.py at tp 1)."""
    from moesim.des import SimOptions, simulate
    from moesim.specs.layout import Layout
    sc = with_recipe(load_scenario("mixtral-8x7b-h100", devices=16), recipe)
    assert te_shard_casts(sc.training, True)
    result = simulate(sc, Layout(dp=8, tp=2, ep=8), SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)
