"""Bad input named by issue #14: each ends with exit 2 and one line naming the file or field, never a
traceback, a hang or a figure computed from an invalid number."""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from pathlib import Path

import pytest

import _cli
from moesim.paths import builtin_dir

SCENARIOS = builtin_dir("scenarios")
MODELS = builtin_dir("models")
PROFILES = builtin_dir("hardware_profiles")


# the shared helper (tests/_cli.py), with this file's bound against a hang: these fail at load, in milliseconds
run_bad = functools.partial(_cli.run_bad, timeout_s=20.0)


def scenario_with(tmp_path: Path, scenario: str = "switch-base-128-tpu-v3", *, scen=None, model=None, hw=None,
                  suffix: str = ".toml") -> Path:
    """A copy of a shipped scenario whose scenario / model / profile text is edited by the given functions."""
    text = (SCENARIOS / f"{scenario}.toml").read_text()
    import tomllib

    data = tomllib.loads(text)
    model_text = (MODELS / f"{data['model']}.toml").read_text()
    hw_text = (PROFILES / f"{data['hardware']}.toml").read_text()
    (tmp_path / "m.toml").write_text(model(model_text) if model else model_text)
    (tmp_path / "h.toml").write_text(hw(hw_text) if hw else hw_text)
    text = text.replace(f'model = "{data["model"]}"', f'model = "{tmp_path / "m.toml"}"')
    text = text.replace(f'hardware = "{data["hardware"]}"', f'hardware = "{tmp_path / "h.toml"}"')
    path = tmp_path / f"s{suffix}"
    path.write_text(scen(text) if scen else text)
    return path


