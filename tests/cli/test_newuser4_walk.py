"""What a fourth newcomer's walk through the brief's three uses found (session 21, lane newuser4): each test but the
last failed on main at 486d9de (the last checks what the search's new line claims). The log is in
docs/collectives-history.md, "Session 21 (newuser4)"."""

from __future__ import annotations

import dataclasses
import json

import pytest

from moesim.cli import main
from moesim.api import estimate
from moesim.megatron_rules import megatron_layout_warnings
from moesim.search.enumerate import REASONS
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

SP_RULE = "megatron_moe_tp_needs_sequence_parallel"


@pytest.fixture(scope="module")
def mixtral():
    """Mixtral 8x7B with sequence parallelism off, as the scenario file read until the lead turned it on in session
    21 (Megatron-LM's own Mixtral script passes --sequence-parallel): the case these tests walk."""
    sc = load_scenario("mixtral-8x7b-h100")
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, sequence_parallel=False))


@pytest.fixture(scope="module")
def mixtral_file(tmp_path_factory):
    """The same, as a scenario file for the CLI."""
    text = open("scenarios/mixtral-8x7b-h100.toml").read()
    assert text.count("sequence_parallel = true") == 1
    path = tmp_path_factory.mktemp("sp_off") / "mixtral-8x7b-h100-sp-off.toml"
    path.write_text(text.replace("sequence_parallel = true", "sequence_parallel = false"))
    return str(path)


