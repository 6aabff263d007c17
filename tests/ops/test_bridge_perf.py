"""Megatron-Bridge's published MoE pre-training rows as validation cases (docs/operators.md, "Megatron-Bridge's
published MoE runs"): the committed data against the source page, each row written down in moesim, each row's
error as recorded, and the generated block current. Validation only: nothing here is fitted, and no error is
asserted to be small."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from moesim.errors import SpecError
from moesim.models import bridge_perf as bp
from moesim.specs.layout import stage_layers

ROWS = bp.load_rows()
BY_CASE = {r.case: r for r in ROWS}
MIRROR = Path("/work/.mirror/NVIDIA-NeMo+Megatron-Bridge/repo")  # a bare clone of the source, where one is at hand

# Spot rows of the source, typed in from NVIDIA-NeMo/Megatron-Bridge @ df0289c1 docs/performance-summary.md
# (case: GPUs, GBS, MBS, TP, PP, VP, EP, GA, tokens / s / GPU, model TFLOP / s / GPU), one per system and model.
SOURCE_SPOTS = {
    "26.02-gb200-dsv3-fp8mx-pp4vp4ep64": (256, 4096, 1, 1, 4, 4, 64, 64, 3955, 1028),
    "26.02-b200-dsv3-fp8mx-pp16ep8": (256, 4096, 1, 1, 16, 1, 8, 256, 2689, 699),
    "26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8": (16, 1024, 1, 1, 2, 12, 8, 128, 2557, 118),
    "25.11-gb200-qwen3-30b-fp8mx-ep8": (8, 512, 4, 1, 1, 1, 8, 16, 23766, 547),
    "25.09-h100-dsv3-pp8vp4ep64tp2": (1024, 8192, 1, 2, 8, 4, 64, 128, 1297, 338),
    "25.11-b200-qwen3-235b-fp8mx-pp8vp2ep8": (64, 1024, 1, 1, 8, 2, 8, 128, 3269, 484),
}

# moesim's step-time error per row as it came out when the block was generated (moesim / published − 1, %), each
# with the published row beside it. Recorded, not a bar: a pricing change that moves a row by more than 1 pt fails
# here on purpose; regenerate with `python scripts/bridge_perf_check.py --write` and update the figure. Session 21
# (bridgekeys) re-recorded seven: the recipes' pipeline layouts (DeepSeek-V3 GB200 and 25.09 H100 at their vp 4,
# Qwen3-235B-A22B H100's uneven chunks), the HybridEP backend and the recipes' CUDA graphs (the 26.02 rows that
# name them); (a2aorder) re-recorded two: the EP A2A overlap in Megatron's per-layer order, not DualPipe's max.
# Session 21 (bridgemem) re-recorded every row whose recipe was read: BF16 gradient buffers (grad_reduce_in_fp32
# False) and FP8 parameters without a BF16 copy (fp8_param_gather), so less memory (the recompute ladder stops earlier
# on rows whose recompute the recipe leaves unstated) and BF16 gradient reductions; every row: Megatron-Core's
# routing probability inside the expert activation (no expert output kept), so the ladder stops earlier on rows
# whose recipe was not read.
# Session 23 (bwtables) re-recorded every GB200 / GB300 / B300 row: those profiles now read b200's SimuMax
# operator tables as fractions of their own peaks (efficiency.op_tables_from) instead of h100-sxm's FLOP-keyed prior.
# Session 23 (bwfp8) re-recorded every row: each runs Megatron-Bridge's fused (TE) cross-entropy (fused_cross_entropy).
RECORDED_ERROR_PCT = {
    "26.02-gb200-dsv3-fp8mx-pp4vp4ep64": +6.6,  # 26.02 DGX-GB200 DeepSeekV3: 3955 tokens/s/GPU
    "26.02-gb200-qwen3-30b-fp8mx-ep8": -21.8,  # 26.02 DGX-GB200 Qwen3_30B_a3B: 26084
    "26.02-b200-dsv3-fp8mx-pp16ep8": +1.5,  # 26.02 DGX-B200 DeepSeekV3: 2689
    "26.02-b200-qwen3-30b-fp8mx-ep8": -60.7,  # 26.02 DGX-B200 Qwen3_30B_a3B: 9691
    # the recipe's EP A2A overlap priced (session 21, a2aoverlap; -81.9 exposed)
    "26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8": -82.2,  # 26.02 DGX-H100 Qwen3_30B_a3B: 2557
    "25.11-gb200-dsv3-bf16-pp4vp4ep64": +12.8,  # 25.11 DGX-GB200 DeepSeekV3 (w/o MTP) BF16: 3139
    "25.11-gb200-dsv3-fp8mx-pp8vp4ep32": +12.3,  # 25.11 DGX-GB200 DeepSeekV3 (w/o MTP) FP8-MX: 4018
    "25.11-gb200-qwen3-30b-fp8mx-ep8": -22.9,  # 25.11 DGX-GB200 Qwen3_30B_a3B: 23766
    "25.11-b200-dsv3-fp8mx-pp16ep8": -7.3,  # 25.11 DGX-B200 DeepSeekV3 (w/ MTP): 2139
    "25.11-b200-qwen3-30b-fp8mx-ep8": -61.7,  # 25.11 DGX-B200 Qwen3_30B_a3B: 9299
    "25.11-h100-qwen3-30b-fp8cs-pp2vp24ep8": -46.5,  # 25.11 DGX-H100 Qwen3_30B_a3B: 5275
    # DeepEP as the recipe's run_script.py runs it on H100 (session 21, a2aoverlap; +43.1 with NCCL's all-to-all), at
    # the recipe's vp 4 (bridgekeys) and so with the recipe's EP A2A overlap priced, in Megatron's order (a2aorder;
    # -24.5 with DualPipe's max per pair); its modules mla_up_proj + mlp (recompmods), without core_attn added
    # (coreattn); session 25 (sharedfp8): the shared experts' fc1 gathers FP8 shards and casts on the shard (-27.9)
    "25.09-h100-dsv3-pp8vp4ep64tp2": -28.6,  # 25.09 DGX-H100 DeepSeekV3 (dropless): 1297
    "26.02-gb200-qwen3-235b-fp8mx-pp8ep32": +0.1,  # 26.02 DGX-GB200 Qwen3_235B_a22B: 5448
    "26.02-b200-qwen3-235b-fp8mx-pp8ep8": -27.7,  # 26.02 DGX-B200 Qwen3_235B_a22B: 3805
    # the recipe's uneven chunks (bridgekeys) make it interleaved, so its EP A2A overlap is priced (a2aoverlap; -21.5),
    # in Megatron's order (a2aorder; -50.3 with DualPipe's max per pair)
    "26.02-h100-qwen3-235b-fp8cs-tp2pp8vp4ep32": -51.6,  # 26.02 DGX-H100 Qwen3_235B_a22B: 1633
    "25.11-gb200-qwen3-235b-bf16-pp8vp3ep32": +12.7,  # 25.11 DGX-GB200 Qwen3_235B_a22B BF16: 4916
    "25.11-b200-qwen3-235b-fp8mx-pp8vp2ep8": -32.7,  # 25.11 DGX-B200 Qwen3_235B_a22B: 3269
    "25.11-h100-qwen3-235b-fp8cs-tp2pp8vp4ep32": +18.1,  # 25.11 DGX-H100 Qwen3_235B_a22B: 1575
}


def test_the_data_holds_the_spot_rows_of_the_source():
    assert len(ROWS) == 18 and set(BY_CASE) == set(RECORDED_ERROR_PCT)
    for case, spot in SOURCE_SPOTS.items():
        r = BY_CASE[case]
        assert (r.gpus, r.gbs, r.mbs, r.tp, r.pp, r.vp, r.ep, r.ga, r.tokens_per_s_per_gpu,
                r.model_tflops_per_gpu) == spot


def _source_rows(text: str) -> dict[tuple[str, str, str, str], list[str]]:
    """(release, system, model, precision) -> the row's cells, from the page's markdown tables."""
    out, release, system = {}, "", ""
    for line in text.splitlines():
        if m := re.match(r"## (\d\d\.\d\d) NeMo Container", line):
            release = m.group(1)
        elif m := re.match(r"#### System: (\S+)", line):
            system = m.group(1)
        elif line.startswith("| ") and not line.startswith("| Model") and release:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            precision = cells[2] if release != "25.09" else ""
            out[(release, system, cells[0], precision)] = cells
    return out


@pytest.mark.skipif(not MIRROR.is_dir(), reason="the Megatron-Bridge source is not at hand")
def test_every_published_figure_matches_the_source_page():
    """Each row's printed columns against docs/performance-summary.md @ df0289c1 itself (25.09 has no
    Precision column)."""
    text = subprocess.run(["git", f"--git-dir={MIRROR}", "show", "df0289c1:docs/performance-summary.md"],
                          capture_output=True, text=True, check=True).stdout
    source = _source_rows(text)
    for r in ROWS:
        cells = source[(r.release, r.system, r.source_model, r.precision if r.precision_stated else "")]
        if r.precision_stated:
            del cells[2]
        _model, *numbers, vp, ep, ga, tokens, tflops = cells
        assert numbers == [str(n) for n in (r.gpus, r.gbs, r.mbs, r.seq_len, r.fsdp, r.tp, r.pp, r.cp)], r.case
        assert (1 if vp == "n/a" else int(vp), int(ep), int(ga)) == (r.vp, r.ep, r.ga), r.case
        assert (float(tokens), float(tflops.split()[0])) == (r.tokens_per_s_per_gpu, r.model_tflops_per_gpu), r.case


def test_a_row_is_written_as_a_scenario_in_code():
    row = BY_CASE["26.02-b200-dsv3-fp8mx-pp16ep8"]
    sc = bp.row_scenario(row, row.recompute, row.recompute_modules)
    tr, layout = sc.training, sc.resolve()
    assert (sc.devices, sc.hardware.name, sc.model.mtp_depth) == (256, "b200", 1)
    assert (tr.global_batch_sequences, tr.micro_batches, tr.seq_len) == (4096, 256, 4096)
    assert tr.global_batch_sequences // (tr.micro_batches * layout.dp) == row.mbs == 1
    # the recipe's list as given: Megatron checkpoints the attention core only when core_attn is named (session 21,
    # coreattn); Megatron's default ["core_attn"] only where a selective recipe gives no list
    assert (tr.gemm_scaling, tr.recompute, tr.recompute_modules) == ("mxfp8", "selective", ("mla_up_proj",))
    assert bp.row_scenario(row, "selective", ()).training.recompute_modules == ("core_attn",)
    assert (layout.tp, layout.pp, layout.ep, layout.dp, layout.vp) == (1, 16, 8, 16, 1)
    # the recipe's pipeline layout (16, 1): embedding + 4 decoder layers | 14 x 4 | 1 decoder layer + MTP + loss
    assert (layout.first_stage_layers, layout.last_stage_layers) == (4, 1)
    gb200 = BY_CASE["26.02-gb200-dsv3-fp8mx-pp4vp4ep64"]  # (4, 4): 16 chunks, a device holds every fourth
    lay = bp.row_scenario(gb200, "none", ()).resolve()
    assert stage_layers(61, lay.pp, lay.first_stage_layers, lay.last_stage_layers) == (16, 16, 16, 13)
    assert row.published_step_s == pytest.approx(4096 * 4096 / (2689 * 256))
    without = BY_CASE["25.11-gb200-dsv3-bf16-pp4vp4ep64"]
    assert bp.row_scenario(without, "none", ()).model.mtp_depth == 0  # "DeepSeekV3 (w/o MTP)"
    h100 = BY_CASE["26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8"]
    sc = bp.row_scenario(h100, h100.recompute, h100.recompute_modules)
    assert (sc.resolve().vp, sc.training.pipeline_schedule, sc.training.dispatch_backend) == (12, "interleaved",
                                                                                              "deepep")



def test_every_row_runs_the_fused_cross_entropy():
    """Megatron-Bridge's GPTModelProvider defaults cross_entropy_loss_fusion to True and its perf scripts set TE's
    impl on every row (session 23, bwfp8): the head prices TE's fused kernel (2 bytes a logit each way in BF16),
    not Megatron's unfused FP32 passes, and the head's forward is cheaper for it."""
    from moesim.ops.breakdown import operator_breakdown

    rows = ROWS + bp.load_newer_rows()
    assert all(bp.row_scenario(r, "none", ()).training.fused_cross_entropy for r in rows)
    row = BY_CASE["26.02-b200-dsv3-fp8mx-pp16ep8"]
    sc = bp.row_scenario(row, row.recompute, row.recompute_modules)
    head = [o for o in operator_breakdown(sc, sc.resolve()) if o.layer_class == "head" and o.kind == "memory"
            and o.name.startswith("cross_entropy")]
    assert {o.name for o in head} == {"cross_entropy_fused"}
    fwd = next(o for o in head if o.pass_ == "fwd")
    # 4096 tokens x 129,280 logits (DeepSeek-V3's vocabulary at tp 1), read and written once in BF16
    assert fwd.shape[0] == pytest.approx(2 * 2 * 4096 * 129280, rel=1e-6)
    unfused = bp.row_scenario(row, row.recompute, row.recompute_modules)
    unfused = dataclasses.replace(unfused, training=dataclasses.replace(unfused.training, fused_cross_entropy=False))
    slow = next(o for o in operator_breakdown(unfused, unfused.resolve()) if o.layer_class == "head"
                and o.name == "cross_entropy" and o.pass_ == "fwd")
    assert slow.time_s > 5 * fwd.time_s

def test_vp_moesim_cannot_write_is_named_not_hidden():
    """DeepSeek-V3's 61 layers do not split into pp·vp equal chunks: a row whose recipe names no pipeline layout is
    priced as 1F1B and the block says so."""
    row = BY_CASE["25.11-gb200-dsv3-bf16-pp4vp4ep64"]
    assert not row.pipeline_layout and bp.priced_vp(row, 61) == 1
    assert bp.priced_vp(BY_CASE["26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8"], 48) == 12
    priced = bp.price_row(row)
    assert priced.vp == 1 and any("vp 4 priced as 1F1B" in s for s in bp.not_written(priced))


def test_the_recipes_pipeline_layouts_are_priced_with_their_vp():
    """Session 21 (bridgekeys): the rows whose recipe gives a pipeline layout are priced with it, vp included: the
    (4, 4) DeepSeek-V3 map of deepseek_v3.py as 16 chunks, the 25.09 yaml's 'Et|(tt|)*30mL' as 32, Qwen3-235B-A22B's
    account_for_embedding / loss split as the layout it builds (96 = 94 + 2 slots over pp·vp)."""
    expect = {"26.02-gb200-dsv3-fp8mx-pp4vp4ep64": (4, 16, 13), "25.09-h100-dsv3-pp8vp4ep64tp2": (4, 7, 6),
              "26.02-h100-qwen3-235b-fp8cs-tp2pp8vp4ep32": (4, 11, 11),
              "26.02-b200-qwen3-235b-fp8mx-pp8ep8": (1, 11, 11), "26.02-b200-dsv3-fp8mx-pp16ep8": (1, 4, 1)}
    for case, (vp, first, last) in expect.items():
        row = BY_CASE[case]
        lay = bp.row_scenario(row, "none", ()).resolve()
        assert (lay.vp, lay.first_stage_layers, lay.last_stage_layers, lay.pipeline_layout) == (
            vp, first, last, row.pipeline_layout), case
        assert not any("priced as 1F1B" in s or "not stated" in s for s in bp.not_written(bp.price_row(row))), case
    assert sum(bool(r.pipeline_layout) for r in ROWS) == 7


def test_the_row_whose_printed_columns_disagree_is_named():
    """Model TFLOP/s over tokens/s is the page's own FLOPs per token: 23.0 G on every Qwen3-30B-A3B row but 26.02's
    H100 one (118 / 2557 = 46.1 G), 148 G on every Qwen3-235B-A22B row, 249-261 G on DeepSeek-V3's (260 with MTP,
    249-250 without)."""
    named = {r.case for r in ROWS if bp.flop_outlier(r, ROWS)}
    assert named == {"26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8"}
    assert BY_CASE["26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8"].published_gflop_per_token == pytest.approx(46.15, abs=0.01)
    assert {round(r.published_gflop_per_token) for r in ROWS if r.model == "qwen3-235b-a22b"} == {148}
    with_mtp = [r.published_gflop_per_token for r in ROWS if r.model == "deepseek-v3" and r.mtp]
    without = [r.published_gflop_per_token for r in ROWS if r.model == "deepseek-v3" and not r.mtp]
    assert min(with_mtp) > 259 and max(without) < 250


@pytest.mark.parametrize("row", ROWS, ids=[r.case for r in ROWS])
def test_each_row_prices_with_its_recorded_error(row):
    priced = bp.price_row(row)
    assert priced.step_s > 0
    assert priced.step_error * 100 == pytest.approx(RECORDED_ERROR_PCT[row.case], abs=1.0)


def test_bad_rows_are_named(tmp_path):
    good = bp.DATA.read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(good.replace("tokens_per_s_per_gpu = 3955", 'tokens_per_s_per_gpu = "fast"', 1), encoding="utf-8")
    with pytest.raises(SpecError, match=r"row\[0\]\.tokens_per_s_per_gpu must be float"):
        bp.load_rows(bad)
    bad.write_text(good.replace("ga = 64\n", "ga = 63\n", 1), encoding="utf-8")
    with pytest.raises(SpecError, match="mbs·ga·dp must equal gbs"):
        bp.load_rows(bad)
    bad.write_text(good.replace('moe_a2a_overlap = "off"', 'moe_a2a_overlap = "yes"', 1), encoding="utf-8")
    with pytest.raises(SpecError, match="unknown moe_a2a_overlap"):
        bp.load_rows(bad)
    bad.write_text(good.replace('precision = "FP8-MX"', 'precision = "FP4"', 1), encoding="utf-8")
    with pytest.raises(SpecError, match="unknown precision"):
        bp.load_rows(bad)
    bad.write_text(good.replace("first_stage_layers = 16", "first_stage_layers = 15", 1), encoding="utf-8")
    with pytest.raises(SpecError, match="pipeline layout has vp 4 and end stages of 16 / 13") as err:
        bp.load_rows(bad)
    assert err.value.field == "row[0].pipeline_layout"
    bad.write_text(good.replace('pipeline_layout = "Et*4|(t*4|)*14tmL"', 'pipeline_layout = "Et*4|(t*4|)*14tmX"', 1),
                   encoding="utf-8")
    with pytest.raises(SpecError, match="unknown layer symbols"):
        bp.load_rows(bad)
    bad.write_text(good.replace('pipeline_layout = ""\n', "", 1), encoding="utf-8")  # optional: "" when left out
    assert bp.load_rows(bad)[1].pipeline_layout == ""


def test_the_generated_block_is_current(load_script, doc_block):
    script = load_script("scripts/bridge_perf_check.py")
    block = doc_block("bridge_perf_check", "docs/operators.md")
    assert block == script.render().strip(), "run: python scripts/bridge_perf_check.py --write"


# Rows whose recipe's EP A2A overlap is priced (session 21, a2aoverlap): the simulator's excess allowed (+3.4 % seen;
# +2.0 % in Megatron's order with delay_wgrad_compute's W off the chain, a2aorder)
A2A_OVERLAP_DES = {"26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8": 0.04}


def test_the_simulator_runs_the_agreement_rows():
    """Both engines price one operator list: on the rows the simulator runs they agree within 2 % (as
    tests/des/test_des_agreement.py's tolerance)."""
    for case in bp.DES_CASES:
        priced = bp.price_row(BY_CASE[case], simulate=True)
        if case in A2A_OVERLAP_DES:  # 2-layer chunks with the EP A2A overlap: the simulator over the estimate (+3.4 %
            # with DualPipe's max per pair, +2.0 % in Megatron's order; a2aorder, not traced further)
            assert priced.step_s <= priced.des_step_s <= priced.step_s * (1 + A2A_OVERLAP_DES[case])
            continue
        assert priced.des_step_s == pytest.approx(priced.step_s, rel=0.02)
