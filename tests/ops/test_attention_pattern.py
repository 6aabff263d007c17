"""Attention per layer (session 22, gptoss): `attention.layer_pattern` gives each decoder layer its own mask (GPT-OSS:
a 128-token window on layers 1, 3, ..., causal on 2, 4, ...), the layer classes carry it, and the one operator list
of each class prices its attention core on its mask's tiles; the attention sinks are parameters and their softmax
share. Golden figures: OpenAI's gpt-oss card (parameters) and Megatron-Bridge's page (FLOPs per token, 26.06 on)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moesim.arithmetic import param_counts
from moesim.errors import SpecError
from moesim.estimate import estimate
from moesim.flops import logits_flops
from moesim.models import bridge_perf as bp
from moesim.ops.attention import attended_fraction
from moesim.ops.breakdown import operator_breakdown
from moesim.ops.layer import SINK_FLOPS_PER_ROW, LayerOps, self_attention_mask
from moesim.specs.load import load_model, load_scenario
from moesim.workload import build_workload

GPT_OSS_L6 = Path(__file__).parents[1] / "des" / "data" / "gpt-oss-l6-h100.toml"
SEQ = 4096


def _without_pattern(model, softmax_type="vanilla"):
    att = dataclasses.replace(model.attention, layer_pattern=(), window_tokens=0, softmax_type=softmax_type)
    return dataclasses.replace(model, attention=att)


def test_layers_alternate_from_a_window_as_megatron_and_the_reference_place_them():
    """Megatron-LM d98e8a6 transformer/utils.py is_layer_window_attention: 1-indexed layer l is windowed unless
    l % window_attn_skip_freq == 0 (2 for GPT-OSS: gpt_oss_bridge.py l.88); openai/gpt-oss a194b990 model.py: the
    window on layer_idx % 2 == 0 (0-indexed). Two classes, one per mask, of 18 layers each."""
    m = load_model("gpt-oss-120b")
    wl = build_workload(m, SEQ, SEQ)
    masks = [self_attention_mask(m, wl.classes[c]) for c in wl.layer_class_index]
    assert masks == ["sliding_window" if (layer + 1) % 2 else "causal" for layer in range(36)]
    assert [(c.is_moe, c.mask) for c in wl.classes] == [(True, "sliding_window"), (True, "causal")]
    assert wl.classes[0].params_shardable == wl.classes[1].params_shardable
    plain = build_workload(_without_pattern(m), SEQ, SEQ)
    assert len(plain.classes) == 1 and plain.classes[0].mask == ""


def test_an_mtp_module_takes_the_last_layers_mask():
    """Megatron-Bridge 067f987d flop_utils.py l.1434-1435: MTP reuses the final decoder layer's spec."""
    m = dataclasses.replace(load_model("gpt-oss-120b"), decoder_layers=5, mtp_depth=1)
    wl = build_workload(m, SEQ, SEQ)
    assert wl.classes[wl.layer_class_index[-1]].mtp and wl.classes[wl.layer_class_index[-1]].mask == "sliding_window"


def test_each_class_prices_its_attention_core_on_its_own_tiles_with_the_sinks():
    """At s = 4096 (32 tile rows of 128): the window computes 1 + 2·31 = 63 of 1024 tiles, causal 32·33/2 = 528;
    the sinks add SINK_FLOPS_PER_ROW per query row and head, none without them."""
    sc = load_scenario(str(GPT_OSS_L6))
    m = sc.model
    wl = build_workload(m, SEQ, SEQ)
    ops = LayerOps(m, sc.training, 1.0, 1.0, 8.0, 1.0)
    cores = {c.mask: next(op for op in ops.attention(c) if op.name == "attention_core") for c in wl.classes}
    assert cores["sliding_window"].meta["work_fraction"] == 63 / 1024
    assert cores["causal"].meta["work_fraction"] == 528 / 1024
    assert (cores["sliding_window"].mask, cores["causal"].mask) == ("sliding_window", "causal")
    scores = wl.classes[0].flops.attention_scores
    sinks = SINK_FLOPS_PER_ROW * SEQ * m.attention.num_heads
    assert cores["sliding_window"].flops == pytest.approx(scores * 63 / 1024 + sinks, rel=1e-12)
    assert cores["causal"].flops == pytest.approx(scores * 528 / 1024 + sinks, rel=1e-12)
    plain = _without_pattern(m)
    core = next(op for op in LayerOps(plain, sc.training, 1.0, 1.0, 8.0, 1.0).attention(
        build_workload(plain, SEQ, SEQ).classes[0]) if op.name == "attention_core")
    assert core.flops == pytest.approx(scores * 528 / 1024, rel=1e-12)