# `moesim estimate mixtral-8x7b-h100 --layout "dp=8 tp=2 ep=8 pp=4"` priced a layout Megatron-LM refuses (an MoE layer
# at tp > 1 without sequence parallelism, moe_layer.py l.258) with no word, while `moesim search` refuses it: the
# estimate now warns, naming the rule and its source line, in the text and in --json's `warnings`.
def test_estimate_warns_when_an_explicit_layout_breaks_a_megatron_rule(capsys, mixtral_file):
    assert main(["estimate", mixtral_file, "--layout", "dp=8 tp=2 ep=8 pp=4"]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("warning: Megatron-LM refuses this layout"))
    assert f"[{SP_RULE}]" in line and "moe_layer.py l.258" in line and "priced as given" in line
    assert main(["estimate", mixtral_file, "--layout", "dp=4 tp=16 ep=8 pp=1", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["warnings"]
    names = [w.rsplit("[", 1)[1].split("]")[0] for w in said if w.startswith("Megatron-LM refuses")]
    assert names == ["megatron_query_groups_not_divisible_by_tp", SP_RULE]  # 8 kv heads, tp 16; SP off
    assert "transformer_config.py l.696" in said[0]


def test_no_megatron_warning_where_the_search_would_rank_the_layout(mixtral):
    # the scenario's own layout (tp 1), framework "none" (DeepSeek-V3's HAI-LLM) and a TPU scenario keep tp > 1 quiet
    assert not [w for w in estimate(mixtral).warnings if w.startswith("Megatron-LM")]
    tp2 = Layout(dp=8, tp=2, ep=8, pp=4)
    assert megatron_layout_warnings(mixtral, tp2)
    with_sp = dataclasses.replace(mixtral, training=dataclasses.replace(mixtral.training, sequence_parallel=True))
    assert megatron_layout_warnings(with_sp, tp2) == []
    assert megatron_layout_warnings(load_scenario("deepseek-v3-h800"), Layout(dp=32, tp=2, ep=64, pp=16)) == []
    assert megatron_layout_warnings(load_scenario("switch-base-128-tpu-v3"), Layout(dp=16, tp=2, ep=32)) == []


def test_the_warning_and_the_search_apply_the_same_rules(mixtral):
    """Every layout the search refuses for a Megatron rule warns with that rule, and no ranked one warns."""
    from moesim.search import enumerate_layouts

    found = enumerate_layouts(mixtral)
    cands = found.candidates
    seen = {(int(cands.tp[i]), int(cands.ep[i]), int(cands.etp[i])) for i in range(len(cands))}
    for tp, ep, etp in seen:
        assert megatron_layout_warnings(mixtral, Layout(dp=64 // tp, tp=tp, ep=ep, etp=etp)) == []
    assert found.rejected[SP_RULE] > 0 and all(tp == 1 for tp, _, _ in seen)


# `simulate` with such a layout ran it without a word either: it now says so on stderr (moesim: warning: ...).
def test_simulate_warns_when_an_explicit_layout_breaks_a_megatron_rule(monkeypatch, capsys, mixtral_file):
    import moesim.des

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(moesim.des, "simulate", stop)  # the warning is given before the simulation runs
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Stop):
            from moesim.cli import build_parser

            args = build_parser().parse_args(["simulate", mixtral_file, "--layout", "dp=8 tp=2 ep=8 pp=4",
                                              "-q"])
            args.run(args)
    said = [str(w.message) for w in caught]
    assert any(f"[{SP_RULE}]" in w and "moe_layer.py l.258" in w for w in said), said


# `moesim search mixtral-8x7b-h100` ranked tp = 1 only; the reason row said "set it true for tp > 1" but not what the
# user loses or that Megatron's own Mixtral script passes --sequence-parallel. The search now says, under the
# rejection table, that the ranking has tp = 1 only and how to rank tp > 1; the scenario files cite the script.
def test_search_says_the_ranking_has_tp_1_only_when_sequence_parallel_is_off(capsys, mixtral_file):
    assert main(["search", mixtral_file, "--top", "1"]) == 0
    text = capsys.readouterr().out
    assert "sequence_parallel is false in the scenario" in text
    assert f"167,472 layouts at tp > 1 were refused [{SP_RULE}], not priced, so the ranking has tp = 1 only" in text
    assert "--vary training.sequence_parallel=false,true" in text
    for name in ("mixtral-8x22b-h100", "mixtral-8x7b-h100"):  # SP on (the 8x7B since session 21): no such line
        assert main(["search", name, "--top", "1"]) == 0
        assert "sequence_parallel is false" not in capsys.readouterr().out
    for name in ("mixtral-8x7b-h100", "mixtral-8x7b-h100-vp8"):
        source = open(f"scenarios/{name}.toml").read()
        assert "train_mixtral_8x7b_distributed.sh (9b8acfd) passes --sequence-parallel" in source
    assert "moe_layer.py l.258" in REASONS[SP_RULE]


def test_report_notes_say_the_ranking_has_tp_1_only_when_sequence_parallel_is_off(mixtral):
    from moesim.report.layouts import layouts_to_compare

    note = layouts_to_compare(mixtral, mixtral.resolve()).note
    assert "sequence_parallel is false in the scenario" in note and "the ranking has tp = 1 only" in note
    for name in ("mixtral-8x22b-h100", "mixtral-8x7b-h100"):
        sp_on = load_scenario(name)
        assert "sequence_parallel" not in layouts_to_compare(sp_on, sp_on.resolve()).note


def test_sequence_parallel_moves_no_tp_1_figure(mixtral):
    """What the search's line claims: Megatron turns SP off at tp 1, and so does moesim's pricing."""
    with_sp = dataclasses.replace(mixtral, training=dataclasses.replace(mixtral.training, sequence_parallel=True))
    for layout in (None, "dp=64 tp=1 ep=2 pp=1 etp=4 mb=2 zero=2 recompute=none"):
        off, on = estimate(mixtral, layout), estimate(with_sp, layout)
        assert (off.step_time_s, off.memory_bytes_per_device) == (on.step_time_s, on.memory_bytes_per_device)


# `moesim sweep switch-c-2048-tpu-v3 --vary training.precision_recipe=bf16,te-delayed-scaling` failed from inside the
# search with "field 'chip.peak_tflops_per_chip': no peak FLOP/s for float8 on TPU v3", naming neither the sweep point
# nor --vary; it now fails before any search, naming both.
def test_sweep_point_whose_gemms_have_no_peak_on_the_chip_is_named(capsys):
    assert main(["sweep", "switch-base-128-tpu-v3", "--vary", "training.precision_recipe=bf16,te-delayed-scaling",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert "field '--vary': training.precision_recipe=te-delayed-scaling is invalid" in err
    assert "no peak FLOP/s for float8 on TPU v3 (allowed: bfloat16, float32)" in err
    assert "Traceback" not in err
