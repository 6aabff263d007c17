"""What a fifth newcomer's walk through the what-if (sweep) and calibrate uses found (session 22, lane newuser5):
each test failed on main at 00509f4. The log is in docs/collectives-history.md, "Session 22 (newuser5)"."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moesim.cli import main
from moesim.errors import SpecError
from moesim.search.overrides import parse_value
from moesim.search.rank import search
from moesim.search.sweep import failed_status, parse_vary, run_sweep
from moesim.specs.load import load_scenario
from moesim.specs.training import TrainingSpec

ROOT = Path(__file__).resolve().parent.parent.parent
LOGS = ROOT / "tests" / "data" / "nccl"


def scenario_file(tmp_path: Path, base: str, training: str = "", name: str = "s.toml") -> str:
    """A bundled scenario with `training` lines added at the top of its [training] table."""
    text = (ROOT / "scenarios" / f"{base}.toml").read_text()
    assert text.count("[training]\n") == 1
    path = tmp_path / name
    path.write_text(text.replace("[training]\n", f"[training]\n{training}\n"))
    return str(path)


def error_of(capsys, argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


# --- CUDA graph modules Megatron-LM refuses (NVIDIA/Megatron-LM @ d98e8a64 transformer_config.py l.2817-2858);
# main priced each of them.

def test_full_recompute_with_per_layer_graphs_is_refused():
    with pytest.raises(SpecError, match="full recomputation runs with per-layer CUDA graphs only as a whole") as err:
        TrainingSpec(global_batch_sequences=8, recompute="full", cuda_graph_scope=("attn",))
    assert err.value.field == "training.recompute" and err.value.allowed == ("none", "selective")
    # the whole-iteration graph runs with it (Megatron asserts only the per-layer implementations)
    TrainingSpec(global_batch_sequences=8, recompute="full", cuda_graph_scope=("full_iteration",))


def test_moe_and_moe_router_graphs_together_are_refused():
    with pytest.raises(SpecError, match="moe and moe_router cannot both be captured") as err:
        TrainingSpec(global_batch_sequences=8, cuda_graph_scope=("moe", "moe_router"))
    assert err.value.field == "training.cuda_graph_scope"


def test_graph_modules_the_model_has_no_layer_for_are_refused(tmp_path, capsys):
    # Mixtral: every layer an MoE layer, so no dense MLP for `mlp` to capture
    err = error_of(capsys, ["estimate", scenario_file(tmp_path, "mixtral-8x7b-h100", 'cuda_graph_scope = ["mlp"]')])
    assert "field 'training.cuda_graph_scope': mlp captures dense MLP layers: every layer of 'mixtral-8x7b'" in err
    assert "(allowed: attn, moe, moe_router, moe_preprocess, full_iteration)" in err
    # Llama: no MoE layer for moe_router to capture
    err = error_of(capsys, ["estimate", scenario_file(tmp_path, "llama3-70b-l12-b200-tp8",
                                                      'cuda_graph_scope = ["attn", "moe_router"]')])
    assert "moe_router captures MoE layers: 'llama-3-70b-l12' has none" in err
    assert "(allowed: attn, mlp, full_iteration)" in err


def test_graphs_on_a_tpu_name_the_hardware_and_what_is_allowed(tmp_path, capsys):
    tpu = scenario_file(tmp_path, "switch-base-128-tpu-v3", 'cuda_graph_scope = ["attn"]')
    err = error_of(capsys, ["estimate", tpu])
    assert "CUDA graphs run on GPUs; hardware 'tpu-v3' is a tpu_core (allowed: [] (none) off a GPU)" in err


def test_a_list_key_given_a_string_names_the_entries(tmp_path, capsys):
    err = error_of(capsys, ["estimate", scenario_file(tmp_path, "mixtral-8x7b-h100", 'cuda_graph_scope = "attn"')])
    assert "field 'training.cuda_graph_scope': expected a list of names, got 'attn' (write [\"attn\"]) (allowed: a " \
           "list of attn, mlp, moe, moe_router, moe_preprocess, full_iteration)" in err
    err = error_of(capsys, ["estimate", scenario_file(tmp_path, "mixtral-8x7b-h100", "recompute_modules = 3")])
    assert "field 'training.recompute_modules': expected a list of names, got 3 (allowed: a list of core_attn" in err


def test_a_pipeline_layout_that_is_no_string_names_the_grammar(tmp_path, capsys):
    text = (ROOT / "scenarios" / "mixtral-8x7b-h100.toml").read_text().replace("[layout]\n",
                                                                              "[layout]\npipeline_layout = 4\n")
    (tmp_path / "pl.toml").write_text(text)
    err = error_of(capsys, ["estimate", str(tmp_path / "pl.toml")])
    assert "field 'layout.pipeline_layout': expected a string, got 4 (allowed: a string of pp·vp stages split by " \
           "'|' in E (embedding), t (decoder layer), m (MTP layer), L (loss)" in err


# --- The search ranked recompute modes the scenario's own options refuse (main ranked recompute=full layouts under
# training.moe_a2a_overlap, which TrainingSpec refuses, as Megatron-LM asserts: transformer_config.py l.3021-3023).

@pytest.fixture(scope="module")
def overlap_pp1():
    """Mixtral 8x7B at pp 1 with the EP A2A overlap (Megatron-Core's combined 1F1B without pipelining)."""
    sc = load_scenario("mixtral-8x7b-h100")
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, moe_a2a_overlap=True, micro_batches=4),
                               layout_given={"dp": 64, "tp": 1, "ep": 8, "pp": 1})


