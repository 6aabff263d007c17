"""Pipeline stages: the layer split (even, uneven, fixed end stages), its spec plumbing, and the
analytical model over uneven stages (representatives = every stage; DeepSeek-V3's 61 layers on 16)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from moesim.collectives.select import default_model, model_for
from moesim.errors import SpecError
from moesim.estimate import estimate, evaluate
from moesim.estimate import stages as stages_module
from moesim.estimate.candidates import single
from moesim.specs.layout import Layout, layout_problems, parse_layout_text, resolve_layout, stage_layers
from moesim.specs.load import load_model, load_scenario
from moesim.workload import build_workload, stage_class_counts, stage_ranges

REPO = Path(__file__).resolve().parents[1]
DS_SPLIT = (3, 3) + (4,) * 13 + (3,)  # 61 = 16·3 + 13: the 13 leftovers on stages 14, 13, …, 2


# The split ------------------------------------------------------------------------------------

@pytest.mark.parametrize("layers, pp, sizes", [
    (24, 4, (6, 6, 6, 6)),  # divisible: L/pp each, as before
    (61, 16, DS_SPLIT),
    (8, 3, (3, 3, 2)),  # leftovers: stage 1 (the only middle one), then the first stage
    (7, 2, (4, 3)),  # no middle stage: the first stage before the last
    (5, 4, (1, 1, 2, 1)),  # one leftover: the last middle stage
    (7, 4, (2, 2, 2, 1)),  # pp − 1 leftovers: every middle stage and the first; never the last
    (32, 6, (5, 5, 5, 6, 6, 5)),
    (4, 4, (1, 1, 1, 1)),
    (10, 1, (10,)),
])
def test_automatic_split(layers, pp, sizes):
    assert stage_layers(layers, pp) == sizes


@pytest.mark.parametrize("first, last, sizes", [
    (2, None, (2,) + (4,) * 14 + (3,)),  # 59 over 15 stages: the 14 leftovers on the middle stages
    (None, 2, (3,) + (4,) * 14 + (2,)),  # 59 over 15: all 14 middle stages take one, the first none
    (1, 1, (1,) + (4,) * 11 + (5,) * 3 + (1,)),  # 59 over 14 middle stages: 3 leftovers on 14, 13, 12
])
def test_first_and_last_stage_overrides(first, last, sizes):
    """Megatron's --decoder-first/last-pipeline-num-layers; the rest split over the other stages by the rule."""
    assert stage_layers(61, 16, first, last) == sizes


def test_overrides_on_two_stages_must_add_up():
    assert stage_layers(10, 2, 3, 7) == (3, 7)
    assert stage_layers(10, 2, 3) == (3, 7) and stage_layers(10, 2, last=4) == (6, 4)


@pytest.mark.parametrize("args, message", [
    ((3, 4), "layers = 3 is fewer than pp = 4 stages (each stage needs one layer or more)"),
    ((10, 1, 3), "first_stage_layers = 3 needs pp >= 2 (pp = 1)"),
    ((10, 2, 3, 3), "first_stage_layers = 3, last_stage_layers = 3 must add up to layers = 10 with pp = 2"),
    ((10, 3, 5, 5), "first_stage_layers = 5, last_stage_layers = 5 leaves 0 of layers = 10 for the other 1 of "
                    "pp = 3 stages (one or more each needed)"),
    ((10, 4, None, 8), "last_stage_layers = 8 leaves 2 of layers = 10 for the other 3 of pp = 4 stages"),
])
def test_impossible_splits_say_why(args, message):
    with pytest.raises(SpecError) as info:
        stage_layers(*args)
    assert message in str(info.value)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), layers=st.integers(1, 200))
