"""The recomputed MLA up-projections' FP8 input casts (session 24, dsv3casts). DeepSeek's H800 trace
(tests/data/dsv3_trace) casts c_Q and c_KV (per_token_cast_to_fp8_with_channels, each followed by its scales'
transpose) before the up-projection GEMMs in the forward, and again before the recomputed GEMMs in attn(B)
(DeepSeek-V3 arXiv 2412.19437 §3.2.3 recomputes the "MLA up-projections"): ~28 us a layer that moesim priced nowhere
(the backward cast table had absorbed them). Now the forward casts are their own operator, up_proj_quantise, which
the mla_up_proj recomputation runs again at its forward price (moesim/estimate/selective.py), in both engines."""

from __future__ import annotations

import dataclasses

import pytest

from moesim.estimate.precision_terms import UP_PROJ_CASTS, UP_PROJ_QUANTISE
from moesim.estimate.selective import recomputed_ops
from moesim.ops.breakdown import term_builder
from moesim.ops.price import op_time_s
from moesim.precision import quantise_cost
from moesim.specs.load import load_scenario

LAYOUT = "dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2"  # the trace's (scripts/dsv3_trace.py)


def _moe_terms(sc):
    builder, wl, _ = term_builder(sc, sc.resolve(source="--layout"))
    return builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))


def test_the_trace_casts_the_up_projections_inputs_twice(dsv3, kernels):
    """Per layer the rules group four kernels as up_proj_quantise in attn(F) and four in attn(B): two per_token casts
    (grid = the 4096 tokens) and two scales' transposes, the casts after the latents' norms and each right before
    an up-projection GEMM (forward: the third and fourth GEMM of attn(F); attn(B): the recomputed q_up and kv_up);
    the recomputed ones measure 28.0 us a layer, the forward's 30.5."""
    assigned = sorted(dsv3.assign(kernels, dsv3.load_rules()), key=lambda x: x[0].order)
    for phase, pas, gemms in (("attn(F)", "fwd", ("q_up_proj", "kv_up_proj")),
                              ("attn(B)", "recompute", ("q_up_proj", "kv_up_proj"))):
        for layer in range(4):
            seq = [(k, op, p) for k, op, p in assigned if (k.phase, k.layer) == (phase, layer)]
            ours = [i for i, (_, op, p) in enumerate(seq) if (op, p) == ("up_proj_quantise", pas)]
            assert len(ours) == 4
            casts = [i for i in ours if seq[i][0].kernel.endswith("per_token_cast_to_fp8_with_channels")]
            assert len(casts) == 2 and all(seq[i][0].grid == "4096,1,1" for i in casts)
            for i, gemm in zip(casts, gemms):  # the cast, its scales' transpose, then the GEMM it feeds
                assert seq[i + 1][0].kernel.endswith("utils::transpose") and seq[i + 2][1:] == (gemm, pas)
            norms = [i for i, (_, op, p) in enumerate(seq) if op in ("q_norm", "kv_norm") and p == pas]
            assert len(norms) == 2
            assert max(norms) < min(ours)
    rows = {(r[0], r[1]): r[2] for r in dsv3.table_rows(kernels)}
    assert rows[("up_proj_quantise", "recompute")] == 28.0 and rows[("up_proj_quantise", "fwd")] == 30.5


def test_the_casts_bytes_by_hand_and_their_price_in_the_recompute(dsv3, kernels):
    """up_proj_quantise moves t·(r_q + r_kv) elements at a 1x128 cast's bytes (read 2, write 1 + 4/128), four
    kernels, split off the attention part's fp8_quantise (whose bytes fall by as much); the mla_up_proj
    recomputation prices it at its forward price (the H800 fwd cast table), within 10 % of the trace's 28.0 us."""
    sc = load_scenario(str(dsv3.SCENARIO), layout=LAYOUT)
    terms = _moe_terms(sc)
    att, hw = sc.model.attention, sc.hardware
    per = quantise_cost(1.0, "blockwise", 2.0, copies=1).bytes_moved
    up = next(o for o in terms.ops_fwd if o.name == UP_PROJ_QUANTISE)
    assert (up.part, up.pass_, up.kernels, up.meta["table_op"]) == ("attention", "fwd", UP_PROJ_CASTS, "fp8_quantise")
    assert float(up.bytes[0]) == pytest.approx(4096 * (att.q_lora_rank + att.kv_lora_rank) * per, rel=1e-12)
    redo = recomputed_ops(sc.training, terms.ops_fwd)
    assert [o for o in redo if o.name == UP_PROJ_QUANTISE] == [up]
    priced_us = float(op_time_s(up, hw)[0]) * 1e6
    assert priced_us == pytest.approx(28.0, rel=0.1)
    # without mla_up_proj the recomputation is that much cheaper (the norms alone)
    norms_only = dataclasses.replace(sc, training=dataclasses.replace(sc.training, recompute_modules=("layernorm",)))
    assert all(o.name != UP_PROJ_QUANTISE for o in recomputed_ops(norms_only.training, terms.ops_fwd))


def test_only_under_deepseeks_casts(dsv3):
    """With a BF16 dispatch (not DeepSeek's recipe: precision_terms.deepseek_casts_apply) the attention part casts
    the up-projections' inputs inside its one fp8_quantise operator, as before: no up_proj_quantise, the same
    forward bytes in all."""
    sc = load_scenario(str(dsv3.SCENARIO), layout=LAYOUT)
    ds = _moe_terms(sc)
    bf16 = dataclasses.replace(sc, training=dataclasses.replace(sc.training, dispatch_dtype="bfloat16"))
    te = _moe_terms(bf16)
    assert not any(o.name == UP_PROJ_QUANTISE for o in te.ops_fwd)
    up = next(o for o in ds.ops_fwd if o.name == UP_PROJ_QUANTISE)
    att_ds = next(o for o in ds.ops_fwd if (o.name, o.part) == ("fp8_quantise", "attention"))
    att_te = next(o for o in te.ops_fwd if (o.name, o.part) == ("fp8_quantise", "attention"))
    h = sc.model.d_model  # DeepSeek's casts also cast the layer input a second time (kv_down's own cast)
    per = quantise_cost(1.0, "blockwise", 2.0, copies=1).bytes_moved
    assert float(att_ds.bytes[0] + up.bytes[0]) == pytest.approx(float(att_te.bytes[0]) + 4096 * h * per, rel=1e-12)