def test_the_search_ranks_no_recompute_mode_the_scenario_refuses(overlap_pp1):
    assert overlap_pp1.training.refused_recompute_modes().keys() == {"full"}
    result = search(overlap_pp1)
    assert result.ranked > 0
    assert {result.layout_dict(i)["recompute"] for i in range(result.ranked)} <= {"none", "selective"}
    only_full = dataclasses.replace(overlap_pp1, search=dataclasses.replace(overlap_pp1.search,
                                                                            recompute_modes=("full",)))
    with pytest.raises(SpecError, match="every mode searched is refused: full: moe_a2a_overlap cannot run") as err:
        search(only_full)
    assert err.value.field == "search.recompute_modes" and err.value.allowed == ("none", "selective")


# --- sweep: the session-21 list keys, every inapplicable point at once, notes once, the rule that closes the space,
# and why each point's step is what it is

def test_sweep_varies_the_training_lists():
    assert parse_value("training.cuda_graph_scope", "none") == ()
    assert parse_value("training.cuda_graph_scope", "attn+moe_router") == ("attn", "moe_router")
    assert parse_value("training.recompute_modules", "moe_act") == ("moe_act",)
    with pytest.raises(SpecError, match="'atn' is not allowed") as err:
        parse_value("training.cuda_graph_scope", "atn")
    assert "none" in err.value.allowed
    sweep = run_sweep(load_scenario("mixtral-8x7b-h100-vp8"), [parse_vary("training.cuda_graph_scope=none,attn")],
                      workers=1)
    plain, graphed = sweep["points"]
    assert plain["status"] == graphed["status"] == "ok"
    assert graphed["step_time_s"] < plain["step_time_s"]  # a launch per kernel saved in the attention


def test_a_sweep_names_every_point_that_does_not_apply(capsys):
    err = error_of(capsys, ["sweep", "switch-c-2048-tpu-v3", "--vary", "hardware=tpu-v2,tpu-v3,a100-80gb", "-q"])
    assert "field '--vary': 2 of the 3 points do not apply: hardware=tpu-v2 is invalid" in err
    assert "2048 devices is outside 1..512 for hardware profile 'tpu-v2'" in err
    assert "2048 devices is outside 1..1024 for hardware profile 'a100-80gb'" in err


def test_a_note_every_point_gives_is_said_once(capsys):
    assert main(["sweep", "switch-c-2048-tpu-v3", "--devices", "512", "--vary", "hardware=tpu-v4,b200", "--workers",
                 "1", "-q"]) == 0
    out = capsys.readouterr().out
    # 8.6 % over the encoder's and decoder's MoE layers (10.4 % the encoder's alone before session 23's newuser6)
    assert out.count("capacity rule 'switch' at capacity factor 1 drops 8.6%") == 1
    assert "warning at every point: capacity rule 'switch'" in out