def test_split_sizes_sum_and_balance(data, layers):
    """No overrides: sizes sum to L, differ by at most 1, L/pp each when pp | L; the last stage (logits)
    never takes a leftover and a middle stage is never lighter than an end stage."""
    pp = data.draw(st.integers(1, layers))
    sizes = stage_layers(layers, pp)
    assert len(sizes) == pp and sum(sizes) == layers and min(sizes) >= 1
    assert max(sizes) - min(sizes) <= 1
    assert sizes[-1] == layers // pp
    if layers % pp == 0:
        assert set(sizes) == {layers // pp}
    if pp >= 3:
        assert min(sizes[1:-1]) >= max(sizes[0], sizes[-1])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), layers=st.integers(2, 120))
def test_split_with_overrides_keeps_the_fixed_ends(data, layers):
    pp = data.draw(st.integers(2, layers))
    first = data.draw(st.none() | st.integers(1, layers))
    last = data.draw(st.none() | st.integers(1, layers))
    try:
        sizes = stage_layers(layers, pp, first, last)
    except SpecError:
        free = pp - (first is not None) - (last is not None)
        left = layers - (first or 0) - (last or 0)
        assert left < free or (free == 0 and left != 0)
        return
    assert sum(sizes) == layers and min(sizes) >= 1
    assert first is None or sizes[0] == first
    assert last is None or sizes[-1] == last
    rest = [s for i, s in enumerate(sizes) if not (i == 0 and first) and not (i == pp - 1 and last)]
    assert not rest or max(rest) - min(rest) <= 1


# Spec plumbing -------------------------------------------------------------------------------

def test_layout_keys_parse_describe_and_dict():
    given_ = parse_layout_text("dp=128,ep=64,pp=16,first_stage_layers=2,last_stage_layers=3")
    assert given_["first_stage_layers"] == 2 and given_["last_stage_layers"] == 3
    layout = resolve_layout(given_, devices=2048, num_experts=256)
    assert (layout.first_stage_layers, layout.last_stage_layers) == (2, 3)
    assert layout.describe() == "dp=128,tp=1,ep=64,pp=16,first_stage_layers=2,last_stage_layers=3"
    assert resolve_layout(parse_layout_text(layout.describe()), devices=2048, num_experts=256) == layout
    assert layout.as_dict()["first_stage_layers"] == 2
    assert "first_stage_layers" not in Layout(dp=2, pp=2).as_dict()  # unchanged output without overrides
    assert layout.stage_layers(61) == (2,) + (4,) * 14 + (3,)


@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_layout_rejects_bad_stage_counts(value):
    with pytest.raises(SpecError, match="layout.first_stage_layers"):
        Layout(dp=1, pp=2, first_stage_layers=value)


def _problems(layout: Layout, layers: int) -> list[str]:
    return layout_problems(layout, devices=layout.devices, num_experts=1, num_heads=8, num_kv_heads=8, d_ff=64,
                           expert_d_ff=64, num_layers=layers, global_batch_sequences=64, micro_batches=1)


def test_layout_problems_allow_uneven_and_reject_too_many_stages():
    assert _problems(Layout(dp=1, pp=16), 61) == []
    assert _problems(Layout(dp=1, pp=8), 7) == ["layers = 7 is fewer than pp = 8 stages (each stage needs one "
                                                "layer or more)"]
    assert _problems(Layout(dp=1, pp=4, first_stage_layers=6), 8) == [
        "first_stage_layers = 6 leaves 2 of layers = 8 for the other 3 of pp = 4 stages (one or more each needed)"]