def sub(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


# --- wrong answers from invalid numbers (exit 0 before) -------------------------------------------

@pytest.mark.parametrize("where,edit,fragments", [
    ("model", sub("capacity_factor_train = 1.25", "capacity_factor_train = nan"),
     ["m.toml", "moe.capacity_factor_train", "not a finite number"]),
    ("model", sub("expert_d_ff = 3072", "expert_d_ff = 18446744073709551616"),
     ["moe.expert_d_ff", "out of range", "<= 1048576"]),
    ("model", sub("decoder_layers = 12", "decoder_layers = 100000000"), ["decoder_layers", "<= 4096"]),
    ("model", sub("encoder_layers = 12", "encoder_layers = 18446744073709551616"), ["encoder_layers"]),
    ("model", sub("num_heads = 12", "num_heads = 0"), ["attention.num_heads", ">= 1"]),
    ("hw", sub("memory_reserved_gib = 0.5", "memory_reserved_gib = -1000"), ["h.toml", "memory_reserved_gib", ">= 0", "GiB per device"]),
    ("hw", sub("memory_reserved_gib = 0.5", "memory_reserved_gib = 100"), ["memory_reserved_gib", "is not below"]),
    ("hw", sub("[chip]", "price_per_device_hour_usd = -2.0\n[chip]"), ["price_per_device_hour_usd"]),
    ("hw", sub("bfloat16 = 123", "bfloat16 = nan"), ["chip.peak_tflops_per_chip.bfloat16", "not a finite", "TFLOP/s per chip"]),
    ("hw", sub("hbm_bw_gb_per_s_per_chip = 900", "hbm_bw_gb_per_s_per_chip = inf"), ["chip.hbm_bw_gb_per_s_per_chip", "GB/s per chip"]),
    ("hw", sub("latency_us = 1.0", "latency_us = nan"), ["].latency_us", "not a finite", " us)"]),
    ("hw", sub("latency_us = 1.0", "latency_us = -1"), ["].latency_us", ">= 0"]),
    ("hw", sub("dims = [", "dims = [nan, "), ["dims", "expected an integer"]),
    ("hw", sub("dims = [", "dims = [inf, "), ["dims"]),
    ("hw", sub("dims = [", "dims = ['x', "), ["dims"]),
    ("hw", sub("topology = ", "oversubscription = inf\ntopology = "), ["oversubscription"]),
    ("hw", sub("topology = ", "rails = 0\ntopology = "), ["rails", ">= 1"]),
    ("hw", sub("topology = ", "rails = -3\ntopology = "), ["rails"]),
    ("hw", sub("topology = ", "switch_radix = -1\ntopology = "), ["switch_radix"]),
    ("hw", sub("links_per_chip = 4", "links_per_chip = -1"), ["links_per_chip", ">= 0"]),
    ("hw", sub("domain_chips = 1024", "domain_chips = 18446744073709551616"), ["].domain_chips", "chips)"]),
    ("scen", sub("global_batch_sequences = 2048", "global_batch_sequences = 18446744073709551616"),
     ["s.toml", "training.global_batch_sequences", "out of range"]),
    ("scen", lambda t: sub("seq_len = 512", "seq_len = 16777216")(
        sub("global_batch_sequences = 2048", "global_batch_sequences = 1048576")(t)),
     ["tokens per step"]),
    ("scen", sub("min_expert_capacity = 4", "min_expert_capacity = 18446744073709551616"), ["min_expert_capacity"]),
    ("scen", sub("[layout]", "[search]\nmax_micro_batches = 0\n[layout]"), ["search.max_micro_batches", ">= 1"]),
    ("scen", sub("[layout]", "[search]\ncapacity_factors = [nan]\n[layout]"), ["search.capacity_factors"]),
    ("scen", sub("[layout]", "[search]\ncapacity_factors = ['x']\n[layout]"), ["search.capacity_factors"]),
    ("scen", sub("[layout]", "[search]\norders = [3]\n[layout]"), ["search.orders"]),
    ("scen", sub("pp = 1", "pp = 1\norder = 5"), ["layout.order"]),
    ("scen", sub("pp = 1", "pp = 1\norder = [1, 2]"), ["layout.order"]),
])
def test_invalid_numbers_in_files(tmp_path, capsys, where, edit, fragments):
    path = scenario_with(tmp_path, **{where: edit})
    run_bad(capsys, ["estimate", path], *fragments)


@pytest.mark.parametrize("argv,fragments", [
    (["model", "switch-base-8", "--seq-len", "-5"], ["--seq-len", ">= 1"]),
    (["estimate", "switch-base-128-tpu-v3", "--devices", "0"], ["--devices", ">= 1"]),
    (["estimate", "switch-base-128-tpu-v3", "--layout", ""], ["--layout", "must not be empty"]),
    (["estimate", "switch-base-128-tpu-v3", "--hardware", ""], ["--hardware", "must not be empty"]),
    (["simulate", "switch-base-128-tpu-v3", "--noise", "inf"], ["--noise", "not a finite"]),
    (["simulate", "switch-base-128-tpu-v3", "--noise", "nan"], ["--noise"]),
    (["simulate", "switch-base-128-tpu-v3", "--steps", "x"], ["invalid int value"]),
    (["collective", "all_reduce", "--hardware", "tpu-v3", "--devices", "8", "--bytes", "inf"], ["--bytes"]),
    (["collective", "all_reduce", "--hardware", "tpu-v3", "--devices", "8", "--bytes", "nan"], ["--bytes"]),
    (["collective", "all_reduce", "--hardware", "tpu-v3", "--devices", "8", "--bytes", "1e400"], ["--bytes"]),
    (["sweep", "switch-base-128-tpu-v3", "--vary", "batch=1e20"], ["batch"]),
    (["sweep", "switch-base-128-tpu-v3", "--vary", "global_batch_sequences=18446744073709551616"],
     ["global_batch_sequences"]),
    (["sweep", "switch-base-128-tpu-v3", "--vary", "model.moe.capacity_factor_train=inf"], ["capacity_factor"]),
    (["sweep", "switch-base-128-tpu-v3", "--vary", "model.moe.capacity_factor_train=nan"], ["capacity_factor"]),
    (["sweep", "switch-base-128-tpu-v3", "--vary", "model.decoder_layers=100000000"], ["decoder_layers"]),
    (["nonsense-command"], ["invalid choice"]),
    (["estimate"], ["the following arguments are required"]),
])
def test_invalid_command_line_values(capsys, argv, fragments):
    run_bad(capsys, argv, *fragments)


# --- garbage files -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_non_utf8_scenario(tmp_path, capsys, suffix):
    path = tmp_path / f"s{suffix}"
    path.write_bytes(b"schema_version = 1\nname = '\xff\xfe'\n")
    run_bad(capsys, ["estimate", path], str(path), "not UTF-8")


def test_non_utf8_model_profile_and_hf_config(tmp_path, capsys):
    bad = b"\x80\x81\x82"
    (tmp_path / "m.toml").write_bytes(bad)
    run_bad(capsys, ["model", tmp_path / "m.toml"], "m.toml", "not UTF-8")
    (tmp_path / "config.json").write_bytes(bad)
    run_bad(capsys, ["model", tmp_path / "config.json"], "config.json", "not UTF-8")
    path = scenario_with(tmp_path, hw=lambda t: t + "\n# \udcff".encode("utf-8", "surrogateescape").decode("latin-1"))
    (tmp_path / "h.toml").write_bytes((tmp_path / "h.toml").read_bytes() + b"\n# \xff\n")
    run_bad(capsys, ["estimate", path], "h.toml", "not UTF-8")


def test_deeply_nested_json(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    run_bad(capsys, ["estimate", path], str(path), "nested too deeply")
    (tmp_path / "config.json").write_text('{"a": ' + "[" * 200_000 + "]" * 200_000 + "}")
    run_bad(capsys, ["model", tmp_path / "config.json"], "config.json", "nested too deeply")


def test_yaml_error_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("schema_version: 1\nname: [unclosed\nmodel: x\n")
    run_bad(capsys, ["estimate", path], str(path), "not valid YAML")


def test_directory_and_long_path(tmp_path, capsys):
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    run_bad(capsys, ["estimate", folder], "is a directory")
    run_bad(capsys, ["estimate", "x" * 5000 + ".toml"], "path too long")


def test_routing_histogram_garbage(tmp_path, capsys):
    counts = tmp_path / "counts.json"
    counts.write_bytes(b"[\xff]")
    run_bad(capsys, ["simulate", "switch-base-128-tpu-v3", "--routing", counts], "counts.json", "not UTF-8")
    counts.write_text("[" * 100_000 + "]" * 100_000)
    run_bad(capsys, ["simulate", "switch-base-128-tpu-v3", "--routing", counts], "nested too deeply")


def test_routing_counts_near_float_max_are_not_overflowed():
    from moesim.des.routing import load_histograms

    path = Path(__file__).parent / "_tmp_counts.json"
    try:
        path.write_text(json.dumps([1e308, 1e308, 1e308, 1e308]))
        (row,) = load_histograms(path, 4)
    finally:
        path.unlink()
    assert row == pytest.approx((0.25, 0.25, 0.25, 0.25))


# --- output paths --------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["report", "switch-base-128-tpu-v3", "-o"],
    ["sweep", "switch-base-128-tpu-v3", "--vary", "model.moe.top_k=1", "--workers", "1", "-o"],
    ["simulate", "switch-base-128-tpu-v3", "--steps", "1", "--trace"],
])
@pytest.mark.parametrize("target,fragment", [
    ("DIR", "is a directory"),
    ("MISSING/out.x", "does not exist"),
    ("FILE/out.x", "is not a folder"),
    ("", "empty path"),
    ("L" * 5000, "path too long"),
])
def test_output_paths(tmp_path, capsys, command, target, fragment):
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("x")
    value = str(tmp_path / target) if target and not target.startswith("L") else target
    run_bad(capsys, command + [value], fragment)


