"""Megatron's pipeline layout string as a layout key (moesim.specs.pipeline_layout; session 21, bridgekeys): parsed
as Megatron-LM parses it, checked against pp·vp and the model, read by both engines (per-device layers, each
chunk's layers in the simulator, uneven chunks' activations in flight in the estimate)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.des import SimOptions, simulate
from moesim.errors import SpecError
from moesim.estimate import evaluate, step_estimate
from moesim.estimate.candidates import single
from moesim.estimate.schedules import in_flight, layout_in_flight, layout_pipe_s
from moesim.collectives.select import model_for
from moesim.specs import pipeline_layout as pl
from moesim.specs.layout import Layout, parse_layout_text
from moesim.specs.load import load_scenario

DSV3_44 = "Et*4|(t*4|)*14tmL"  # Megatron-Bridge df0289c1 deepseek_v3.py layout_map[(4, 4)] (and (16, 1))


def test_megatron_grammar_unrolls_groups_and_repeats():
    # Megatron-LM pipeline_parallel_layer_layout.py parse_str_to_list docstring: "Ettt|(tt|)*29,m|L"
    stages = pl.expand("Ettt|(tt|)*29,m|L")
    assert stages == ("Ettt",) + ("tt",) * 29 + ("m", "L")
    assert pl.expand("(ab|)*2".replace("a", "t").replace("b", "t")) == ("tt", "tt", "")


def test_the_recipe_layouts_give_the_recipes_devices():
    four = pl.parse(DSV3_44, 4)  # 16 virtual stages, device d holds d, d + 4, d + 8, d + 12
    assert (four.vp, four.device_layers) == (4, (16, 16, 16, 13))
    assert four.chunk_layers[3::4] == (4, 4, 4, 1)
    sixteen = pl.parse(DSV3_44, 16)
    assert (sixteen.vp, sixteen.device_layers) == (1, (4,) + (4,) * 14 + (1,))
    old = pl.parse("Et|(tt|)*30mL", 8)  # Megatron-Bridge fa0315ae2 deepseek_v3_llm_pretrain.yaml
    assert (old.vp, old.device_layers, old.chunk_layers[-1]) == (4, (7, 8, 8, 8, 8, 8, 8, 6), 0)


@pytest.mark.parametrize("text, pp, message", [
    ("Et*4|tX|L", 1, "unknown layer symbols"),
    ("Et|t|tL", 2, "not a multiple of pp = 2"),
    ("t|tL", 2, "'E' .* exactly once"),
    ("Et|mtL", 2, "decoder layers must be placed before MTP"),
    ("|Et|t|L", 2, "first virtual stage"),
    ("Et|tm|t|L", 2, "decoder layers must be placed before MTP"),
    ("Et|t|m|L", 2, "MTP modules on the last virtual stage"),
    ("", 1, "expected a Megatron pipeline layout"),
])
def test_bad_layouts_are_named(text, pp, message):
    with pytest.raises(SpecError, match=message) as err:
        pl.parse(text, pp)
    assert err.value.field == "layout.pipeline_layout"


def _dsv3(layout_text: str, devices: int = 256, **training):
    sc = load_scenario("deepseek-v3-h800", devices=devices)
    training = {"micro_batches": 64, "global_batch_sequences": 4096} | training
    tr = dataclasses.replace(sc.training, pipeline_schedule="interleaved", **training)
    return dataclasses.replace(sc, training=tr), parse_layout_text(layout_text)


def test_a_scenario_reads_vp_and_the_end_stages_off_the_layout():
    sc, given = _dsv3(f"dp=64,ep=64,pp=4,pipeline_layout={DSV3_44}")
    layout = sc.resolve(given)
    assert (layout.vp, layout.first_stage_layers, layout.last_stage_layers) == (4, 16, 13)
    assert layout.stage_layers(61) == (16, 16, 16, 13)
    assert parse_layout_text(layout.describe())["pipeline_layout"] == DSV3_44  # the layout line reads back


@pytest.mark.parametrize("extra, message", [
    (",vp=2", "vp = 2 but the pipeline layout has 16 virtual stages"),
    (",first_stage_layers=15", "first_stage_layers = 15 but the pipeline layout puts 16"),
])
def test_a_layout_that_contradicts_the_scenario_is_refused(extra, message):
    sc, given = _dsv3(f"dp=64,ep=64,pp=4,pipeline_layout={DSV3_44}{extra}")
    with pytest.raises(SpecError, match=message):
        sc.resolve(given)


def test_a_layout_for_another_model_is_refused():
    sc, given = _dsv3("dp=64,ep=64,pp=4,pipeline_layout=Et*4|(t*4|)*14tL")
    with pytest.raises(SpecError, match="0 MTP layers .* the model 1"):
        sc.resolve(given)
    sc, given = _dsv3("dp=64,ep=64,pp=4,pipeline_layout=Et*4|(t*4|)*13t*3|tmL")
    with pytest.raises(SpecError, match="60 decoder layers .* the model 61"):
        sc.resolve(given)


def test_middle_devices_off_moesims_split_are_refused_not_guessed():
    # devices (8, 10, 6, 8) of 32 layers: moesim's split of the middle 16 is (8, 8), not (10, 6)
    problems = pl.layout_problems(pl.parse("Et*8|t*10|t*6|t*8L", 4), num_layers=32, mtp_depth=0, vp=1,
                                  first=None, last=None)
    assert len(problems) == 1 and "not priced" in problems[0] and "[8, 10, 6, 8]" in problems[0]
    assert pl.layout_problems(pl.parse("Et*8|t*8|t*8|t*8L", 4), num_layers=32, mtp_depth=0, vp=1,
                              first=None, last=None) == []


def test_uneven_chunks_hold_their_own_layers_in_flight():
    """Interleaved warm-up runs chunk (k mod p·v) // p for the k-th forward (Megatron-LM schedules.py
    get_model_chunk_id): DeepSeek-V3's last device (chunks 4, 4, 4, 1) holds 13 forwards, 4 of each full chunk and
    one of the last: 49 layer-micro-batches over 13 layers, against 13 / 4 at equal chunks."""
    four = pl.parse(DSV3_44, 4)
    assert layout_in_flight(four.chunk_layers, 4, 4, 64, 3) == pytest.approx(49 / 13)
    for s in range(3):  # equal chunks: the closed form
        assert layout_in_flight(four.chunk_layers, 4, 4, 64, s) == pytest.approx(
            float(in_flight(np.array("interleaved"), 64, 4, 4, s)))


def test_both_engines_price_the_layout_and_agree():
    """The estimate and the simulator read one layout: the simulator gives each of the 16 chunks its layers (the
    last chunk 1 layer + MTP), the estimate the devices' sums; they agree within the agreement tests' 2 %."""
    sc, given = _dsv3(f"dp=32,ep=32,pp=4,pipeline_layout={DSV3_44}", 128, micro_batches=16,
                      global_batch_sequences=512)
    layout = sc.resolve(given)
    ev = evaluate(sc, single(sc, layout), model_for(sc))
    est = step_estimate(sc, ev, 0)
    sim = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False))
    assert sim.step_times_s[0] == pytest.approx(est.step_time_s, rel=0.02)
    one_f = dataclasses.replace(sc, training=dataclasses.replace(sc.training, pipeline_schedule="1f1b"))
    plain = one_f.resolve(parse_layout_text("dp=32,ep=32,pp=4,first_stage_layers=16,last_stage_layers=13"))
    est_1f1b = step_estimate(one_f, evaluate(one_f, single(one_f, plain), model_for(one_f)), 0)
    assert est.bubble_time_s < est_1f1b.bubble_time_s  # the interleaved chunks shrink the bubble


@pytest.mark.parametrize("p, v, m", [(4, 2, 8), (4, 4, 16), (8, 2, 16), (2, 3, 4)])
def test_equal_chunks_give_narayanans_interleaved_step(p, v, m):
    """Equal chunks, t per device per micro-batch: m·t + (p − 1)·t/v (Narayanan et al. SC'21 §2.2.2), the table's
    row, from the fill bound of the last device."""
    t = 6.0
    chunk = np.full(p * v, t / v)
    assert layout_pipe_s(chunk, chunk / 3, m, p, v) == pytest.approx(m * t + (p - 1) * t / v)


def test_a_heavy_first_chunk_waits_in_its_warm_up():
    """p = 2, v = 2, m = 2, chunk times (6, 3, 3, 3), forwards a third: the fill bounds give 18 on both devices;
    device 0 runs its 4 forwards (2 + 2 + 1 + 1 = 6), then its first backward (chunk 1's, virtual stage 2) waits for
    micro-batch 0's forward through the 4 virtual stages (5) and virtual stage 3's backward (2): 5 + 2 + (18 − 6)
    = 19. (Megatron's order run by hand reaches 21: a bound from below.)"""
    chunk = np.array([6.0, 3.0, 3.0, 3.0])
    assert layout_pipe_s(chunk, chunk / 3, 2, 2, 2) == pytest.approx(19.0)


def test_the_estimate_prices_uneven_chunks_in_its_bubble():
    """Mixtral 8x7B, pp 4 vp 2, chunks (3, 4, 4, 4, 5, 4, 4, 4): the devices' sums equal the even layout's, so the
    estimate priced both alike (2.3408 s, the simulator −1.18 % under the uneven one); with each chunk's time in the
    bubble it is within 0.5 % (−0.35 %; +0.30 % with session 22's interleaved gradient sync chunk by chunk), and
    below the even layout's."""
    sc = load_scenario("mixtral-8x7b-h100")
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, pipeline_schedule="interleaved"))
    uneven = Layout(dp=16, ep=8, pp=4, vp=2, first_stage_layers=8, last_stage_layers=8,
                    pipeline_layout="Et*3|t*4|t*4|t*4|t*5|t*4|t*4|t*4L")
    est = step_estimate(sc, evaluate(sc, single(sc, uneven), model_for(sc)), 0)
    even = Layout(dp=16, ep=8, pp=4, vp=2)
    est_even = step_estimate(sc, evaluate(sc, single(sc, even), model_for(sc)), 0)
    sim = simulate(sc, uneven, SimOptions(contention=False, expected_loads=True, trace=False))
    assert sim.step_times_s[0] == pytest.approx(est.step_time_s, rel=0.005)
    assert est.step_time_s < est_even.step_time_s
