"""Four things a newcomer (session 23, newuser6's "Left" list) hit, fixed in session 23 (lane uxfix): each test
failed on main at 8c6404b. The log is in docs/collectives-history.md, "Session 23 (uxfix)"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moesim import api
from moesim.cli import main
from moesim.specs.load import load_scenario
from tests.cli.test_newuser5_walk import error_of  # one line, exit 2, no traceback

ROOT = Path(__file__).resolve().parent.parent.parent


# --- (1) An encoder-decoder's routing lines gave the encoder's figures without saying so.

@pytest.mark.parametrize("name", ["switch-c-2048-tpu-v3", "st-moe-32b-tpu-v3"])
def test_an_encoder_decoders_routing_names_each_stack(name, capsys):
    assert main(["estimate", name]) == 0
    text = capsys.readouterr().out
    for stack in ("encoder", "decoder"):
        assert f"tokens per device per layer ({stack})" in text and f"routing group / capacity ({stack})" in text
    assert main(["estimate", name, "--json"]) == 0
    moe = json.loads(capsys.readouterr().out)["moe"]
    enc, dec = moe["by_stack"]["encoder"], moe["by_stack"]["decoder"]
    assert moe["stack"] == "encoder"  # the keys kept as they were are the encoder's
    assert {k: moe[k] for k in enc} == enc
    # the decoder routes its own tokens: decoder_seq_len / seq_len of the encoder's (512 / 114 on both models)
    seq, dec_seq = load_scenario(name).seq_lens
    assert dec["tokens_per_device_per_layer"] * seq == enc["tokens_per_device_per_layer"] * dec_seq
    assert dec["expert_capacity"] <= enc["expert_capacity"]  # Switch-C: 2 slots each (cf 1.0)


def test_a_decoder_only_models_routing_keys_are_as_before(capsys):
    assert main(["estimate", "mixtral-8x7b-h100", "--json"]) == 0
    moe = json.loads(capsys.readouterr().out)["moe"]
    assert list(moe) == ["capacity_factor", "capacity_rule", "tokens_per_device_per_layer", "routing_group_tokens",
                         "expert_capacity", "expected_drop_fraction_uniform"]


# --- (2) A RoPE model trained past its config's max_position_embeddings drew no note.

def qwen3_file(tmp_path: Path, seq_len: int, model: str = "qwen3-235b-a22b") -> Path:
    path = tmp_path / "qwen3.toml"
    path.write_text(f'schema_version = 1\nname = "long"\nmodel = "{model}"\nhardware = "h100-sxm"\ndevices = 256\n'
                    f'[training]\nglobal_batch_sequences = 256\nseq_len = {seq_len}\n')
    return path


def rope_warnings(path: Path) -> list[str]:
    return [w for w in api.estimate(str(path), "tp=8,ep=32,pp=8,cp=4").warnings if "max_position_embeddings" in w]


def test_a_sequence_past_a_rope_models_context_is_noted(tmp_path):
    (warning,) = rope_warnings(qwen3_file(tmp_path, 131072))
    assert "training.seq_len 131,072 tokens exceeds the max_position_embeddings 40,960 of model " \
           "'qwen3-235b-a22b' (RoPE)" in warning
    assert "YaRN" in warning and "rope_scaling" in warning


def test_a_sequence_within_the_context_draws_no_note(tmp_path):
    assert rope_warnings(qwen3_file(tmp_path, 40960)) == []


# --- (3) seq_len = "32K" said "expected integer" without the integer meant.

@pytest.mark.parametrize("key, text, meant", [("seq_len", '"32K"', 32768), ("seq_len", '"32,768"', 32768),
                                              ("global_batch_sequences", '"1k"', 1024)])
def test_a_count_written_as_text_names_the_integer_meant(tmp_path, capsys, key, text, meant):
    src = (ROOT / "scenarios" / "mixtral-8x7b-h100.toml").read_text().splitlines()
    lines = [f"{key} = {text}" if line.startswith(f"{key} =") else line for line in src]
    assert lines != src
    path = tmp_path / "s.toml"
    path.write_text("\n".join(lines) + "\n")
    err = error_of(capsys, ["estimate", path])
    assert f"s.toml: field 'training.{key}': expected integer, got {text[1:-1]!r}; did you mean {key} = {meant} " \
           "(an integer, no quotes" in err


def test_an_encoder_decoders_decoder_seq_len_as_text(tmp_path, capsys):
    src = (ROOT / "scenarios" / "st-moe-32b-tpu-v3.toml").read_text()
    path = tmp_path / "s.toml"
    assert "decoder_seq_len = 114\n" in src
    path.write_text(src.replace("decoder_seq_len = 114\n", 'decoder_seq_len = "0.5K"\n'))
    assert "field 'training.decoder_seq_len': expected integer, got '0.5K'; did you mean decoder_seq_len = 512 " \
           "(an integer, no quotes; K = 1,024)?" in error_of(capsys, ["estimate", path])


def test_a_varied_count_written_with_a_suffix(capsys):
    err = error_of(capsys, ["sweep", "mixtral-8x7b-h100", "--vary", "training.seq_len=32K"])
    assert "'32K' is not an integer; did you mean --vary training.seq_len=32768 (K = 1,024)?" in err


def test_text_that_reads_as_no_count_is_refused_as_before(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text((ROOT / "scenarios" / "mixtral-8x7b-h100.toml").read_text().replace(
        "seq_len = 4096", 'seq_len = "long"'))
    assert error_of(capsys, ["estimate", path]).rstrip().endswith("expected integer, got 'long'")
    from moesim.specs.count_hint import meant_integer  # here: each test of this file ran (and failed) on main

    assert [meant_integer(v) for v in ("1.3K", "32KiB", "0.5", 32, "K")] == [None] * 5