def test_a_failed_point_names_the_rule_that_closes_the_space():
    """Each layout counts at the first rule it breaks: the most frequent (heads % tp, first in the order) says
    nothing of why an interleaved sweep point ranks nothing; the last rule to reject any does."""
    status = failed_status({"heads_not_divisible_by_tp": 3_893_076, "more_stages_than_layers": 179_172,
                            "interleaved_layers_not_divisible_by_pp_vp": 468_768, "interleaved_needs_pp_2": 20_076,
                            "out_of_memory": 0})
    assert status == ("no valid layout: every one breaks a rule (most often heads_not_divisible_by_tp, the last in "
                      "the search's order to reject any interleaved_needs_pp_2 (20,076), counts in rejected), none "
                      "was priced")


def test_each_sweep_point_says_why_its_step_is_what_it_is(capsys):
    sweep = run_sweep(load_scenario("switch-c-2048-tpu-v3"), [parse_vary("experts=2048,4096")], workers=1)
    base, more = sweep["points"]
    assert base["why"].startswith("the base the others are set against: compute ")
    assert more["why"].startswith("+1.291 s (+156.9%) against experts=2048: compute +919.00 ms")
    assert all("_estimate" not in p for p in sweep["points"])


# --- calibrate: the sign of every error, and what `noise` is, said in the text (main said the sign only under the
# layer total's line, and `noise` not at all)

def test_calibrate_and_validate_report_say_the_sign_and_the_noise(tmp_path, capsys):
    assert main(["calibrate", str(LOGS / "b200-aicr-1node_all_reduce_perf.log"), "--hardware", "b200",
                 "--gpus-per-thread", "8", "-o", str(tmp_path / "b.toml"), "--bootstrap", "0", "-q"]) == 0
    out = capsys.readouterr().out
    residuals = out.index("fit residuals (in-sample)")
    assert out.index("err = (predicted − measured) / measured: a negative mean err (bias) means the model predicts "
                     "faster than measured (under-predicts)") > residuals
    records = ROOT / "tests" / "calibrate" / "data" / "harness-cpu-clock-layers.jsonl"
    assert main(["validate-report", str(records), "--hardware", "cpu-localhost"]) == 0
    out = capsys.readouterr().out
    assert "err = (predicted − measured) / measured" in out
    assert "noise: the median over records of the measurement's run-to-run (p90 − p10) / (2 · median)" in out


# --- MXFP8 on a Hopper GPU was priced (the recipe's notes: "the recipe does not check the chip"); TransformerEngine
# refuses it below compute capability 10.0 (d0067d0d transformer_engine/pytorch/quantization.py l.162-168)

def test_mxfp8_on_hopper_is_refused_and_runs_on_blackwell(capsys):
    err = error_of(capsys, ["sweep", "mixtral-8x7b-h100", "--vary", "training.precision_recipe=mxfp8-blackwell", "-q"])
    assert "field 'training.gemm_scaling': MXFP8 GEMMs run on Blackwell GPUs only (TransformerEngine: compute " \
           "capability 10.0 or higher); hardware 'h100-sxm' is hopper (allowed: per_tensor_delayed, " \
           "per_tensor_current, blockwise)" in err
    sc = load_scenario("mixtral-8x7b-h100", hardware="gb300-nvl72")
    dataclasses.replace(sc, training=dataclasses.replace(sc.training, gemm_dtype="float8", gemm_scaling="mxfp8"))


def test_the_estimate_says_which_peak_its_mfu_is_of(capsys):
    """An FP8 recipe halves the MFU a BF16 run of the same speed shows (the float8 peak is twice bfloat16's): the
    text now names the peak's dtype."""
    assert main(["estimate", "mixtral-8x7b-h100"]) == 0
    assert "% of the bfloat16 peak" in capsys.readouterr().out
    sc = load_scenario("mixtral-8x7b-h100")
    from moesim.cli.estimate_cmd import render
    from moesim.estimate import estimate

    fp8 = dataclasses.replace(sc, training=dataclasses.replace(sc.training, gemm_dtype="float8",
                                                               gemm_scaling="per_tensor_current"))
    assert "% of the float8 peak" in render(estimate(fp8))
