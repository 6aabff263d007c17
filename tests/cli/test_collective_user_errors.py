"""`moesim collective` with NCCL's options used wrongly, as a user meets them (issue #11 item 2): one line, exit 2,
naming the option and what it needs; an empty tuner-rules file runs with a one-line warning."""

from __future__ import annotations

import json

import pytest

from moesim.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["collective", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("moesim: error:"), (out[-300:], err)
    return lines[0]


@pytest.mark.parametrize("hardware, options, first", [
    ("tpu-v4", ("--nccl-algo", "ring"), "--nccl-algo"),
    ("tpu-v3", ("--nccl-proto", "LL", "--nccl-collnet"), "--nccl-collnet"),
    ("cpu-localhost", ("--tuner-rules", "rules.csv"), "--tuner-rules"),
    ("tpu-v4", ("--nccl-max-nchannels", "4"), "--nccl-max-nchannels"),
])
def test_nccl_options_on_a_profile_without_nccl(capsys, hardware, options, first):
    line = one_error(capsys, "all_reduce", "--hardware", hardware, "--devices", 4, "--bytes", "1MiB", *options)
    assert f"field '{first}'" in line and f"{hardware}'s devices are" in line and "allowed: a GPU profile" in line


def test_no_algorithm_hint_names_what_the_asked_algorithm_needs(capsys):
    nvls = one_error(capsys, "all_reduce", "--hardware", "a100-80gb", "--devices", 8, "--bytes", "1MiB",
                     "--nccl-algo", "nvls")
    assert "nvls_efficiency > 0 (NVLink SHARP)" in nvls and "NCCL_COLLNET_ENABLE" not in nvls
    both = one_error(capsys, "all_gather", "--hardware", "h100-sxm", "--devices", 16, "--bytes", "1MiB",
                     "--nccl-algo", "tree,pat")
    assert "tree: all-reduce over more than 2 ranks" in both and "pat: all-gather / reduce-scatter across nodes" in both
    collnet = one_error(capsys, "all_reduce", "--hardware", "h100-sxm", "--devices", 16, "--bytes", "1MiB",
                        "--nccl-algo", "collnet")
    assert collnet.count("--nccl-collnet (NCCL_COLLNET_ENABLE)") == 1  # collnetdirect and collnetchain: one hint


def test_tuner_rules_file_that_is_a_directory_or_binary(capsys, tmp_path):
    args = ("all_reduce", "--hardware", "h100-sxm", "--devices", 16, "--bytes", "1MiB", "--tuner-rules")
    assert "field '--tuner-rules': is a directory, not a file" in one_error(capsys, *args, tmp_path)
    binary = tmp_path / "rules.csv"
    binary.write_bytes(b"\xff\xfea\x00l\x00")
    assert "not UTF-8 text (a binary file?)" in one_error(capsys, *args, binary)


def test_empty_tuner_rules_file_warns_and_prices_as_without(capsys, tmp_path):
    empty = tmp_path / "rules.csv"
    empty.write_text("# collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks\n\n")
    args = ("all_reduce", "--hardware", "h100-sxm", "--devices", 16, "--bytes", "1MiB", "--json")
    code, with_rules, err = run(capsys, *args, "--tuner-rules", empty)
    assert code == 0 and err.strip().splitlines() == [
        f"moesim: warning: {empty}: no tuner rule in the file (only blank, '#' or title lines): NCCL's own pick "
        "everywhere"]
    code, without, _ = run(capsys, *args)
    assert code == 0 and with_rules.replace(f'"{empty}"', "null") == without


@pytest.mark.parametrize("op", ["all_to_all", "send_recv"])
def test_algorithm_and_protocol_options_on_point_to_point_ops_warn_and_change_nothing(capsys, op):
    args = (op, "--hardware", "h100-sxm", "--devices", 16, "--sweep", "1KiB:64MiB", "--json")
    code, plain, err = run(capsys, *args)
    assert code == 0 and err == ""
    code, forced, err = run(capsys, *args, "--nccl-algo", "tree", "--nccl-proto", "LL")
    assert code == 0 and err.strip().splitlines() == [
        f"moesim: warning: --nccl-algo, --nccl-proto do(es) not apply to {op}: NCCL runs it as point-to-point "
        "sends, their protocol picked by size; priced as without"]
    assert json.loads(forced)["results"] == json.loads(plain)["results"]


def test_a_run_that_fails_after_a_warning_still_ends_in_one_line(capsys, tmp_path):
    empty = tmp_path / "rules.csv"
    empty.write_text("\n")
    one_error(capsys, "all_to_all", "--hardware", "h100-sxm", "--devices", 16, "--bytes", "1MiB", "--nccl-algo", "foo")
    line = one_error(capsys, "all_reduce", "--hardware", "h100-sxm", "--devices", 16, "--bytes", "1MiB",
                     "--tuner-rules", empty, "--nccl-algo", "foo")
    assert "unknown NCCL algorithm 'foo'" in line


def test_an_unknown_protocol_at_a_release_that_ignores_it_warns_once(capsys):
    """NCCL 2.18.1-2.23.4 ignore a protocol name they do not know (session 17 tunerver); 2.24.3 on fail it."""
    args = ("all_reduce", "--hardware", "h100-sxm", "--devices", 16, "--bytes", "1MiB", "--json")
    code, ignored, err = run(capsys, *args, "--nccl-proto", "LL128,LL512", "--nccl-version", "2.20.3")
    assert code == 0 and err.strip().splitlines() == [
        "moesim: warning: NCCL_PROTO 'LL128,LL512': NCCL 2.20.3 ignores 'LL512' (not one of its protocol names; "
        "NCCL 2.24.3 on fails the string)"]
    code, named, _ = run(capsys, *args, "--nccl-proto", "LL128", "--nccl-version", "2.20.3")
    assert json.loads(ignored)["results"] == json.loads(named)["results"]
    assert "unknown NCCL protocol 'll512'" in one_error(capsys, *args, "--nccl-proto", "LL128,LL512",
                                                          "--nccl-version", "2.24.3")