def test_the_estimate_prices_the_window_and_reports_each_mask():
    """Model FLOPs keep PaLM's full matrix whatever the mask; the hardware FLOPs and the time fall with the window."""
    sc = load_scenario(str(GPT_OSS_L6))
    windowed = estimate(sc)
    causal = estimate(dataclasses.replace(sc, model=_without_pattern(sc.model, "learnable")))
    assert windowed.step_time_s < causal.step_time_s
    assert windowed.hardware_flops_per_step < causal.hardware_flops_per_step
    assert windowed.model_flops_per_step == pytest.approx(causal.model_flops_per_step, rel=1e-12)
    dec = windowed.flop_conventions["self_attention"]["decoder"]
    assert dec["mask"] == "sliding_window+causal"
    assert dec["by_mask"] == {"sliding_window": {"layers": 3, "computed_fraction": 63 / 1024},
                              "causal": {"layers": 3, "computed_fraction": 528 / 1024}}
    assert dec["computed_fraction"] == pytest.approx((63 + 528) / 2048)
    assert "by_mask" not in causal.flop_conventions["self_attention"]["decoder"]


def test_the_operator_breakdown_names_each_masks_class():
    sc = load_scenario(str(GPT_OSS_L6))
    labels = {r.layer_class for r in operator_breakdown(sc, sc.resolve())}
    assert {"decoder moe sliding_window", "decoder moe causal"} <= labels


def test_the_sinks_are_one_parameter_per_head_and_layer():
    """OpenAI gpt-oss card (arXiv 2508.10925): a learned bias in the softmax's denominator per head; openai/gpt-oss
    a194b990 model.py AttentionBlock.sinks: num_attention_heads values. 36 layers x 64 heads."""
    m = load_model("gpt-oss-120b")
    assert param_counts(m).attention - param_counts(_without_pattern(m)).attention == 36 * 64


def test_attended_fraction_counts_the_pairs_exactly():
    for s, w in [(4096, 128), (100, 7), (9, 9), (9, 20)]:
        pairs = sum(min(i + 1, w) for i in range(s))
        assert attended_fraction("sliding_window", s, w) == pytest.approx(pairs / s**2, rel=1e-12)
    assert attended_fraction("causal", 4096) == pytest.approx(4097 / 8192)
    assert attended_fraction("full", 10) == 1.0
    with pytest.raises(ValueError, match="block_sparse_fixed"):
        attended_fraction("block_sparse_fixed", 10)


def test_flops_per_token_match_megatron_bridges_count_for_gpt_oss():
    """Megatron-Bridge 067f987d flop_utils.py l.1361-1400 counts 3·2·(projections + attended pairs' core) with the
    window's exact average context per layer, experts and logits, no router; its page's 26.06-26.08 rows print
    Model TFLOP/s over tokens/s of 32.58-32.62 GFLOP per token (rounded figures). moesim's layers, each attention at
    its own mask's pairs, the router left out: 32.63. Every layer causal would give 34.33."""
    m = load_model("gpt-oss-120b")

    def per_token(model):
        wl = build_workload(model, SEQ, SEQ)
        fwd = logits_flops(model, SEQ)
        for c in wl.layer_class_index:
            cls = wl.classes[c]
            kept = attended_fraction(self_attention_mask(model, cls), SEQ, model.attention.window_tokens)
            fwd += cls.flops.total - cls.flops.router - cls.flops.attention_scores * (1 - kept)
        return 3 * fwd / SEQ / 1e9

    published = [r.published_gflop_per_token for r in bp.load_newer_rows()
                 if r.model == "gpt-oss-120b" and r.release in ("26.06", "26.06.01", "26.08")]
    assert len(published) == 7
    for figure in published:
        assert per_token(m) == pytest.approx(figure, rel=0.0025)
    assert per_token(_without_pattern(m)) == pytest.approx(34.33, abs=0.01)  # 5 % above: the pattern is seen


def _model_file(tmp_path, attention_lines: str, architecture: str = 'architecture = "decoder_only"\nlayers = 2'):
    text = f"""schema_version = 1
name = "tiny"
{architecture}
source = "test"
d_model = 64
vocab_size = 128
d_ff = 128
tied_embeddings = true
ffn_kind = "relu"
norm_kind = "rmsnorm"
[attention]
kind = "mha"
num_heads = 4
head_dim = 16
{attention_lines}
"""
    path = tmp_path / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("lines, field, text", [
    ('layer_pattern = ["sliding_window", "local"]', "attention.layer_pattern", "'local' is not allowed"),
    ('layer_pattern = ["sliding_window", "causal"]', "attention.window_tokens", "needs window_tokens >= 1"),
    ('layer_pattern = ["block_sparse_fixed"]', "attention.sparse_stride_tokens", "needs sparse_stride_tokens"),
    ('mask = "causal"\nlayer_pattern = ["causal", "full"]', "attention.layer_pattern", "not both"),
    ('softmax_type = "sink"', "attention.softmax_type", "'sink' is not allowed"),
])
def test_bad_pattern_input_names_the_file_and_field(tmp_path, lines, field, text):
    path = _model_file(tmp_path, lines)
    with pytest.raises(SpecError, match=text) as err:
        load_model(str(path))
    assert field in str(err.value) and "tiny.toml" in str(err.value)


def test_a_pattern_needs_a_decoder_only_model(tmp_path):
    enc_dec = ('architecture = "encoder_decoder"\nencoder_layers = 2\ndecoder_layers = 2\n'
               'default_decoder_seq_len = 16')
    path = _model_file(tmp_path, 'layer_pattern = ["full", "causal"]', enc_dec)
    with pytest.raises(SpecError, match="decoder-only") as err:
        load_model(str(path))
    assert "attention.layer_pattern" in str(err.value)