def test_scenario_file_takes_the_end_stage_keys(tmp_path):
    text = (REPO / "scenarios" / "deepseek-v3-h800.toml").read_text()
    assert "first_stage_layers = 3" in text and "last_stage_layers = 2" in text  # the shipped file sets both
    text = text.replace("first_stage_layers = 3", "first_stage_layers = 2")
    (tmp_path / "s.toml").write_text(text)
    scenario = load_scenario(str(tmp_path / "s.toml"))
    layout = scenario.resolve()
    assert layout.stage_layers(61) == (2,) + (4,) * 13 + (5,) + (2,)
    # A device override keeps pp and therefore the end stages; the estimate carries them.
    assert load_scenario(str(tmp_path / "s.toml"), devices=1024).resolve().first_stage_layers == 2
    assert estimate(scenario).layout.last_stage_layers == 2
    (tmp_path / "bad.toml").write_text(text.replace("first_stage_layers = 2", "first_stage_layers = 60"))
    with pytest.raises(SpecError, match="first_stage_layers = 60, last_stage_layers = 2 leaves -1 of layers = 61 "
                                        "for the other 14"):
        load_scenario(str(tmp_path / "bad.toml")).resolve()
    (tmp_path / "typo.toml").write_text(text + "first_stage_layer = 2\n")
    with pytest.raises(SpecError, match="unknown key"):
        load_scenario(str(tmp_path / "typo.toml"))


def test_stage_ranges_and_class_counts_cover_every_layer_once():
    wl = build_workload(load_model("deepseek-v3"), 4096, 0)
    ranges = stage_ranges(wl, 16)
    # The MTP module (layer index 61, DeepSeek-V3 §2.2) ends the last stage; the split counts the 61 main layers.
    assert tuple(len(r) for r in ranges) == DS_SPLIT[:-1] + (DS_SPLIT[-1] + 1,)
    assert [i for r in ranges for i in r] == list(range(62)) and wl.num_layers == 61 and wl.mtp_layers == 1
    counts = stage_class_counts(wl, 16)
    assert counts.sum(axis=0).tolist() == [3, 58, 1]  # dense, MoE layers, the MTP module
    assert counts[0].tolist() == [3, 0, 0] and counts[1].tolist() == [0, 3, 0] and counts[2].tolist() == [0, 4, 0]
    assert counts[-1].tolist() == [0, 3, 1]
    assert stage_class_counts(wl, 16, 2, None)[0].tolist() == [2, 0, 0]


# The analytical model over uneven stages -------------------------------------------------------

def _all_stages(workload, p, first=None, last=None, v=False):
    """Every stage as its own representative: the maxima the model takes, over all pp stages (`v`: ZB-V's devices)."""
    counts, out, into, _ = stages_module._stage_kinds(workload, p, first, last, v)
    return np.arange(p), counts, out, into, np.ones(p), np.arange(p, dtype=float)


@pytest.mark.parametrize("scenario, devices, layout, schedule", [
    ("deepseek-v3-h800", None, None, None),
    ("deepseek-v3-h800", None, Layout(dp=128, ep=64, pp=16, first_stage_layers=2, last_stage_layers=2), None),
    ("deepseek-v3-h800", 1024, Layout(dp=128, ep=64, pp=8), None),  # 61 = 8·7 + 5
    ("switch-base-128-tpu-v3", None, Layout(dp=2, ep=2, pp=16), None),  # encoder-decoder, 24 layers: boundary tokens
    ("mixtral-8x7b-h100", None, Layout(dp=16, ep=8, pp=4, first_stage_layers=5), None),
    # ZB-V's start-up skew grows with a stage's position: a kind's last stage (Stages.latest), not its first.
    ("mixtral-8x7b-h100", None, Layout(dp=8, ep=8, pp=8, first_stage_layers=2), "zb-v"),
    # ZB-V's devices on their two V pieces (session 24, zbvpieces): an encoder-decoder's mix of both stacks
    ("switch-base-128-tpu-v3", None, Layout(dp=8, ep=8, pp=4), "zb-v"),
    ("switch-base-128-tpu-v3", None, Layout(dp=4, ep=4, pp=8), "zb-v"),
])
def test_representatives_give_the_maxima_over_every_stage(monkeypatch, scenario, devices, layout, schedule):
    """Slowest stage, memory (the maximum over stages) and every figure: the same from the
    representatives as from all pp stages."""
    sc = load_scenario(scenario, devices=devices)
    if schedule:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, pipeline_schedule=schedule))
    layout = layout or sc.resolve()
    sc.check(layout)
    model = default_model(sc.hardware)
    reps = evaluate(sc, single(sc, layout), model)
    monkeypatch.setattr(stages_module, "_representatives", _all_stages)
    full = evaluate(sc, single(sc, layout), model)
    for name in ("step_time_s", "memory_total_bytes", "slowest_stage", "memory_stage", "mfu", "bubble_time_s",
                 "optimizer_time_s", "exposed_communication_time_s"):
        assert np.array_equal(getattr(reps, name), getattr(full, name)), name


