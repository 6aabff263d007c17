"""A newcomer's second day (session 24, newuser7): `simulate`, `report`, `sweep`, `calibrate`, `validate` walked on
the bundled scenarios and HF-config models, with wrong input. Each test failed on main at cd72fd9 but the guards
said so. The log is in docs/collectives-history.md, "Session 24 (newuser7)"."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from moesim.cli import main
from moesim.specs.load import load_scenario

ROOT = Path(__file__).resolve().parent.parent.parent
TINY = ROOT / "tests" / "data" / "tiny-moe-decoder.toml"


def tiny_file(tmp_path: Path, model_extra: str = "", training_extra: str = "", hardware: str = "h100-sxm") -> Path:
    """The tiny MoE decoder (16 experts, RoPE, 8 layers) on 8 devices, with lines added to its model and training."""
    model = tmp_path / "tiny.toml"
    model.write_text(TINY.read_text().replace('default_seq_len = 1024\n', f'default_seq_len = 1024\n{model_extra}'))
    path = tmp_path / "s.toml"
    path.write_text(f'schema_version = 1\nname = "tiny"\nmodel = "{model.name}"\nhardware = "{hardware}"\n'
                    f'devices = 8\n[training]\nglobal_batch_sequences = 16\nseq_len = 1024\n{training_extra}'
                    '[layout]\nep = 8\n')
    return path


# --- (1) `simulate` printed neither the estimate's routing lines nor its warnings (the RoPE note, does not fit).

def test_simulate_prints_each_stacks_routing_lines(capsys):
    assert main(["simulate", "switch-base-128-tpu-v3", "--steps", "1", "-q"]) == 0
    text = capsys.readouterr().out
    for stack in ("encoder", "decoder"):
        assert f"tokens per device per layer ({stack})" in text and f"routing group / capacity ({stack})" in text
    assert "routing group / capacity (encoder)     1024 tokens / 10 slots per expert" in text
    assert main(["simulate", "switch-base-128-tpu-v3", "--steps", "1", "-q", "--json"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert main(["estimate", "switch-base-128-tpu-v3", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert sim["moe"] == est["moe"] and sim["moe"]["stack"] == "encoder"  # the estimate's figures, as it gives them
    assert sim["warnings"] == est["warnings"] and any(w.startswith("does not fit") for w in sim["warnings"])


def test_the_apis_sim_result_prints_its_warnings(tmp_path):
    from moesim import api

    sim = api.simulate(str(tiny_file(tmp_path, model_extra="max_position_embeddings = 512\n")), steps=1, trace=False)
    assert "warning" in repr(sim) and "max_position_embeddings 512" in repr(sim)
    assert sim.to_dict()["warnings"] == list(sim.warnings)


def test_simulate_says_a_sequence_runs_past_ropes_context(tmp_path, capsys):
    path = tiny_file(tmp_path, model_extra="max_position_embeddings = 512\n")
    assert main(["simulate", str(path), "--steps", "1", "-q"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "max_position_embeddings" in x]
    assert line.startswith("warning: training.seq_len 1,024 tokens exceeds the max_position_embeddings 512")
    assert "tokens per device per layer  " in out  # a decoder-only model: one unnamed pair of routing lines
    assert main(["simulate", str(path), "--steps", "1", "-q", "--json"]) == 0
    assert any("max_position_embeddings 512" in w for w in json.loads(capsys.readouterr().out)["warnings"])


def test_simulate_says_a_megatron_refusal_once(tmp_path, capsys):
    """The warning stderr gives already (session 22, newuser4) is not printed again on stdout."""
    path = tiny_file(tmp_path, training_extra="sequence_parallel = false\n")
    assert main(["simulate", str(path), "--layout", "dp=4,tp=2,ep=8", "--steps", "1", "-q"]) == 0
    said = capsys.readouterr()
    assert "sequence_parallel" in said.err and "sequence_parallel" not in said.out


# --- (2) `report` and `sweep` capacity-floor notes read only the encoder's routing group (Switch-C's decoder: 114
# tokens a group, floored up to capacity factor 35.9 where the encoder's 512 are floored below 8 only).

def test_sweep_notes_the_decoders_capacity_floor():
    from moesim.search.sweep import parse_vary, run_sweep

    sweep = run_sweep(load_scenario("switch-c-2048-tpu-v3"), [parse_vary("capacity_factor=8.0")], workers=1)
    (note,) = sweep["points"][0]["notes"]  # main: none (the encoder's group reaches 2 slots at 8)
    assert note.startswith("expert capacity floor (decoder): capacity factor 8 gives 0 slots per expert per routing "
                           "group of 114 tokens")


def test_report_panel_notes_both_stacks_floors():
    from moesim.report.analysis import capacity_factor_sweep

    switch_c = load_scenario("switch-c-2048-tpu-v3")
    note = capacity_factor_sweep(switch_c, switch_c.resolve()).note
    assert note.startswith("the expert capacity floor overrides capacity factors 1, 1.25, 1.5, 2, 3, 4 in the encoder "
                           "and capacity factors 1, 1.25, 1.5, 2, 3, 4 in the decoder (flat at 1, 1.25, 1.5, 2, 3, 4")
    assert "decoder: capacity factor 4 gives 0 slots per expert per routing group of 114 tokens" in note


def test_a_decoder_only_models_floor_note_is_as_before(tmp_path):
    from moesim.estimate import estimate
    from moesim.report.analysis import capacity_factor_sweep
    from moesim.search.sweep import overridden_notes

    # 16 experts, 2 sequences of 1,024 tokens a device: a floor of 4096 slots binds at every factor the panel tries
    scenario = load_scenario(str(tiny_file(tmp_path)))
    moe = dataclasses.replace(scenario.model.moe, min_expert_capacity=4096)
    scenario = dataclasses.replace(scenario, model=dataclasses.replace(scenario.model, moe=moe))
    note = capacity_factor_sweep(scenario, scenario.resolve()).note
    assert note.startswith("the expert capacity floor overrides capacity factors") and "(flat there): " in note
    (said,) = overridden_notes(scenario, estimate(scenario))
    assert said.startswith("expert capacity floor: capacity factor 1.25 gives")


# --- (3) training.te_op_fuser = true was accepted silently where nothing reads it.

@pytest.mark.parametrize("where, why", [
    ({}, "the experts of model 'tiny-moe-decoder' have no FC2 bias (ffn_bias = false)"),
    ({"model_extra": "ffn_bias = true\n", "training_extra": 'te_op_fuser = true\nframework = "none"\n'},
     "training.framework is 'none': no Megatron-Core TEGroupedMLP runs"),
])
def test_te_op_fuser_where_nothing_reads_it_says_so(tmp_path, capsys, where, why):
    where = {"training_extra": "te_op_fuser = true\n", **where}
    assert main(["estimate", str(tiny_file(tmp_path, **where))]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "te_op_fuser" in x]
    assert line == ("warning: training.te_op_fuser = true moves nothing: it says where Megatron-Core adds the experts' "
                    f"FC2 bias (inside TransformerEngine's fused ops), and {why}; priced as if it were not set")


def test_te_op_fuser_where_it_is_read_says_nothing(tmp_path, capsys):
    from moesim.unread_settings import te_op_fuser_note

    biased = {"model_extra": "ffn_bias = true\n", "training_extra": "te_op_fuser = true\n"}
    read = load_scenario(str(tiny_file(tmp_path, **biased)))
    assert te_op_fuser_note(read) is None
    unset = load_scenario(str(tiny_file(tmp_path)))
    assert te_op_fuser_note(unset) is None
    tpu = load_scenario(str(tiny_file(tmp_path, **biased, hardware="tpu-v4")))
    assert f"hardware 'tpu-v4' is not a GPU ({tpu.hardware.device_kind})" in te_op_fuser_note(tpu)


# --- (4) the search's uneven-chunks rejection named pipeline_layout but gave no example to copy.

def test_the_uneven_chunks_reason_gives_an_example_that_parses():
    from moesim.search.enumerate import REASONS, UNEVEN_CHUNKS_EXAMPLE
    from moesim.specs.pipeline_layout import parse

    reason = REASONS["interleaved_layers_not_divisible_by_pp_vp"]
    assert f"pp=8,vp=2,pipeline_layout={UNEVEN_CHUNKS_EXAMPLE}'" in reason
    layout = parse(UNEVEN_CHUNKS_EXAMPLE, 8)
    assert len(layout.chunk_layers) == 16 and sum(layout.chunk_layers) == 61  # as the reason says


# --- (5) found on the walk: a checkpoint's config.json given where a scenario or a profile goes was refused for the
# schema_version it lacks ("field 'schema_version': required key is missing"), not for what it is.

@pytest.mark.parametrize("argv, expected", [
    (["simulate", "CONFIG", "-q"], "scenario"), (["report", "CONFIG", "-o", "OUT"], "scenario"),
    (["estimate", "mixtral-8x7b-h100", "--hardware", "CONFIG"], "hardware profile"),
])
def test_a_config_json_where_a_scenario_or_profile_goes_says_what_it_is(tmp_path, capsys, argv, expected):
    from tests.cli.test_newuser5_walk import error_of

    config = ROOT / "tests" / "models" / "data" / "deepseek-v3" / "config.json"
    argv = [str(config) if a == "CONFIG" else str(tmp_path / "r.html") if a == "OUT" else a for a in argv]
    err = error_of(capsys, argv)
    assert f"config.json: is a HuggingFace model config file, not a {expected} file: a config.json goes to moesim " \
           'model, or to model = "FILE" in a scenario' in err
    assert main(["model", str(config)]) == 0  # where it goes, it still reads


# --- (6) found on the walk: `calibrate` fitted CPU (gloo) harness records into a GPU profile without a word, and
# `report --results` predicted them on one the same way.

def cpu_records(tmp_path: Path) -> Path:
    from tests.calibrate.calibrate_synth import layer_record_dict, write_jsonl

    return write_jsonl(tmp_path / "cpu.jsonl", [layer_record_dict(tokens=t, experts_per_rank=e)
                                                for t in (512, 1024, 2048) for e in (1, 2)])


def test_calibrate_says_cpu_records_fitted_into_a_gpu_profile(tmp_path, capsys):
    records = cpu_records(tmp_path)
    assert main(["calibrate", str(records), "--hardware", "h100-sxm", "-o", str(tmp_path / "g.toml"), "-q",
                 "--bootstrap", "0"]) == 0
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "env.device" in x]
    assert line == (f"moesim: warning: {records}: its switch_layer records ran on cpu (env.device), but h100-sxm's "
                    "devices are gpu: they measure the machine that ran them, not h100-sxm (cpu-localhost is the "
                    "profile for CPU runs)")
    assert main(["calibrate", str(records), "--hardware", "cpu-localhost", "-o", str(tmp_path / "c.toml"), "-q",
                 "--bootstrap", "0"]) == 0
    assert "env.device" not in capsys.readouterr().err  # the matching profile: nothing said


def test_report_notes_the_scenarios_warnings_and_cpu_records(tmp_path):
    from moesim.report import build_report

    path = tiny_file(tmp_path, model_extra="max_position_embeddings = 512\n")
    page = build_report(load_scenario(str(path)), results=cpu_records(tmp_path))
    assert any(n.startswith("the scenario's layout: warning: training.seq_len 1,024 tokens exceeds the "
                            "max_position_embeddings 512") for n in page.notes)
    assert any(n.startswith("calibration: ") and "ran on cpu (env.device), but h100-sxm's devices are gpu" in n
               for n in page.notes)


# --- (7) found on the walk: a bad sweep file under torchrun printed its one line once per rank.

def test_validate_run_says_bad_input_on_rank_zero_only(tmp_path, capsys, monkeypatch):
    from validate.run import main as validate_main

    sweep = tmp_path / "bad.toml"
    sweep.write_text('[defaults]\nworld_size = 2\n[[layer]]\nname = "t"\ntokens_per_rank = "lots"\n')
    argv = ["--sweep", str(sweep), "--out", str(tmp_path / "r.jsonl")]
    for rank, lines in (("1", 0), ("0", 1)):
        monkeypatch.setenv("RANK", rank)
        assert validate_main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == lines and "Traceback" not in err
    assert err.startswith(f"validate.run: error: {sweep}: [[layer]] #0 ('t'): field 'd_model' is required")
