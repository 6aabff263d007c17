"""MLA's tp traffic under sequence parallelism (Megatron-LM 23e00ed0 multi_latent_attention.py; moesim/estimate/
mla_tp_comms.py): the duplicated down-projections read the layer input's shard (no gather of h), the up-projections
gather the latents and k_pos_emb (r_q + r_kv + d_r a token), re-gathered for their wgrad (r_q + r_kv); the
out-projection's reduce-scatter stays h. Counted by hand on DeepSeek-V2's 4-layer slice at tp 2, dp 4, ep 8 (2
sequences of 4,096 tokens a device per micro-batch, 4 micro-batches, bf16)."""

import dataclasses

import pytest

from moesim.des import SimOptions, simulate
from moesim.estimate import estimate
from moesim.estimate.mla_tp_comms import MLA_GATHER, MLA_SCATTER, MLA_WGRAD_GATHER, mla_sp_widths
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

LAYOUT = Layout(dp=4, tp=2, ep=8)
TOKENS_BYTES = 2 * 4096 * 2  # b · n · bf16


def _v2(sp: bool = True, **changes):
    sc = load_scenario("deepseek-v2-l4-b200-ep8")
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, sequence_parallel=sp, **changes))


def test_the_widths():
    assert mla_sp_widths(_v2().model) == (1536 + 512 + 64, 1536 + 512)
    model = _v2().model
    no_q_lora = dataclasses.replace(model, attention=dataclasses.replace(model.attention, q_lora_rank=0))
    assert mla_sp_widths(no_q_lora) == (5120 + 512 + 64, 5120 + 512)  # linear_q_proj gathers the hidden states
    assert mla_sp_widths(load_scenario("llama3-70b-l12-b200-tp8").model) is None


def test_the_calls_by_hand():
    comm = estimate(_v2(), LAYOUT).communication
    # per micro-batch: 4 MLA blocks, 1 dense MLP block (layer 0); 4 micro-batches
    assert comm[MLA_GATHER]["size_bytes"] == TOKENS_BYTES * 2112 and comm[MLA_GATHER]["calls_per_step"] == 4 * 4
    assert comm[MLA_SCATTER]["size_bytes"] == TOKENS_BYTES * 2112 and comm[MLA_SCATTER]["calls_per_step"] == 16
    assert comm[MLA_WGRAD_GATHER]["size_bytes"] == TOKENS_BYTES * 2048
    assert comm[MLA_WGRAD_GATHER]["calls_per_step"] == 16
    h = TOKENS_BYTES * 5120
    # h gathers: the MLP's forward and backward, each out-projection's backward; scatters: the MLP's two, each
    # out-projection's forward; the h wgrad re-gather: the MLP's only
    assert comm["tp_all_gather"]["size_bytes"] == h and comm["tp_all_gather"]["calls_per_step"] == (2 + 4) * 4
    assert comm["tp_reduce_scatter"]["calls_per_step"] == (2 + 4) * 4
    assert comm["tp_all_gather_wgrad"]["calls_per_step"] == 1 * 4


def test_full_recompute_gathers_the_latents_again():
    comm = estimate(_v2(recompute="full"), LAYOUT).communication
    assert comm[MLA_GATHER]["calls_per_step"] == 2 * 16 and comm[MLA_SCATTER]["calls_per_step"] == 16
    assert comm["tp_reduce_scatter"]["calls_per_step"] == (3 + 2 * 4) * 4


def test_without_sp_nothing_changes():
    comm = estimate(_v2(sp=False), LAYOUT).communication
    assert MLA_GATHER not in comm and comm["tp_all_reduce"]["calls_per_step"] == (4 + 1) * 2 * 4


def test_the_simulator_agrees():
    result = simulate(_v2(), LAYOUT, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)
