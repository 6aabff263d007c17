"""`moesim calibrate` on mangled nccl-tests logs and bad options, as a user meets them (issue #11 item 4):
each ends with exit 2 and one `moesim: error:` line naming the file (and line) and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from _cli import run_bad
from moesim.cli import main

LOGS = Path(__file__).resolve().parent.parent / "data" / "nccl"
LOG = LOGS / "b200-vultr-1node_all_reduce_perf.log"  # 8 ranks listed, 13 columns, 8 B .. 16 GiB


def calibrate(path, tmp_path, *extra):
    return ["calibrate", path, "--hardware", "b200", "-o", tmp_path / "out.toml", "-q", "--bootstrap", "0", *extra]


def test_ranks_below_the_listed_ranks_names_the_file_and_line(tmp_path, capsys):
    run_bad(capsys, calibrate(LOG, tmp_path, "--ranks", "3"),
            f"{LOG}:19:", "field 'ranks'", "lists rank 7 but --ranks 3", "allowed: >= 8")


def test_a_log_cut_mid_row_says_it_is_truncated(tmp_path, capsys):
    text = LOG.read_bytes()
    cut = tmp_path / "cut_all_reduce_perf.log"
    cut.write_bytes(text[:text.index(b"131072         32768") + 40])  # stops inside the 128 KiB row
    run_bad(capsys, calibrate(cut, tmp_path), f"{cut}:33:", "expected 13 columns", "got 4 in the log's last line", "truncated")


def test_a_short_row_inside_the_log_keeps_the_column_count_message(tmp_path, capsys):
    lines = LOG.read_text().splitlines()
    lines[20] = " ".join(lines[20].split()[:9])  # the 32-byte row loses its in-place columns
    mixed = tmp_path / "mixed_all_reduce_perf.log"
    mixed.write_text("\n".join(lines) + "\n")
    run_bad(capsys, calibrate(mixed, tmp_path), f"{mixed}:21:", "expected 13 columns", "got 9")


def test_header_only_log(tmp_path, capsys):
    head = tmp_path / "head_all_reduce_perf.log"
    head.write_text("\n".join(LOG.read_text().splitlines()[:18]) + "\n")
    run_bad(capsys, calibrate(head, tmp_path), str(head), "column titles are there but no row follows")


@pytest.mark.parametrize("name, content, fragment", [
    ("empty_all_reduce_perf.log", b"", "the file is empty"),
    ("blank.jsonl", b"\n  \n", "the file is empty"),
    ("binary_all_reduce_perf.log", bytes(range(256)) * 4, "not a text file: it holds NUL bytes"),
    ("utf16_all_reduce_perf.log", "#  Rank  0 Group  0 Pid 1 on h device  0\n".encode("utf-16"),
     "UTF-16 text: convert it to UTF-8"),
])
def test_empty_and_binary_files(tmp_path, capsys, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    run_bad(capsys, calibrate(path, tmp_path), str(path), "field 'measurements'", fragment)


def test_a_utf8_byte_order_mark_reads(tmp_path, capsys):
    bom = tmp_path / "bom_all_reduce_perf.log"
    bom.write_bytes(b"\xef\xbb\xbf" + LOG.read_bytes())
    assert main([str(a) for a in calibrate(bom, tmp_path, "--json")]) == 0
    assert '"collective:all_reduce"' in capsys.readouterr().out


def test_windows_line_endings_read_the_same(tmp_path, capsys):
    crlf = tmp_path / "crlf_all_reduce_perf.log"
    crlf.write_bytes(LOG.read_bytes().replace(b"\n", b"\r\n"))
    outs = []
    for path in (LOG, crlf):
        assert main([str(a) for a in calibrate(path, tmp_path, "--json")]) == 0
        outs.append(capsys.readouterr().out.replace(str(path), "LOG"))
    assert outs[0] == outs[1]


def test_unknown_collective_binary(tmp_path, capsys):
    other = tmp_path / "hypercube_perf.log"
    other.write_text(LOG.read_text().replace("all_reduce_perf", "hypercube_perf"))
    run_bad(capsys, calibrate(other, tmp_path), f"{other}:3:", "'hypercube_perf_mpi' is not a collective",
            "allowed: all_reduce_perf")


@pytest.mark.parametrize("extra, fragments", [
    (("--ranks", "0"), ("--ranks", "0 is out of range")),
    (("--host-cpu", "bogus"), ("--host-cpu", "invalid choice: 'bogus'", "'amd'")),
    (("--gpu-nic-path", "pix"), ("--gpu-nic-path", "'PIX'")),
    (("--prior-weight", "0"), ("field '--prior-weight'", "allowed: auto, > 0")),
])
def test_bad_options(tmp_path, capsys, extra, fragments):
    run_bad(capsys, calibrate(LOG, tmp_path, *extra), *fragments)


def test_missing_file_and_directory(tmp_path, capsys):
    run_bad(capsys, calibrate(tmp_path / "nope.log", tmp_path), "nope.log", "no such file")
    run_bad(capsys, calibrate(tmp_path, tmp_path), "is a directory, not a file")


def test_an_nccl_tests_log_on_a_profile_without_nccl(tmp_path, capsys):
    line = run_bad(capsys, ["calibrate", LOG, "--hardware", "tpu-v4", "-o", tmp_path / "out.toml", "-q"],
                   str(LOG), "field '--hardware'", "tpu-v4's devices are tpu_chip", "allowed: a GPU profile")
    assert not (tmp_path / "out.toml").exists(), line


def test_a_calibrated_profile_with_a_bad_system_fact_lists_only_real_values(tmp_path, capsys):
    """A profile's host_cpu / gpu_nic_path may be left out; a wrong value lists the values, not the empty default."""
    out = tmp_path / "b200-vultr.toml"
    assert main([str(a) for a in ["calibrate", LOG, "--hardware", "b200", "-o", out, "-q", "--bootstrap", "0",
                                  "--host-cpu", "amd"]]) == 0
    capsys.readouterr()
    text = out.read_text()
    assert 'host_cpu = "amd"' in text
    for bad, allowed in (('host_cpu = "AMD"', "(allowed: intel, amd, arm, mixed)"),
                         ('gpu_nic_path = "pix"', "(allowed: PIX, PXB, P2C, PXN, PHB, NODE, SYS)")):
        edited = tmp_path / "edited.toml"
        edited.write_text(text.replace('host_cpu = "amd"', bad))
        run_bad(capsys, ["collective", "all_reduce", "--hardware", edited, "--devices", 8, "--bytes", "1MiB"],
                str(edited), f"'{bad.split(' = ')[1][1:-1]}' is not allowed", allowed)
        run_bad(capsys, ["estimate", "deepseek-v2-l4-b200-ep8", "--hardware", edited], str(edited), allowed)