def test_full_device_is_one_line(capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    run_bad(capsys, ["sweep", "switch-base-128-tpu-v3", "--vary", "model.moe.top_k=1", "--workers", "1",
                     "-o", "/dev/full"], "/dev/full")


# --- a Dask address that is not a scheduler -----------------------------------------------------

def test_dask_address_that_is_not_a_scheduler(capsys):
    pytest.importorskip("distributed")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def accept():  # accept and never answer, as a server that is not a Dask scheduler
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    port = server.getsockname()[1]
    from moesim.errors import SpecError
    from moesim.search.sweep import parse_vary, run_sweep
    from moesim.specs.load import load_scenario

    scenario = load_scenario("switch-base-128-tpu-v3")
    start = time.perf_counter()
    try:
        with pytest.raises(SpecError, match="no Dask scheduler answered within 2 s") as info:
            run_sweep(scenario, [parse_vary("model.moe.top_k=1")], dask_address=f"tcp://127.0.0.1:{port}",
                      connect_timeout_s=1.0)
        assert info.value.field == "--dask"
        assert time.perf_counter() - start < 15  # hung for good before
    finally:
        server.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize("key,value,fragment", [
    ("decoder_sparse_step", -1, "moe.layer_freq"),         # halved the parameters before
    ("num_hidden_layers", 100_000_000, "decoder_layers"),  # looped in the layer arithmetic before
    ("num_hidden_layers", 2**64, "decoder_layers"),
    ("moe_intermediate_size", 2**64, "moe.expert_d_ff"),
])
def test_hf_config_values(tmp_path, capsys, key, value, fragment):
    data = json.loads((Path(__file__).parent / "models" / "data" / "qwen2-57b-a14b" / "config.json").read_text())
    assert key in data
    data[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    run_bad(capsys, ["model", path], "config.json", fragment, "out of range")


def test_report_results_must_hold_a_record(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n')
    run_bad(capsys, ["report", "switch-base-128-tpu-v3", "--results", path, "-o", tmp_path / "r.html"],
            "r.jsonl", "--results", "no usable")


def test_hardware_option_error_names_the_option_and_the_closest_name(capsys):
    line = run_bad(capsys, ["estimate", "switch-base-128-tpu-v3", "--hardware", "tpu-v33"],
                   "field '--hardware'", "did you mean 'tpu-v3'?")
    assert "scenarios" not in line  # not blamed on the scenario file


def test_drop_fraction_is_a_fraction_for_huge_groups():
    from moesim.capacity import expected_drop_fraction

    assert 0 <= expected_drop_fraction(2**40, 2048, 2, 2**30) <= 1
    assert expected_drop_fraction(100, 4, 1, 0) == 1.0


def test_hf_config_zero_heads_is_one_line(tmp_path, capsys):
    data = json.loads((Path(__file__).parent / "models" / "data" / "qwen2-57b-a14b" / "config.json").read_text())
    data["num_attention_heads"] = 0  # hidden_size / num_attention_heads: ZeroDivisionError before
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    run_bad(capsys, ["model", path], "config.json", "impossible values")


def test_integer_too_large_for_a_float(tmp_path, capsys):
    # a 400-digit integer where a number goes: float() of it raised OverflowError
    path = scenario_with(tmp_path, hw=sub("hbm_bw_gb_per_s_per_chip = 900", "hbm_bw_gb_per_s_per_chip = " + "9" * 400))
    run_bad(capsys, ["estimate", path], "h.toml", "chip.hbm_bw_gb_per_s_per_chip", "too large for a number")