def test_deepseek_v3_61_layers_on_16_stages():
    sc = load_scenario("deepseek-v3-h800")
    assert sc.model.num_layers == 61
    layout = sc.resolve()
    ev = evaluate(sc, single(sc, layout), model_for(sc))  # the scenario's DeepEP dispatch backend
    assert np.isfinite(ev.step_time_s[0]) and ev.step_time_s[0] > 0 and 0 < ev.mfu[0] < 1
    sizes = layout.stage_layers(61)
    assert sizes == (3,) + (4,) * 14 + (2,)  # the scenario's first_stage_layers = 3, last_stage_layers = 2
    # Under DualPipe a device runs stages s and 15 - s, its F&B pairs at max(compute, collectives): the first
    # rank's pair (the embedding and 3 dense layers; 2 MoE layers, the MTP module and two BF16 head passes) has
    # more compute than the middle ranks' 4 + 4 MoE layers, whose all-to-alls their pairs hide, so it is the
    # slowest; by compute plus collectives (no overlap) a middle rank would be.
    assert int(ev.slowest_stage[0]) == 0
    # Under 1F1B the last stage alone is the slowest: two MoE layers, the MTP module and the two head passes
    # outweigh four MoE layers.
    one_f = dataclasses.replace(sc, training=dataclasses.replace(sc.training, pipeline_schedule="1f1b"))
    ev_1f = evaluate(one_f, single(one_f, layout), model_for(one_f))
    assert int(ev_1f.slowest_stage[0]) == 15
    # Memory peaks on stage 1 under 1F1B: four MoE layers with 15 micro-batches in flight outweigh the first stage's
    # three dense layers (d_ff 18432) with 16; under DualPipe too (the rank of stages 1 and 14). The scenario's
    # framework is DeepSeek's own (training.framework = "none"): no TransformerEngine dummy weight gradients, which with
    # Megatron + TE would put the output layer's [V, h] and the dense layers' shapes on the rank of stages 0 and 15
    # and make it the fullest (session 19, peakmem; opsfix).
    assert int(ev_1f.memory_stage[0]) == 1 and int(ev.memory_stage[0]) == 1
    te = dataclasses.replace(sc, training=dataclasses.replace(sc.training, framework="megatron-te"))
    assert int(evaluate(te, single(te, layout), model_for(te)).memory_stage[0]) == 15
    assert estimate(sc).step_time_s == float(ev.step_time_s[0])


def test_a_heavier_first_stage_sets_the_pipeline():
    """T_pipe = Σ_s T_mb(s) + (m − 1) · max_s T_mb(s) (Alpa, Zheng et al. OSDI 2022, §5 Eq. 2): a layer moved onto
    the first stage makes it the slowest, and the bubble is the other stages' time."""
    sc = load_scenario("mixtral-8x7b-h100", devices=48)
    even_ish, heavy = Layout(dp=16, ep=8, pp=3), Layout(dp=16, ep=8, pp=3, first_stage_layers=12)
    assert even_ish.stage_layers(32) == (11, 11, 10) and heavy.stage_layers(32) == (12, 10, 10)
    model = default_model(sc.hardware)
    a, b = (evaluate(sc, single(sc, lay), model) for lay in (even_ish, heavy))
    assert int(a.slowest_stage[0]) in (0, 1) and int(b.slowest_stage[0]) == 0
    assert b.step_time_s[0] > a.step_time_s[0]
    # The bubble is Σ_s T_mb(s) − max_s T_mb(s), the stages other than the slowest: 10 + 10 layers against
    # 11 + 10 (every layer is alike; the ends' embedding and head in both). Session 18 (pipebound): it was
    # (pp − 1) slowest-stage micro-batches, 12 layers against 11.
    ratio = b.bubble_time_s[0] / a.bubble_time_s[0]
    assert ratio == pytest.approx(20 / 21, rel=0.01)