def test_text_report_lists_the_skipped_rows_and_says_nothing_is_held_out(tmp_path, capsys):
    log = LOGS / "b200-vultr-2node_all_gather_perf.log"  # five 0-byte rows (sizes rounded down), 16 ranks, none listed
    assert main([str(a) for a in calibrate(log, tmp_path, "--ranks", 16)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].endswith("54 collective points; 5 rows or records skipped:")
    assert out[2:7] == [f"    {log}:{n}: 0-byte row" for n in range(3, 8)]
    assert out[-1].startswith("no switch_layer records, none held out: every collective row is fitted")


@pytest.mark.parametrize("log, hint", [
    ("b200-vultr-2node_all_gather_perf.log", "busbw/algbw = 0.9375 at {log}:34 fits N = 16)"),
    ("b200-vultr-2node_all_reduce_perf.log", "busbw/algbw = 1.8750 at {log}:34 fits N = 16)"),
    ("b200-vultr-2node_sendrecv_perf.log", "(pass --ranks N)"),  # factor 1 at every N: no hint
])
def test_a_log_without_rank_lines_suggests_the_rank_count_its_rows_fit(tmp_path, capsys, log, hint):
    path = LOGS / log
    line = run_bad(capsys, calibrate(path, tmp_path), f"{path}:3: no '#  Rank ...' lines before the results",
                   hint.format(log=path))
    assert line.count("fits N") == ("fits N" in hint)


def test_the_same_log_twice_is_refused(tmp_path, capsys):
    run_bad(capsys, ["calibrate", LOG, LOGS / ".." / "nccl" / LOG.name, *calibrate(LOG, tmp_path)[2:]],
            "field 'measurements': given twice (also as", str(LOG))


def test_ranks_given_for_logs_of_two_group_sizes_says_it_holds_for_every_log(tmp_path, capsys):
    two_nodes = LOGS / "b200-vultr-2node_all_reduce_perf.log"  # no rank lines, 16 ranks
    run_bad(capsys, ["calibrate", LOG, two_nodes, *calibrate(LOG, tmp_path, "--ranks", 16)[2:]], f"{LOG}:31:",
            "all_reduce over 16 ranks", "--ranks 16 was given and this log lists 8 rank lines; --ranks holds for every log")


def test_output_that_would_overwrite_an_input_is_refused_before_anything_is_written(tmp_path, capsys):
    """-o naming the log itself used to overwrite the log with the profile, then fail on the suffix."""
    log = tmp_path / "copy_all_reduce_perf.log"
    log.write_bytes(LOG.read_bytes())
    run_bad(capsys, ["calibrate", log, "--hardware", "b200", "-o", log], "field '--output'",
            "give -o a path ending in .toml (allowed: .toml)")
    assert log.read_bytes() == LOG.read_bytes()
    prior = tmp_path / "prior.toml"
    prior.write_text((LOG.parent.parent.parent.parent / "hardware_profiles" / "b200.toml").read_text())
    before = prior.read_text()
    run_bad(capsys, ["calibrate", log, "--hardware", prior, "-o", prior], str(prior),
            "is the prior profile (--hardware): writing the calibrated profile there would overwrite it")
    assert prior.read_text() == before
    records = tmp_path / "records.toml"  # a measurement file named .toml (nccl-tests output saved so)
    records.write_bytes(LOG.read_bytes())
    run_bad(capsys, ["calibrate", records, "--hardware", "b200", "-o", records, "--nccl-op", "all_reduce"],
            "is a measurement file")
    assert records.read_bytes() == LOG.read_bytes()


def test_a_log_run_with_several_gpus_per_thread_warns_when_not_told(tmp_path, capsys):
    log = LOGS / "h100-shahizat-1node_all_reduce_perf.log"  # '# nThread 1 nGpus 8 ...'
    args = ["calibrate", log, "--hardware", "h100-sxm", "-o", tmp_path / "out.toml", "-q", "--bootstrap", "0"]
    assert main([str(a) for a in args]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        f"moesim: warning: {log}: its header says nGpus 8 (GPUs one thread drove) but --gpus-per-thread is 1: pass "
        "--gpus-per-thread 8 unless the log says otherwise"]
    assert main([str(a) for a in args + ["--gpus-per-thread", "8"]]) == 0
    assert capsys.readouterr().err == ""


def test_a_skipped_results_line_never_precedes_an_error(tmp_path, capsys):
    """A results file whose only good-looking line lacks schema_version and whose next line is cut: the skip warning
    is dropped and the error is the run's one line (before, `moesim: warning: ... skipped a line` came first)."""
    bad = tmp_path / "cut.jsonl"
    bad.write_text('{"a": 1}\n{"b"\n', encoding="utf-8")
    run_bad(capsys, ["calibrate", bad, "--hardware", "h100-sxm", "-o", tmp_path / "out.toml"], "schema_version")


def test_a_skipped_results_line_is_said_after_a_run_that_succeeds(tmp_path, capsys):
    """The same skip on a file that calibrates: exit 0 and the warning, once, naming the file and line."""
    good = Path(__file__).resolve().parents[1] / "calibrate" / "data" / "harness-cpu-clock-layers.jsonl"
    text = good.read_text(encoding="utf-8")
    cut = tmp_path / "layers.jsonl"
    cut.write_text(text + '{"x"\n', encoding="utf-8")
    code = main(["calibrate", str(cut), "--hardware", "cpu-localhost", "-o", str(tmp_path / "out.toml")])
    err = capsys.readouterr().err.strip().splitlines()
    line = len(text.splitlines()) + 1
    assert code == 0
    assert err == [err[0]] and err[0].startswith("moesim: warning:") and f"layers.jsonl:{line}: skipped a line" in err[0]


# Session 25 (tidy25): a .jsonl file that is not JSON lines was read as an nccl-tests log (its first character not '{')
# and said only "no nccl-tests result rows found"; now the error names the file and both formats calibrate reads.
@pytest.mark.parametrize("name, content, char", [("x.jsonl", "hello world\nnot json\n", "'h'"),
                                                 ("records.json", "\n  schema_version: 1\n", "'s'"),
                                                 ("é.JSONL", "été\n", "'é'")])
def test_a_json_named_file_that_is_not_json_lines_names_the_file_and_the_formats(tmp_path, capsys, name, content,
                                                                                  char):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    line = run_bad(capsys, calibrate(path, tmp_path), str(path), "field 'measurements'",
                   f"named {path.suffix} but not JSON lines", f"first non-blank character is {char}",
                   "validate/ JSONL records, one JSON object per line", "or an nccl-tests log")
    assert "nccl-tests result rows" not in line, line
    assert not (tmp_path / "out.toml").exists()