def test_stage_multiplicity_counts_every_stage_once():
    """Each representative stands for the stages of its kind: the multiplicities sum to pp (pads 0), so the
    1F1B / GPipe sum over stages (Alpa Eq. 2) counts every stage once."""
    wl = build_workload(load_model("deepseek-v3"), 4096, 0)
    pp = np.array([16, 8, 4, 1, 16])
    st_ = stages_module.pipeline_stages(wl, pp, np.array([3, 0, 0, 0, 0]), np.array([2, 0, 0, 0, 0]))
    assert st_.multiplicity.sum(axis=1).tolist() == pp.tolist()
    assert np.all((st_.multiplicity > 0) == (st_.index >= 0))
    # Stages 3 | 4 x 14 | 2 (+ MTP): the first (three dense layers), 14 alike of four MoE layers, the last.
    assert st_.multiplicity[0].tolist() == [1, 14, 1, 0] and st_.index[0].tolist() == [0, 1, 15, -1]
    # The automatic split of 61 on 16 (DS_SPLIT): three dense layers, three MoE layers, 13 alike of four, the last.
    assert st_.multiplicity[4].tolist() == [1, 1, 13, 1] and st_.index[4].tolist() == [0, 1, 2, 15]


def test_zbv_devices_hold_their_two_v_pieces():
    """ZB-V's device d runs pieces d and 2p − 1 − d of workload.v_shape_ranges (as des.costs places them): where that
    mix differs from contiguous stage d (an encoder-decoder) a ZB-V row's stages are the devices' pieces, the first-leg
    piece's layers apart (session 24, zbvpieces); a model of one layer class keeps its contiguous stages."""
    from moesim.workload import v_shape_ranges

    sc = load_scenario("switch-c-2048-tpu-v3")
    wl = build_workload(sc.model, *sc.seq_lens)
    pieces = v_shape_ranges(wl, 4)
    assert stages_module.v_apart(wl, 4)
    pp, zbv = np.array([4, 4]), np.array([True, False])
    v = stages_module.v_rows(wl, pp, None, None, zbv)
    assert v.tolist() == [True, False]
    st_ = stages_module.pipeline_stages(wl, pp, None, None, v)
    leg = stages_module.first_leg_counts(wl, pp, None, None, v, zbv, st_.index.shape[1])
    for column, device in enumerate(st_.index[0]):
        if device < 0:
            continue
        expected, first = np.zeros(len(wl.classes)), np.zeros(len(wl.classes))
        for k in (device, 7 - device):
            for layer in pieces[k]:
                expected[wl.layer_class_index[layer]] += 1
                first[wl.layer_class_index[layer]] += k == device
        assert st_.counts[0, column].tolist() == expected.tolist()
        assert leg[0, column].tolist() == first.tolist()
    contiguous = stage_class_counts(wl, 4)
    assert [st_.counts[1, c].tolist() for c, s in enumerate(st_.index[1]) if s >= 0] == \
        [contiguous[s].tolist() for s in st_.index[1] if s >= 0]
    assert not leg[1].any()
    # one layer class (the Llama slice): the V's devices are the contiguous stages, nothing moves
    llama = load_scenario("llama3-70b-l12-b200-tp8")
    assert stages_module.v_rows(build_workload(llama.model, *llama.seq_lens), np.array([4]), None, None,
                                np.array([True])) is None
